"""Real fronts and real clients in front of the module, with nothing but
'Processing On' (ProcessingClients known, the default).

- nginx (1.1 upstream with keepalive and the usual X-Real-IP /
  X-Forwarded-* headers) and varnish (its default VCL): a known client
  (curl) gets exactly what it gets with 'Processing Off': status, body,
  the next request on its connection prompt, the front logging 200.
- Apache's mod_proxy_http (the suite's own httpd proxying to itself) is
  recognised and passes the 102s on; a front the administrator declares
  (ProcessingTrustedProxy) too; an unknown client behind it gets none.
- Java's HttpClient uploading with Expect: 100-continue gets its real
  response; Go never sees more than 5 1xx on any path; python-requests
  with a browser's User-Agent gets no 102.

The fronts and clients come from Debian (test/setup-deps installs them);
each front runs as an instance of its own on a free loopback port."""

import os
import shutil
import subprocess
import tempfile
import textwrap
import time

import pytest

from proc.env import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "clients")
GOCLIENT = os.path.join(HERE, "..", "compat", "clients", "goclient.go")

SLEEP_MS = 2000
LEN = 5000
SLOW = f"/pt?sleep={SLEEP_MS}&len={LEN}"
FAST = "/pt?len=100"


def conf(processing):
    return f"""
LogFormat "%{{X-Test-Id}}i %>s %{{processing-sent}}n %{{processing-client}}n %{{User-Agent}}i" fl
CustomLog "logs/fronts_log" fl
<Location /pt>
    Processing {processing}
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
"""


def need(*cmds):
    for c in cmds:
        if not shutil.which(c, path=os.environ.get("PATH", "") +
                            ":/usr/sbin:/sbin"):
            pytest.fail(f"{c} is not installed: run test/setup-deps test",
                        pytrace=False)


def sent_102s(env, ua_part):
    """processing-sent of the origin's requests whose User-Agent contains
    ua_part (the fronts do not pass X-Test-Id through on their own)."""
    counts = []
    with open(env.path("logs", "fronts_log")) as f:
        for line in f:
            parts = line.split(" ", 4)
            if len(parts) == 5 and ua_part in parts[4]:
                counts.append(parts[2])
    return counts


def curl_two(url1, url2, ua):
    """curl fetching two URLs on one connection: (exit code, bodies,
    stderr, seconds). -v tells whether the connection was reused."""
    tmp = tempfile.mkdtemp(prefix="fronts-curl-")
    try:
        out1, out2 = os.path.join(tmp, "1"), os.path.join(tmp, "2")
        t0 = time.monotonic()
        p = subprocess.run(
            ["curl", "-sv", "--http1.1", "--max-time", "20", "-A", ua,
             "-w", "%{http_code}\\n", url1, "-o", out1, url2, "-o", out2],
            capture_output=True, text=True, timeout=30)
        took = time.monotonic() - t0
        bodies = []
        for o in (out1, out2):
            try:
                with open(o, "rb") as f:
                    bodies.append(f.read())
            except FileNotFoundError:
                bodies.append(None)
        return p.returncode, p.stdout.split(), bodies, p.stderr, took
    finally:
        shutil.rmtree(tmp)


def expected_body(n):
    from proc.http1 import pattern
    return pattern(n)


class Front:
    """A front process of ours: started on a free port, stopped by PID."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"fronts-{name}-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.proc = None

    def wait_port(self):
        import socket
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: "
                                   f"{self.proc.stderr.read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen in 15 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_nginx(origin_port):
    f = Front("nginx")
    for d in ("logs", "tmp"):
        os.makedirs(os.path.join(f.dir, d))
        os.chmod(os.path.join(f.dir, d), 0o777)
    with open(os.path.join(f.dir, "nginx.conf"), "w") as out:
        out.write(textwrap.dedent(f"""\
            worker_processes 1;
            pid {f.dir}/nginx.pid;
            error_log {f.dir}/logs/error.log;
            events {{ worker_connections 64; }}
            http {{
                access_log {f.dir}/logs/access.log;
                client_body_temp_path {f.dir}/tmp/body;
                proxy_temp_path {f.dir}/tmp/proxy;
                fastcgi_temp_path {f.dir}/tmp/fastcgi;
                uwsgi_temp_path {f.dir}/tmp/uwsgi;
                scgi_temp_path {f.dir}/tmp/scgi;
                upstream origin {{
                    server 127.0.0.1:{origin_port};
                    keepalive 8;
                }}
                server {{
                    listen 127.0.0.1:{f.port};
                    location / {{
                        proxy_pass http://origin;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header Host $host;
                        proxy_set_header X-Real-IP $remote_addr;
                        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                        proxy_set_header X-Forwarded-Proto $scheme;
                    }}
                }}
            }}
            """))
    f.proc = subprocess.Popen(
        ["nginx", "-p", f.dir, "-c", os.path.join(f.dir, "nginx.conf"),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    f.wait_port()
    f.log = os.path.join(f.dir, "logs", "access.log")
    return f


def start_varnish(origin_port):
    f = Front("varnish")
    f.proc = subprocess.Popen(
        ["varnishd", "-F", "-a", f"127.0.0.1:{f.port}",
         "-b", f"127.0.0.1:{origin_port}", "-n", os.path.join(f.dir, "n"),
         "-s", "malloc,16m", "-T", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    f.wait_port()
    f.log = None
    return f


def front_statuses(front):
    if not front.log:
        return None
    with open(front.log) as f:
        return [line.split('"')[2].split()[0] for line in f if "/pt" in line]


@pytest.fixture(scope="module")
def fronts(env):
    need("nginx", "varnishd", "curl")
    started = []
    try:
        for start in (start_nginx, start_varnish):
            started.append(start(env.port))
        yield {f.name: f for f in started}
    finally:
        for f in started:
            f.stop()


@pytest.mark.parametrize("processing", ["Off", "On"])
@pytest.mark.parametrize("front", ["nginx", "varnish"])
def test_known_client_through_front(env, fronts, front, processing):
    """curl through the front: the same result with the module on as off."""
    env.install(conf(processing))
    f = fronts[front]
    ua = f"curl/7.88.1 ({front}-{processing})"
    base = f"http://127.0.0.1:{f.port}"
    rc, codes, bodies, err, took = curl_two(
        f"{base}{SLOW}", f"{base}{FAST}", ua)
    assert rc == 0, err[-2000:]
    assert codes == ["200", "200"], err[-2000:]
    assert bodies == [expected_body(LEN), expected_body(100)]
    assert "Re-using existing connection" in err
    # the slow request's own time, and the second one right after it
    assert took < SLEEP_MS / 1000 + 6
    if f.log:
        assert front_statuses(f)[-2:] == ["200", "200"], err[-3000:]
    # the origin sent no 102 (curl's own family passes, the front not)
    assert set(sent_102s(env, ua)) <= {"0", "-"}


MOD_PROXY = """
<Location /front>
    ProxyPass "http://127.0.0.1:{port}/pt"
    Processing {front}
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
"""


def test_mod_proxy_front_passes_102s(env):
    """The suite's httpd as its own front: mod_proxy_http adds
    X-Forwarded-For/-Host/-Server, the origin recognises it and its 102s
    reach curl through the front; no more than the 9 mod_proxy_http takes
    (at the 10th it answers 502), although the origin has no limit and
    the handler runs long enough for 15."""
    need("curl")
    env.install(conf("On") + MOD_PROXY.format(port=env.port, front="Off"),
                modules=("proxy", "proxy_http"))
    p = subprocess.run(
        ["curl", "-sv", "--http1.1", "--max-time", "20", "-A",
         "curl/7.88.1 (mod_proxy)", "-o", "/dev/null", "-w", "%{http_code}",
         f"http://127.0.0.1:{env.port}/front?sleep=3000&len=100"],
        capture_output=True, text=True, timeout=30)
    assert p.stdout == "200", p.stderr[-2000:]
    assert 2 <= p.stderr.count("< HTTP/1.1 102 Processing") <= 9, \
        p.stderr[-3000:]


DECLARED = MOD_PROXY + """
ProxyVia Full
ProcessingTrustedProxy 127.0.0.1
"""


def test_declared_front(env):
    """A front that adds Via is not recognised; declared, it passes."""
    env.install(conf("On") + DECLARED.format(port=env.port, front="Off"),
                modules=("proxy", "proxy_http"))
    for ua, least, most in (("curl/7.88.1 (declared)", 2, 99),
                            ("python-requests/2.28.1 (declared)", 0, 0)):
        p = subprocess.run(
            ["curl", "-sv", "--http1.1", "--max-time", "20", "-A", ua,
             "-o", "/dev/null", "-w", "%{http_code}",
             f"http://127.0.0.1:{env.port}/front?sleep=1500&len=100"],
            capture_output=True, text=True, timeout=30)
        assert p.stdout == "200", p.stderr[-2000:]
        n = p.stderr.count("< HTTP/1.1 102 Processing")
        assert least <= n <= most, (ua, p.stderr[-3000:])


# ---- real clients ----------------------------------------------------------

@pytest.fixture(scope="module")
def go_client(tmp_path_factory):
    need("go")
    d = tmp_path_factory.mktemp("goclient")
    exe = str(d / "goclient")
    env = dict(os.environ, GOCACHE=str(d / "cache"), GOPATH=str(d / "gopath"),
               GO111MODULE="off", GOFLAGS="", HOME=str(d))
    p = subprocess.run(["go", "build", "-o", exe, GOCLIENT],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    upload = d / "upload"
    upload.write_bytes(b"x" * 4096)
    return exe, str(upload)


def run_client(cmd, timeout=60):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


GO_CONF = MOD_PROXY + """
<Location /pt103>
    SetHandler proc-test
</Location>
<Location /front103>
    ProxyPass "http://127.0.0.1:{port}/pt103"
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
"""


@pytest.mark.parametrize("path,method", [
    ("/pt?sleep=2500&len=100", "GET"),
    ("/pt?sleep=2500&len=100", "PUT"),
    ("/front?sleep=2500&len=100", "GET"),
    ("/front103?sleep=2500&interim=1900&len=100", "GET"),
], ids=["direct", "expect-upload", "both-run-the-module", "backend-103"])
def test_go_never_sees_more_than_5_1xx(env, go_client, path, method):
    """Go 1.19 (Debian 12) fails a response after 5 1xx of any kind."""
    env.install(conf("On") + GO_CONF.format(port=env.port, front="On"),
                modules=("proxy", "proxy_http"))
    exe, upload = go_client
    goenv = dict(os.environ, COMPAT_UPLOAD=method if method != "GET" else "",
                 COMPAT_UPLOAD_FILE=upload)
    p = subprocess.run([exe, f"http://127.0.0.1:{env.port}{path}"],
                       capture_output=True, text=True, timeout=60, env=goenv)
    # RESULT <i> <status> <length> <md5> <1xx seen>, or ERROR <i> <why>
    fields = p.stdout.split()
    assert fields[:1] == ["RESULT"], p.stdout + p.stderr
    assert fields[2:4] == ["200", "100"], p.stdout
    assert int(fields[5]) <= 5


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_java_expect_upload_gets_its_response(env, method):
    need("java")
    env.install(conf("On"))
    rc, out, err = run_client(
        ["java", os.path.join(CLIENTS, "JavaExpect.java"), method,
         f"http://127.0.0.1:{env.port}/pt?sleep=2000&len=100"], timeout=90)
    assert rc == 0, err
    assert out == "200 100", out


def test_requests_with_browser_user_agent(env):
    """python-requests borrowing Firefox's User-Agent: no 102, so the slow
    request and the next one on the Session get their bodies."""
    env.install(conf("On"))
    rc, out, err = run_client(
        ["/usr/bin/python3", os.path.join(CLIENTS, "requests_ua.py"),
         f"http://127.0.0.1:{env.port}"])
    assert rc == 0, err
    assert out == "200 5000 200 100", out
