"""Shared helpers for mod_processing's benchmarks (bench/*.py).

Everything here talks only to 127.0.0.1.  Servers are throwaway httpd
instances under /tmp/mod_processing-bench-XXXX (mode 0755, so that httpd's
children running as www-data can read them); each is stopped by its own pid
or with `apache2 -f CONF -k stop`, never by name.
"""

import contextlib
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
APACHE2 = shutil.which("apache2", path="/usr/sbin:/usr/bin") or "/usr/sbin/apache2"
APXS = shutil.which("apxs", path="/usr/bin:/usr/sbin") or "/usr/bin/apxs"
MODULES_DIR = "/usr/lib/apache2/modules"
IS_ROOT = os.geteuid() == 0
RUN_USER = "www-data" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
# ProcessingClients for the module's configurations: all (every request
# armed) or known (the default: the bench client is not a known one).
BENCH_CLIENTS = os.environ.get("BENCH_CLIENTS", "all")
# BENCH_UA: the bench client's User-Agent (none by default); with
# BENCH_CLIENTS=known and a known family's User-Agent (curl/7.88.1) the
# fast requests take the armed path through the client and front tests.
BENCH_UA = os.environ.get("BENCH_UA")

SMALL_FILE = "small.txt"
SMALL_BODY = b"mod_processing benchmark: a small static file.\n" * 2  # 94 bytes


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# Raw results are build output, never committed: build/bench/ at the top of
# the checkout (ignored by git); BENCHMARKS.md holds the human table.
DEFAULT_RESULTS = os.path.join(os.path.dirname(BENCH_DIR), "build", "bench")


def results_dir():
    """Where scripts write their JSON (build/bench by default)."""
    d = os.environ.get("BENCH_RESULTS", DEFAULT_RESULTS)
    os.makedirs(d, exist_ok=True)
    return d


def save_json(name, data):
    path = os.path.join(results_dir(), name)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    log(f"wrote {path}")
    return path


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def median(values):
    v = sorted(values)
    n = len(v)
    if n == 0:
        return float("nan")
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


# -- builds ------------------------------------------------------------------

def _apxs_build(src, name, workdir):
    """Build src with apxs in a private copy (so that we never write into a
    directory another tool owns) and return the .so path."""
    os.makedirs(workdir, exist_ok=True)
    dst = os.path.join(workdir, os.path.basename(src))
    shutil.copyfile(src, dst)
    r = subprocess.run([APXS, "-c", "-Wc,-O2", dst], cwd=workdir,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"apxs -c {dst} failed:\n{r.stdout}{r.stderr}")
    so = os.path.join(workdir, ".libs", name + ".so")
    if not os.path.exists(so):
        raise RuntimeError(f"apxs did not produce {so}")
    return so


def _sha256(path, n=None):
    import hashlib
    with open(path, "rb") as f:
        d = hashlib.sha256(f.read()).hexdigest()
    return d[:n] if n else d


def _git_identity():
    out = {}
    try:
        out["git_head"] = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "mod_processing.c"],
            capture_output=True, text=True).stdout.strip()
        out["source_modified"] = bool(dirty)
    except Exception:
        pass
    out["source_sha256"] = _sha256(os.path.join(REPO, "mod_processing.c"), 16)
    return out


def pin_build():
    """Build with the project's Makefile and pin the result: a copy in
    bench/.build/mod_processing-<digest>.so plus a .json beside it with the
    git revision and source digest it was built from.  bench/run-all
    exports BENCH_MODULE_SO=<that copy>, so that every script measures the
    same build even if the source changes (and is rebuilt) during the run.
    Rebuilds while the source is newer than the .so."""
    so = os.path.join(REPO, ".libs", "mod_processing.so")
    src = os.path.join(REPO, "mod_processing.c")
    for _ in range(5):
        before = _sha256(src, 16)
        subprocess.run(["make", "-s", "-f", "Makefile.apxs"], cwd=REPO,
                       check=True, stdout=subprocess.DEVNULL)
        ident = _git_identity()
        if os.path.getmtime(so) >= os.path.getmtime(src) and \
                before == ident["source_sha256"]:
            break
        time.sleep(1)
    else:
        raise RuntimeError("mod_processing.c keeps changing; cannot pin")
    needed = subprocess.run(["readelf", "-d", so], capture_output=True,
                            text=True).stdout
    if "libasan" in needed or "libubsan" in needed:
        raise RuntimeError(f"{so} is a sanitizer build (make SANITIZE=...):"
                           " rebuild it without SANITIZE before measuring")
    d = os.path.join(BENCH_DIR, ".build")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    copy = os.path.join(d, f"mod_processing-{_sha256(so, 12)}.so")
    shutil.copyfile(so, copy)
    os.chmod(copy, 0o755)
    # the source it was built from, for cglines.py's line numbers
    shutil.copyfile(src, copy[:-3] + ".c")
    ident["so"] = os.path.basename(copy)
    with open(copy[:-3] + ".json", "w") as f:
        json.dump(ident, f, indent=2, sort_keys=True)
    return copy


def build_module():
    """Build mod_processing with the project's Makefile, then take a private
    copy of the .so so that a rebuild during a long run cannot change what
    is being measured.  BENCH_NO_BUILD=1 skips the make step;
    BENCH_MODULE_SO=/path/mod_processing.so measures that build instead
    (e.g. an experimental change, or the copy bench/run-all pinned) and
    skips the make step too."""
    alt = os.environ.get("BENCH_MODULE_SO")
    if alt:
        so = alt
    elif not os.environ.get("BENCH_NO_BUILD"):
        subprocess.run(["make", "-s", "-f", "Makefile.apxs"], cwd=REPO,
                       check=True, stdout=subprocess.DEVNULL)
    if not alt:
        so = os.path.join(REPO, ".libs", "mod_processing.so")
    if not os.path.exists(so):
        raise RuntimeError(f"{so} missing: make -f Makefile.apxs")
    d = os.path.join(BENCH_DIR, ".build")
    os.makedirs(d, exist_ok=True)
    copy = os.path.join(d, f"mod_processing-{_sha256(so, 12)}.so")
    if os.path.abspath(so) != copy:
        shutil.copyfile(so, copy)
        for ext in (".json", ".c"):
            if os.path.exists(so[:-3] + ext):
                shutil.copyfile(so[:-3] + ext, copy[:-3] + ext)
    os.chmod(copy, 0o755)
    os.chmod(d, 0o755)
    return copy


def build_sleep_module():
    """The slow handler for the scale runs: test/modules/mod_proc_test.c
    (handler 'proc-test', '?sleep=MS'), built in bench/.build."""
    src = os.path.join(REPO, "test", "modules", "mod_proc_test.c")
    return _apxs_build(src, "mod_proc_test", os.path.join(BENCH_DIR, ".build",
                                                        "proc_test"))


def module_identity(so):
    """git revision and a digest of the module source, for the record: from
    the .json that pin_build() wrote beside a pinned build, else read now
    (then only right if the source has not changed since the build)."""
    sidecar = so[:-3] + ".json"
    if os.path.exists(sidecar):
        with open(sidecar) as f:
            out = json.load(f)
        out["so"] = os.path.basename(so)
        out["pinned"] = True
        return out
    out = {"so": os.path.basename(so)}
    if os.environ.get("BENCH_MODULE_SO"):
        out["built_from"] = os.environ["BENCH_MODULE_SO"]
    out.update(_git_identity())
    return out


def machine_info():
    info = {"nproc": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            info["cpu"] = m.group(1) if m else "?"
    except OSError:
        pass
    try:
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass
    info["kernel"] = os.uname().release
    try:
        v = subprocess.run([APACHE2, "-v"], capture_output=True, text=True)
        info["apache2"] = v.stdout.splitlines()[0].split(":", 1)[1].strip()
        info["apache2_deb"] = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "apache2"],
            capture_output=True, text=True).stdout.strip()
    except Exception:
        pass
    try:
        with open("/proc/loadavg") as f:
            info["loadavg_at_start"] = f.read().split()[:3]
    except OSError:
        pass
    return info


# -- servers -----------------------------------------------------------------

MPM_CONF = {
    # One child, so that "the watchdog thread" is one thread.
    "event": """
StartServers 1
ServerLimit 1
ThreadLimit {threads}
ThreadsPerChild {threads}
MaxRequestWorkers {threads}
MinSpareThreads 1
MaxSpareThreads {threads}
MaxConnectionsPerChild 0
""",
    "prefork": """
StartServers 1
ServerLimit 1
MaxRequestWorkers 1
MinSpareServers 1
MaxSpareServers 1
MaxConnectionsPerChild 0
""",
}


# Profiles: what else the server loads.  "minimal" is the strictest
# baseline (the module's cost is the largest fraction of a request);
# "debian" is the set of modules Debian 12 enables by default, with the
# combined access log.
DEBIAN_MODULES = ("access_compat", "alias", "auth_basic", "authn_core",
                  "authn_file", "authz_host", "authz_user", "autoindex",
                  "deflate", "dir", "env", "filter", "negotiation",
                  "reqtimeout", "setenvif", "status")
DEBIAN_EXTRA = """
DirectoryIndex index.html
LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" combined
CustomLog "{root}/logs/access_log" combined
"""


class Server:
    """A throwaway httpd.

    module:     load mod_processing
    processing: None (no directive), "On" or "Off" in <Location "/">
    extra:      more configuration (e.g. Locations for the slow handler)
    """

    def __init__(self, name, mpm="event", module=False, processing=None,
                 extra="", loglevel="warn", threads=32, module_so=None,
                 sleep_so=None, port=None, profile="minimal"):
        self.name = name
        self.profile = profile
        self.mpm = mpm
        self.module = module
        self.processing = processing
        self.extra = extra
        self.loglevel = loglevel
        self.threads = threads
        self.module_so = module_so
        self.sleep_so = sleep_so
        self.port = port or free_port()
        self.proc = None
        self.root = tempfile.mkdtemp(prefix=f"mod_processing-bench-{name}-",
                                     dir="/tmp")
        os.chmod(self.root, 0o755)
        for d in ("conf", "htdocs", "logs", "run", "out"):
            os.makedirs(self.path(d), exist_ok=True)
            os.chmod(self.path(d), 0o755)
        with open(self.path("htdocs", SMALL_FILE), "wb") as f:
            f.write(SMALL_BODY)
        os.chmod(self.path("htdocs", SMALL_FILE), 0o644)
        if IS_ROOT:
            pw = pwd.getpwnam(RUN_USER)
            for d in ("logs", "run", "out"):
                os.chown(self.path(d), pw.pw_uid, pw.pw_gid)
        self.write_conf()

    def path(self, *p):
        return os.path.join(self.root, *p)

    @property
    def conf(self):
        return self.path("conf", "httpd.conf")

    @property
    def error_log(self):
        return self.path("logs", "error_log")

    def write_conf(self):
        mods = [("mpm_" + self.mpm, "mod_mpm_%s.so" % self.mpm),
                ("authz_core", "mod_authz_core.so"),
                ("mime", "mod_mime.so")]
        if self.profile == "debian":
            mods += [(m, f"mod_{m}.so") for m in DEBIAN_MODULES]
        lines = []
        for name, f in mods:
            lines.append(f"LoadModule {name}_module {MODULES_DIR}/{f}")
        if self.module:
            lines.append(f"LoadModule processing_module {self.module_so}")
        if self.sleep_so:
            lines.append(f"LoadModule proc_test_module {self.sleep_so}")
        loglevel = self.loglevel
        if self.module and " " not in loglevel and ":" not in loglevel:
            loglevel = f"warn processing:{loglevel}"
        loc = ""
        if self.processing:
            # every client is allowed (ProcessingClients all), so that
            # the bench client's fast requests take the armed path; under
            # the default policy (BENCH_CLIENTS=known) they are not armed
            loc = (f"    Processing {self.processing}\n"
                   f"    ProcessingClients {BENCH_CLIENTS}\n")
        user = f"User {RUN_USER}\nGroup {RUN_USER}\n" if IS_ROOT else ""
        conf = f"""# generated by bench/benchlib.py ({self.name})
ServerRoot "{self.root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile "{self.path('run', 'httpd.pid')}"
DefaultRuntimeDir "{self.path('run')}"
Mutex file:{self.path('run')} default
{user}{chr(10).join(lines)}
ErrorLog "{self.error_log}"
LogLevel {loglevel}
ErrorLogFormat "[%{{cu}}t] [%-m:%l] [pid %P:tid %T] %M"
TypesConfig /etc/mime.types
DocumentRoot "{self.path('htdocs')}"
<Directory "{self.path('htdocs')}">
    Require all granted
</Directory>
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
Timeout 60
{MPM_CONF[self.mpm].format(threads=self.threads)}
{DEBIAN_EXTRA.replace("{root}", self.root) if self.profile == "debian" else ""}
# The same section in every configuration; only the module's directive
# differs, so the baseline pays the same location walk and merges.
<Location "/">
{loc}</Location>
{self.extra}
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        os.chmod(self.conf, 0o644)

    # daemon mode ------------------------------------------------------------

    def start(self, timeout=15):
        raise_nofile()
        r = subprocess.run([APACHE2, "-d", self.root, "-f", self.conf,
                            "-k", "start"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"httpd {self.name} did not start: "
                               f"{r.stdout}{r.stderr}{self.tail_log()}")
        self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.parent_pid = self.read_pid()
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # wait for the child to exist and have all its MPM threads: event
        # has its main thread, the listener and ThreadsPerChild workers;
        # a prefork child is single-threaded.  mod_processing adds no
        # thread before the child's first armed request.
        want = self.mpm_threads()
        deadline = time.monotonic() + timeout
        self.child_pid = None
        last, stable = -1, 0
        while time.monotonic() < deadline:
            kids = self.children()
            if kids:
                self.child_pid = kids[0]
                try:
                    n = len(os.listdir(f"/proc/{kids[0]}/task"))
                except OSError:
                    n = -1
                stable = stable + 1 if (n == last and n >= want) else 0
                last = n
                if stable >= 6:
                    break
            time.sleep(0.05)
        if stable < 6:
            log(f"httpd {self.name}: child {self.child_pid} has {last} "
                f"threads after {timeout}s (expected {want})")
        return self

    def mpm_threads(self):
        """Threads of a started child before anything arms a request."""
        return self.threads + 2 if self.mpm == "event" else 1

    def read_pid(self):
        with open(self.path("run", "httpd.pid")) as f:
            return int(f.read().strip())

    def children(self):
        try:
            with open(f"/proc/{self.parent_pid}/task/{self.parent_pid}/children") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def stop(self, timeout=20):
        if self.proc is not None:
            return self.stop_fg(timeout)
        pid = getattr(self, "parent_pid", None)
        deadline = time.monotonic() + 5
        while pid is None:
            # a start that failed half-way may still write its pid file
            try:
                pid = self.read_pid()
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)
        subprocess.run([APACHE2, "-d", self.root, "-f", self.conf, "-k",
                        "stop"], capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)
        else:
            log(f"httpd {self.name} pid {pid} did not stop; SIGKILL")
            os.kill(pid, signal.SIGKILL)

    # foreground (-X, e.g. under valgrind) -----------------------------------

    def start_fg(self, prefix=(), timeout=120):
        """Run `apache2 -X` (one process) with a command prefix such as
        valgrind.  As root it runs as www-data (httpd would otherwise switch
        users itself and valgrind could not write its output)."""
        raise_nofile()
        kw = {}
        if IS_ROOT:
            pw = pwd.getpwnam(RUN_USER)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        env = dict(os.environ)
        env["HOME"] = self.path("out")
        self.fg_log = open(self.path("logs", "fg.out"), "w")
        self.proc = subprocess.Popen(
            list(prefix) + [APACHE2, "-X", "-d", self.root, "-f", self.conf],
            cwd=self.path("out"), stdout=self.fg_log,
            stderr=subprocess.STDOUT, env=env, **kw)
        try:
            self.wait_listening(timeout, proc=self.proc)
        except Exception:
            self.stop_fg()
            raise
        return self

    def stop_fg(self, timeout=120):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"httpd -X {self.name} pid {self.proc.pid} did not stop;"
                    " SIGKILL")
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.fg_log.close()
        return rc

    # common -----------------------------------------------------------------

    def wait_listening(self, timeout, proc=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"httpd {self.name} exited: "
                                   f"{self.tail_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"httpd {self.name} not listening on {self.port}: "
                           f"{self.tail_log()}")

    def tail_log(self, n=20):
        out = []
        for p in (self.error_log, self.path("logs", "fg.out")):
            try:
                with open(p, errors="replace") as f:
                    out += f.read().splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out)

    def error_lines(self):
        """warn-or-worse lines and crashes in the error log."""
        bad = []
        try:
            with open(self.error_log, errors="replace") as f:
                for line in f:
                    if re.search(r":(warn|error|crit|alert|emerg)\]|"
                                 r"exit signal|Segmentation", line):
                        bad.append(line.rstrip())
        except OSError:
            pass
        return bad

    def cleanup(self):
        if os.environ.get("BENCH_KEEP"):
            log(f"keeping {self.root}")
            return
        shutil.rmtree(self.root, ignore_errors=True)


# -- threads -----------------------------------------------------------------

def task_status(pid, tid):
    """voluntary/nonvoluntary context switches of one thread."""
    out = {}
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                out[k] = int(v)
    return out


def task_cpu_ns(pid, tid):
    """Time on CPU of one thread in ns (schedstat, ns resolution)."""
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def task_user_sys_ms(pid, tid):
    """(user, system) CPU time of one thread in ms, from its stat file
    (clock ticks of 10 ms: coarse, for the split only)."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    # fields[0] is the state (field 3 of stat): utime is 14, stime 15
    return (int(fields[11]) * 1000 // hz, int(fields[12]) * 1000 // hz)


@contextlib.contextmanager
def pinned(cpus):
    """This process on cpus (None: left alone) for the with block, its own
    affinity put back afterwards; whatever it starts meanwhile inherits
    cpus (httpd's children and threads, the watchdog included)."""
    if cpus is None:
        yield
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)


def start_pinned(server, cpus, timeout=15):
    """Start server with all its processes and threads on cpus."""
    with pinned(cpus):
        server.start(timeout=timeout)


def build_c(name, *flags):
    """Compile bench/NAME.c into bench/.build/NAME; returns its path."""
    d = os.path.join(BENCH_DIR, ".build")
    os.makedirs(d, exist_ok=True)
    exe = os.path.join(d, name)
    subprocess.run(["gcc", "-O2", *flags, "-o", exe,
                    os.path.join(BENCH_DIR, name + ".c")], check=True)
    return exe


def thread_ids(pid):
    return {int(t) for t in os.listdir(f"/proc/{pid}/task")}


def start_watchdog(pid, arm, timeout=10.0):
    """The watchdog thread starts lazily, on the child's first armed
    request: before that the child has only the MPM's threads.  Calls arm()
    (which must make the child arm a request; nothing may have armed one in
    this child before) and returns the one thread that appeared.  The MPM
    creates no thread after start-up here (event: all ThreadsPerChild
    workers at start; prefork: none), so the new thread is the watchdog;
    callers may confirm it by behaviour (see wakeups.py)."""
    before = thread_ids(pid)
    arm()
    deadline = time.monotonic() + timeout
    while True:
        new = thread_ids(pid) - before
        if len(new) == 1:
            tid = new.pop()
            # let it reach its first wait
            time.sleep(0.3)
            return tid
        if len(new) > 1:
            raise RuntimeError(f"child {pid}: {len(new)} new threads after "
                               f"the first armed request: {sorted(new)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"child {pid}: no watchdog thread appeared "
                               "after an armed request")
        time.sleep(0.01)


def all_tasks_switches(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = task_status(pid, int(t))
            out[int(t)] = st["voluntary_ctxt_switches"] + \
                st["nonvoluntary_ctxt_switches"]
        except OSError:
            pass
    return out


# -- HTTP/1.1 client ---------------------------------------------------------

class Http1:
    """A minimal keep-alive HTTP/1.1 client on one connection."""

    def __init__(self, port, timeout=60):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("connection closed")
        self.buf += d

    def request(self, path, close=False):
        """Send one GET and read the whole response; returns (status,
        interim_count, body)."""
        hdr = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if BENCH_UA:
            hdr += f"User-Agent: {BENCH_UA}\r\n"
        if close:
            hdr += "Connection: close\r\n"
        self.sock.sendall((hdr + "\r\n").encode())
        interim = 0
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if 100 <= status < 200:
                interim += 1
                continue
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            n = int(m.group(1)) if m else 0
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
            return status, interim, body

    def close(self):
        self.sock.close()


def run_requests(port, path, n, keepalive=True):
    """n sequential GETs; on one keep-alive connection or one connection
    each.  Returns the number of 200 responses."""
    ok = 0
    if keepalive:
        c = Http1(port)
        for _ in range(n):
            if c.request(path)[0] == 200:
                ok += 1
        c.close()
    else:
        for _ in range(n):
            c = Http1(port)
            if c.request(path, close=True)[0] == 200:
                ok += 1
            c.close()
    return ok


def run_requests_parallel(port, path, n, conns):
    """n GETs spread over conns keep-alive connections, one thread each."""
    import threading
    counts = [0] * conns
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]

    def worker(i):
        counts[i] = run_requests(port, path, per[i])

    th = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return sum(counts)


if __name__ == "__main__":
    # bench/run-all: `benchlib.py pin` builds, pins and prints the copy
    if sys.argv[1:] == ["pin"]:
        print(pin_build())
    else:
        sys.exit("usage: benchlib.py pin")
