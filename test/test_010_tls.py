"""102 Processing over TLS (mod_ssl), next to HTTP/2, and without mod_ssl.

The watchdog encrypts each 102 itself with the connection's SSL object and
a private memory BIO. If that disturbed the TLS record sequence, the next
record mod_ssl writes (the final response, or the next request's response
on a kept-alive connection) would fail to decrypt on the client: so every
test here reads the final response whole and then reuses the connection.

Timing: interval = delay = 200 ms; bounds are wide (see test_002_slow)."""

import re
import socket
import ssl
import struct
import subprocess
import time

import pytest

from proc.env import free_port
from proc.http1 import (PROCESSING_BLOCK, TEST_USER_AGENT, Connection,
                        pattern)

TLS_MODULES = ("ssl", "socache_shmcb", "http2", "proxy", "proxy_http")


def tls_modules(mpm):
    """mod_http2 warns and stays inactive under prefork: leave it out."""
    return tuple(m for m in TLS_MODULES if mpm != "prefork" or m != "http2")


def tls_conf(env, tls_port, backend_processing="On"):
    r = env.root
    return f"""
Listen 127.0.0.1:{tls_port}
<IfModule http2_module>
    Protocols h2 h2c http/1.1
</IfModule>
SSLSessionCache "shmcb:{r}/run/ssl_scache(512000)"
<VirtualHost 127.0.0.1:{tls_port}>
    ServerName 127.0.0.1
    SSLEngine on
    SSLProtocol TLSv1.2 +TLSv1.3
    SSLCertificateFile "{r}/conf/cert.pem"
    SSLCertificateKeyFile "{r}/conf/key.pem"
    <Location /pt>
        SetHandler proc-test
        Processing {backend_processing}
        ProcessingInterval 200ms
        ProcessingMaxCount 0
    </Location>
</VirtualHost>
<Location /pt>
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
# The front end proxies /px/ to the TLS virtual host: the backend
# connection is TLS and must never be touched by the module.
SSLProxyEngine on
SSLProxyVerify none
SSLProxyCheckPeerName off
SSLProxyCheckPeerCN off
<Location /px>
    ProxyPass "https://127.0.0.1:{tls_port}/pt"
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
"""


def make_cert(env):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", env.path("conf", "key.pem"),
         "-out", env.path("conf", "cert.pem"), "-days", "2",
         "-subj", "/CN=127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE"],
        check=True, capture_output=True)


def client_context(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


VERSIONS = [pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2"),
            pytest.param(ssl.TLSVersion.TLSv1_3, id="tls1.3")]


def assert_whole(r, length, low, high):
    assert r.status == 200, r
    assert low <= r.count(102) <= high, r.interims
    for i in r.processing:
        assert i.raw == PROCESSING_BLOCK
    assert r.body == pattern(length)


class TestTLS:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        make_cert(env)
        self.__class__.tls_port = free_port()
        env.install(tls_conf(env, self.tls_port), mpm=mpm,
                    modules=tls_modules(mpm))

    def tls(self, env, version):
        return Connection.open("127.0.0.1", self.tls_port, timeout=15,
                               ssl_context=client_context(version))

    @pytest.mark.parametrize("version", VERSIONS)
    def test_slow_then_keepalive_then_pipelined(self, env, version):
        with self.tls(env, version) as c:
            assert c.sock.version() == {
                ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            c.request("GET", "/pt?sleep=900&len=3000")
            assert_whole(c.read_response(), 3000, 3, 7)
            # the same TLS connection, after 102s: another slow request
            c.request("GET", "/pt?sleep=700&len=70000")
            assert_whole(c.read_response(), 70000, 2, 6)
            # three pipelined in one write: slow, fast, slow
            c.send(b"".join(
                f"GET /pt?sleep={ms}&len={n} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nUser-Agent: {TEST_USER_AGENT}\r\n"
                f"\r\n".encode()
                for ms, n in ((500, 1000), (0, 2000), (500, 3000))),
                methods=("GET",) * 3)
            rs = [c.read_response() for _ in range(3)]
            assert_whole(rs[0], 1000, 1, 4)
            assert_whole(rs[1], 2000, 0, 0)
            assert_whole(rs[2], 3000, 1, 4)
            # and a fast one at the end: the stream is still in step
            c.request("GET", "/pt?len=10")
            assert_whole(c.read_response(), 10, 0, 0)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_upload_then_reuse(self, env, version):
        body = pattern(50000)
        with self.tls(env, version) as c:
            c.request("POST", "/pt?sleep=600&len=100", body=body,
                      send_time=0.5)
            r = c.read_response()
            assert_whole(r, 100, 1, 5)
            assert r.header("X-Received") == "50000"
            # no 102 before the last body byte was sent
            assert all(i.t >= r.t_sent for i in r.processing)
            c.request("GET", "/pt?sleep=300&len=5")
            assert_whole(c.read_response(), 5, 0, 3)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_client_vanishes_mid_wait(self, env, version):
        c = self.tls(env, version)
        c.request("GET", "/pt?sleep=1500&len=10")
        c.pump_until(lambda: c.parsers[0].response.count(102) >= 1,
                     timeout=5, what="a first 102")
        # RST instead of FIN: the next 102 hits a reset connection
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        c.close()
        time.sleep(1.8)
        # the server is fine and other TLS connections work
        with self.tls(env, version) as c2:
            c2.request("GET", "/pt?sleep=500&len=20")
            assert_whole(c2.read_response(), 20, 1, 4)

    def test_plain_port_on_tls_server(self, env):
        # mod_ssl loaded, but this virtual host is plain HTTP
        r = env.get("/pt?sleep=700&len=100")
        assert_whole(r, 100, 2, 6)

    def test_proxy_to_tls_backend_untouched(self, env):
        # The front request gets 102s (its own, or the backend's forwarded
        # ones); the backend TLS connection, reused for the second request,
        # stays in step.
        with env.connect() as c:
            for n in (100, 200):
                c.request("GET", f"/px?sleep=900&len={n}")
                assert_whole(c.read_response(), n, 2, 10)


class TestTLSBackendQuiet:
    """Backend vhost without Processing: any byte the module put on the
    proxy's own TLS connection would break the backend's responses."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        make_cert(env)
        self.__class__.tls_port = free_port()
        env.install(tls_conf(env, self.tls_port, backend_processing="Off"),
                    mpm="event", modules=TLS_MODULES)

    def test_proxied_requests_whole(self, env):
        with env.connect() as c:
            for n in (1000, 2000, 3000):
                c.request("GET", f"/px?sleep=700&len={n}")
                assert_whole(c.read_response(), n, 2, 6)


CURL_STATUS_RE = re.compile(rb"^< HTTP/(\S+) (\d{3})", re.M)


class TestHTTP2:
    """h2 streams never get a 102 from the module; HTTP/1.1 on the same
    server still does."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        if mpm == "prefork":
            pytest.skip("mod_http2 does not run under prefork")
        make_cert(env)
        self.__class__.tls_port = free_port()
        env.install(tls_conf(env, self.tls_port), mpm=mpm,
                    modules=TLS_MODULES)

    def curl(self, env, *args):
        tid = env.new_id()
        p = subprocess.run(["curl", "-sS", "-v", "-k", "-H",
                            f"X-Test-Id: {tid}", *args],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        return p, tid

    @pytest.mark.parametrize("how", ["--http2", "--http2-prior-knowledge"])
    def test_h2_gets_no_102(self, env, how):
        if how == "--http2":
            url = f"https://127.0.0.1:{self.tls_port}/pt?sleep=900&len=4000"
        else:
            url = f"http://127.0.0.1:{env.port}/pt?sleep=900&len=4000"
        p, tid = self.curl(env, how, url)
        statuses = CURL_STATUS_RE.findall(p.stderr)
        assert statuses == [(b"2", b"200")], p.stderr.decode()
        assert p.stdout == pattern(4000)
        # not eligible: the note is absent, logged as "-"
        assert env.access_log(tid)["sent"] is None

    def test_http11_still_gets_102_over_tls(self, env):
        url = f"https://127.0.0.1:{self.tls_port}/pt?sleep=900&len=4000"
        p, tid = self.curl(env, "--http1.1", url)
        statuses = CURL_STATUS_RE.findall(p.stderr)
        assert statuses[-1] == (b"1.1", b"200")
        n = statuses.count((b"1.1", b"102"))
        assert 3 <= n <= 7, statuses
        assert p.stdout == pattern(4000)
        assert env.access_log(tid)["sent"] == n


class TestWithoutSSL:
    """The module loads and works without mod_ssl (the hook is optional)."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        env.install("""
<Location /pt>
    Processing On
    ProcessingInterval 200ms
</Location>
""", mpm="event")

    def test_no_ssl_module_loaded(self, env):
        p = env.apache("-M")
        assert "ssl_module" not in p.stdout
        assert "processing_module" in p.stdout
        assert_whole(env.get("/pt?sleep=700&len=50"), 50, 2, 5)
