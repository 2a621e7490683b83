"""conf-examples/processing-clients.conf keeps 102s from the clients and
proxies it names, caps those with a known limit, and leaves others alone.

Self-contained: starts its own apache2 (event MPM, mod_cgid, mod_setenvif,
mod_env and mod_processing from this tree) on a free 127.0.0.1 port, from a
server root it generates under /tmp (readable by www-data), with the file
included at server level. The handler is a CGI that sleeps, in a <Location>
that allows unlimited 102s (ProcessingMaxCount 0, every 100 ms from the
start), so the count a client gets shows which rule applied. Requests are
raw HTTP/1.1 over a socket with the User-Agent (and proxy headers) of the
real clients as measured by compat/run-compat.

    /usr/bin/python3 -m pytest -q compat/test_clients_conf.py
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from compat import free_port, wait_port     # the matrix's own helpers

HERE = Path(__file__).resolve().parent
MAIN = HERE.parent
MODULE_SO = MAIN / ".libs" / "mod_processing.so"
CONF = MAIN / "conf-examples" / "processing-clients.conf"
MODDIR = Path("/usr/lib/apache2/modules")
# /usr/sbin is not on an ordinary user's PATH on Debian: look there too, as
# the suite's harness (test/proc/env.py) does.
APACHE2 = shutil.which("apache2", path="/usr/sbin:/usr/bin:" +
                       os.environ.get("PATH", ""))

CGI_SLEEP = 1.5          # seconds the CGI sleeps
INTERVAL_MS = 100        # so an unrestricted client gets about 15 102s
UNLIMITED_AT_LEAST = 10  # "unrestricted": more than any cap in the file


def _config(root, port):
    mods = ["mpm_event", "authz_core", "alias", "mime", "cgid", "setenvif",
            "env"]
    lines = ['ServerRoot "%s"' % root, "ServerName 127.0.0.1",
             "Listen 127.0.0.1:%d" % port,
             'PidFile "%s/run/httpd.pid"' % root,
             'DefaultRuntimeDir "%s/run"' % root,
             "Mutex file:%s/run default" % root,
             'ScriptSock "%s/run/cgid.sock"' % root]
    lines += ['LoadModule %s_module "%s/mod_%s.so"' % (m, MODDIR, m)
              for m in mods]
    lines.append('LoadModule processing_module "%s"' % MODULE_SO)
    if os.geteuid() == 0:
        lines += ["User www-data", "Group www-data"]
    lines += ['ErrorLog "%s/logs/error.log"' % root, "LogLevel warn",
              'LogFormat "%{processing-sent}n %>s \\"%{User-Agent}i\\"" t',
              'CustomLog "%s/logs/access.log" t' % root,
              "TypesConfig /etc/mime.types",
              'DocumentRoot "%s/htdocs"' % root,
              "<Directory />\n    Require all granted\n</Directory>",
              'ScriptAlias "/cgi/" "%s/cgi/"' % root,
              '<Location "/cgi/">',
              "    Processing On",
              "    ProcessingInterval %dms" % INTERVAL_MS,
              "    ProcessingDelay %dms" % INTERVAL_MS,
              "    ProcessingMaxCount 0",
              # the rules of processing-clients.conf are for servers that
              # send 102s to every client
              "    ProcessingClients all",
              "</Location>",
              'Include "%s"' % CONF]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def server():
    if not APACHE2:
        pytest.skip("apache2 is not installed (apt-get install apache2)")
    if not MODULE_SO.exists():
        r = subprocess.run(["make", "-f", "Makefile.apxs"], cwd=str(MAIN),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
        assert MODULE_SO.exists(), "cannot build the module: %s" % \
            r.stdout.decode(errors="replace")[-2000:]
    root = Path(tempfile.mkdtemp(prefix="clients-conf-", dir="/tmp"))
    proc = None
    try:
        for d in ("logs", "run", "htdocs", "cgi"):
            (root / d).mkdir()
        cgi = root / "cgi" / "slow"
        cgi.write_text("#!/bin/sh\nsleep %s\nprintf 'Content-Type: "
                       "text/plain\\r\\nContent-Length: 8\\r\\n\\r\\n"
                       "slow ok\\n'\n" % CGI_SLEEP)
        cgi.chmod(0o755)
        port = free_port()
        (root / "httpd.conf").write_text(_config(root, port))
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        argv = [APACHE2, "-d", str(root), "-f", str(root / "httpd.conf")]
        t = subprocess.run(argv + ["-t"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        assert t.returncode == 0, t.stdout.decode(errors="replace")
        proc = subprocess.Popen(argv + ["-DFOREGROUND"],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                start_new_session=True)
        assert wait_port(port, proc=proc), \
            (root / "logs" / "error.log").read_text(errors="replace")
        yield port
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)   # our own apache2 only
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        shutil.rmtree(root, ignore_errors=True)


def count_102(port, headers, timeout=20.0):
    """GET /cgi/slow with headers (None value: header left out); returns
    (number of 102s before the final response, final status, body)."""
    req = "GET /cgi/slow HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port
    for k, v in headers.items():
        if v is not None:
            req += "%s: %s\r\n" % (k, v)
    req += "Connection: close\r\n\r\n"
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req.encode("latin-1"))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    n = 0
    rest = data
    while rest.startswith(b"HTTP/1.1 1"):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, "truncated interim response: %r" % data[:200]
        assert head == b"HTTP/1.1 102 Processing", head
        n += 1
    status = int(rest.split(b" ", 2)[1]) if rest.startswith(b"HTTP/") \
        else None
    head, _, body = rest.partition(b"\r\n\r\n")
    # httpd sometimes drops a CGI's Content-Length and chunks the body
    # (with or without this module): undo the chunking
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        plain = b""
        while body:
            size, _, body = body.partition(b"\r\n")
            size = int(size.split(b";")[0], 16)
            if size == 0:
                break
            plain, body = plain + body[:size], body[size + 2:]
        body = plain
    return n, status, body


# Clients and proxies that break on any 102: none at all.
BROKEN = {
    "python-requests": {"User-Agent": "python-requests/2.28.1"},
    "python-urllib3": {"User-Agent": "python-urllib3/1.26.12"},
    "python-urllib": {"User-Agent": "Python-urllib/3.11"},
    "python-http.client (no User-Agent)": {"User-Agent": None},
    "java-HttpURLConnection": {"User-Agent": "Java/17.0.15"},
    "svn-serf": {"User-Agent":
                 "SVN/1.14.2 (x86_64-pc-linux-gnu) serf/1.3.9"},
    "tortoisesvn-serf": {"User-Agent":
                         "SVN/1.14.1 (x64-microsoft-windows) serf/1.3.9 "
                         "TortoiseSVN-1.14.1.29085"},
    "varnish": {"User-Agent": "curl/7.88.1", "X-Varnish": "32770",
                "X-Forwarded-For": "127.0.0.1"},
    "opt-out header (nginx)": {"User-Agent": "curl/7.88.1",
                               "X-No-Processing": "1"},
}

# Clients and proxies with a cap: exactly that many.
CAPPED = {
    "go-net/http": ({"User-Agent": "Go-http-client/1.1"}, 5),
    "java-HttpClient": ({"User-Agent": "Java-http-client/17.0.15"}, 8),
    "apache-mod_proxy_http": ({"User-Agent": "curl/7.88.1",
                               "X-Forwarded-For": "127.0.0.1",
                               "X-Forwarded-Host": "example.org",
                               "X-Forwarded-Server": "proxy.example.org"},
                              9),
    "go client behind apache proxy": ({"User-Agent": "Go-http-client/1.1",
                                       "X-Forwarded-Server": "p.example"},
                                      5),
}

# Clients measured to cope: unrestricted.
FINE = {
    "curl": {"User-Agent": "curl/7.88.1"},
    "wget": {"User-Agent": "Wget/1.21.3"},
    "node-http": {"User-Agent": "node"},
    "node-fetch": {"User-Agent": "undici"},
    "cadaver-neon": {"User-Agent": "cadaver/0.24 neon/0.32.5"},
    "litmus-neon": {"User-Agent": "litmus/0.13 neon/0.32.5"},
    "browser": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) "
                "Gecko/20100101 Firefox/115.0"},
    "haproxy/lighttpd in front": {"User-Agent": "curl/7.88.1",
                                  "X-Forwarded-For": "127.0.0.1",
                                  "X-Forwarded-Proto": "http"},
    "opt-out header not 1": {"User-Agent": "curl/7.88.1",
                             "X-No-Processing": "0"},
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_clients_get_no_102(server, name):
    n, status, body = count_102(server, BROKEN[name])
    assert status == 200 and body == b"slow ok\n"
    assert n == 0, "%s got %d 102s" % (name, n)


@pytest.mark.parametrize("name", sorted(CAPPED))
def test_capped_clients_get_at_most_their_cap(server, name):
    headers, cap = CAPPED[name]
    n, status, body = count_102(server, headers)
    assert status == 200 and body == b"slow ok\n"
    assert n == cap, "%s got %d 102s, its cap is %d" % (name, n, cap)


@pytest.mark.parametrize("name", sorted(FINE))
def test_other_clients_still_get_102s(server, name):
    n, status, body = count_102(server, FINE[name])
    assert status == 200 and body == b"slow ok\n"
    assert n >= UNLIMITED_AT_LEAST, "%s got only %d 102s" % (name, n)
