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
import realclients

HERE = Path(__file__).resolve().parent
MAIN = HERE.parent
# COMPAT_MODULE_SO: measure another build of the module (e.g. the main
# checkout's, with ProcessingClients) with this tree's runner
MODULE_SO = Path(os.environ.get("COMPAT_MODULE_SO",
                                str(MAIN / ".libs" / "mod_processing.so")))
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


# the body pattern, digests and handler times are the drivers' own
body_of, md5, sleep_for = realclients.body_of, realclients.md5, \
    realclients.sleep_for


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

def module_accepts(directives):
    """Does this tree's module take these configuration lines (in a
    <Location "/">, or at the top level where a line starts with "^")?
    Probed with apache2 -t on a scratch config."""
    d = Path(tempfile.mkdtemp(prefix="probe-", dir="/tmp"))
    try:
        top = "".join(x[1:] + "\n" for x in directives if x.startswith("^"))
        loc = "".join("    %s\n" % x for x in directives
                      if not x.startswith("^"))
        (d / "t.conf").write_text(
            'ServerRoot "%s"\nServerName 127.0.0.1\nListen 127.0.0.1:%d\n'
            'PidFile "%s/pid"\nDefaultRuntimeDir "%s"\n'
            'LoadModule mpm_event_module "%s/mod_mpm_event.so"\n'
            'LoadModule authz_core_module "%s/mod_authz_core.so"\n'
            'LoadModule processing_module "%s"\nErrorLog /dev/null\n%s'
            '<Location "/">\n    Processing On\n%s</Location>\n'
            % (d, free_port(), d, d, MODDIR, MODDIR, MODULE_SO, top, loc))
        r = subprocess.run(["apache2", "-d", str(d), "-f", str(d / "t.conf"),
                            "-t"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        return r.returncode == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def has_processing_clients():
    """The known-client default of issue 15 (ProcessingClients)."""
    return module_accepts(["ProcessingClients known"])


# how a front is declared to the module (issue 18), probed like
# ProcessingClients; the runs "declared" are n/a without it
DECLARE = "ProcessingTrustedProxy 127.0.0.1/8"


def has_trusted_proxy():
    return module_accepts(["^" + DECLARE])


class Origin:
    def __init__(self, work, maxn, client_maxn=None):
        self.work = work
        self.root = work / "origin"
        self.maxn = maxn
        self.client_maxn = client_maxn or maxn
        self.known = has_processing_clients()
        self.declared = has_trusted_proxy()
        self.port = free_port()
        # the same locations on a second port whose server declares the
        # fronts (DECLARE); fronts of the "declared" runs point there
        self.declared_port = free_port() if self.declared else None
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
        for d in ("logs", "run", "htdocs", "dav", "svn", "var", "files"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "htdocs" / "index.html").write_text("compat origin\n")
        for name, n in (("fast.txt", FAST_LEN),):
            (r / "dav" / name).write_bytes(body_of(n))
        shutil.chown(r / "dav", "www-data", "www-data")
        shutil.chown(r / "var", "www-data", "www-data")
        # `ProcessingClients all` where the module has it (else Processing On
        # alone is "all"); /k/, /sk/, /davk/, /svnk/: the known default
        all_ = "    ProcessingClients all\n" if self.known else ""
        known = "    ProcessingClients known\n"
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
            per_n.append('<LocationMatch "^/svn/n%d-">\n    ProcessingMaxCount %d\n'
                         '    <If "%%{REQUEST_METHOD} == \'OPTIONS\'">\n'
                         '        CompatSlow %d\n    </If>\n</LocationMatch>'
                         % (n, n, ms))
            if n > self.client_maxn:
                continue
            per_n.append('<Location "/sc/%d/">\n    ProcessingMaxCount %d\n'
                         '    CompatSlow %d\n</Location>' % (n, n, ms))
            if self.known:
                per_n.append('<Location "/k/%d/">\n    ProcessingMaxCount '
                             '%d\n</Location>' % (n, n))
                per_n.append('<Location "/sk/%d/">\n    ProcessingMaxCount '
                             '%d\n    CompatSlow %d\n</Location>'
                             % (n, n, ms))
                per_n.append('<Location "/davk/%d/">\n    ProcessingMaxCount'
                             ' %d\n    <If "%%{REQUEST_URI} =~ m#/slow-#">\n'
                             '        CompatSlow %d\n    </If>\n</Location>'
                             % (n, n, ms))
                per_n.append('<LocationMatch "^/svnk/n%d-">\n    ProcessingMaxCount'
                             ' %d\n    <If "%%{REQUEST_METHOD} == '
                             '\'OPTIONS\'">\n        CompatSlow %d\n'
                             '    </If>\n</LocationMatch>' % (n, n, ms))
            per_n.append('<Location "/davn/%d/">\n    ProcessingMaxCount %d\n'
                         '    <If "%%{REQUEST_URI} =~ m#/slow-#">\n'
                         '        CompatSlow %d\n    </If>\n</Location>'
                         % (n, n, ms))
        mods = ["mpm_event", "authz_core", "mime", "alias",
                "setenvif", "dav", "dav_fs", "dav_svn", "log_forensic",
                "dir"]
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
                 '%H %m %U %{X-Received}o %{processing-client}n '
                 '\\"%{User-Agent}i\\"" compat',
                 'CustomLog "%s/logs/access.log" compat' % r,
                 'ForensicLog "%s/logs/forensic.log"' % r,
                 'TypesConfig /etc/mime.types',
                 'DocumentRoot "%s/htdocs"' % r,
                 "<Directory />\n    Require all granted\n</Directory>",
                 'DavLockDB "%s/var/davlock"' % r,
                 "",
                 "# N 102s then the final response: /c/N/",
                 '<Location "/c/">\n    SetHandler proc-test\n'
                 "    Processing On\n%s    ProcessingInterval %dms\n"
                 "    ProcessingDelay 0\n    ProcessingMaxCount 0\n"
                 "</Location>" % (all_, INTERVAL_MS),
                 '<Location "/c/0/">\n    Processing Off\n</Location>',
                 "# the same with the module's default client policy",
                 ('<Location "/k/">\n    SetHandler proc-test\n'
                  "    Processing On\n%s    ProcessingInterval %dms\n"
                  "    ProcessingDelay 0\n    ProcessingMaxCount 0\n"
                  "</Location>" % (known, INTERVAL_MS)) if self.known else "",
                 "# static files (pip index, npm registry, browser pages): "
                 "/sc/N/X and /sk/N/X slow, /f/X fast",
                 'AliasMatch "^/s[ck]/[0-9]+/(.*)$" "%s/files/$1"' % r,
                 'AliasMatch "^/f/(.*)$" "%s/files/$1"' % r,
                 '<Location "/sc/">\n    Processing On\n%s'
                 "    ProcessingInterval %dms\n    ProcessingDelay 0\n"
                 "</Location>" % (all_, INTERVAL_MS),
                 '<Location "/sc/0/">\n    Processing Off\n'
                 "    CompatSlow %d\n</Location>" % sleep_for(BASIC_N),
                 ('<Location "/sk/">\n    Processing On\n%s'
                  "    ProcessingInterval %dms\n    ProcessingDelay 0\n"
                  "</Location>" % (known, INTERVAL_MS)) if self.known else "",
                 '<Files "compatpkg">\n    ForceType application/json\n'
                 "</Files>",
                 "# The timeout runs behind proxies: every client allowed,",
                 "# the proxy is what is measured",
                 '<Location "/t/">\n    SetHandler proc-test\n'
                 "    Processing On\n%s    ProcessingInterval %s\n"
                 "</Location>" % (all_, SLOW_T_INTERVAL),
                 '<Location "/t/off/">\n    Processing Off\n</Location>',
                 "# WebDAV (neon: cadaver) and Subversion (serf)",
                 'AliasMatch "^/dav[nk]/[0-9]+/(.*)$" "%s/dav/$1"' % r,
                 # gvfs mounts the collection without its slash (and
                 # fails on the redirect mod_dir would send)
                 'AliasMatch "^/dav[nk]/[0-9]+$" "%s/dav"' % r,
                 '<LocationMatch "^/dav[nk]/[0-9]+$">\n    DirectorySlash Off'
                 '\n</LocationMatch>',
                 '<Location "/davn/">\n    DAV On\n    Processing On\n%s'
                 "    ProcessingInterval %dms\n    ProcessingDelay 0\n"
                 "</Location>" % (all_, INTERVAL_MS),
                 '<Location "/davn/0/">\n    Processing Off\n'
                 '    <If "%%{REQUEST_URI} =~ m#/slow-#">\n'
                 "        CompatSlow %d\n    </If>\n</Location>"
                 % sleep_for(BASIC_N),
                 '<Location "/svn/">\n    DAV svn\n    SVNParentPath "%s/svn"\n'
                 "    Processing On\n%s    ProcessingInterval %dms\n"
                 "    ProcessingDelay 0\n</Location>" % (r, all_, INTERVAL_MS),
                 '<LocationMatch "^/svn/n0-">\n    Processing Off\n'
                 '    <If "%%{REQUEST_METHOD} == \'OPTIONS\'">\n'
                 "        CompatSlow %d\n    </If>\n</LocationMatch>"
                 % sleep_for(BASIC_N)]
        if self.known:
            conf += ['<Location "/davk/">\n    DAV On\n    Processing On\n'
                     "%s    ProcessingInterval %dms\n    ProcessingDelay 0\n"
                     "</Location>" % (known, INTERVAL_MS),
                     '<Location "/svnk/">\n    DAV svn\n'
                     '    SVNParentPath "%s/svn"\n    Processing On\n'
                     "%s    ProcessingInterval %dms\n    ProcessingDelay 0\n"
                     "</Location>" % (r, known, INTERVAL_MS)]
        # the fronts' runs under the module's default policy (no
        # ProcessingClients line): /d/ gets BASIC_N 102s
        conf += ['<Location "/d/">\n    SetHandler proc-test\n'
                 "    Processing On\n    ProcessingInterval %dms\n"
                 "    ProcessingDelay 0\n    ProcessingMaxCount %d\n"
                 "</Location>" % (INTERVAL_MS, BASIC_N)]
        if self.declared:
            # a server of its own that declares the fronts (127.0.0.1/8)
            conf += ["Listen 127.0.0.1:%d" % self.declared_port,
                     "<VirtualHost 127.0.0.1:%d>\n    ServerName 127.0.0.1"
                     "\n    %s\n</VirtualHost>" % (self.declared_port,
                                                   DECLARE)]
        conf += [
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

    def svn_repo(self, n, known=False, tag="x"):
        """A repository of its own for one run, /svn/nN-TAG-1/ (a copy of
        the template; <Location "/svn/nN-"> gives it N 102s); /svnk/... is
        the same under the known-client default."""
        name = "n%d-%s-1" % (n, tag)
        with self._svn_lock:
            d = self.root / "svn" / name
            if not d.exists():
                shutil.copytree(self.root / "svn-template", d)
                run(["chown", "-R", "www-data:www-data", str(d)])
        return "/%s/%s/" % ("svnk" if known else "svn", name)

    def log_lines(self, needle, want=1, timeout=3.0):
        """Access log records whose URL contains needle: dicts."""
        end = time.monotonic() + timeout
        while True:
            out = []
            with open(self.root / "logs" / "access.log", "rb") as f:
                for ln in f.read().decode("latin-1").splitlines():
                    p = ln.split(" ", 10)
                    if len(p) >= 8 and needle in p[7]:
                        ua = p[10] if len(p) > 10 else '"-"'
                        out.append({"port": p[1], "k": int(p[2]),
                                    "sent": None if p[3] == "-" else int(p[3]),
                                    "status": p[4], "proto": p[5],
                                    "method": p[6], "uri": p[7],
                                    "received": p[8] if len(p) > 8 else "-",
                                    "family": p[9] if len(p) > 9 else "-",
                                    "ua": ua[1:-1].replace('\\"', '"')})
            if len(out) >= want or time.monotonic() > end:
                return out
            time.sleep(0.1)

    def forensic(self, needle, method=None):
        """Request headers (forensic log) of the first request with needle
        (and this method)."""
        with open(self.root / "logs" / "forensic.log", "rb") as f:
            for ln in f.read().decode("latin-1").splitlines():
                if ln.startswith("+") and needle in ln and (
                        method is None or
                        ln.split("|", 2)[1].startswith(method + " ")):
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

class Ctx:
    """What a client or proxy job needs: origin, work dir, tools."""

    def __init__(self, origin, work, maxn):
        self.origin, self.work, self.maxn = origin, work, maxn
        self.java_cp = work / "build" / "java"
        self.goclient = work / "build" / "go" / "goclient"
        self.seq = 0
        self.lock = threading.Lock()

    def java_classpath(self):
        return ":".join([str(self.java_cp)] + [
            "%s/%s" % (realclients.JARS, j) for j in realclients.JAVA_CP_LIBS])

    def tag(self, name):
        with self.lock:
            self.seq += 1
            return "%s-%d" % (re.sub(r"[^A-Za-z0-9]", "", name), self.seq)


EXPECT = [body_of(BODY_LEN), body_of(FAST_LEN)]   # the proxy runs


def client_timeout(n):
    return sleep_for(n) / 1000.0 + 60


MODES = ("off", "all", "known")


def client_step(ctx, name, driver, ka, mode, n, upload=None):
    """One run of a client: the slow request (N 102s under mode), then, for
    keep-alive drivers, the fast ones. Checked against the origin's log:
    how many 102s went out, the User-Agent, the connection of each.
    upload "PUT"/"POST": the slow request sends a body with "Expect:
    100-continue" (the forensic log shows whether Expect went out)."""
    tag = ctx.tag(name)
    req = realclients.Req(ctx.origin, ctx.work, mode, n, tag, ka, upload)
    t0 = time.monotonic()
    try:
        res = driver(req, ctx)
    except Exception as e:
        res = [{"status": None, "ok": False,
                "error": "harness: %s: %s" % (type(e).__name__, e)}]
    took = round(time.monotonic() - t0, 1)
    recs = ctx.origin.log_lines("%s-" % tag, want=1,
                                timeout=2 if res[0]["ok"] else 0.5)
    byi = {}
    for x in recs:
        m = re.search(r"[/-]%s-(\d+)(?:[/?.]|$)" % re.escape(tag),
                      x["uri"])
        if m:
            byi.setdefault(int(m.group(1)), []).append(x)
    slow = byi.get(1, [])
    expect = None
    if upload:
        # the upload itself (a WebDAV tool also sends PROPFINDs)
        slow = [x for x in slow if x["method"] == upload] or slow
        h = ctx.origin.forensic("%s-1" % tag, upload)[1]
        expect = {k.lower(): v for k, v in h.items()}.get("expect") \
            if h else None
    sent = max([x["sent"] or 0 for x in slow]) if slow else None
    ports = {x["port"] for x in slow}
    fast = [x for i in range(2, realclients.KA_FAST + 2)
            for x in byi.get(i, [])[:1]]
    same = sum(1 for x in fast if x["port"] in ports)
    ka_ok = all(r["ok"] for r in res[1:]) if ka and len(res) > 1 else None
    step = {"mode": mode, "n": n if mode != "off" else 0, "ok": res[0]["ok"],
            "upload": upload, "expect": expect,
            "received": slow[0]["received"] if slow else None,
            "ka_ok": ka_ok, "sent": sent,
            "requests": len(res),
            "fast_logged": len(fast), "fast_same_conn": same,
            "slow_connections": len(ports),
            "user_agent": slow[0]["ua"] if slow else None,
            "proto": slow[0]["proto"] if slow else None,
            "family": slow[0]["family"] if slow else None,
            "secs": took, "results": res}
    bad = [r for r in res[1:] if not r["ok"]]
    say("  %-24s %-5s N=%-3d %s%s%s%s (%.1fs) %s" % (
        name[:24], mode, step["n"], "ok" if step["ok"] else "FAIL",
        " %s expect=%s" % (upload, expect) if upload else "",
        "" if sent is None else " sent=%s" % sent,
        "" if ka_ok is None else " ka=%s %d/%d same" % (
            "ok" if ka_ok else "FAIL", same, len(fast)), took,
        res[0]["error"] if not step["ok"] else
        (bad[0]["error"] if bad else "")))
    return step


def exact_step(fn, n):
    """fn(n), again (twice at most) if the module sent fewer than n 102s
    (the watchdog skips ticks it is late for, on a busy machine)."""
    for attempt in range(3):
        st = fn(n)
        if not st["ok"] or st["sent"] is None or st["sent"] >= n:
            return st
        if st["sent"] == 0 and st.get("proto") == "HTTP/1.0":
            return st      # the module sends no 102 to HTTP/1.0 requests
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


def client_job(ctx, name, version_fn, driver, ka, how):
    """Baseline (no 102s), every client allowed (cap by bisection), the
    known-client default (with the largest N), for one client."""
    say("client %s" % name)
    try:
        version = version_fn()
    except Exception as e:
        version = "? (%s)" % e
    out = {"kind": "client", "name": name, "version": version, "how": how,
           "keepalive_probe": ka, "maxn": ctx.maxn}
    out["off"] = client_step(ctx, name, driver, ka, "off", BASIC_N)
    cap, steps = bisect_cap(
        lambda n: exact_step(
            lambda m: client_step(ctx, name, driver, ka, "all", m), n),
        ctx.maxn)
    out["cap"] = cap
    out["all"] = steps[min(BASIC_N, ctx.maxn)]
    out["beyond"] = steps.get(cap + 1)
    out["steps"] = [steps[k] for k in sorted(steps)]
    if ctx.origin.known:
        out["known"] = client_step(ctx, name, driver, ka, "known", ctx.maxn)
    else:
        out["known"] = None
    out["uploads"] = upload_flows(ctx, name, out)
    for st in [out["off"], out["all"]] + out["steps"]:
        if st.get("user_agent") is not None:
            out["user_agent"] = st["user_agent"]
            break
    else:
        out["user_agent"] = None
    return out


UPLOAD_METHODS = ("PUT", "POST")


def upload_flows(ctx, name, out):
    """The upload flows of a row that stands for a known family: PUT and
    POST with "Expect: 100-continue", the body, then BASIC_N 102s (all):
    does the client get the real final response, and the next requests on
    its connection? Where the GET cap is below the search limit, also
    N = cap - 1 and N = cap (is the 100 Continue counted toward the cap?).
    Under the known-client default, once with BASIC_N."""
    spec = realclients.UPLOADS.get(name)
    if spec is None:
        return None
    flows = {}
    for m in UPLOAD_METHODS:
        na = realclients.UPLOAD_METHODS_NA.get((name, m))
        if spec[0] is None and len(spec) == 2 or na:
            flows[m] = {"na": na or spec[1]}
            continue
        driver, ka, how = spec
        if driver is None:     # the row's own driver takes COMPAT_UPLOAD
            driver = dict((c[0], c[2]) for c in realclients.CLIENTS)[name]
        f = {"how": how}
        n0 = min(BASIC_N, ctx.maxn)   # the origin has /c/1/ .. /c/maxn/
        f["off"] = client_step(ctx, name, driver, ka, "off", n0, m)
        f["all"] = exact_step(lambda k: client_step(
            ctx, name, driver, ka, "all", k, m), n0)
        cap = out.get("cap")
        if cap is not None and 1 < cap < ctx.maxn:
            f["at_cap"] = {str(k): exact_step(lambda j: client_step(
                ctx, name, driver, ka, "all", j, m), k)
                for k in (cap - 1, cap)}
        if ctx.origin.known:
            f["known"] = client_step(ctx, name, driver, ka, "known", n0, m)
        flows[m] = f
    return flows


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
        # the configuration most guides give
        extra = ("            proxy_http_version 1.1;\n"
                 '            proxy_set_header Connection "";\n'
                 "            proxy_set_header Host $host;\n"
                 "            proxy_set_header X-Real-IP $remote_addr;\n"
                 "            proxy_set_header X-Forwarded-For "
                 "$proxy_add_x_forwarded_for;\n"
                 "            proxy_set_header X-Forwarded-Proto $scheme;\n"
                 ) if v11 else ""
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
    log stdout format raw local0
defaults
    mode http
    log global
    option httplog
    option forwardfor
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
           'CustomLog "%s/logs/access.log" "%%h %%l %%u %%t \\"%%r\\" '
           '%%>s %%b"' % d,
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
""" % dict(op=op, t=t))
    (d / "vn").mkdir(exist_ok=True)
    run(["chmod", "-R", "a+rX", str(d)])
    return ["varnishd", "-F", "-a", "127.0.0.1:%d" % port, "-T", "none",
            "-f", str(d / "default.vcl"), "-n", str(d / "vn"),
            "-s", "malloc,32m"]


def lighttpd_conf(d, port, op, t):
    (d / "www").mkdir(exist_ok=True)
    (d / "lighttpd.conf").write_text("""server.modules = ( "mod_proxy", "mod_accesslog" )
accesslog.filename = "%(d)s/access.log"
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
    log {
        output file %(d)s/access.log
    }
    reverse_proxy 127.0.0.1:%(op)d {
        transport http {
            %(which)s %(t)ds
        }
    }
}
""" % dict(d=d, port=port, op=op, t=t, which=which))
    return ["caddy", "run", "--adapter", "caddyfile", "--config",
            str(d / "Caddyfile")]


def nghttpx_conf(d, port, op, t):
    # nghttpx (nghttp2-proxy) with its defaults: HTTP/1.1 in and out
    return ["nghttpx", "--frontend=127.0.0.1,%d;no-tls" % port,
            "--backend=127.0.0.1,%d" % op, "--workers=1",
            "--backend-read-timeout=%ds" % t,
            "--accesslog-file=%s/access.log" % d,
            "--errorlog-file=%s/error.log" % d, "--pid-file=%s/pid" % d,
            "--conf=/dev/null"]


def tinyproxy_conf(d, port, op, t):
    # tinyproxy as a reverse proxy (ReversePath, ReverseOnly)
    (d / "tinyproxy.conf").write_text("""Port %(port)d
Listen 127.0.0.1
Timeout %(t)d
LogFile "%(d)s/tinyproxy.log"
LogLevel Info
PidFile "%(d)s/tinyproxy.pid"
MaxClients 100
Allow 127.0.0.1
ReversePath "/" "http://127.0.0.1:%(op)d/"
ReverseOnly Yes
""" % dict(d=d, port=port, op=op, t=t))
    run(["chown", "-R", "nobody", str(d)])
    return ["tinyproxy", "-d", "-c", str(d / "tinyproxy.conf")]


def trafficserver_conf(d, port, op, t):
    """Apache Traffic Server with Debian's /etc/trafficserver (its
    records.config: Via and X-Forwarded-For on), a runroot of its own
    under d: another port, the cache in d, a reverse-proxy remap rule."""
    etc = d / "etc"
    shutil.copytree("/etc/trafficserver", etc)
    for sub in ("cache", "var", "run", "log"):
        (d / sub).mkdir()
    (d / "runroot.yaml").write_text(
        "prefix: /usr\nexec_prefix: /usr\nbindir: /usr/bin\n"
        "sbindir: /usr/sbin\nincludedir: /usr/include\n"
        "libdir: /usr/lib/trafficserver\n"
        "libexecdir: /usr/lib/trafficserver/modules\n"
        "sysconfdir: %(d)s/etc\ndatadir: %(d)s/cache\n"
        "localstatedir: %(d)s/var\nruntimedir: %(d)s/run\n"
        "logdir: %(d)s/log\ncachedir: %(d)s/cache\n" % dict(d=d))
    rec = (etc / "records.config").read_text()
    rec = re.sub(r"^CONFIG proxy.config.http.server_ports .*$",
                 "CONFIG proxy.config.http.server_ports STRING %d" % port,
                 rec, flags=re.M)
    rec = re.sub(r"^CONFIG proxy.config.admin.user_id .*$",
                 "CONFIG proxy.config.admin.user_id STRING #-1", rec,
                 flags=re.M)
    rec += ("CONFIG proxy.config.http.transaction_no_activity_timeout_out "
            "INT %d\n" % t)
    (etc / "records.config").write_text(rec)
    (etc / "storage.config").write_text("%s/cache 64M\n" % d)
    (etc / "remap.config").write_text(
        "map http://127.0.0.1:%d/ http://127.0.0.1:%d/\n" % (port, op))
    return ["traffic_server", "--run-root=%s/runroot.yaml" % d]


def first_line(cmd):
    return run(cmd, check=False).strip().splitlines()[0]


PROXIES = [
    ("nginx (default: HTTP/1.0 upstream)",
     lambda: first_line(["nginx", "-v"]).split(": ")[-1], nginx_conf(False),
     "proxy_read_timeout"),
    ("nginx (HTTP/1.1 upstream, usual headers)",
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
    ("nghttpx", lambda: first_line(["nghttpx", "--version"]), nghttpx_conf,
     "--backend-read-timeout"),
    ("tinyproxy (reverse)", lambda: first_line(["tinyproxy", "-v"]),
     tinyproxy_conf, "Timeout"),
    ("trafficserver", lambda: re.sub(
        r"^.*?(Traffic Server [0-9.]+).*$", r"\1",
        first_line(["traffic_server", "-V"]).replace(
            "traffic_server: using root directory", "")),
     trafficserver_conf, "transaction_no_activity_timeout_out"),
]


def start_proxy(ctx, name, conf_fn, timeout_s, origin_port=None):
    d = Path(tempfile.mkdtemp(prefix="proxy-", dir=ctx.work))
    os.chmod(d, 0o755)
    port = free_port()
    argv = conf_fn(d, port, origin_port or ctx.origin.port, timeout_s)
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


FRONT_MODES = ("off", "all", "default", "declared")


def front_log(d, tag):
    """The front's own log lines about the slow request (its access log,
    or what it wrote to stdout; varnishncsa for varnish)."""
    lines = []
    for f in sorted(d.rglob("*")):
        if f.is_file() and f.suffix in (".log", "") and f.stat().st_size \
                < 50_000_000 and ("log" in f.name or f.name == "stdout"):
            try:
                lines += [ln for ln in f.read_text(errors="replace")
                          .splitlines() if "%s-1" % tag in ln]
            except OSError:
                pass
    if (d / "vn").is_dir():
        out = run(["varnishncsa", "-n", str(d / "vn"), "-d"], timeout=20,
                  check=False)
        lines += [ln for ln in out.splitlines() if "%s-1" % tag in ln]
    return [re.sub(r"\s+", " ", ln)[-300:] for ln in lines[-3:]]


def front_curl(ctx, name, port, mode, d, label=None):
    """curl through the front: the slow request (BASIC_N 102s from the
    origin under mode), then a fast one on the same curl connection."""
    tag = ctx.tag(name)
    slow = {"all": "/c/%d/" % min(BASIC_N, ctx.maxn),
            "off": "/c/0/"}.get(mode, "/d/") + \
        "%s-1?sleep=%d&len=%d" % (tag, sleep_for(BASIC_N), BODY_LEN)
    paths = [slow, "/c/0/%s-2?len=%d" % (tag, FAST_LEN)]
    out_d = Path(tempfile.mkdtemp(prefix="curl-", dir=d))
    argv = ["curl", "-sS", "-v", "--max-time", "30", "-w",
            "RESULT %{urlnum} %{http_code} %{num_connects}\\n"]
    for i, pth in enumerate(paths, 1):
        argv += ["-o", str(out_d / str(i)),
                 "http://127.0.0.1:%d%s" % (port, pth)]
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        out, err, rc = r.stdout.decode(), r.stderr.decode("latin-1"), \
            r.returncode
    except subprocess.TimeoutExpired:
        out, err, rc = "", "killed", None
    secs = round(time.monotonic() - t0, 1)
    res = {"mode": mode, "rc": rc, "secs": secs}
    sts = dict((int(a) + 1, (b, c)) for a, b, c in
               re.findall(r"^RESULT (\d) (\d{3}) (\d+)$", out, re.M))
    # 1xx heads curl saw, per request: split the verbose log at each request
    parts = re.split(r"^> (?:GET|HEAD) ", err, flags=re.M)[1:]
    for i in (1, 2):
        f = out_d / str(i)
        body = f.read_bytes() if f.exists() else None
        st, conns = sts.get(i, (None, None))
        part = parts[i - 1] if len(parts) >= i else ""
        res["r%d" % i] = {
            "status": int(st) if st and st != "000" else None,
            "ok": st == "200" and body == EXPECT[i - 1],
            "bytes": None if body is None else len(body),
            "interim": len(re.findall(r"^< HTTP/1\.[01] 1\d\d", part,
                                      re.M)),
            "new_connection": conns not in (None, "0")}
    # a final response long after the handler ended (nginx with an
    # HTTP/1.1 upstream: only when the origin closes the kept-alive
    # connection) is no success
    if res["r1"]["ok"] and secs > sleep_for(BASIC_N) / 1000.0 + 5:
        res["r1"]["ok"] = False
        res["late"] = True
    res["error"] = "final response only after %ss" % secs \
        if res.get("late") else None if res["r1"]["ok"] else (
        [ln[len("curl: "):] for ln in err.splitlines()
         if ln.startswith("curl: ")]
        or ["-"])[-1][:120]
    recs = ctx.origin.log_lines("/%s-1" % tag, want=1, timeout=2)
    res["origin"] = recs[0] if recs else None
    proto, hdrs = ctx.origin.forensic("/%s-1" % tag)
    res["upstream_request"] = proto
    res["upstream_headers"] = hdrs
    res["front_log"] = front_log(d, tag)
    r1, r2 = res["r1"], res["r2"]
    say("  %-24s curl %-8s: %s, %s 102s at curl, origin sent %s; second: "
        "%s%s" % (name[:24], label or mode, r1["status"] if r1["ok"] else
                  "FAIL (%s, %s)" % (r1["status"], res["error"]),
                  r1["interim"], res["origin"]["sent"] if res["origin"]
                  else "?", "ok" if r2["ok"] else "FAIL (%s)" % r2["status"],
                  " (new connection)" if r2["new_connection"] else ""))
    return res


def front_runs(ctx, name, conf_fn):
    """The front in front of the module under ProcessingClients all, the
    module's default policy, and the default policy with the front
    declared (DECLARE; n/a when the module lacks the directive)."""
    out = {}
    server, d = start_proxy(ctx, name, conf_fn, 300)
    try:
        for mode in ("off", "all", "default"):
            out[mode] = front_curl(ctx, name, server.port, mode, d)
    finally:
        server.stop()
    if ctx.origin.declared:
        server, d = start_proxy(ctx, name, conf_fn, 300,
                                ctx.origin.declared_port)
        try:
            out["declared"] = front_curl(ctx, name, server.port, "default",
                                         d, "declared")
            out["declared"]["mode"] = "declared"
        finally:
            server.stop()
    else:
        out["declared"] = {"na": "module lacks ProcessingTrustedProxy"}
    return out


def proxy_job(ctx, name, version_fn, conf_fn, timeout_name):
    say("proxy %s" % name)
    try:
        version = version_fn()
    except Exception as e:
        version = "? (%s)" % e
    res = {"kind": "proxy", "name": name, "version": version,
           "timeout_setting": "%s %ds" % (timeout_name, PROXY_T),
           "maxn": ctx.maxn}
    res["fronts"] = front_runs(ctx, name, conf_fn)
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
# Report: one compact Markdown file (no generated result file over 20 KB in
# the tree): every row and measured value, short cells explained once by
# each section's legend; the JSON keeps every step in full.

UA_CUT = 45     # User-Agents longer than this are cut (with "...")


def short(err, n=40):
    """One short reason for a table cell: no temp paths, URLs, addresses
    or pointers, at most n characters."""
    e = err or "?"
    known = [(r"too many 1xx", "too many 1xx"),
             (r"status 102", "102 as final"),
             (r"Too many interim responses", "too many interim responses"),
             (r"expect header not supported", "refuses an Expect header"),
             (r"HTTP/1\.1 102 Processing|Failed to fetch .* 102 Processing",
              "102 as final"),
             (r"killed after", "hung (killed)"),
             (r"connection closed by peer", "closed, no final response"),
             (r"\(28\) Operation timed out", "curl timed out (28)")]
    for rx, what in known:
        if re.search(rx, e):
            return what
    m = re.match(r"final response only after (\S+)s$", e)
    if m:
        return "final only after %ss" % m.group(1)
    m = re.match(r"(exit \S+(?: \(\w+\))?, (?:no file|\d+ bytes))[;:]", e)
    if m:
        return m.group(1)
    m = re.match(r"the origin sent no 102 \(request was .* (HTTP/1\.0)\)",
                 e)
    if m:
        return "origin sent no 102: HTTP/1.0 upstream"
    e = re.sub(r"https?://\S+", "URL", e)
    e = re.sub(r"/tmp/\S+", "FILE", e)
    e = re.sub(r"0x[0-9a-f]+", "", e)
    e = re.sub(r"\s+", " ", e).strip()
    return e[:n] + ("..." if len(e) > n else "")


def cell_safe(x):
    return str(x).replace("|", "/").replace("\n", " ")


def row(*cells):
    return "| %s |" % " | ".join(cell_safe(x) for x in cells)


def mode_cell(st):
    """ok/FAIL, the 102s the module sent, why it failed, [the family
    matched] (known run)."""
    if st is None:
        return "-"
    cell = "ok" if st["ok"] else "FAIL"
    if st["sent"] is not None and st["mode"] != "off":
        cell += " %s" % st["sent"]
        if st["sent"] == 0 and st.get("proto") == "HTTP/1.0":
            cell += " (HTTP/1.0)"
    if not st["ok"]:
        cell += ": %s" % short(st["results"][0]["error"])
    if st["mode"] == "known" and st.get("family") not in (None, "-"):
        cell += " [%s]" % st["family"]
    return cell


def ka_cell(st):
    """x/y fast requests on the slow request's connection; FAIL: how many
    wrong, the first of them."""
    if st is None or st.get("ka_ok") is None:
        return "-"
    conn = "%d/%d" % (st["fast_same_conn"], st["fast_logged"])
    if st["ka_ok"]:
        return conn
    bad = [(i + 2, r) for i, r in enumerate(st["results"][1:])
           if not r["ok"]]
    return "FAIL %d of %d (req %d: %s); %s" % (
        len(bad), len(st["results"]) - 1, bad[0][0],
        short(bad[0][1]["error"]), conn)


def client_verdict(r):
    """works / BREAKS under 'every client allowed' (N = BASIC_N)."""
    st = r["all"]
    if not r["off"]["ok"]:
        return "driver fails"
    if st["ok"] and st.get("ka_ok") in (True, None):
        return "works"
    return "BREAKS"


def cap_str(cap, maxn):
    if cap is None:
        return "n/a"
    return ">=%d" % maxn if cap >= maxn else str(cap)


def name_version(name, version):
    """'curl 7.88.1'; a version that starts with the row's name stands
    alone ('w3m/0.5.3...')."""
    v = re.sub(r"^Version:\s*", "", str(version or "?"))
    if v.startswith(name) and v[len(name):len(name) + 1] in (" ", "/"):
        return v
    return "%s %s" % (name, v)


def ua_cell(ua):
    if ua in ("-", ""):
        return "(none)"
    if ua is None:
        return "?"
    return "`%s`" % (ua[:UA_CUT - 3] + "..." if len(ua) > UA_CUT else ua)


def names(rows):
    return ", ".join(rows) or "none"


def write_report(results, out_path, started, argv, maxn, extra=None,
                 client_maxn=None, json_name="build/compat/results.json"):
    client_maxn = client_maxn or maxn
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = ["# mod_processing: client and reverse-proxy compatibility",
             "",
             "Generated by `compat/run-compat` (`make -f Makefile.apxs "
             "compat`) on %s UTC, %s, in %.0f s." % (
                 now.strftime("%Y-%m-%d %H:%M"), os_release(),
                 time.time() - started),
             "Command: `%s`" % " ".join(argv),
             "",
             "Origin: Apache %s (event MPM), this tree's module, handler "
             "mod_proc_test. **N 102s**: ProcessingDelay 0, "
             "ProcessingInterval %dms, ProcessingMaxCount N, handler time "
             "N x %d ms x 1.25 + %d ms. **sent**: the module's own count "
             "(`%%{processing-sent}n`). **cap**: the largest N for which the "
             "client or proxy still got the right final response (bisected "
             "over 0..%d for clients, 0..%d for proxies; '>=N': no cap up to "
             "that limit). '102 as final': the client took a 102 for the "
             "final response. '-': not measured or not applicable." % (
                 first_line(["apache2", "-v"]).split("/")[-1],
                 INTERVAL_MS, INTERVAL_MS, TAIL_MS, client_maxn, maxn),
             ""]
    clients = [r for r in results if r.get("kind") == "client"]
    proxies = [r for r in results if r.get("kind") == "proxy"]
    errors = [r for r in results if r.get("kind") == "error"]
    if clients:
        known = any(r.get("known") for r in clients)
        offbad = [r for r in clients if not r["off"]["ok"]]
        lines += ["## Clients", "",
                  "Each client as its users run it (default User-Agent, "
                  "cut at %d characters, and settings). **all**: 102s to "
                  "every client (`%s`), %d 102s. **keep-alive** (under all): "
                  "the slow request, then %d fast ones, each with a body of "
                  "its own length; x/y: fast requests on the slow request's "
                  "connection / fast requests logged; FAIL n of %d (req k: "
                  "why): n answers wrong, the first to request k. **known**: "
                  "the default `ProcessingClients known`, ProcessingMaxCount "
                  "%d%s; [family]: the known family it matched. Cells: ok or "
                  "FAIL, the 102s sent, why; cap "
                  "(at N: why N failed). The control without 102s "
                  "(`Processing Off`) %s." % (
                      UA_CUT,
                      "ProcessingClients all" if known else
                      "Processing On, no processing-clients.conf", BASIC_N,
                      realclients.KA_FAST, realclients.KA_FAST, client_maxn,
                      "" if known else ": **not measured**, this tree's "
                      "module has no ProcessingClients directive yet",
                      "worked for every client" if not offbad else
                      "failed (driver broken, the row's other cells do not "
                      "count) for: " + ", ".join(
                          "%s (%s)" % (r["name"], short(
                              r["off"]["results"][0]["error"]))
                          for r in offbad)),
                  "",
                  "| client, version | User-Agent | all | keep-alive | cap "
                  "| known |",
                  "|---|---|---|---|---|---|"]
        for r in clients:
            cap = cap_str(r["cap"], r["maxn"])
            if r["beyond"] and r["cap"] < r["maxn"]:
                cap += " (at %d: %s)" % (
                    r["beyond"]["n"],
                    short(r["beyond"]["results"][0]["error"]))
            lines.append(row(
                name_version(r["name"], r["version"]),
                ua_cell(r["user_agent"]), mode_cell(r["all"]),
                ka_cell(r["all"]), cap, mode_cell(r.get("known"))))
        lines.append("")
        broke = [r["name"] for r in clients
                 if client_verdict(r) == "BREAKS"]
        lines += ["- **Break** on 102s (request or keep-alive): %s." %
                  names(broke)]
        anon = [r["name"] for r in clients if client_verdict(r) == "works"
                and r["all"].get("sent") and r["user_agent"] in ("", "-")]
        if anon:
            lines += ["- **No User-Agent**, handle 102s (a known-client list "
                      "cannot tell them from Python's http.client, which "
                      "breaks): %s." % names(anon)]
        if known:
            lost = [r["name"] for r in clients if r.get("known") and
                    client_verdict(r) == "works" and r["all"].get("sent")
                    and not r["known"].get("sent")]
            kbad = [r["name"] for r in clients if r.get("known") and
                    (not r["known"]["ok"] or r["known"].get("ka_ok") is False)]
            lines += ["- **Known default**: fail%s: %s; handle 102s but get "
                      "none (`Prefer: processing` or `SetEnvIf ... "
                      "force-processing` allows them): %s." % (
                          "s" if len(kbad) == 1 else "", names(kbad),
                          names(lost))]
        h10 = [r["name"] for r in clients if r["all"].get("sent") == 0
               and r["all"].get("proto") == "HTTP/1.0"]
        if h10:
            lines += ["- **HTTP/1.0** requests, so no 102s in any mode: %s."
                      % names(h10)]
        lines.append("")
    if clients and any(r.get("uploads") for r in clients):
        lines += flows_section(clients, client_maxn)
    if proxies:
        lines += proxies_section(proxies)
    if extra:
        lines += extra
    if errors:
        lines += ["## Errors", ""]
        for r in errors:
            lines.append("- %s: %s" % (r["name"], r["error"]))
        lines.append("")
    lines += ["Per-step details: `%s` (not kept in the tree)." % json_name]
    Path(out_path).write_text("\n".join(lines) + "\n")


def flow_cell(st, off=None, na=str):
    """ok / ok+ (the next requests on its connection too) / FAIL: why, for
    one upload or GET step under all; na(reason) when the client cannot
    make the flow."""
    if st is None:
        return "-"
    if off is not None and not off["ok"]:
        return na(short(off["results"][0]["error"]))
    bad = [r for r in st["results"][1:] if not r["ok"]]
    if st["ok"] and not bad:
        cell = "ok+" if st.get("ka_ok") and st.get("fast_same_conn") \
            else "ok"
    elif st["ok"]:
        cell = "FAIL next: %s" % short(bad[0]["error"])
    else:
        cell = "FAIL: %s" % short(st["results"][0]["error"])
    if st.get("upload") and not st.get("expect"):
        cell += " (no Expect)"
    if st.get("sent") is not None and st["sent"] != st["n"]:
        cell += " (%s sent)" % st["sent"]
    return cell


def flows_section(clients, client_maxn):
    """Family x {GET, PUT+Expect, POST+Expect} under ProcessingClients
    all (BASIC_N 102s), with the 1xx cap checked on the upload flows."""
    import known_clients
    rows = {r["name"]: r for r in clients}
    reasons = []

    def na(why):
        if why not in reasons:
            reasons.append(why)
        return "n/a %d" % (reasons.index(why) + 1)
    body = []
    for _, _, fam_rows in known_clients.FAMILIES:
        for n in fam_rows:
            r = rows.get(n)
            if r is None:
                continue
            up = r.get("uploads") or {}
            cells, caps = [], []
            dflt = ["ok" if (r.get("known") or {}).get("ok") else
                    "-" if not r.get("known") else "FAIL"]
            for m in UPLOAD_METHODS:
                f = up.get(m)
                if f is None:
                    cells.append("-")
                    dflt.append("-")
                    continue
                if "na" in f:
                    cells.append(na(f["na"]))
                    dflt.append("n/a")
                    continue
                cells.append(flow_cell(f["all"], f["off"], na))
                k = f.get("known")
                dflt.append("-" if k is None or not f["off"]["ok"] else
                            "ok" if k["ok"] else "FAIL")
                groups = []         # [what, [N, ...]], in order of N
                for kk, st in sorted((f.get("at_cap") or {}).items(),
                                     key=lambda x: int(x[0])):
                    what = "ok" if st["ok"] else short(
                        st["results"][0]["error"])
                    if groups and groups[-1][0] == what:
                        groups[-1][1].append(kk)
                    else:
                        groups.append([what, [kk]])
                if groups:
                    caps.append("%s %s" % (m, ", ".join(
                        "%s: %s" % (",".join(ks), what)
                        for what, ks in groups)))
            body.append(row(n, flow_cell(r["all"], r["off"], na), cells[0],
                            cells[1], "; ".join(caps) or "-",
                            "/".join(dflt)))
    return ["## Request flows per known family", "",
            "The rows that stand for a known family, under `ProcessingClients "
            "all` with %d 102s. **GET**: the all run above; ok+: the %d GETs "
            "that followed came on the same connection. **PUT/POST+Expect**: "
            "a %d-byte body with `Expect: 100-continue` (httpd sends `100 "
            "Continue` when the handler reads the body, the module arms at "
            "its end), then the 102s and the final 200 with its body (WebDAV "
            "tools: 201, the file written). **1xx cap**: where the GET cap is "
            "below %d, N = cap-1 and N = cap 102s after the `100 Continue`. "
            "**default**: `ProcessingClients known`, %d 102s, GET/PUT/POST. "
            "n/a: the client cannot make the flow (or refuses it without the "
            "module): %s." % (
                BASIC_N, realclients.KA_FAST, realclients.UPLOAD_LEN,
                client_maxn, BASIC_N,
                "; ".join("%d %s" % (i + 1, w)
                          for i, w in enumerate(reasons)) or "none"),
            "",
            "| client | GET | PUT+Expect | POST+Expect | 1xx cap with upload "
            "| default |",
            "|---|---|---|---|---|---|"] + body + [""]


def front_cell(x):
    """ok/FAIL and status, 1xx curl saw / 102s the origin sent, the next
    request on the same curl connection."""
    if x is None:
        return "-"
    if "na" in x:
        return "n/a (%s)" % x["na"]
    r1, r2 = x["r1"], x["r2"]
    if r1["ok"]:
        cell = "ok %s" % r1["status"]
    else:
        cell = "FAIL %s" % (r1["status"] or "no response")
        if x.get("error") not in (None, "-"):
            cell += " (%s)" % short(x["error"])
    return "%s, %s/%s, next %s" % (
        cell, r1["interim"], (x["origin"] or {}).get("sent") or 0,
        "ok" if r2["ok"] else "FAIL %s" % (r2["status"] or "none"))


def proxy_headers(r):
    """What the proxy added to the origin request (forensic log), besides
    Host and what the client sent: the front run with curl, and any other
    header of the timeout run; values for Via, Connection and
    Accept-Encoding only (the others: addresses, ports, ids)."""
    a = (r.get("fronts") or {}).get("all") or {}
    t = ((r.get("timeout_runs") or {}).get("on") or {})
    client_h = {"host", "user-agent", "accept"}
    seen, out = set(), []
    for h in (a.get("upstream_headers") or {},
              t.get("upstream_headers") or {}):
        for k, v in h.items():
            if k.lower() in client_h or k.lower() in seen:
                continue
            seen.add(k.lower())
            out.append("%s: %s" % (k, re.sub(
                r"\[[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\]", "[...]",
                v)) if k.lower() in ("via", "connection", "accept-encoding")
                else k)
    return "`%s`" % ", ".join(out) if out else "none"


def proxies_section(proxies):
    """One row per proxy: as a front with curl (fronts), the timeout runs
    with a raw client and the proxy's cap."""
    fr = [r.get("fronts") or {} for r in proxies]
    ctrl = {front_cell(f.get("off")) for f in fr}
    ctrl_col = len(ctrl) != 1 or not next(iter(ctrl)).startswith("ok ")
    decl = {json.dumps(f.get("declared"), sort_keys=True) for f in fr}
    decl_na = len(decl) == 1 and "na" in (fr[0].get("declared") or {})
    head = ["proxy", "upstream", "headers added"] + \
        (["no 102s"] if ctrl_col else []) + ["all", "default"] + \
        ([] if decl_na else ["declared"]) + \
        ["log", "timeout: module", "no module", "fwd", "cap"]
    out = ["## Reverse proxies", "",
           "**As a front**: curl through the proxy (its usual configuration, "
           "upstream timeout 300 s), the slow request (%d 102s from the "
           "origin), then a fast one on the same curl connection. **all**: "
           "the origin under `ProcessingClients all`; **default**: the "
           "module's default policy%s (%s: the same result as that "
           "column). Cells: "
           "ok/FAIL and status, 1xx heads curl saw / 102s the origin sent, "
           "the next request. %s%s**log**: the status in the front's own "
           "log under all ('-': no line, '?': none in it). **headers "
           "added**: to the origin request (forensic log), besides Host and "
           "what the client sent; values of Via, Connection and "
           "Accept-Encoding only. **upstream**: its request's protocol." % (
               BASIC_N,
               "" if decl_na else "; **declared**: the default with `%s` "
               "in the origin's server" % DECLARE,
               "'= all'" if decl_na else "'= all', '= default'",
               "" if ctrl_col else "The control without 102s "
               "(`Processing Off`) gave %s through every front. " %
               next(iter(ctrl)),
               "**declared** (`%s` in the origin's server): %s on every "
               "front. " % (DECLARE, front_cell(fr[0].get("declared")))
               if decl_na else ""),
           "",
           "**Timeout runs**: a raw client, proxy upstream timeout %ds, "
           "handler %d ms, a 102 every %s from %s: the 102s come more often "
           "than the timeout, the final response later; **no module**: the "
           "same with `Processing Off` (the status when the proxy timed "
           "out); **fwd**: 102s forwarded / sent. **cap**: upstream timeout "
           "300 s, N 102s 100 ms apart, counted by a raw client." % (
               PROXY_T, SLOW_T_MS, SLOW_T_INTERVAL, SLOW_T_INTERVAL),
           "",
           "| %s |" % " | ".join(head),
           "|%s" % ("---|" * len(head))]

    def same(x, a, d):
        return "= all" if x == a else "= default" if x == d else x
    for r, f in zip(proxies, fr):
        tr = r.get("timeout_runs") or {}
        on, off = tr.get("on"), tr.get("off")
        up = ((f.get("all") or {}).get("upstream_request") or
              (on or {}).get("upstream_request") or "?").split(" ")[-1]
        a, d = front_cell(f.get("all")), front_cell(f.get("default"))
        log = ((f.get("all") or {}).get("front_log") or ["-"])[-1]
        m = re.search(r'" (\d{3}) |TCP_\w+/(\d{3})| (\d{3}) \d+ - - |'
                      r'"status":(\d{3})', log)
        logcell = next(g for g in m.groups() if g) if m else \
            "-" if log == "-" else "?"
        cells = [r["name"], up, proxy_headers(r)] + \
            ([front_cell(f.get("off"))] if ctrl_col else []) + \
            [a, "= all" if d == a and f.get("default") else d] + \
            ([] if decl_na else [same(front_cell(f.get("declared")), a, d)]) \
            + [logcell]
        if on and off:
            sent = (on["origin"]["sent"] or 0) if on["origin"] else "?"
            cells += [("ok %s" % on["first"]["status"]) if on["first"]["ok"]
                      else "FAIL %s" % (on["first"]["status"] or
                                        "no response"),
                      ("ok %s" % off["first"]["status"]) if off["first"]["ok"]
                      else "%s" % (off["first"]["status"] or "no response"),
                      "%s/%s" % (on["first"]["interim"], sent)]
        else:
            cells += ["-", "-", "-"]
        cells.append(cap_str(r.get("cap"), r["maxn"]) +
                     ("" if r.get("cap") is not None else
                      " (%s)" % short(r.get("cap_note", ""))))
        out.append(row(*cells))
    vers = []
    for r in proxies:
        if r["version"] not in vers:
            vers.append(r["version"])
    out += ["", "Versions: %s." % "; ".join(cell_safe(v) for v in vers), ""]
    return out


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
    """Java and Go clients; one that does not build is reported by its
    runs (java: class not found), the others still run."""
    j = work / "build" / "java"
    j.mkdir(parents=True, exist_ok=True)
    cp = ":".join("%s/%s" % (realclients.JARS, x)
                  for x in realclients.JAVA_CP_LIBS)
    srcs = [HERE / "clients" / "JavaClients.java"]
    try:
        run(["javac", "-nowarn", "-d", str(j), "-cp", cp] + [str(x) for x in srcs],
            timeout=300)
        for extra in ("ApacheHc4", "ApacheHc5", "OkHttp3"):
            try:
                run(["javac", "-nowarn", "-d", str(j), "-cp", "%s:%s" % (j, cp),
                     str(HERE / "clients" / (extra + ".java"))], timeout=300)
            except Exception as e:
                say("java client %s not built: %s" % (extra, e))
    except Exception as e:
        say("java clients not built: %s" % e)
    g = work / "build" / "go"
    g.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "clients" / "goclient.go", g / "goclient.go")
    env = dict(os.environ, GOCACHE=str(g / "cache"), GOPATH=str(g / "path"),
               GO111MODULE="off", GOFLAGS="", GOPROXY="off")
    try:
        run(["go", "build", "-o", "goclient", "goclient.go"], cwd=g, env=env,
            timeout=600)
    except Exception as e:
        say("go client not built: %s" % e)


def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all",
                    help="all (default) or origin")
    ap.add_argument("--only", default="",
                    help="comma-separated substrings of client/proxy names")
    ap.add_argument("--max", type=int, default=128,
                    help="largest N tried in a client's cap search")
    ap.add_argument("--proxy-max", type=int, default=MODULE_MAX,
                    help="largest N tried in a proxy's cap search")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-proxies", action="store_true",
                    help="measure the clients only")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory under /tmp")
    ap.add_argument("--out", default=str(HERE / "results.md"))
    ap.add_argument("--json", default=str(MAIN / "build" / "compat" /
                                          "results.json"),
                    help="raw results (default build/compat/results.json, "
                    "outside git)")
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
    cmaxn = max(1, min(args.max, MODULE_MAX))
    maxn = max(1, min(args.proxy_max, MODULE_MAX))
    origin = Origin(work, max(maxn, cmaxn), cmaxn)
    results = []
    try:
        origin.build()
        origin.start()
        if args.what == "origin":
            say("origin up; Ctrl-C to stop")
            while True:
                time.sleep(3600)
        say("ProcessingClients: %s" % (
            "known here (the known-client column is measured)"
            if origin.known else "not in this module (known column skipped)"))
        build_clients(work)
        ctx = Ctx(origin, work, cmaxn)
        pctx = Ctx(origin, work, maxn)
        only = [s for s in args.only.split(",") if s]

        def chosen(name):
            return not only or any(s.lower() in name.lower() for s in only)
        jobs = []
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for name, vf, fn, ka, how in realclients.CLIENTS:
                if chosen(name):
                    jobs.append((name, pool.submit(client_job, ctx, name, vf,
                                                   fn, ka, how)))
            for name, vf, cf, tn in PROXIES:
                if chosen(name) and not args.no_proxies:
                    jobs.append((name, pool.submit(proxy_job, pctx, name, vf,
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
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1,
                                              default=str) + "\n")
        if results:
            jn = os.path.relpath(args.json, MAIN)
            write_report(results, args.out, started,
                         ["compat/run-compat"] + sys.argv[1:], maxn,
                         client_maxn=cmaxn,
                         json_name=jn if not jn.startswith("..") else
                         args.json)
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
