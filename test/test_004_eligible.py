"""Requests that must never be armed, next to a control that is.

Everything sleeps 700 ms in a Processing On context with 200 ms interval
and delay: an armed request sees about 3 102s. Not armed also means no
processing-sent note: the access log shows '-'. Runs under each MPM."""

import socket
import subprocess
import threading
import time

import pytest

from proc.env import free_port
from proc.http1 import pattern

BACKEND_PORT = free_port()

CONF = f"""
Processing On
ProcessingInterval 200ms
ProcessingMaxCount 0
# eligibility before any client policy: every client
ProcessingClients all
SetEnvIf User-Agent "^NoProc/" no-processing
BrowserMatch "^NoProcBM/" no-processing
<Location /pt/off>
    Processing Off
</Location>
<Location /off>
    SetHandler proc-test
    Processing Off
</Location>
# CONNECT through mod_proxy_connect to a local test backend
ProxyRequests On
AllowCONNECT {BACKEND_PORT}
<Proxy "*">
    Require ip 127.0.0.1
</Proxy>
"""

SLOW = "/pt?sleep=700"


class TestEligibility:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        env.install(CONF, mpm=mpm, modules=("proxy", "proxy_connect"))

    def assert_armed(self, env, r):
        assert r.status == 200 and r.body == pattern(64)
        assert 2 <= r.count(102) <= 6, r.interims
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    def assert_not_armed(self, env, r, test_id=None):
        assert r.status == 200 and r.body == pattern(64)
        assert r.interims == []
        entry = env.access_log(test_id or r.test_id)
        assert entry["sent"] is None, entry
        # it did take its time: a 102 would have been due
        assert entry["usec"] >= 650000, entry

    def test_control(self, env):
        self.assert_armed(env, env.get(SLOW))
        self.assert_armed(env, env.get(
            SLOW, headers={"User-Agent": "Mozilla/5.0 NoProc/1"}))

    @pytest.mark.parametrize("keepalive", [False, True])
    def test_http10(self, env, keepalive):
        tid = env.new_id()
        ka = "Connection: keep-alive\r\n" if keepalive else ""
        raw = (f"GET {SLOW} HTTP/1.0\r\nHost: 127.0.0.1\r\n{ka}"
               f"X-Test-Id: {tid}\r\n\r\n").encode()
        with env.connect() as c:
            [r] = c.send(raw, methods=["GET"])
            assert c.read_response() is r
            if keepalive:
                assert r.header("Connection", "").lower() == "keep-alive"
                c.expect_idle(0.3)
            else:
                c.expect_eof()
        self.assert_not_armed(env, r, tid)

    @pytest.mark.parametrize("ua", ["NoProc/1.0", "NoProcBM/2"])
    def test_no_processing_env(self, env, ua):
        r = env.get(SLOW, headers={"User-Agent": ua})
        self.assert_not_armed(env, r)

    def test_processing_off_inside_on(self, env):
        r = env.get("/pt/off?sleep=700")
        self.assert_not_armed(env, r)

    @pytest.mark.parametrize("upgrade", ["websocket", "h2c", "foo/1"])
    def test_upgrade_header(self, env, upgrade):
        # httpd has no handler for these protocols and answers normally
        r = env.get(SLOW, headers={"Upgrade": upgrade,
                                   "Connection": "Upgrade"})
        self.assert_not_armed(env, r)

    def test_subrequest(self, env):
        # The main request (Processing Off) runs a slow subrequest in
        # Processing On space: a subrequest is never armed.
        r = env.get("/off?len=10",
                    headers={"X-Sub": "/pt?sleep=700&len=20"})
        assert r.status == 200
        assert r.body == pattern(20) + pattern(10)
        assert r.interims == []
        entry = env.access_log(r.test_id)
        assert entry["sent"] is None and entry["usec"] >= 650000, entry

    def test_connect(self, env):
        backend = socket.socket()
        backend.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        backend.bind(("127.0.0.1", BACKEND_PORT))
        backend.listen(1)
        got = {}

        def serve():
            s, _ = backend.accept()
            time.sleep(0.7)
            s.sendall(b"backend says hi")
            got["data"] = s.recv(100)
            s.close()

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        tid = env.new_id()
        try:
            with socket.create_connection(("127.0.0.1", env.port),
                                          timeout=10) as s:
                s.sendall(f"CONNECT 127.0.0.1:{BACKEND_PORT} HTTP/1.1\r\n"
                          f"Host: 127.0.0.1:{BACKEND_PORT}\r\n"
                          f"X-Test-Id: {tid}\r\n\r\n".encode())
                data = b""
                while b"backend says hi" not in data:
                    more = s.recv(1000)
                    assert more, data
                    data += more
                head, _, tunnel = data.partition(b"\r\n\r\n")
                # mod_proxy_connect's own status line is HTTP/1.0
                assert head.startswith(b"HTTP/1.0 200 "), data
                assert b" 102 " not in data
                assert tunnel == b"backend says hi"
                s.sendall(b"bye")
                th.join(5)
                assert got["data"] == b"bye"
        finally:
            backend.close()
        entry = env.access_log(tid, timeout=5)
        assert entry["sent"] is None, entry


H2_CONF = """
Protocols h2c http/1.1
<Location /pt>
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
"""


@pytest.mark.parametrize("h2mpm", ["event", "worker"], scope="class")
class TestHttp2:
    """HTTP/2 streams are never armed: mod_http2 runs them on secondary
    connections; raw HTTP/1.1 bytes there would corrupt the h2 session."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, h2mpm):
        env.install(H2_CONF, mpm=h2mpm, modules=("http2",))
        # httpd 2.4.37's mod_http2 warns at start when mod_ssl is not
        # loaded ("AH02951: mod_ssl does not seem to be enabled"); h2c needs
        # no mod_ssl, and 2.4.52's and later ones say nothing.
        env.log.ignore(r"AH02951")

    def curl(self, env, *args):
        tid = env.new_id()
        p = subprocess.run(
            ["curl", "-sS", "-D", "-", "-o", "-", "-H", f"X-Test-Id: {tid}",
             *args], capture_output=True, timeout=20)
        return p.returncode, p.stdout, p.stderr, tid

    def test_h2c_prior_knowledge(self, env):
        url = f"http://127.0.0.1:{env.port}/pt?sleep=700&len=5000"
        rc, out, err, tid = self.curl(env, "--http2-prior-knowledge", url)
        assert rc == 0, err
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/2 200"), out[:300]
        assert b"102" not in head
        assert body == pattern(5000)
        entry = env.access_log(tid)
        assert entry["request"].endswith("HTTP/2.0"), entry
        assert entry["sent"] is None and entry["usec"] >= 650000, entry

    def test_h1_control_with_curl(self, env):
        # the same through curl over HTTP/1.1: curl shows the 102s
        url = f"http://127.0.0.1:{env.port}/pt?sleep=700&len=5000"
        rc, out, err, tid = self.curl(env, "--http1.1", url)
        assert rc == 0, err
        assert out.count(b"HTTP/1.1 102 Processing\r\n\r\n") >= 2, out[:300]
        assert out.endswith(pattern(5000))
        assert env.access_log(tid)["sent"] >= 2

    def test_h2c_upgrade(self, env):
        # HTTP/1.1 request with "Upgrade: h2c": httpd answers 101 and runs
        # the request as h2 stream 1; neither record is armed
        url = f"http://127.0.0.1:{env.port}/pt?sleep=700&len=3000"
        rc, out, err, tid = self.curl(env, "--http2", url)
        assert rc == 0, err
        assert out.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), out
        assert b"HTTP/2 200" in out
        assert b" 102" not in out.replace(pattern(3000), b"")
        assert out.endswith(b"\r\n\r\n" + pattern(3000))
        # one line for the HTTP/1.1 request (101), one for the h2 stream
        entries = env.access_logs(tid, count=2)
        assert sorted(e["status"] for e in entries) == [101, 200], entries
        for entry in entries:
            assert entry["sent"] is None and entry["usec"] >= 650000, entry
