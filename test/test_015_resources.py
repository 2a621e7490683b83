"""What the watchdog holds (issue 19): every TLS record it produces, and a
duplicate descriptor only while it can use it.

- TLS records of any size: record padding (TLS 1.3, set in httpd or in
  OpenSSL's own configuration), a TLS 1.2 CBC suite, a client's small max
  fragment length. The old module dropped a 102's record larger than its
  256-byte buffer after SSL_write had counted it: the next record failed
  on the client with a bad record MAC. Every response is read whole by the
  strict parser, and the connection is used again afterwards.
- Descriptors: a child with a soft RLIMIT_NOFILE of 1024 and 700 kept-alive
  connections that each made one armed fast request. The old module held a
  duplicate of each connection's socket for the connection's life (two
  descriptors per connection) and the child ran out.
"""

import os
import resource
import socket
import ssl
import subprocess
import time

import pytest

from proc.env import child_pids, free_port
from proc.http1 import (PROCESSING_BLOCK, TEST_USER_AGENT, Connection,
                        ResponseParser, build_request, parse_responses,
                        pattern)
from test_010_tls import client_context, make_cert, tls_modules
from test_013_paths import Recorder, tls_vhost_open

PT = """
    <Location /pt>
        SetHandler proc-test
        Processing On
        ProcessingDelay 100ms
        ProcessingInterval 100ms
        ProcessingMaxCount 0
    </Location>
"""


def tls_vhost(env, port, ssl_extra):
    return tls_vhost_open(env, port) + f"""
    {ssl_extra}
{PT}
</VirtualHost>
"""


def check_whole(r, length, min_102):
    assert r.status == 200, r
    assert r.body == pattern(length)
    assert r.count(102) >= min_102, r.interims
    assert all(i.raw == PROCESSING_BLOCK for i in r.processing), r.interims


def slow_then_reuse(port, version, cipher=None):
    """Two slow requests with 102s and a fast one on one TLS connection."""
    with Connection.open("127.0.0.1", port, timeout=15,
                         ssl_context=client_context(version)) as c:
        if cipher:
            assert c.sock.cipher()[0] == cipher, c.sock.cipher()
        for ms, n in ((600, 2000), (400, 70000)):
            c.request("GET", f"/pt?sleep={ms}&len={n}")
            check_whole(c.read_response(), n, 2)
        c.request("GET", "/pt?len=10")
        check_whole(c.read_response(), 10, 0)


class TestTLSRecordSizes:
    """One server with a virtual host per setting; the mpm fixture runs
    the class under event, worker and prefork."""

    SETTINGS = {
        "pad512": "SSLProtocol TLSv1.3\n"
                  "    SSLOpenSSLConfCmd RecordPadding 512",
        "pad256": "SSLProtocol TLSv1.3\n"
                  "    SSLOpenSSLConfCmd RecordPadding 256",
        "cbc": "SSLProtocol TLSv1.2\n"
               "    SSLCipherSuite ECDHE-RSA-AES256-SHA384",
    }

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        make_cert(env)
        ports = {k: free_port() for k in self.SETTINGS}
        self.__class__.ports = ports
        env.install("".join(tls_vhost(env, ports[k], v)
                            for k, v in self.SETTINGS.items()),
                    mpm=mpm, modules=tls_modules(mpm))

    @pytest.mark.parametrize("pad", ["pad512", "pad256"])
    def test_tls13_record_padding(self, env, pad):
        for _ in range(3):
            slow_then_reuse(self.ports[pad], ssl.TLSVersion.TLSv1_3)

    def test_tls12_cbc(self, env):
        for _ in range(3):
            slow_then_reuse(self.ports["cbc"], ssl.TLSVersion.TLSv1_2,
                            cipher="ECDHE-RSA-AES256-SHA384")

    def test_client_max_fragment(self, env):
        """openssl s_client -maxfraglen 512 (RFC 6066; Python's ssl cannot
        ask for it) on the padded host: two requests on one connection,
        the second sent with the first, each read by the strict parser."""
        req = "".join(
            f"GET /pt?sleep={ms}&len={n} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"User-Agent: {TEST_USER_AGENT}\r\n{close}\r\n"
            for ms, n, close in ((600, 5000, ""),
                                 (400, 3000, "Connection: close\r\n")))
        p = subprocess.run(
            ["openssl", "s_client", "-quiet", "-tls1_3",
             "-maxfraglen", "512", "-connect",
             f"127.0.0.1:{self.ports['pad512']}"],
            input=req.encode(), capture_output=True, timeout=30)
        r1, r2 = parse_responses(p.stdout, methods=("GET", "GET"))
        check_whole(r1, 5000, 2)
        check_whole(r2, 3000, 0)


OPENSSL_CNF = """
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
RecordPadding = 512
"""


class TestTLSPaddingFromOpenSSLConf:
    """RecordPadding in OpenSSL's system configuration (what a machine's
    administrator sets for every TLS program), given to httpd through
    OPENSSL_CONF: httpd's configuration says nothing about it."""

    def test_padding_from_openssl_conf(self, env):
        make_cert(env)
        cnf = env.path("conf", "openssl-padding.cnf")
        with open(cnf, "w") as f:
            f.write(OPENSSL_CNF)
        port = free_port()
        env.install(tls_vhost(env, port, "SSLProtocol TLSv1.3"),
                    mpm="event", modules=tls_modules("event"),
                    environ={"OPENSSL_CONF": cnf})
        try:
            for _ in range(3):
                slow_then_reuse(port, ssl.TLSVersion.TLSv1_3)
        finally:
            env.install("", mpm="event")


def server_child(ppid):
    """The event child (mod_cgid's daemon is the parent's child too: it
    has one thread)."""
    return max(child_pids(ppid),
               key=lambda pid: len(os.listdir(f"/proc/{pid}/task")))


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fetch(sock, request, method="GET"):
    """Send one request on a blocking socket and read its response with the
    strict parser (Connection polls in 50 ms slices and uses select(),
    which cannot take the descriptor numbers of 700 connections)."""
    sock.sendall(request)
    parser = ResponseParser(method)
    while not parser.done:
        data = sock.recv(65536)
        if not data:
            parser.eof()
            break
        rest = parser.feed(data)
        assert not rest, f"bytes after the response: {rest[:80]!r}"
    return parser.response


def wait_fds_below(pid, limit, timeout=10):
    """Wait until the child has closed the connections the client closed
    (httpd 2.4.71's event child may crash when stopped while hundreds of
    its connections are closing, with or without this module)."""
    deadline = time.monotonic() + timeout
    while fd_count(pid) > limit and time.monotonic() < deadline:
        time.sleep(0.1)


class TestDescriptors:
    """One event child, soft RLIMIT_NOFILE 1024, 700 kept-alive connections
    that each made one armed fast request ('Prefer: processing'; the
    default 20 s delay: no 102): each is served, and the child holds about
    as many descriptors as with 'Processing Off'. Then 60 connections whose
    request got 102s: once answered, they hold no duplicate either."""

    CONNS = 700
    SLOW = 60

    def conf(self, processing):
        return f"""
KeepAliveTimeout 60
<IfModule mpm_event_module>
    ServerLimit 1
    StartServers 1
    ThreadLimit 250
    ThreadsPerChild 250
    MaxRequestWorkers 250
    MinSpareThreads 1
    MaxSpareThreads 250
    AsyncRequestWorkerFactor 4
</IfModule>
<Location /pt>
    Processing {processing}
    ProcessingClients prefer
</Location>
<Location /slow>
    SetHandler proc-test
    Processing {processing}
    ProcessingClients prefer
    ProcessingDelay 100ms
    ProcessingInterval 100ms
</Location>
"""

    def request(self, target, prefer):
        head, _ = build_request("GET", target, "127.0.0.1",
                                {"Prefer": "processing"} if prefer else {})
        return head

    def measure(self, env, processing):
        env.install(self.conf(processing), mpm="event", nofile=1024)
        child = server_child(env.running_pid)
        base = fd_count(child)
        fast = self.request("/pt?len=10", True)
        slow = self.request("/slow?sleep=350&len=10", True)
        socks = []
        try:
            for i in range(self.CONNS):
                s = socket.create_connection(("127.0.0.1", env.port),
                                             timeout=10)
                socks.append(s)
                try:
                    r = fetch(s, fast)
                except OSError as e:
                    pytest.fail(f"connection {i + 1} of {self.CONNS}: {e}")
                assert r.status == 200 and r.body == pattern(10), \
                    f"connection {i + 1}: {r}"
                assert r.count(102) == 0, r.interims
                assert (r.header("Preference-Applied") == "processing") \
                    == (processing == "On")
            kept = fd_count(child)
            # requests that get 102s, all at once on more connections
            more = [socket.create_connection(("127.0.0.1", env.port),
                                             timeout=10)
                    for _ in range(self.SLOW)]
            socks += more
            for s in more:
                s.sendall(slow)
            for s in more:
                r = fetch(s, b"")
                assert r.status == 200 and r.body == pattern(10), r
                if processing == "On":
                    assert r.count(102) >= 1, r.interims
            after_102 = fd_count(child)
        finally:
            for s in socks:
                s.close()
            # The burst of closes may keep all 250 workers busy for a
            # moment: httpd's capacity line, with or without the module.
            env.log.ignore(r"AH00484")
        wait_fds_below(child, base + 10)
        return kept, after_102

    def test_fds_of_kept_alive_connections(self, env):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 2 * self.CONNS:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (min(hard, 4 * self.CONNS), hard))
        try:
            off = self.measure(env, "Off")
            on = self.measure(env, "On")
        finally:
            env.install("", mpm="event")
        print(f"child descriptors (700 kept, +60 after 102s): Off {off}, "
              f"On {on}")
        assert off[0] >= self.CONNS, off
        assert on[0] <= off[0] + 5, f"Off {off}, On {on}"
        assert on[1] <= off[1] + 5, f"Off {off}, On {on}"


class TestDuplicateChecksTheSocket:
    """The duplicate is made at the first 102 from the descriptor number
    copied at arm time. Here, from just after the arm until past the first
    due 102, that number is another socket's (the test handler dup2()s a
    connection to a listener of ours onto it, as after an ungraceful stop
    closed the client socket and the child opened a backend). The watchdog
    must see the other address pair and send nothing: the listener gets
    only the handler's own line, and the client its whole response (no
    102: the record is dead)."""

    @pytest.mark.parametrize("mpm", ["event", "prefork"])
    def test_no_102_into_another_socket(self, env, mpm):
        env.install("""
<Location /pt>
    Processing On
    ProcessingDelay 200ms
    ProcessingInterval 100ms
    ProcessingMaxCount 0
</Location>
""", mpm=mpm)
        rec = Recorder()
        try:
            for _ in range(3):
                r = env.get("/pt?swapfd=600&sleep=300&len=100",
                            headers={"X-Connect-Port": str(rec.port)})
                assert r.status == 200 and r.body == pattern(100), r
                assert r.count(102) == 0, r.interims
            time.sleep(0.2)
            with rec.lock:
                seen = [bytes(b) for b in rec.data]
            assert len(seen) == 3, seen
            assert all(b == b"proc-test socket\n" for b in seen), seen
        finally:
            rec.close()
