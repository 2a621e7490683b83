#!/usr/bin/python3
"""Client and reverse-proxy compatibility runs for mod_processing.

Run through compat/run-compat (which installs the Debian packages first);
see compat/README-section.md for what is measured and how.

    compat.py [--only NAME,...] [--max N] [--jobs N] [--keep] [--out FILE]
    compat.py origin         start the origin alone and wait (exploring)

The origin is an apache2 (event MPM) with mod_processing, the test suite's
mod_proc_test handler (test/modules/mod_proc_test.c, built into the run's
own directory) and compat/mod_compat_slow.c (slows mod_dav and mod_dav_svn).
Under /c/N/ the handler gets exactly N 102s: ProcessingDelay 0 (first 102
at once), ProcessingInterval 100ms, ProcessingMaxCount N and a sleep of
N * 100 ms + 400 ms; /c/0/ has Processing Off. The access log records for
every request how many 102s the module actually sent (%{processing-sent}n)
and on which connection it came (client port, %k), so each verdict is
checked against what went over the wire.
"""
import argparse
import concurrent.futures
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import rawhttp

HERE = Path(__file__).resolve().parent
MAIN = HERE.parent
MODULE_SO = MAIN / ".libs" / "mod_processing.so"
PROC_TEST_C = MAIN / "test" / "modules" / "mod_proc_test.c"
SLOW_C = HERE / "mod_compat_slow.c"
MODDIR = Path("/usr/lib/apache2/modules")

PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
BODY_LEN = 1000      # final response body of the slow request
FAST_LEN = 100       # body of the second (fast) request
INTERVAL_MS = 100    # 102 interval of the /c/N/ locations
TAIL_MS = 400        # handler time after the N-th 102 (at least)
MODULE_MAX = 1000    # ProcessingMaxCount's upper limit
BASIC_N = 3          # the "does it work at all" run
PROXY_T = 2          # proxy upstream timeout for the timeout runs (s)
SLOW_T_MS = 6000     # handler time of the timeout runs (> PROXY_T + 2:
                     # lighttpd checks its timeouts only every few seconds)
SLOW_T_INTERVAL = "1s"  # 102 interval of the timeout runs (< PROXY_T)

LOCK = threading.Lock()
LOG = None


def say(*a):
    msg = " ".join(str(x) for x in a)
    with LOCK:
        print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)
        if LOG:
            LOG.write(msg + "\n")
            LOG.flush()


def body_of(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def md5(b):
    return hashlib.md5(b).hexdigest()


def sleep_for(n):
    # 25 % more than N intervals: on a busy machine the watchdog skips the
    # ticks it is late for and reaches N later (ProcessingMaxCount N still
    # stops it at N); exact_step() checks the count the module reports
    return n * INTERVAL_MS * 5 // 4 + TAIL_MS


def run(cmd, timeout=120, check=True, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (cmd, r.returncode,
                                                  r.stdout[-2000:]))
    return r.stdout


_ports_lock = threading.Lock()
_ports_used = set()


def free_port():
    with _ports_lock:
        while True:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            if port not in _ports_used:
                _ports_used.add(port)
                return port


def wait_port(port, timeout=20.0, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


SERVERS = set()


def stop_all_servers(*_):
    """TERM to all at once, then KILL whatever is left after 8 s."""
    servers = list(SERVERS)
    for s in servers:
        s.signal(signal.SIGTERM)
    end = time.monotonic() + 8
    for s in servers:
        try:
            s.proc.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.signal(signal.SIGKILL)
    for s in servers:
        s.stop()


STOPPING = threading.Event()
CLEANUP = []     # the work directory, removed on a signal unless --keep


def on_signal(signum, frame):
    STOPPING.set()
    say("signal %d: stopping the servers we started" % signum)
    stop_all_servers()
    if CLEANUP:
        shutil.rmtree(CLEANUP[0], ignore_errors=True)
    os._exit(128 + signum)


class Server:
    """A process we started (foreground), stopped by its pid only."""

    def __init__(self, name, argv, port, cwd=None, env=None, logfile=None):
        self.name, self.argv, self.port = name, argv, port
        if STOPPING.is_set():
            raise RuntimeError("stopping: %s not started" % name)
        out = open(logfile, "ab") if logfile else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        SERVERS.add(self)
        if not wait_port(port, proc=self.proc):
            self.stop()
            raise RuntimeError("%s did not start listening on %d: see %s"
                               % (name, port, logfile))

    def signal(self, sig):
        # Our own process and the session it leads (its workers), by pid.
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self):
        SERVERS.discard(self)
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)


# ---------------------------------------------------------------------------
# The origin

class Origin:
    def __init__(self, work, maxn):
        self.work = work
        self.root = work / "origin"
        self.maxn = maxn
        self.port = free_port()
        self.server = None
        self._svn_lock = threading.Lock()

    def build(self):
        b = self.work / "build"
        b.mkdir(exist_ok=True)
        if not PROC_TEST_C.exists():
            raise RuntimeError("%s is missing" % PROC_TEST_C)
        for src in (PROC_TEST_C, SLOW_C):
            shutil.copy(src, b / src.name)
            run(["apxs", "-c", "-o", src.stem + ".so", src.name], cwd=b)
        self.proc_test_so = b / ".libs" / "mod_proc_test.so"
        self.slow_so = b / ".libs" / "mod_compat_slow.so"

    def write_conf(self):
        r = self.root
        for d in ("logs", "run", "htdocs", "dav", "svn", "var"):
            (r / d).mkdir(parents=True, exist_ok=True)
        for name, n in (("fast.txt", FAST_LEN),):
            (r / "dav" / name).write_bytes(body_of(n))
        shutil.chown(r / "dav", "www-data", "www-data")
        shutil.chown(r / "var", "www-data", "www-data")
        # a template svn repository with one file, copied per N on demand
        tmpl = r / "svn-template"
        if not tmpl.exists():
            run(["svnadmin", "create", str(tmpl)])
            imp = self.work / "svn-import"
            imp.mkdir(exist_ok=True)
            (imp / "file.txt").write_bytes(body_of(BODY_LEN))
            run(["svn", "import", "-q", "--non-interactive", "--config-dir",
                 str(self.work / "svn-config"), "-m", "init", str(imp),
                 "file://%s" % tmpl])
        per_n = []
        for n in range(1, self.maxn + 1):
            ms = sleep_for(n)
            per_n.append('<Location "/c/%d/">\n    ProcessingMaxCount %d\n'
                         '</Location>' % (n, n))
            per_n.append('<Location "/davn/%d/">\n    ProcessingMaxCount %d\n'
                         '    <If "%%{REQUEST_URI} =~ m#/slow-#">\n'
                         '        CompatSlow %d\n    </If>\n</Location>'
                         % (n, n, ms))
            per_n.append('<Location "/svn/n%d/">\n    ProcessingMaxCount %d\n'
                         '    <If "%%{REQUEST_METHOD} == \'OPTIONS\'">\n'
                         '        CompatSlow %d\n    </If>\n</Location>'
                         % (n, n, ms))
        mods = ["mpm_event", "authz_core", "mime", "alias",
                "setenvif", "dav", "dav_fs", "dav_svn", "log_forensic"]
        conf = ["# generated by compat/compat.py",
                'ServerRoot "%s"' % r,
                "ServerName 127.0.0.1",
                "Listen 127.0.0.1:%d" % self.port,
                'PidFile "%s/run/httpd.pid"' % r,
                'DefaultRuntimeDir "%s/run"' % r,
                'Mutex file:%s/run default' % r]
        conf += ['LoadModule %s_module "%s/mod_%s.so"' % (m, MODDIR, m)
                 for m in mods]
        conf += ['LoadModule processing_module "%s"' % MODULE_SO,
                 'LoadModule proc_test_module "%s"' % self.proc_test_so,
                 'LoadModule compat_slow_module "%s"' % self.slow_so,
                 "User www-data", "Group www-data",
                 "StartServers 2", "ServerLimit 4", "ThreadLimit 64",
                 "ThreadsPerChild 64", "MaxRequestWorkers 256",
                 "Timeout 300", "KeepAlive On", "KeepAliveTimeout 15",
                 "MaxKeepAliveRequests 0",
                 'ErrorLog "%s/logs/error.log"' % r, "LogLevel warn",
                 'LogFormat "%{%s}t %{remote}p %k %{processing-sent}n %>s '
                 '%H %m %U" compat',
                 'CustomLog "%s/logs/access.log" compat' % r,
                 'ForensicLog "%s/logs/forensic.log"' % r,
                 'TypesConfig /etc/mime.types',
                 'DocumentRoot "%s/htdocs"' % r,
                 "<Directory />\n    Require all granted\n</Directory>",
                 'DavLockDB "%s/var/davlock"' % r,
                 "",
                 "# N 102s then the final response: /c/N/",
                 '<Location "/c/">\n    SetHandler proc-test\n'
                 "    Processing On\n    ProcessingInterval %dms\n"
                 "    ProcessingDelay 0\n    ProcessingMaxCount 0\n"
                 "</Location>" % INTERVAL_MS,
                 '<Location "/c/0/">\n    Processing Off\n</Location>',
                 "# The timeout runs behind proxies",
                 '<Location "/t/">\n    SetHandler proc-test\n'
                 "    Processing On\n    ProcessingInterval %s\n"
                 "</Location>" % SLOW_T_INTERVAL,
                 '<Location "/t/off/">\n    Processing Off\n</Location>',
                 "# WebDAV (neon: cadaver) and Subversion (serf)",
                 'AliasMatch "^/davn/[0-9]+/(.*)$" "%s/dav/$1"' % r,
                 '<Location "/davn/">\n    DAV On\n    Processing On\n'
                 "    ProcessingInterval %dms\n    ProcessingDelay 0\n"
                 "</Location>" % INTERVAL_MS,
                 '<Location "/davn/0/">\n    Processing Off\n</Location>',
                 '<Location "/svn/">\n    DAV svn\n    SVNParentPath "%s/svn"\n'
                 "    Processing On\n    ProcessingInterval %dms\n"
                 "    ProcessingDelay 0\n</Location>" % (r, INTERVAL_MS),
                 ""]
        conf += per_n
        (r / "httpd.conf").write_text("\n".join(conf) + "\n")
        run(["chmod", "-R", "a+rX", str(self.work)])

    def start(self):
        self.write_conf()
        run(["apache2", "-d", str(self.root), "-f",
             str(self.root / "httpd.conf"), "-t"])
        self.server = Server("origin apache2",
                             ["apache2", "-d", str(self.root), "-f",
                              str(self.root / "httpd.conf"), "-DFOREGROUND"],
                             self.port, logfile=self.root / "logs" / "stdout")
        say("origin listening on 127.0.0.1:%d (%s)" % (self.port, self.root))

    def stop(self):
        if self.server:
            self.server.stop()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def svn_repo(self, n):
        """The repository /svn/nN/ (a copy of the template)."""
        with self._svn_lock:
            d = self.root / "svn" / ("n%d" % n)
            if not d.exists():
                shutil.copytree(self.root / "svn-template", d)
                run(["chown", "-R", "www-data:www-data", str(d)])
        return "/svn/n%d/" % n

    def log_lines(self, needle, want=1, timeout=3.0):
        """Access log records whose URL contains needle: dicts."""
        end = time.monotonic() + timeout
        while True:
            out = []
            with open(self.root / "logs" / "access.log", "rb") as f:
                for ln in f.read().decode("latin-1").splitlines():
                    p = ln.split(" ")
                    if len(p) >= 8 and needle in p[7]:
                        out.append({"port": p[1], "k": int(p[2]),
                                    "sent": None if p[3] == "-" else int(p[3]),
                                    "status": p[4], "proto": p[5],
                                    "method": p[6], "uri": p[7]})
            if len(out) >= want or time.monotonic() > end:
                return out
            time.sleep(0.1)

    def forensic(self, needle):
        """Request headers (forensic log) of the first request with needle."""
        with open(self.root / "logs" / "forensic.log", "rb") as f:
            for ln in f.read().decode("latin-1").splitlines():
                if ln.startswith("+") and needle in ln:
                    fields = ln.split("|")
                    hdrs = {}
                    for h in fields[2:]:
                        k, _, v = h.partition(":")
                        hdrs[k] = v.replace("%3a", ":").replace("%7c", "|") \
                                   .replace("%20", " ")
                    return fields[1], hdrs
        return None, {}


# ---------------------------------------------------------------------------
# Clients: each returns a list of per-request results for [slow, fast]
#   {"status": int|None, "ok": bool, "error": str|None, "info": str|None}

def parse_client_output(out, expect):
    got = {}
    for ln in out.splitlines():
        p = ln.split(" ")
        if p[0] == "RESULT" and len(p) >= 5:
            i = int(p[1])
            got[i] = {"status": int(p[2]),
                      "ok": int(p[2]) == 200 and int(p[3]) == len(expect[i - 1])
                      and p[4] == md5(expect[i - 1]),
                      "error": None if int(p[2]) == 200 else
                      "status %s, %s body bytes" % (p[2], p[3]),
                      "info": p[5] if len(p) > 5 else None}
            if got[i]["status"] == 200 and not got[i]["ok"]:
                got[i]["error"] = "wrong body (%s bytes)" % p[3]
        elif p[0] == "ERROR" and len(p) >= 2:
            got[int(p[1])] = {"status": None, "ok": False,
                              "error": " ".join(p[2:])[:300], "info": None}
    return [got.get(i + 1, {"status": None, "ok": False, "info": None,
                            "error": "no result (output: %r)" % out[-300:]})
            for i in range(len(expect))]


def exec_client(argv, expect, timeout, env=None):
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           timeout=timeout, env=env)
        out = r.stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout.decode() if isinstance(e.stdout, bytes)
               else (e.stdout or ""))
        out += "\nERROR 1 harness: client killed after %ds" % timeout
    return parse_client_output(out, expect)


class Ctx:
    """What a client or proxy job needs: origin, work dir, tools."""

    def __init__(self, origin, work, maxn):
        self.origin, self.work, self.maxn = origin, work, maxn
        self.java_cp = work / "build" / "java"
        self.goclient = work / "build" / "go" / "goclient"
        self.seq = 0
        self.lock = threading.Lock()

    def tag(self, name):
        with self.lock:
            self.seq += 1
            return "%s-%d" % (re.sub(r"[^A-Za-z0-9]", "", name), self.seq)


def urls_for(ctx, n, tag):
    slow = "/c/%d/%s-1?sleep=%d&len=%d" % (n, tag, sleep_for(n), BODY_LEN)
    fast = "/c/0/%s-2?len=%d" % (tag, FAST_LEN)
    return [ctx.origin.url(slow), ctx.origin.url(fast)]


EXPECT = [body_of(BODY_LEN), body_of(FAST_LEN)]


def client_timeout(n):
    return sleep_for(n) / 1000.0 + 60


def c_curl(ctx, n, tag):
    u = urls_for(ctx, n, tag)
    d = ctx.work / "out" / tag
    d.mkdir(parents=True)
    try:
        out = run(["curl", "-sS", "--max-time", "300", "-w",
                   "%{http_code} %{num_connects}\\n",
                   "-o", str(d / "1"), u[0], "-o", str(d / "2"), u[1]],
                  timeout=client_timeout(n), check=False)
    except subprocess.TimeoutExpired:
        out = "harness: killed"
    lines = [ln for ln in out.splitlines() if re.match(r"^\d{3} \d+$", ln)]
    res = []
    for i in range(2):
        f = d / str(i + 1)
        st = int(lines[i].split()[0]) if i < len(lines) else None
        b = f.read_bytes() if f.exists() else b""
        ok = st == 200 and b == EXPECT[i]
        res.append({"status": st, "ok": ok, "info": None,
                    "error": None if ok else
                    "status %s, %d bytes; curl said: %s"
                    % (st, len(b), out.strip().replace("\n", " | ")[:300])})
    return res


def c_wget(ctx, n, tag):
    u = urls_for(ctx, n, tag)
    d = ctx.work / "out" / tag
    d.mkdir(parents=True)
    try:
        r = subprocess.run(["wget", "--no-config", "-S", "--tries=1",
                            "--timeout=300", "-P", str(d), u[0], u[1]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=client_timeout(n))
        out = r.stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        out += "\nharness: killed"
    # one block per URL, starting "--date--  URL"; the last status line
    # ("  HTTP/1.1 200 OK") of a block is what wget took as the response
    blocks = re.split(r"^--\d{4}-\d\d-\d\d \d\d:\d\d:\d\d--  ", out,
                      flags=re.M)[1:]
    res = []
    for i in range(2):
        blk = blocks[i] if i < len(blocks) else ""
        sts = re.findall(r"^  HTTP/1\.\d (\d{3})", blk, flags=re.M)
        st = int(sts[-1]) if sts else None
        files = list(d.glob("%s-%d*" % (tag, i + 1)))
        b = files[0].read_bytes() if files else b""
        ok = st == 200 and b == EXPECT[i]
        err = None
        if not ok:
            tail = [ln.strip() for ln in blk.splitlines()
                    if ln.strip() and not ln.startswith("  ")]
            err = "statuses %s, %d bytes; wget: %s" % (
                sts, len(b), " | ".join(tail[-3:])[:300])
        res.append({"status": st, "ok": ok, "info": None, "error": err})
    return res


def c_python(mode):
    def f(ctx, n, tag):
        return exec_client(["/usr/bin/python3", str(HERE / "clients" /
                                                    "pyclients.py"), mode]
                           + urls_for(ctx, n, tag), EXPECT, client_timeout(n))
    return f


def c_node(mode):
    def f(ctx, n, tag):
        return exec_client(["node", str(HERE / "clients" / "nodeclients.js"),
                            mode] + urls_for(ctx, n, tag), EXPECT,
                           client_timeout(n))
    return f


def c_java(mode):
    def f(ctx, n, tag):
        return exec_client(["java", "-cp", str(ctx.java_cp), "JavaClients",
                            mode] + urls_for(ctx, n, tag), EXPECT,
                           client_timeout(n))
    return f


def c_go(ctx, n, tag):
    return exec_client([str(ctx.goclient)] + urls_for(ctx, n, tag), EXPECT,
                       client_timeout(n))


def c_cadaver(ctx, n, tag):
    """neon via cadaver: GET of a slowed file, then of a fast one."""
    o = ctx.origin
    name = "slow-%s.txt" % tag
    (o.root / "dav" / name).write_bytes(body_of(BODY_LEN))
    os.chmod(o.root / "dav" / name, 0o644)
    d = ctx.work / "out" / tag
    d.mkdir(parents=True)
    script = "get %s %s/1\nget fast.txt %s/2\nquit\n" % (name, d, d)
    try:
        r = subprocess.run(["cadaver", o.url("/davn/%d/" % n)],
                           input=script, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           timeout=client_timeout(n),
                           env=dict(os.environ, HOME=str(d)))
        out = r.stdout
    except subprocess.TimeoutExpired:
        out = "harness: killed"
    # "Downloading `...' to ...: failed:\n<neon's error>" per failed get
    fails = re.findall(r"failed:\s*\n(.*)", out)
    res = []
    for i in range(2):
        f = d / str(i + 1)
        b = f.read_bytes() if f.exists() else b""
        ok = b == EXPECT[i]
        why = fails.pop(0) if (not ok and fails) else out.strip()[-200:]
        res.append({"status": 200 if ok else None, "ok": ok, "info": None,
                    "error": None if ok else "%d bytes; cadaver: %s" % (
                        len(b), why.strip().replace("\n", " | ")[:300])})
    return res


def c_svn(ctx, n, tag):
    """serf via svn cat: its first request (OPTIONS) is the slow one."""
    path = ctx.origin.svn_repo(n)
    d = ctx.work / "out" / tag
    d.mkdir(parents=True)
    try:
        r = subprocess.run(["svn", "cat", "--non-interactive", "--config-dir",
                            str(d / "cfg"), ctx.origin.url(path + "file.txt")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=client_timeout(n))
        out, errs = r.stdout, r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        out, errs = b"", "harness: killed"
    ok = out == EXPECT[0]
    res = {"status": 200 if ok else None, "ok": ok, "info": None,
           "error": None if ok else "%d bytes; svn: %s" % (
               len(out), errs.strip().replace("\n", " | ")[:300])}
    return [res, dict(res)]


# name, component label, version command, function, log needle kind
CLIENTS = [
    ("curl", lambda: " ".join(run(["curl", "--version"]).split()[:2]),
     c_curl),
    ("wget", lambda: " ".join(run(["wget", "--version"]).split()[:3]),
     c_wget),
    ("python-http.client",
     lambda: "Python " + run(["/usr/bin/python3", "-V"]).split()[1],
     c_python("http.client")),
    ("python-requests",
     lambda: run(["/usr/bin/python3", str(HERE / "clients" / "pyclients.py"),
                  "version"]).strip(), c_python("requests")),
    ("node-http", lambda: node_version(0, 1), c_node("http")),
    ("node-fetch", lambda: node_version(0, 2), c_node("fetch")),
    ("java-HttpClient", lambda: java_version(), c_java("httpclient")),
    ("java-HttpURLConnection", lambda: java_version(),
     c_java("urlconnection")),
    ("go-net/http", lambda: run(["go", "version"]).split()[2], c_go),
    ("neon-cadaver", lambda: "%s, %s" % tuple(
        ln.split(":")[0].strip() for ln in
        run(["cadaver", "--version"], check=False).splitlines()[:2]),
     c_cadaver),
    ("serf-svn", lambda: "svn %s, serf %s" % (
        run(["svn", "--version", "--quiet"]).strip(),
        dpkg_version("libserf-1-1")), c_svn),
]


def java_version():
    m = re.search(r'version "([^"]+)".*\n.*\(build ([^)]+)\)',
                  run(["java", "-version"]))
    return "OpenJDK %s" % m.group(2) if m else "?"


def node_version(*which):
    parts = run(["node", str(HERE / "clients" / "nodeclients.js"),
                 "version"]).strip().split(", ")
    return ", ".join(parts[i] for i in which)


def dpkg_version(pkg):
    return run(["dpkg-query", "-W", "-f", "${Version}", pkg],
               check=False).strip() or "?"


def conn_reuse(ctx, name, tag, n):
    """Did the second request come on the first one's connection?"""
    o = ctx.origin
    if name == "serf-svn":
        recs = o.log_lines("/svn/n%d/" % n, want=2, timeout=2)
        if not recs:
            return None, None, "no log"
        first = recs[0]
        later = recs[1:]
        same = [x for x in later if x["port"] == first["port"]]
        return (first["sent"], bool(later) and len(same) == len(later),
                "%d requests, %d connection(s)" % (
                    len(recs), len({x["port"] for x in recs})))
    if name == "neon-cadaver":
        slow = o.log_lines("slow-%s.txt" % tag, want=1, timeout=2)
        fast = [x for x in o.log_lines("/davn/%d/fast.txt" % n, want=1,
                                       timeout=1)]
        recs = o.log_lines("/davn/%d/" % n, want=1, timeout=0)
    else:
        slow = o.log_lines("/%s-1" % tag, want=1, timeout=2)
        fast = o.log_lines("/%s-2" % tag, want=1, timeout=1)
    if not slow:
        return None, None, "slow request not logged yet (client gave up?)"
    sent = slow[0]["sent"]
    if not fast:
        return sent, None, "second request never reached the origin"
    same = fast[-1]["port"] == slow[0]["port"]
    return sent, same, "second request on %s connection" % (
        "the same" if same else "a new")


def client_step(ctx, name, fn, n):
    tag = ctx.tag(name)
    t0 = time.monotonic()
    res = fn(ctx, n, tag)
    took = round(time.monotonic() - t0, 1)
    if res[0]["ok"]:
        sent, same, note = conn_reuse(ctx, name, tag, n)
    else:
        sent, same, note = None, None, ""
    step = {"n": n, "ok": res[0]["ok"], "second_ok": res[1]["ok"],
            "same_conn": same, "sent": sent, "conn": note, "secs": took,
            "first": res[0], "second": res[1]}
    say("  %-24s N=%-4d %s%s (%.1fs) %s" % (
        name, n, "ok" if step["ok"] else "FAIL",
        "" if sent is None else " sent=%s" % sent, took,
        "" if step["ok"] else res[0]["error"]))
    return step


def exact_step(fn, n):
    """fn(n), again (twice at most) if the module sent fewer than n 102s
    (the watchdog skips ticks it is late for, on a busy machine)."""
    for attempt in range(3):
        st = fn(n)
        if not st["ok"] or st["sent"] is None or st["sent"] >= n:
            return st
        say("  (N=%d: the module sent only %s 102s; again)" % (n, st["sent"]))
    st["inexact"] = True
    return st


def bisect_cap(step_fn, maxn, ok_of=lambda s: s["ok"]):
    """Largest N in [0, maxn] with ok, assuming ok is monotone.

    Tries BASIC_N first (the basic verdict), then maxn, then bisects.
    Returns (cap, steps)."""
    steps = {}

    def ok(n):
        steps[n] = step_fn(n)
        return ok_of(steps[n])

    basic = min(BASIC_N, maxn)
    if ok(basic):
        if basic == maxn or ok(maxn):
            return maxn, steps
        lo, hi = basic, maxn
    else:
        if basic == 1 or not ok(1):
            return 0, steps
        lo, hi = 1, basic
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, steps


def client_job(ctx, name, version_fn, fn):
    say("client %s" % name)
    try:
        version = version_fn()
    except Exception as e:
        version = "? (%s)" % e
    cap, steps = bisect_cap(
        lambda n: exact_step(lambda m: client_step(ctx, name, fn, m), n),
        ctx.maxn)
    basic = steps[min(BASIC_N, ctx.maxn)]
    fail = steps.get(cap + 1)
    return {"kind": "client", "name": name, "version": version, "cap": cap,
            "maxn": ctx.maxn, "basic": basic, "beyond": fail,
            "steps": [steps[k] for k in sorted(steps)]}


# ---------------------------------------------------------------------------
# Reverse proxies

def nginx_conf(v11):
    def conf(d, port, op, t):
        for sub in ("tmp", "logs"):
            (d / sub).mkdir(exist_ok=True)
        run(["chown", "-R", "www-data", str(d / "tmp")])
        up = ("upstream origin {\n        server 127.0.0.1:%d;\n"
              "        keepalive 8;\n    }\n" % op) if v11 else ""
        target = "http://origin" if v11 else "http://127.0.0.1:%d" % op
        extra = ("            proxy_http_version 1.1;\n"
                 '            proxy_set_header Connection "";\n') if v11 else ""
        (d / "nginx.conf").write_text("""daemon off;
master_process on;
worker_processes 1;
user www-data;
pid %(d)s/nginx.pid;
error_log %(d)s/logs/error.log info;
events { worker_connections 512; }
http {
    access_log %(d)s/logs/access.log;
    client_body_temp_path %(d)s/tmp/body;
    proxy_temp_path %(d)s/tmp/proxy;
    fastcgi_temp_path %(d)s/tmp/fastcgi;
    uwsgi_temp_path %(d)s/tmp/uwsgi;
    scgi_temp_path %(d)s/tmp/scgi;
    %(up)s
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass %(target)s;
            proxy_read_timeout %(t)ds;
            proxy_send_timeout %(t)ds;
%(extra)s        }
    }
}
""" % dict(d=d, port=port, t=t, up=up, target=target, extra=extra))
        return ["nginx", "-p", str(d), "-e", str(d / "logs" / "error.log"),
                "-c", str(d / "nginx.conf")]
    return conf


def haproxy_conf(d, port, op, t):
    (d / "haproxy.cfg").write_text("""global
    maxconn 512
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 600s
    timeout http-keep-alive 60s
    timeout server %(t)ds
frontend fe
    bind 127.0.0.1:%(port)d
    default_backend be
backend be
    server origin 127.0.0.1:%(op)d
""" % dict(port=port, op=op, t=t))
    return ["haproxy", "-db", "-f", str(d / "haproxy.cfg")]


def apache_conf(d, port, op, t):
    for sub in ("logs", "run"):
        (d / sub).mkdir(exist_ok=True)
    mods = ["mpm_event", "authz_core", "proxy", "proxy_http"]
    (d / "httpd.conf").write_text("\n".join(
        ['ServerRoot "%s"' % d, "ServerName 127.0.0.1",
         "Listen 127.0.0.1:%d" % port, 'PidFile "%s/run/httpd.pid"' % d,
         'DefaultRuntimeDir "%s/run"' % d, 'Mutex file:%s/run default' % d]
        + ['LoadModule %s_module "%s/mod_%s.so"' % (m, MODDIR, m)
           for m in mods]
        + ["User www-data", "Group www-data", 'ErrorLog "%s/logs/error.log"'
           % d, "LogLevel warn", "KeepAliveTimeout 60",
           'ProxyPass "/" "http://127.0.0.1:%d/"' % op,
           "ProxyTimeout %d" % t]) + "\n")
    return ["apache2", "-d", str(d), "-f", str(d / "httpd.conf"),
            "-DFOREGROUND"]


def squid_conf(d, port, op, t):
    (d / "squid.conf").write_text("""http_port 127.0.0.1:%(port)d accel defaultsite=127.0.0.1:%(op)d no-vhost
cache_peer 127.0.0.1 parent %(op)d 0 no-query originserver name=origin
http_access allow all
cache deny all
read_timeout %(t)d seconds
request_timeout 60 seconds
pid_filename %(d)s/squid.pid
access_log stdio:%(d)s/access.log
cache_log %(d)s/cache.log
cache_store_log none
netdb_filename none
coredump_dir %(d)s
cache_effective_user proxy
shutdown_lifetime 1 seconds
max_filedescriptors 1024
""" % dict(d=d, port=port, op=op, t=t))
    run(["chown", "-R", "proxy", str(d)])
    return ["squid", "-N", "-f", str(d / "squid.conf")]


def varnish_conf(d, port, op, t):
    (d / "default.vcl").write_text("""vcl 4.1;
backend origin {
    .host = "127.0.0.1";
    .port = "%(op)d";
    .connect_timeout = 5s;
    .first_byte_timeout = %(t)ds;
    .between_bytes_timeout = %(t)ds;
}
sub vcl_recv {
    return (pass);
}
""" % dict(op=op, t=t))
    (d / "vn").mkdir(exist_ok=True)
    run(["chmod", "-R", "a+rX", str(d)])
    return ["varnishd", "-F", "-a", "127.0.0.1:%d" % port, "-T", "none",
            "-f", str(d / "default.vcl"), "-n", str(d / "vn"),
            "-s", "malloc,32m"]


def lighttpd_conf(d, port, op, t):
    (d / "www").mkdir(exist_ok=True)
    (d / "lighttpd.conf").write_text("""server.modules = ( "mod_proxy" )
server.document-root = "%(d)s/www"
server.bind = "127.0.0.1"
server.port = %(port)d
server.errorlog = "%(d)s/error.log"
server.max-read-idle = 600
server.max-write-idle = 600
proxy.server = ( "" => ( (
    "host" => "127.0.0.1", "port" => %(op)d,
    "connect-timeout" => 5, "write-timeout" => 60, "read-timeout" => %(t)d
) ) )
""" % dict(d=d, port=port, op=op, t=t))
    return ["lighttpd", "-D", "-f", str(d / "lighttpd.conf")]


def caddy_conf(which):
    return lambda d, port, op, t: caddy_conf1(d, port, op, t, which)


def caddy_conf1(d, port, op, t, which):
    (d / "Caddyfile").write_text("""{
    admin off
    auto_https off
    storage file_system %(d)s/data
}
http://127.0.0.1:%(port)d {
    reverse_proxy 127.0.0.1:%(op)d {
        transport http {
            %(which)s %(t)ds
        }
    }
}
""" % dict(d=d, port=port, op=op, t=t, which=which))
    return ["caddy", "run", "--adapter", "caddyfile", "--config",
            str(d / "Caddyfile")]


def first_line(cmd):
    return run(cmd, check=False).strip().splitlines()[0]


PROXIES = [
    ("nginx (default: HTTP/1.0 upstream)",
     lambda: first_line(["nginx", "-v"]).split(": ")[-1], nginx_conf(False),
     "proxy_read_timeout"),
    ("nginx (proxy_http_version 1.1)",
     lambda: first_line(["nginx", "-v"]).split(": ")[-1], nginx_conf(True),
     "proxy_read_timeout"),
    ("haproxy", lambda: " ".join(first_line(["haproxy", "-v"]).split()[:3]),
     haproxy_conf,
     "timeout server"),
    ("apache mod_proxy_http",
     lambda: first_line(["apache2", "-v"]).split(": ", 1)[-1], apache_conf,
     "ProxyTimeout"),
    ("squid", lambda: "squid " + first_line(["squid", "-v"]).split()[-1],
     squid_conf,
     "read_timeout"),
    ("varnish", lambda: re.sub(r".*\((varnish-[^ ]+).*", r"\1",
                               first_line(["varnishd", "-V"])),
     varnish_conf,
     "first_byte_timeout, between_bytes_timeout"),
    ("lighttpd", lambda: first_line(["lighttpd", "-v"]).split()[0],
     lighttpd_conf,
     'proxy.server "read-timeout"'),
    ("caddy (read_timeout)",
     lambda: "caddy " + first_line(["caddy", "version"]),
     caddy_conf("read_timeout"), "transport http read_timeout"),
    ("caddy (response_header_timeout)",
     lambda: "caddy " + first_line(["caddy", "version"]),
     caddy_conf("response_header_timeout"),
     "transport http response_header_timeout"),
]


def start_proxy(ctx, name, conf_fn, timeout_s):
    d = Path(tempfile.mkdtemp(prefix="proxy-", dir=ctx.work))
    os.chmod(d, 0o755)
    port = free_port()
    argv = conf_fn(d, port, ctx.origin.port, timeout_s)
    env = dict(os.environ, HOME=str(d), XDG_DATA_HOME=str(d / "data"),
               XDG_CONFIG_HOME=str(d / "config"))
    return Server(name, argv, port, cwd=str(d), env=env,
                  logfile=d / "stdout.log"), d


def ex_dict(ex, expect):
    return {"status": ex.status, "ok": ex.status == 200 and ex.body == expect,
            "interim": len(ex.interim),
            "interim_at": [t for _, t in ex.interim][:12],
            "interim_codes": sorted({c for c, _ in ex.interim}),
            "bytes": len(ex.body), "error": ex.error, "secs": ex.elapsed,
            "summary": ex.summary()}


def proxy_exchange(ctx, port, paths, timeout):
    exs = rawhttp.request("127.0.0.1", port, paths, timeout=timeout)
    return exs


def proxy_timeout_runs(ctx, name, server):
    """Handler SLOW_T_MS, proxy timeout PROXY_T, 102 every SLOW_T_INTERVAL."""
    out = {}
    for mode in ("on", "off"):
        tag = ctx.tag(name)
        paths = ["/t/%s/%s-1?sleep=%d&len=%d" % (
            "on" if mode == "on" else "off", tag, SLOW_T_MS, BODY_LEN),
            "/c/0/%s-2?len=%d" % (tag, FAST_LEN)]
        exs = proxy_exchange(ctx, server.port, paths, timeout=30)
        r = {"first": ex_dict(exs[0], EXPECT[0])}
        r["second"] = ex_dict(exs[1], EXPECT[1]) if len(exs) > 1 else None
        recs = ctx.origin.log_lines("/%s-1" % tag, want=1, timeout=8)
        r["origin"] = recs[0] if recs else None
        proto, hdrs = ctx.origin.forensic("/%s-1" % tag)
        r["upstream_request"] = proto
        r["upstream_headers"] = hdrs
        out[mode] = r
        say("  %-24s module %-3s: %s; second: %s; origin sent %s 102s" % (
            name[:24], mode, r["first"]["summary"],
            r["second"]["summary"] if r["second"] else "-",
            r["origin"]["sent"] if r["origin"] else "?"))
    return out


def proxy_step(ctx, name, port, n):
    tag = ctx.tag(name)
    paths = ["/c/%d/%s-1?sleep=%d&len=%d" % (n, tag, sleep_for(n), BODY_LEN),
             "/c/0/%s-2?len=%d" % (tag, FAST_LEN)]
    t0 = time.monotonic()
    exs = proxy_exchange(ctx, port, paths, timeout=client_timeout(n))
    took = round(time.monotonic() - t0, 1)
    first = ex_dict(exs[0], EXPECT[0])
    second = ex_dict(exs[1], EXPECT[1]) if len(exs) > 1 else None
    recs = ctx.origin.log_lines("/%s-1" % tag, want=1,
                                timeout=2 if first["ok"] else 0.5)
    sent = recs[0]["sent"] if recs else None
    # a final response that comes long after the handler ended (nginx with
    # HTTP/1.1 upstream: only when the origin closes the connection) is no
    # success
    late = first["secs"] is not None and \
        first["secs"] > sleep_for(n) / 1000.0 + 5
    if first["ok"] and late:
        first["error"] = "final response only after %ss" % first["secs"]
        first["summary"] += " after %ss" % first["secs"]
    step = {"n": n, "ok": first["ok"] and not late, "sent": sent,
            "forwarded": first["interim"], "first": first, "second": second,
            "secs": took}
    say("  %-24s N=%-4d %s sent=%s forwarded=%d (%.1fs) %s" % (
        name[:24], n, "ok" if step["ok"] else "FAIL", sent,
        first["interim"], took, "" if step["ok"] else first["summary"]))
    return step


def proxy_job(ctx, name, version_fn, conf_fn, timeout_name):
    say("proxy %s" % name)
    try:
        version = version_fn()
    except Exception as e:
        version = "? (%s)" % e
    res = {"kind": "proxy", "name": name, "version": version,
           "timeout_setting": "%s %ds" % (timeout_name, PROXY_T),
           "maxn": ctx.maxn}
    server, d = start_proxy(ctx, name, conf_fn, PROXY_T)
    try:
        res["timeout_runs"] = proxy_timeout_runs(ctx, name, server)
    finally:
        server.stop()
    # the cap: a long proxy timeout, N 102s 100 ms apart
    server, d = start_proxy(ctx, name, conf_fn, 300)
    try:
        probe = exact_step(lambda m: proxy_step(ctx, name, server.port, m),
                           min(BASIC_N, ctx.maxn))
        on = res["timeout_runs"]["on"]["origin"]
        if not on or not on["sent"]:
            res["cap"] = None
            res["cap_note"] = "the origin sent no 102 (request was %s)" % (
                res["timeout_runs"]["on"]["upstream_request"] or "?")
            res["steps"] = [probe]
        else:
            cache = {probe["n"]: probe}

            def step(n):
                if n in cache:
                    return cache.pop(n)
                return exact_step(
                    lambda m: proxy_step(ctx, name, server.port, m), n)
            cap, steps = bisect_cap(step, ctx.maxn)
            res["cap"] = cap
            res["steps"] = [steps[k] for k in sorted(steps)]
            res["beyond"] = steps.get(cap + 1)
    finally:
        server.stop()
    return res


# ---------------------------------------------------------------------------
# Report

def verdict_client(r):
    b = r["basic"]
    if b["ok"] and b["second_ok"]:
        base = "works"
    elif b["ok"]:
        base = "final response ok, second request fails"
    else:
        base = "BREAKS"
    return base


def describe_client(r):
    b = r["basic"]
    parts = []
    if not b["ok"]:
        parts.append("with %d 102s: %s" % (b["n"], b["first"]["error"]))
        if b["secs"] > sleep_for(b["n"]) / 1000.0 + 5:
            parts.append("the client returned only after %ss (the origin "
                         "closes idle connections after 15 s)" % b["secs"])
        if b["second"]["error"]:
            parts.append("second request: %s" % b["second"]["error"])
    else:
        parts.append("final response and body correct")
        if b["second_ok"]:
            parts.append("second request ok (%s)" % (b["conn"] or "?"))
        else:
            parts.append("second request: %s" % b["second"]["error"])
    if r["cap"] >= r["maxn"]:
        parts.append("accepted %d 102s (the module's maximum) without a "
                     "limit" % r["maxn"])
    elif r["beyond"]:
        parts.append("at %d 102s: %s" % (r["beyond"]["n"],
                                         r["beyond"]["first"]["error"]))
    return "; ".join(parts)


def cap_str(cap, maxn):
    if cap is None:
        return "n/a"
    return ">= %d" % maxn if cap >= maxn else str(cap)


def describe_proxy(r):
    on, off = r["timeout_runs"]["on"], r["timeout_runs"]["off"]
    parts = []
    parts.append("with the module: client got %s after %ss, %d of %s 102s "
                 "forwarded" % (
                     on["first"]["status"] if on["first"]["status"] else
                     "no response (%s)" % on["first"]["error"],
                     on["first"]["secs"], on["first"]["interim"],
                     (on["origin"]["sent"] or 0) if on["origin"] else "?"))
    if not on["first"]["ok"] and on["first"]["status"] == 200:
        parts.append("body wrong")
    if on["second"] is not None:
        parts.append("next request on the connection: %s" % (
            "ok" if on["second"]["ok"] else on["second"]["summary"]))
    else:
        parts.append("connection not reusable")
    parts.append("without: %s after %ss" % (
        off["first"]["status"] or "no response (%s)" % off["first"]["error"],
        off["first"]["secs"]))
    return "; ".join(parts)


def write_report(results, out_path, started, argv, maxn, extra=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = ["# mod_processing: client and reverse-proxy compatibility",
             "",
             "Generated by `compat/run-compat` (`make -f Makefile.apxs "
             "compat`) on %s UTC, %s, in %.0f s." % (
                 now.strftime("%Y-%m-%d %H:%M"), os_release(),
                 time.time() - started),
             "Command: `%s`" % " ".join(argv),
             "",
             "Origin: Apache %s (event MPM), mod_processing from this "
             "tree, handler mod_proc_test. N 102s mean ProcessingDelay 0, "
             "ProcessingInterval %dms, ProcessingMaxCount N, handler time "
             "N x %d ms x 1.25 + %d ms (the margin lets a busy watchdog that "
             "skipped a tick still reach N); 'sent' is the module's own count "
             "(`%%{processing-sent}n`)." % (
                 first_line(["apache2", "-v"]).split("/")[-1],
                 INTERVAL_MS, INTERVAL_MS, TAIL_MS),
             "The cap is the largest N for which the client still returned "
             "the final response with the right body (bisection over 0..%d; "
             "'>= %d' means no cap up to the module's limit)." % (maxn, maxn),
             ""]
    clients = [r for r in results if r.get("kind") == "client"]
    proxies = [r for r in results if r.get("kind") == "proxy"]
    errors = [r for r in results if r.get("kind") == "error"]
    if clients:
        lines += ["## Clients", "",
                  "| client | version | %d 102s | 2nd request, same "
                  "connection | cap | what happens |" % BASIC_N,
                  "|---|---|---|---|---|---|"]
        for r in clients:
            b = r["basic"]
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                r["name"], r["version"].replace("|", "/"),
                "ok" if b["ok"] else "FAIL",
                ("ok" if b["second_ok"] else "FAIL") + (
                    "" if b["same_conn"] is None else
                    (", same" if b["same_conn"] else ", new connection")),
                cap_str(r["cap"], r["maxn"]),
                describe_client(r).replace("|", "/")))
        lines.append("")
    if proxies:
        lines += ["## Reverse proxies", "",
                  "Timeout runs: proxy upstream timeout %ds, handler %d ms, "
                  "module interval %s (first 102 after %s): the 102s come "
                  "more often than the timeout, the final response later. "
                  "Then the same without the module (`Processing Off`). "
                  "Cap runs: upstream timeout 300 s, N 102s 100 ms apart, a "
                  "raw client that counts the 102s it receives." % (
                      PROXY_T, SLOW_T_MS, SLOW_T_INTERVAL, SLOW_T_INTERVAL),
                  "",
                  "| proxy | version | upstream request | with module | "
                  "without module | 102s forwarded | proxy cap | what "
                  "happens |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in proxies:
            on, off = r["timeout_runs"]["on"], r["timeout_runs"]["off"]
            fwd = on["first"]["interim"]
            sent = (on["origin"]["sent"] or 0) if on["origin"] else "?"
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["name"], r["version"].replace("|", "/"),
                (on["upstream_request"] or "?").split(" ")[-1],
                ("%s ok" % on["first"]["status"]) if on["first"]["ok"] else
                "FAIL (%s)" % (on["first"]["status"] or "none"),
                ("%s ok" % off["first"]["status"]) if off["first"]["ok"] else
                "%s (timed out)" % (off["first"]["status"] or "none"),
                "%s of %s" % (fwd, sent),
                cap_str(r.get("cap"), r["maxn"]) +
                ("" if r.get("cap") is not None else
                 " (%s)" % r.get("cap_note", "")),
                describe_proxy(r).replace("|", "/")))
        lines.append("")
        lines += ["### What each proxy sends upstream", "",
                  "Headers the origin saw from each proxy (forensic log), to "
                  "recognise it in the configuration:", ""]
        for r in proxies:
            on = r["timeout_runs"]["on"]
            h = on.get("upstream_headers") or {}
            keep = {k: v for k, v in h.items() if k.lower() in (
                "via", "x-varnish", "x-forwarded-for", "x-forwarded-host",
                "x-forwarded-server", "x-forwarded-proto", "forwarded",
                "connection", "user-agent", "x-host", "accept-encoding")}
            lines.append("- %s: `%s`; %s" % (
                r["name"], on.get("upstream_request") or "?",
                ", ".join("`%s: %s`" % kv for kv in keep.items())
                or "no extra headers"))
        lines.append("")
    if extra:
        lines += extra
    if errors:
        lines += ["## Errors", ""]
        for r in errors:
            lines.append("- %s: %s" % (r["name"], r["error"]))
        lines.append("")
    lines += ["Per-step details: `compat/results.json`."]
    Path(out_path).write_text("\n".join(lines) + "\n")


def os_release():
    try:
        for ln in open("/etc/os-release"):
            if ln.startswith("PRETTY_NAME="):
                return ln.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "?"


# ---------------------------------------------------------------------------

def build_clients(work):
    j = work / "build" / "java"
    j.mkdir(parents=True, exist_ok=True)
    run(["javac", "-d", str(j), str(HERE / "clients" / "JavaClients.java")],
        timeout=300)
    g = work / "build" / "go"
    g.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "clients" / "goclient.go", g / "goclient.go")
    env = dict(os.environ, GOCACHE=str(g / "cache"), GOPATH=str(g / "path"),
               GO111MODULE="off", GOFLAGS="", GOPROXY="off")
    run(["go", "build", "-o", "goclient", "goclient.go"], cwd=g, env=env,
        timeout=600)


def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all",
                    help="all (default) or origin")
    ap.add_argument("--only", default="",
                    help="comma-separated substrings of client/proxy names")
    ap.add_argument("--max", type=int, default=MODULE_MAX,
                    help="largest N tried in the cap search")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory under /tmp")
    ap.add_argument("--out", default=str(HERE / "results.md"))
    ap.add_argument("--json", default=str(HERE / "results.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("compat.py: run as root (apache2 and the proxies drop to "
                 "their own users)")
    if not MODULE_SO.exists():
        sys.exit("compat.py: %s missing: make -f Makefile.apxs" % MODULE_SO)
    started = time.time()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    work = Path(tempfile.mkdtemp(prefix="compat-", dir="/tmp"))
    os.chmod(work, 0o755)
    if not args.keep:
        CLEANUP.append(work)
    LOG = open(work / "run.log", "w")
    say("work directory %s" % work)
    maxn = max(1, min(args.max, MODULE_MAX))
    origin = Origin(work, maxn)
    results = []
    try:
        origin.build()
        origin.start()
        if args.what == "origin":
            say("origin up; Ctrl-C to stop")
            while True:
                time.sleep(3600)
        build_clients(work)
        ctx = Ctx(origin, work, maxn)
        only = [s for s in args.only.split(",") if s]

        def chosen(name):
            return not only or any(s.lower() in name.lower() for s in only)
        jobs = []
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for name, vf, fn in CLIENTS:
                if chosen(name):
                    jobs.append((name, pool.submit(client_job, ctx, name, vf,
                                                   fn)))
            for name, vf, cf, tn in PROXIES:
                if chosen(name):
                    jobs.append((name, pool.submit(proxy_job, ctx, name, vf,
                                                   cf, tn)))
            for name, fut in jobs:
                try:
                    results.append(fut.result())
                except Exception as e:
                    traceback.print_exc()
                    results.append({"kind": "error", "name": name,
                                    "error": "%s: %s" % (type(e).__name__,
                                                         e)})
    finally:
        origin.stop()
        Path(args.json).write_text(json.dumps(results, indent=1,
                                              default=str) + "\n")
        if results:
            write_report(results, args.out, started,
                         ["compat/run-compat"] + sys.argv[1:], maxn)
            say("wrote %s and %s" % (args.out, args.json))
        errlog = origin.root / "logs" / "error.log"
        if errlog.exists():
            bad = [ln for ln in errlog.read_text(errors="replace")
                   .splitlines() if "processing" in ln and
                   ("error" in ln or "crit" in ln)]
            if bad:
                say("origin error log has module errors:", *bad[:5])
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say("kept %s" % work)


if __name__ == "__main__":
    main()
