"""Every httpd path that can touch an armed request's connection, its socket
or its SSL: driven one by one (issue 12's reproduced holes and the rows of
DESIGN.md's "Paths" table).

Each class names the hole it pins. All use ProcessingDelay 0 and a 100 ms
interval, so that the watchdog is busy at the very moment the path runs;
each response is read as raw bytes by the strict parser (proc.http1), which
fails on any byte of a 102 inside or after a final response."""

import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from proc.env import free_port
from proc.http1 import PROCESSING_BLOCK, Connection, ProtocolError, pattern
from test_010_tls import make_cert, tls_modules

BUSY = """
    Processing On
    ProcessingDelay 0
    ProcessingInterval 100ms
    ProcessingMaxCount 0
"""


def install_busy(env, mpm, extra=""):
    """/pt busy (BUSY), plus extra configuration."""
    env.install(f"<Location /pt>\n{BUSY}\n</Location>\n{extra}", mpm=mpm)


class TestErrorDocumentAfterOutput:
    """Hole 3: a handler sends part of a chunked 200, then returns 500, and
    a local ErrorDocument is slow: the redirect must not be armed afresh
    (the old module put 102 blocks between the chunks)."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        install_busy(env, mpm, "ErrorDocument 500 /pt?sleep=800&len=50\n")

    def test_no_102_after_partial_output(self, env):
        for _ in range(3):
            tid = env.new_id()
            with env.connect() as c:
                c.request("GET",
                          "/pt?early=100&len=1000&sleep=300&fail=500&cl=0",
                          headers={"X-Test-Id": tid}, close=True)
                try:
                    r = c.read_response()
                except ProtocolError as e:
                    pytest.fail(f"102 inside the body: {e}")
            assert r.status == 200 and r.framing == "chunked"
            assert r.body.startswith(pattern(100))
            # 102s only before the first byte of the response
            assert all(i.t <= r.t_head for i in r.processing)
            assert env.access_log(tid)["sent"] == r.count(102)


class TestErrorWithUnreadBody:
    """Hole 4: a handler answers 412 without reading the body; httpd then
    discards the body (or, with Expect: 100-continue, HTTP_IN makes up an
    EOS): neither may arm, so no 102 precedes the 412."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        install_busy(env, mpm)

    @pytest.mark.parametrize("expect", [False, True], ids=["body", "expect"])
    def test_no_102_before_error(self, env, expect):
        body = pattern(200000)
        for _ in range(15):
            tid = env.new_id()
            with env.connect() as c:
                c.request("PUT", "/pt?read=0&status=412", body=body,
                          headers={"X-Test-Id": tid}, expect_100=expect,
                          close=True)
                r = c.read_response()
            assert r.status == 412
            assert r.count(102) == 0, r.interims
            assert env.access_log(tid)["sent"] == 0


class TestDiscardAfterBufferedOutput:
    """Issue 19: a handler writes its response with ap_rputs() (held in
    OLD_WRITE, nothing passed yet), leaves the request body unread and
    returns OK. httpd then discards the body (ap_finalize_request_protocol
    -> ap_discard_request_body) before it ends the response, so the body
    filter sees EOS with r->status 200 after the handler returned; a slow
    output filter (PT_HOLD) then holds the response. No 102 may follow
    the handler's return (the old module armed there and sent them while
    the filter held the response)."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        install_busy(env, mpm)

    @pytest.mark.parametrize("expect", [False, True], ids=["body", "expect"])
    def test_no_102_after_handler_returned(self, env, expect):
        body = pattern(100000)
        for _ in range(3):
            tid = env.new_id()
            with env.connect() as c:
                c.request("PUT", "/pt?read=0&rputs=1&hold=600&len=300",
                          body=body, headers={"X-Test-Id": tid},
                          expect_100=expect, close=True)
                r = c.read_response()
            assert r.status == 200 and r.body == pattern(300)
            assert r.count(102) == 0, r.interims
            assert env.access_log(tid)["sent"] == 0

    def test_body_read_in_handler_still_arms(self, env):
        # the same handler reading its body keeps its 102s
        r = env.request("PUT", "/pt?read=1&rputs=1&sleep=500&len=300",
                        body=pattern(100000))
        assert r.status == 200 and r.body == pattern(300)
        assert r.count(102) >= 3, r.interims
        assert all(i.raw == PROCESSING_BLOCK for i in r.processing)


class TestRedirectAndLookupPlain:
    """Subrequests and internal redirects of an armed plain request: the
    record covers them, the 102s go on, the final response is whole."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        install_busy(env, mpm, "<Location /target>\n"
                               "    SetHandler proc-test\n</Location>\n")

    def test_lookups_keep_102s(self, env):
        r = env.get("/pt?sleep=800&lookup=50&len=500",
                    headers={"X-Lookup": "/target/x"})
        assert r.status == 200 and r.body == pattern(500)
        assert r.count(102) >= 3
        assert all(i.raw == PROCESSING_BLOCK for i in r.processing)

    def test_internal_redirect(self, env):
        r = env.get("/pt?sleep=500",
                    headers={"X-Redirect": "/target/r?sleep=500&len=300"})
        assert r.status == 200 and r.body == pattern(300)
        # 102s through both handlers: about 10 at 100 ms
        assert r.count(102) >= 4


def make_client_cert(env):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", env.path("conf", "client-key.pem"),
         "-out", env.path("conf", "client.pem"), "-days", "2",
         "-subj", "/CN=proc-test-client",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "extendedKeyUsage=clientAuth"],
        check=True, capture_output=True)


def tls_vhost_open(env, port):
    """Listen, session cache and the opening of a TLS <VirtualHost> with
    the suite's certificate."""
    r = env.root
    return f"""
Listen 127.0.0.1:{port}
SSLSessionCache "shmcb:{r}/run/ssl_scache(512000)"
<VirtualHost 127.0.0.1:{port}>
    ServerName 127.0.0.1
    SSLEngine on
    SSLCertificateFile "{r}/conf/cert.pem"
    SSLCertificateKeyFile "{r}/conf/key.pem"
"""


def tls_paths_conf(env, port, ssl_log=""):
    r = env.root
    return tls_vhost_open(env, port) + f"""
    SSLProtocol TLSv1.2 +TLSv1.3
    SSLCACertificateFile "{r}/conf/client.pem"
    {ssl_log}
    <Location /pt>
{BUSY}
    </Location>
    # A subrequest or redirect into here runs mod_ssl's access hook,
    # which asks for a client certificate: TLS 1.3 post-handshake
    # authentication, or a TLS 1.2 renegotiation.
    <Location /pha>
        SetHandler proc-test
        SSLVerifyClient optional
        SSLVerifyDepth 1
    </Location>
</VirtualHost>
"""


def tls_client(version):
    """A client that allows post-handshake authentication but has no
    certificate: mod_ssl asks again on every lookup."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    ctx.post_handshake_auth = True
    return ctx


def ssl_lines_on_watchdog(lines):
    """mod_ssl's log lines (at trace3 its info callback logs every
    handshake step) written from a thread that sent a 102: the watchdog."""
    wd_tids = {ln.split("tid ")[1].split("]")[0] for ln in lines
               if "[processing:" in ln and "tid " in ln
               and ("sent 102 Processing" in ln
                    or "TLS handshake messages pending" in ln)}
    assert wd_tids, "no watchdog line seen"
    return [ln for ln in lines if "[ssl:" in ln
            and any(f"tid {t}]" in ln for t in wd_tids)]


class TestTLSHandshakeInSubrequest:
    """Hole 1: a lookup subrequest (as mod_dav's COPY Destination lookup)
    or an internal redirect into a <Location> with SSLVerifyClient
    optional, on a TLS 1.3 connection whose client allows post-handshake
    authentication, while the watchdog writes 102s: mod_ssl's access hook
    runs SSL_verify_client_post_handshake/SSL_do_handshake beside the
    watchdog's SSL_write (the old module: bad record MACs, crashed
    children). The record is paused during the subrequest's phases and the
    102s resume afterwards."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        make_cert(env)
        make_client_cert(env)
        self.__class__.port = free_port()
        env.install(tls_paths_conf(
            env, self.port,
            ssl_log="LogLevel notice ssl:trace3 processing:debug"),
            mpm=mpm, modules=tls_modules(mpm))

    def one(self, version, path, headers, answer_after):
        with Connection.open("127.0.0.1", self.port, timeout=15,
                             ssl_context=tls_client(version)) as c:
            c.request("GET", path, headers=headers)
            # The client reads (and so answers mod_ssl's certificate
            # request) only later: the handshake stays open meanwhile, and
            # the watchdog's ticks fall into it.
            time.sleep(answer_after)
            r = c.read_response()
            # the connection is still in step: a second request
            c.request("GET", "/pt?len=10")
            r2 = c.read_response()
        return r, r2

    @pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3,
                                         ssl.TLSVersion.TLSv1_2],
                             ids=["tls1.3-pha", "tls1.2-reneg"])
    @pytest.mark.parametrize("how", ["lookup", "redirect"])
    def test_handshake_beside_watchdog(self, env, version, how):
        if how == "lookup":
            path = "/pt?sleep=700&lookup=40&len=500"
            headers = {"X-Lookup": "/pha/x"}
            answer_after = 0.3
        else:
            path = "/pt?sleep=300"
            headers = {"X-Redirect": "/pha/r?sleep=400&len=500"}
            answer_after = 0.6
        length = 500
        failures = []

        def run(_):
            try:
                r, r2 = self.one(version, path, headers, answer_after)
                if r.status != 200 or r.body != pattern(length):
                    return f"bad response {r}"
                if r2.status != 200 or r2.body != pattern(10):
                    return f"bad second response {r2}"
                if any(i.raw != PROCESSING_BLOCK for i in r.processing):
                    return f"bad 102 {r.interims}"
                return r.count(102)
            except (OSError, ProtocolError, ssl.SSLError) as e:
                return f"{type(e).__name__}: {e}"

        env.log.skip()
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(run, range(12)))
        failures = [x for x in results if isinstance(x, str)]
        assert not failures, failures
        on_wd = ssl_lines_on_watchdog(env.log.recent())
        assert not on_wd, on_wd[:3]
        # 102s keep coming after the handshake: ~7 to 10 per request
        assert min(results) >= 2, results
        bad = env.log.check()
        assert not bad, bad


KEYUPDATE_C = r"""
/* TLS 1.3 client that asks the server for a KeyUpdate, then sends one
 * request and prints the raw response bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    char buf[16384];
    SSL_CTX *ctx;
    SSL *ssl;
    int fd, n;

    if (argc != 3) {
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        return 3;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1
        || !SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED)) {
        return 4;
    }
    if (SSL_write(ssl, argv[2], strlen(argv[2])) <= 0) {
        return 5;
    }
    while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, n, stdout);
    }
    return SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : 6;
}
"""


class TestTLSKeyUpdate:
    """Hole 5: a TLS 1.3 client requests a KeyUpdate with its request:
    OpenSSL owes the server's KeyUpdate and would send it with the next
    SSL_write, running mod_ssl's info callback with the worker's conn_rec:
    never on the watchdog thread (the old module did; mod_ssl at trace3
    logs from that callback, so its lines show the thread)."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        make_cert(env)
        make_client_cert(env)
        self.__class__.port = free_port()
        exe = env.path("run", "tls-keyupdate")
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(KEYUPDATE_C)
        subprocess.run(["gcc", "-o", exe, src, "-lssl", "-lcrypto"],
                       check=True, capture_output=True)
        self.__class__.exe = exe
        env.install(tls_paths_conf(
            env, self.port,
            ssl_log="LogLevel notice ssl:trace3 processing:trace2"),
            mpm="event", modules=tls_modules("event"))

    def test_no_ssl_callback_on_watchdog(self, env):
        env.log.skip()
        req = ("GET /pt?sleep=600&len=100 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "User-Agent: mod_processing-test/1\r\n"
               "Connection: close\r\n\r\n")
        for _ in range(3):
            p = subprocess.run([self.exe, str(self.port), req],
                               capture_output=True, timeout=20)
            assert p.returncode == 0, p
            from proc.http1 import parse_responses
            (r,) = parse_responses(p.stdout)
            assert r.status == 200 and r.body == pattern(100)
        time.sleep(0.3)
        ssl_on_wd = ssl_lines_on_watchdog(env.log.recent())
        assert not ssl_on_wd, ssl_on_wd[:5]
        env.log.check()


class Recorder:
    """A loopback listener that keeps every byte each connection sends."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.data = []
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            buf = bytearray()
            with self.lock:
                self.data.append(buf)
            threading.Thread(target=self._read, args=(s, buf),
                             daemon=True).start()

    def _read(self, s, buf):
        with s:
            while True:
                try:
                    d = s.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                with self.lock:
                    buf += d

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.mark.parametrize("mpm", ["event", "worker"])
class TestUngracefulStop:
    """Hole 2: 'apachectl stop' closes the sockets of connections whose
    handlers still run; the handler then opens new sockets (a backend),
    which get the freed descriptor numbers. No 102 may reach them (the old
    module wrote 102s to the cached number)."""

    def test_no_102_in_other_sockets(self, env, mpm):
        install_busy(env, mpm)
        rec = Recorder()
        conns = []
        try:
            for _ in range(4):
                c = env.connect(timeout=20)
                c.request("GET", "/pt?sleep=3500&connect=100",
                          headers={"X-Connect-Port": str(rec.port)})
                conns.append(c)
            for c in conns:
                c.pump_until(lambda c=c: c.parsers[0].response.count(102)
                             >= 2, timeout=5, what="102s")
            pid = env.running_pid
            env.log.ignore(r"AH00045|AH00046|AH00047|AH00048")
            env.apache("-k", "stop")
            # the handlers keep running (and connecting) after the stop
            assert env.wait_exit(pid, timeout=20)
            env.running_pid = None
            time.sleep(0.2)
            with rec.lock:
                seen = [bytes(b) for b in rec.data]
            assert seen, "the handlers opened no socket"
            bad = [b for b in seen if b"102" in b
                   or b != b"proc-test socket\n"]
            assert not bad, f"{len(bad)} of {len(seen)} sockets got: " \
                            f"{bad[:3]}"
        finally:
            rec.close()
            for c in conns:
                c.close()
            env.start()


class FifoLog:
    """A FIFO as httpd's error log, read by a thread that copies it to the
    real log file and can stop reading for a while (a stuck log pipe)."""

    def __init__(self, fifo, out):
        os.mkfifo(fifo, 0o600)
        self.fifo, self.out = fifo, out
        self.reading = threading.Event()
        self.reading.set()
        self.done = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.done:
            with open(self.fifo, "rb", buffering=0) as f, \
                    open(self.out, "ab") as o:
                while True:
                    self.reading.wait()
                    data = f.read(4096)
                    if not data:
                        break
                    o.write(data)
                    o.flush()


class TestLoggingOutsideTheLock:
    """Hole 6: the watchdog must not log while holding the lock. With an
    error log that stops taking lines (a pipe or FIFO nobody reads), the
    watchdog's debug lines block it; arming a request in the same child
    must not wait for that (the old module held the lock there, and the
    fast request below never got its answer)."""

    def test_blocked_log_does_not_stall_arming(self, env):
        fifo = env.path("logs", "error_fifo")
        log = FifoLog(fifo, env.error_log_path)
        env.install(f"""
ErrorLog "{fifo}"
<IfModule mpm_event_module>
    ServerLimit 1
    StartServers 1
    ThreadsPerChild 64
    MaxRequestWorkers 64
    MinSpareThreads 1
    MaxSpareThreads 64
</IfModule>
<Location /pt>
{BUSY}
</Location>
<Location /quiet>
    SetHandler proc-test
    Processing On
    LogLevel warn
</Location>
""", mpm="event")
        conns = []
        try:
            log.reading.clear()
            # 30 requests, a 102 (and a debug line) each every 100 ms:
            # the FIFO's 64 KiB are full within about two seconds.
            for _ in range(30):
                c = env.connect(timeout=30)
                c.request("GET", "/pt?sleep=8000&len=10")
                conns.append(c)
            for _ in range(5):
                time.sleep(1)
                t0 = time.monotonic()
                with env.connect(timeout=30) as c:
                    c.request("GET", "/quiet?len=5", close=True)
                    q = c.read_response(timeout=8)
                took = time.monotonic() - t0
                assert q.status == 200
                assert took < 3, f"a fast request took {took:.1f} s"
        finally:
            log.reading.set()
            for c in conns:
                c.close()
            env.stop()
            log.done = True
            time.sleep(0.5)
            env.log.skip()
            env.install("", mpm="event")


class Ptrace:
    """Stops one thread of another process (PTRACE_SEIZE + INTERRUPT):
    the rest of the process runs on."""

    SEIZE, INTERRUPT, DETACH = 0x4206, 0x4207, 17

    def __init__(self):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long,
                                     ctypes.c_void_p, ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long

    def stop(self, tid):
        if self.libc.ptrace(self.SEIZE, tid, None, None) != 0 or \
                self.libc.ptrace(self.INTERRUPT, tid, None, None) != 0:
            raise OSError("ptrace failed")
        os.waitpid(tid, 0x40000000)     # __WALL: its stop

    def detach(self, tid):
        """Let the thread go, or reap it if it died (a traced thread that
        exits waits for its tracer: its process is not reaped before)."""
        self.libc.ptrace(self.DETACH, tid, None, None)
        try:
            os.waitpid(tid, 0x40000000 | os.WNOHANG)
        except ChildProcessError:
            pass


@pytest.mark.skipif(os.geteuid() != 0, reason="ptrace needs root")
class TestPreforkStopWithStuckWatchdog:
    """Hole 7: prefork stops a child from its SIGTERM handler, and a
    signal landing between the lock's release and the wake-up of the
    watchdog waiting for it leaves the watchdog asleep for good; the old
    module then joined it until the parent's SIGKILL. Here the watchdog
    thread is stopped with ptrace instead (it never returns either): the
    child must still exit at once."""

    def test_child_exits_with_watchdog_stuck(self, env):
        install_busy(env, "prefork")
        env.log.skip()
        pt = Ptrace()
        with env.connect(timeout=20) as c:
            c.request("GET", "/pt?sleep=6000&len=10")
            c.pump_until(lambda: c.parsers[0].response.count(102) >= 2,
                         timeout=5, what="102s")
            lines = [ln for ln in env.log.recent()
                     if "sent 102 Processing" in ln]
            assert lines, "no watchdog line"
            pid = int(re.search(r"\[pid (\d+)", lines[-1]).group(1))
            # a prefork child's only other thread is the watchdog (older
            # httpd logs no thread id under prefork)
            (tid,) = [int(t) for t in os.listdir(f"/proc/{pid}/task")
                      if int(t) != pid]
            pt.stop(tid)
            try:
                t0 = time.monotonic()
                os.kill(pid, signal.SIGTERM)
                # the stopped thread dies with its process: reap it as its
                # tracer, then the process is gone
                gone = False
                while not gone and time.monotonic() - t0 < 8:
                    time.sleep(0.05)
                    try:
                        gone = os.waitpid(tid, 0x40000000 | os.WNOHANG)[0]
                    except ChildProcessError:
                        gone = True
                took = time.monotonic() - t0
            finally:
                pt.detach(tid)
            assert env.wait_exit(pid, timeout=5)
            assert gone and took < 4, f"child {pid} took {took:.1f} s"
        env.log.ignore(r"AH00045|AH00046|AH00047|AH00048|AH00169")


class TestDavCopyOverTLS:
    """mod_dav's COPY looks its Destination up with a subrequest before it
    copies: over TLS that pauses the record, and the 102s must resume for
    the copy itself."""

    def test_copy_gets_102s_after_lookup(self, env):
        from test_006_dav import make_tree, snapshot
        make_cert(env)
        make_client_cert(env)
        port = free_port()
        r = env.root
        env.install(f"""
Listen 127.0.0.1:{port}
SSLSessionCache "shmcb:{r}/run/ssl_scache(512000)"
DavDepthInfinity On
<VirtualHost 127.0.0.1:{port}>
    ServerName 127.0.0.1
    SSLEngine on
    SSLCertificateFile "{r}/conf/cert.pem"
    SSLCertificateKeyFile "{r}/conf/key.pem"
    <Location /dav/>
        Dav On
        Processing On
        ProcessingInterval 100ms
        ProcessingDelay 100ms
        ProcessingMaxCount 0
    </Location>
</VirtualHost>
""", mpm="event", modules=tls_modules("event"))
        top = os.path.join(env.dav_dir, "tls-src")
        if not os.path.exists(top):
            make_tree(top)
            env.chown_www(top, recursive=True)
        expected = snapshot(top)
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            dest = f"tls-copy-{version.name}"
            with Connection.open("127.0.0.1", port, timeout=180,
                                 ssl_context=tls_client(version)) as c:
                c.request("COPY", "/dav/tls-src/", headers={
                    "Destination": f"https://127.0.0.1:{port}/dav/{dest}/",
                    "Depth": "infinity"})
                resp = c.read_response(timeout=180)
                # the connection is in step afterwards
                c.request("GET", f"/dav/{dest}/d00/f0000")
                again = c.read_response()
            assert resp.status == 201, resp
            assert resp.count(102) >= 2, resp.interims
            assert all(i.raw == PROCESSING_BLOCK for i in resp.processing)
            assert again.status == 200 and again.body == b"0/0\n"
            assert snapshot(os.path.join(env.dav_dir, dest)) == expected
