"""The test httpd for mod_processing: server root, configuration, start and
stop, error-log checks and request helpers.

The server root lives under /tmp/mod_processing-test-XXXX (mode 0755) rather
than pytest's tmp_path, which is private to root: httpd's children run as
www-data and must read it.

Which httpd: by default Debian's apache2 (/usr/sbin/apache2, modules from
/usr/lib/apache2/modules, /usr/bin/apxs) and the module built in ../.libs.
Another httpd is given by its apxs, and every path is then taken from it:

  PROC_HTTPD_ROOT  an httpd install prefix: its apxs is $PROC_HTTPD_ROOT/bin/apxs
  PROC_APXS        or that apxs itself (e.g. RHEL's /usr/bin/apxs)
                   binary = apxs -q SBINDIR/TARGET, modules = apxs -q LIBEXECDIR,
                   mime.types from apxs -q SYSCONFDIR (else /etc/mime.types)
  PROC_MODULE_SO   the mod_processing.so to load (default ../.libs/...), built
                   with that apxs
  PROC_BUILD_DIR   where the test module is built (a copy of its source;
                   default test/modules itself)

test/matrix/run-matrix sets them for each httpd of the version matrix.
"""

import itertools
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time

import pytest

from proc.http1 import Connection, ProtocolError


def _apxs_query(apxs, var):
    p = subprocess.run([apxs, "-q", var], capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError(f"'{apxs} -q {var}' failed: {p.stderr.strip()}")
    return p.stdout.strip()


def _layout():
    """(httpd binary, apxs, modules directory, mime.types) of the httpd
    under test: Debian's apache2 unless PROC_HTTPD_ROOT or PROC_APXS names
    another one."""
    apxs = os.environ.get("PROC_APXS")
    root = os.environ.get("PROC_HTTPD_ROOT")
    if not apxs and root:
        apxs = os.path.join(root, "bin", "apxs")
    if not apxs:
        return ((shutil.which("apache2", path="/usr/sbin:/usr/bin")
                 or "/usr/sbin/apache2"),
                shutil.which("apxs", path="/usr/bin:/usr/sbin")
                or "/usr/bin/apxs",
                "/usr/lib/apache2/modules", "/etc/mime.types")
    if not os.access(apxs, os.X_OK):
        raise RuntimeError(f"PROC_APXS/PROC_HTTPD_ROOT: no apxs at {apxs}")
    httpd = os.path.join(_apxs_query(apxs, "SBINDIR"),
                         _apxs_query(apxs, "TARGET"))
    mime = os.path.join(_apxs_query(apxs, "SYSCONFDIR"), "mime.types")
    if not os.path.exists(mime):
        mime = "/etc/mime.types"
    return httpd, apxs, _apxs_query(apxs, "LIBEXECDIR"), mime


# APACHE2 keeps its name: it is whichever httpd binary is under test.
APACHE2, APXS, MODULES_DIR, MIME_TYPES = _layout()
_OTHER_HTTPD = bool(os.environ.get("PROC_APXS")
                    or os.environ.get("PROC_HTTPD_ROOT"))
MPMS = ("event", "worker", "prefork")

# Loaded in every configuration (and mod_log_config, mod_unixd: built into
# Debian's apache2, loaded by base_conf where they are shared modules).
BASE_MODULES = ("authz_core", "authz_host", "mime", "alias", "dir", "env",
                "setenvif", "headers", "status", "dav", "dav_fs", "cgid")

# What an error log must never contain, whatever the test says.
FATAL_RE = re.compile(r"exit signal|Segmentation|AH00052|AddressSanitizer|"
                      r"double free|corrupted|stack smashing")
# Lines at these levels fail a test unless the test said to expect them.
BAD_LEVEL_RE = re.compile(
    r"^\[[^\]]*\] \[[\w-]*:(warn|error|crit|alert|emerg)\]")

SLOW_CGI = """#!/bin/sh
# A CGI that thinks before it answers.
sleep 1
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "cgi slept 1s"
echo "pid $$"
"""

SLOW_ECHO_CGI = """#!/bin/sh
# Reads the whole request body, thinks, then echoes the body back.
body=$(mktemp) || exit 1
cat > "$body"
sleep 1
printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'
cat "$body"
rm -f "$body"
"""


_builtin = None


def builtin_modules():
    """The modules compiled into the httpd binary ('httpd -l'), as names
    like 'log_config' (Debian's apache2 has log_config and unixd built in;
    an upstream build with shared modules has neither)."""
    global _builtin
    if _builtin is None:
        p = subprocess.run([APACHE2, "-l"], capture_output=True, text=True)
        _builtin = frozenset(re.findall(r"^\s*mod_(\w+)\.c$", p.stdout,
                                        re.M))
    return _builtin


def require_modules(*names):
    """Skip the calling test when a module it loads is not part of this
    httpd build (neither compiled in nor in MODULES_DIR)."""
    for m in names:
        if m in builtin_modules():
            continue
        so = os.path.join(MODULES_DIR, f"mod_{m}.so")
        if not os.path.exists(so):
            pytest.skip(f"mod_{m} is not part of this httpd build "
                        f"({so} is absent)")


def child_pids(ppid):
    """The live (not zombie) child processes of ppid, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid and fields[0] != "Z":
            out.append(int(d))
    return out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ErrorLog:
    """Tracks a position in httpd's error log; check() looks at the lines
    written since the last check."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.ignores = []
        self.stashed = []

    def _read_from(self, pos):
        try:
            with open(self.path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            return pos, []
        # only complete lines
        end = data.rfind(b"\n") + 1
        text = data[:end].decode("utf-8", "replace")
        return pos + end, text.splitlines()

    def recent(self):
        """Lines since the last check, without consuming them."""
        return self._read_from(self.pos)[1]

    def skip(self):
        """Forget everything logged so far."""
        self.pos, _ = self._read_from(self.pos)

    def ignore(self, *patterns):
        """Expect lines matching these regexes until the next check."""
        self.ignores.extend(re.compile(p) for p in patterns)

    def stash(self, label):
        """Check now, keep the offending lines (with label) for the next
        check()."""
        bad = self.check()
        self.stashed = [label + line for line in bad]

    def check(self):
        """Return the offending lines since the last check and move on."""
        self.pos, lines = self._read_from(self.pos)
        bad, self.stashed = self.stashed, []
        for line in lines:
            fatal = FATAL_RE.search(line)
            if not fatal and not BAD_LEVEL_RE.search(line):
                continue
            if not fatal and any(p.search(line) for p in self.ignores):
                continue
            bad.append(line)
        self.ignores = []
        return bad

    def scan(self, regex, timeout=3.0):
        """Poll the lines since the last check for regex; return the
        matches (possibly none after timeout)."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            hits = [ln for ln in self.recent() if rx.search(ln)]
            if hits or time.monotonic() >= deadline:
                return hits
            time.sleep(0.05)


class HttpdEnv:

    def __init__(self, repo, verbose=0):
        self.repo = repo
        self.test_dir = os.path.join(repo, "test")
        self.verbose = verbose
        # PROC_MODULE_SO: another build of the module (another httpd's, or
        # an older one, to see a regression test fail on it).
        self.module_so = (os.environ.get("PROC_MODULE_SO")
                          or os.path.join(repo, ".libs", "mod_processing.so"))
        self.test_module_src = os.path.join(self.test_dir, "modules",
                                            "mod_proc_test.c")
        # Another httpd's test module never goes to test/modules/.libs
        # (Debian's build): PROC_BUILD_DIR, or the server root (setup()).
        self.test_module_dir = os.environ.get("PROC_BUILD_DIR") or (
            None if _OTHER_HTTPD else os.path.join(self.test_dir, "modules"))
        self.test_module_so = None
        if self.test_module_dir:
            self.test_module_so = os.path.join(self.test_module_dir, ".libs",
                                               "mod_proc_test.so")
        self.is_root = os.geteuid() == 0
        self.user = "www-data" if self.is_root else pwd.getpwuid(
            os.geteuid()).pw_name
        self.root = None
        self.port = None
        self.mpm = None
        self.running_pid = None
        self.conf_body = ""
        # install(environ=, nofile=): for the httpd started next only
        self.httpd_environ = None
        self.httpd_nofile = None
        self._ids = itertools.count(1)
        self.test_name = "setup"

    # -- paths ---------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def conf_path(self):
        return self.path("conf", "httpd.conf")

    @property
    def error_log_path(self):
        return self.path("logs", "error_log")

    @property
    def access_log_path(self):
        return self.path("logs", "access_log")

    @property
    def htdocs(self):
        return self.path("htdocs")

    @property
    def dav_dir(self):
        return self.path("htdocs", "dav")

    # -- setup ---------------------------------------------------------------

    def setup(self):
        if not os.path.exists(self.module_so):
            raise RuntimeError(f"{self.module_so} is missing: build it with "
                               f"'make -f Makefile.apxs' first")
        self.root = tempfile.mkdtemp(prefix="mod_processing-test-",
                                     dir="/tmp")
        os.chmod(self.root, 0o755)
        if not self.test_module_dir:
            self.test_module_dir = self.path("test-module")
            self.test_module_so = self.path("test-module", ".libs",
                                            "mod_proc_test.so")
        try:
            self.build_test_module()
        except RuntimeError:
            self.cleanup()
            raise
        for d in ("conf", "run", "htdocs", "htdocs/dav", "htdocs/cgi-bin",
                  "htdocs/ht", "logs", "davlock"):
            os.makedirs(self.path(d), exist_ok=True)
            os.chmod(self.path(d), 0o755)
        with open(self.path("htdocs", "alive.txt"), "w") as f:
            f.write("alive\n")
        with open(self.path("htdocs", "index.html"), "w") as f:
            f.write("<html><body>mod_processing test</body></html>\n")
        for name, text in (("slow.cgi", SLOW_CGI),
                           ("slow-echo.cgi", SLOW_ECHO_CGI)):
            cgi = self.path("htdocs", "cgi-bin", name)
            with open(cgi, "w") as f:
                f.write(text)
            os.chmod(cgi, 0o755)
        self.chown_www(self.path("logs"), self.path("davlock"), self.dav_dir)
        self.port = free_port()
        self.log = ErrorLog(self.error_log_path)
        return self

    def chown_www(self, *paths, recursive=False):
        if not self.is_root:
            return
        pw = pwd.getpwnam(self.user)
        for p in paths:
            os.chown(p, pw.pw_uid, pw.pw_gid)
            if recursive:
                for top, dirs, files in os.walk(p):
                    for n in dirs + files:
                        os.chown(os.path.join(top, n), pw.pw_uid, pw.pw_gid)

    def build_test_module(self):
        src, so = self.test_module_src, self.test_module_so
        if (os.path.exists(so)
                and os.path.getmtime(so) >= os.path.getmtime(src)):
            return
        build = self.test_module_dir
        if os.path.realpath(build) != os.path.dirname(
                os.path.realpath(src)):
            # another httpd's build: a copy of the source, built there
            os.makedirs(build, exist_ok=True)
            shutil.copy2(src, build)
        cmd = [APXS, "-c", "-Wc,-Wall", "-Wc,-Wextra",
               "-Wc,-Wno-unused-parameter",
               "-Wc,-Wno-missing-field-initializers",
               "-Wc,-Werror=implicit-function-declaration",
               os.path.basename(src)]
        p = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
        if p.returncode != 0 or not os.path.exists(so):
            raise RuntimeError(f"building the test module failed:\n"
                               f"{p.stdout}\n{p.stderr}")

    def cleanup(self):
        if self.root and os.path.isdir(self.root):
            shutil.rmtree(self.root, ignore_errors=True)

    # -- configuration -------------------------------------------------------

    def base_conf(self, mpm, modules=()):
        extra = [m for m in modules if m not in BASE_MODULES]
        require_modules(*extra)
        loads = [f"LoadModule mpm_{mpm}_module "
                 f"{MODULES_DIR}/mod_mpm_{mpm}.so"]
        # built into Debian's apache2, shared modules in an upstream build
        loads += [f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so"
                  for m in ("log_config", "unixd")
                  if m not in builtin_modules()]
        for m in list(BASE_MODULES) + extra:
            loads.append(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so")
        loads.append(f"LoadModule processing_module {self.module_so}")
        loads.append(f"LoadModule proc_test_module {self.test_module_so}")
        user = (f"User {self.user}\nGroup {self.user}\n"
                if self.is_root else "")
        level = ("info processing:trace4" if self.verbose
                 else "notice processing:debug")
        r = self.root
        return "\n".join(loads) + "\n" + user + textwrap.dedent(f"""
            ServerRoot "{r}"
            ServerName 127.0.0.1
            Listen 127.0.0.1:{self.port}
            PidFile "{r}/run/httpd.pid"
            DefaultRuntimeDir "{r}/run"
            ScriptSock "{r}/run/cgid.sock"
            DAVLockDB "{r}/davlock/lock"
            ErrorLog "{r}/logs/error_log"
            LogLevel {level}
            LogFormat "%{{X-Test-Id}}i %>s %{{processing-sent}}n %D \\"%r\\"" proc
            CustomLog "{r}/logs/access_log" proc
            TypesConfig {MIME_TYPES}
            Timeout 30
            KeepAlive On
            KeepAliveTimeout 5
            MaxKeepAliveRequests 100
            <IfModule mpm_event_module>
                StartServers 2
                ThreadsPerChild 16
                MaxRequestWorkers 64
                MinSpareThreads 16
                MaxSpareThreads 64
            </IfModule>
            <IfModule mpm_worker_module>
                StartServers 2
                ThreadsPerChild 16
                MaxRequestWorkers 64
                MinSpareThreads 16
                MaxSpareThreads 64
            </IfModule>
            <IfModule mpm_prefork_module>
                StartServers 4
                MinSpareServers 4
                MaxSpareServers 16
                MaxRequestWorkers 32
            </IfModule>

            DocumentRoot "{r}/htdocs"
            DirectoryIndex index.html
            <Directory />
                AllowOverride None
                Require all denied
            </Directory>
            <Directory "{r}/htdocs">
                AllowOverride None
                Require all granted
            </Directory>
            # The slow handler under test: the query string drives it.
            <Location /pt>
                SetHandler proc-test
            </Location>
            <Directory "{r}/htdocs/cgi-bin">
                Options +ExecCGI
                SetHandler cgi-script
            </Directory>

            # The suite's own client is an application the administrator
            # allows 102s (ProcessingClients known, the default).
            BrowserMatch "^mod_processing-test/" force-processing

            # ---- test configuration ----
            """)

    def write_conf(self, body, mpm="event", modules=(), path=None):
        text = self.base_conf(mpm, modules) + textwrap.dedent(body) + "\n"
        path = path or self.conf_path
        with open(path, "w") as f:
            f.write(text)
        return path

    def install(self, body, mpm="event", modules=(), environ=None,
                nofile=None):
        """Install this configuration and (re)start httpd with it.

        environ: more environment variables for httpd (e.g. OPENSSL_CONF);
        nofile: httpd's soft RLIMIT_NOFILE (its children inherit it). Both
        hold for this server only: the next install() starts without them.
        """
        if self.running_pid:
            self.stop()
            # A crash while the previous server stopped: the next test's
            # log check reports it, labelled as such. A handler still
            # sleeping makes httpd say AH00045 ("still did not exit"),
            # with or without mod_processing.
            self.log.ignore(r"AH00045")
            self.log.stash(f"while stopping the previous server "
                           f"(mpm {self.mpm}): ")
        self.write_conf(body, mpm, modules)
        self.mpm = mpm
        self.conf_body = body
        self.httpd_environ = dict(environ) if environ else None
        self.httpd_nofile = nofile
        self.start()

    def apache(self, *args, conf=None, timeout=30):
        cmd = [APACHE2, "-d", self.root, "-f", conf or self.conf_path]
        cmd.extend(args)
        environ = ({**os.environ, **self.httpd_environ}
                   if self.httpd_environ else None)
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, env=environ,
                              preexec_fn=self._limit_nofile
                              if self.httpd_nofile else None)

    def _limit_nofile(self):
        """In the forked apache2 before exec: the soft descriptor limit
        install(nofile=) asked for (as systemd's default 1024 would)."""
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (self.httpd_nofile, hard))

    def configtest(self, body, mpm="event", modules=()):
        """Run 'apache2 -t' on the base configuration plus body; return
        (exit status, stderr)."""
        path = self.write_conf(body, mpm, modules,
                               path=self.path("conf", "configtest.conf"))
        p = self.apache("-t", conf=path)
        return p.returncode, p.stderr + p.stdout

    apache_configtest = configtest

    # -- process control -----------------------------------------------------

    def read_pid(self):
        try:
            with open(self.path("run", "httpd.pid")) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    @staticmethod
    def pid_alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # a zombie counts as gone
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def start(self):
        p = self.apache("-k", "start")
        if p.returncode != 0:
            raise RuntimeError(f"apache2 -k start failed ({p.returncode}):\n"
                               f"{p.stdout}{p.stderr}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = self.read_pid()
            if pid and self.is_live():
                self.running_pid = pid
                return
            time.sleep(0.1)
        raise RuntimeError(f"httpd did not come up in 10 s; error log:\n"
                           f"{self.tail_error_log()}")

    def is_live(self):
        try:
            with Connection.open("127.0.0.1", self.port, timeout=2) as c:
                c.request("GET", "/alive.txt", close=True)
                r = c.read_response(timeout=2)
                return r.status == 200
        except (OSError, ProtocolError):
            return False

    def wait_exit(self, pid, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pid_alive(pid):
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        """Stop the httpd we started and wait until its parent is gone."""
        pid = self.running_pid or self.read_pid()
        if not pid:
            return
        p = self.apache("-k", "stop")
        if p.returncode != 0 and self.pid_alive(pid):
            # the installed config no longer parses: signal our own pid
            os.kill(pid, signal.SIGTERM)
        if not self.wait_exit(pid):
            raise RuntimeError(f"httpd {pid} did not stop in 15 s")
        self.running_pid = None

    def signal(self, what):
        """apache2 -k graceful|graceful-stop|restart with the current
        configuration (returns at once)."""
        p = self.apache("-k", what)
        if p.returncode != 0:
            raise RuntimeError(f"apache2 -k {what} failed: {p.stderr}")

    def tail_error_log(self, n=40):
        try:
            with open(self.error_log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return "(no error log)"

    # -- requests ------------------------------------------------------------

    def new_id(self):
        return f"{self.test_name}#{next(self._ids)}"

    def connect(self, timeout=15):
        return Connection.open("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, target, headers=None, body=None, timeout=15,
                **kw):
        """One request on a fresh connection with 'Connection: close'. The
        response is read whole, then the server must close without sending
        anything else. Returns the Response; .test_id keys the access log."""
        hdrs = dict(headers or {})
        tid = hdrs.setdefault("X-Test-Id", self.new_id())
        with self.connect(timeout=timeout) as c:
            c.request(method, target, headers=hdrs, body=body, close=True,
                      **kw)
            r = c.read_response()
            c.expect_eof()
        r.test_id = tid
        return r

    def get(self, target, **kw):
        return self.request("GET", target, **kw)

    def access_logs(self, test_id, count=1, timeout=3.0):
        """The access log entries of the requests with this X-Test-Id (at
        least count of them, waiting up to timeout), as dicts: status,
        sent (processing-sent; None for '-'), usec (%D), request."""
        deadline = time.monotonic() + timeout
        while True:
            found = []
            try:
                with open(self.access_log_path, errors="replace") as f:
                    for line in f:
                        m = re.match(r'(\S+) (\d+) (\S+) (\d+) "(.*)"$',
                                     line.rstrip("\n"))
                        if m and m.group(1) == test_id:
                            sent = m.group(3)
                            found.append({
                                "status": int(m.group(2)),
                                "sent": None if sent == "-" else int(sent),
                                "usec": int(m.group(4)),
                                "request": m.group(5),
                            })
            except FileNotFoundError:
                pass
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"{len(found)} access log entries for "
                                     f"{test_id}, expected {count}")
            time.sleep(0.05)

    def access_log(self, test_id, timeout=3.0):
        """The (first) access log entry of the request with this
        X-Test-Id; access_logs() for all of them."""
        return self.access_logs(test_id, 1, timeout)[0]

    def log_fields(self, name, test_id, timeout=3.0):
        """The fields after the first of the line of logs/<name> (a
        CustomLog of the test's own whose first field is %{X-Test-Id}i)
        for this request, waiting up to timeout for it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.path("logs", name), errors="replace") as f:
                    for line in f:
                        parts = line.split()
                        if parts and parts[0] == test_id:
                            return tuple(parts[1:])
            except FileNotFoundError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"{test_id} not in logs/{name}")
            time.sleep(0.05)
