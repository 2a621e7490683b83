"""The stress httpd: proc.env.HttpdEnv (the suite's harness) plus TLS, MPM
sizing for many parallel connections, a proxy backend, and the process
inspection the lifecycle tests need (children, their threads and RSS).

Server roots live under /tmp/mod_processing-test-XXXX, readable by www-data.
Only httpd instances started here are ever stopped or signalled, by pid or
'apache2 -f CONF -k stop'.
"""

import os
import re
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(TEST_DIR)
if TEST_DIR not in sys.path:
    sys.path.insert(0, TEST_DIR)

from proc.http1 import Connection  # noqa: E402
from proc.env import (APACHE2, FATAL_RE, HttpdEnv,  # noqa: E402,F401
                      child_pids, free_port)

FULL = os.environ.get("PROC_STRESS_FULL") == "1"
CLIENT = os.path.join(HERE, "stress_client.py")
PYTHON = "/usr/bin/python3"

# Sized for the stress client's default 48 + 48 connections, each busy up to
# 400 ms per request, plus clients that abort: no request queues for a
# worker. MaxConnectionsPerChild makes children exit (and their watchdog
# thread stop) under load; churn=False keeps one set of children for RSS.
MPM_CONF = {
    "event": """
        <IfModule mpm_event_module>
            ServerLimit 8
            StartServers 6
            ThreadsPerChild 64
            MaxRequestWorkers 384
            MinSpareThreads 32
            MaxSpareThreads 384
            MaxConnectionsPerChild {mcpc}
        </IfModule>
        """,
    "worker": """
        <IfModule mpm_worker_module>
            ServerLimit 8
            StartServers 6
            ThreadsPerChild 64
            MaxRequestWorkers 384
            MinSpareThreads 32
            MaxSpareThreads 384
            MaxConnectionsPerChild {mcpc}
        </IfModule>
        """,
    "prefork": """
        <IfModule mpm_prefork_module>
            ServerLimit 320
            StartServers 256
            MinSpareServers 32
            MaxSpareServers 320
            MaxRequestWorkers 320
            MaxConnectionsPerChild {mcpc}
        </IfModule>
        """,
}
MCPC = {"event": 2000, "worker": 2000, "prefork": 200}

STRESS_MODULES = ("ssl", "socache_shmcb", "proxy", "proxy_http")


def build_module_copy(dest, sanitize="", mutate=None):
    """Build mod_processing from a copy of its source in dest (so that
    /work/main/.libs keeps the normal build); returns the .so path.
    mutate: (old, new) text replacement applied to the copy."""
    os.makedirs(dest, exist_ok=True)
    for n in ("mod_processing.c", "Makefile.apxs"):
        with open(os.path.join(REPO, n)) as f:
            text = f.read()
        if n.endswith(".c") and mutate:
            if mutate[0] not in text:
                raise RuntimeError(f"mutation target not found: "
                                   f"{mutate[0]!r}")
            text = text.replace(mutate[0], mutate[1], 1)
        with open(os.path.join(dest, n), "w") as f:
            f.write(text)
    cmd = ["make", "-s", "-f", "Makefile.apxs", "clean", "all"]
    if sanitize:
        cmd.append(f"SANITIZE={sanitize}")
    p = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    so = os.path.join(dest, ".libs", "mod_processing.so")
    if p.returncode != 0 or not os.path.exists(so):
        raise RuntimeError(f"building {dest} failed:\n{p.stdout}{p.stderr}")
    os.chmod(dest, 0o755)
    return so


class StressEnv(HttpdEnv):
    """HttpdEnv with a TLS vhost and stress sizing."""

    def __init__(self, verbose=0, module_so=None, extra_env=None):
        super().__init__(REPO, verbose=verbose)
        self.tls_port = None
        # PROC_STRESS_MODULE: test another build of the module (a fix, ASan)
        module_so = module_so or os.environ.get("PROC_STRESS_MODULE")
        if module_so:
            self.module_so = module_so
        # environment for apache2 only (ASan: LD_PRELOAD, ASAN_OPTIONS)
        self.extra_env = dict(extra_env or {})

    def apache(self, *args, conf=None, timeout=30):
        if not self.extra_env:
            return super().apache(*args, conf=conf, timeout=timeout)
        cmd = [APACHE2, "-d", self.root, "-f",
               conf or self.conf_path] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout,
                              env=dict(os.environ, **self.extra_env))

    def setup(self):
        super().setup()
        self.tls_port = free_port()
        self.make_cert()
        return self

    def install(self, body, mpm="event", modules=()):
        """HttpdEnv.install, but the previous server is stopped here and its
        stop checked here: a handler still sleeping when httpd stops makes
        httpd log AH00045 ("still did not exit, sending a SIGTERM"), with
        or without mod_processing; anything else fails."""
        if self.running_pid:
            self.stop()
            self.log.ignore(r"AH00045")
            bad = self.log.check()
            if bad:
                raise AssertionError("while stopping the previous server:\n"
                                     + "\n".join(bad))
        super().install(body, mpm=mpm, modules=modules)

    def make_cert(self):
        key, crt = self.path("conf", "key.pem"), self.path("conf", "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-keyout", key, "-out", crt],
            check=True, capture_output=True)
        # a throwaway test key; www-data must read it under 'apache2 -X'
        os.chmod(key, 0o644)

    def stress_conf(self, mpm, churn=True, delay="100ms", interval="100ms",
                    extra="", loglevel="notice"):
        mcpc = MCPC[mpm] if churn else 0
        r = self.root
        return textwrap.dedent(MPM_CONF[mpm]).format(mcpc=mcpc) + \
            textwrap.dedent(f"""
            LogLevel {loglevel}
            MaxKeepAliveRequests 0
            Listen 127.0.0.1:{self.tls_port}
            SSLSessionCache "shmcb:{r}/run/ssl_scache(512000)"
            SSLRandomSeed startup builtin
            <VirtualHost 127.0.0.1:{self.tls_port}>
                ServerName localhost
                SSLEngine on
                SSLCertificateFile "{r}/conf/cert.pem"
                SSLCertificateKeyFile "{r}/conf/key.pem"
            </VirtualHost>
            <Location /server-status>
                SetHandler server-status
            </Location>
            # The stress drives the mechanics with raw clients of its own:
            # every client gets 102s.
            ProcessingClients all
            <Location /pt>
                Processing On
                ProcessingInterval {interval}
                ProcessingDelay {delay}
                ProcessingMaxCount 0
            </Location>
            """) + textwrap.dedent(extra)

    def install_stress(self, mpm, **kw):
        self.install(self.stress_conf(mpm, **kw), mpm=mpm,
                     modules=STRESS_MODULES)

    # -- process inspection ----------------------------------------------------

    def _listen_inodes(self):
        ports = {self.port, self.tls_port}
        inodes = set()
        for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(tab) as f:
                    next(f)
                    for line in f:
                        parts = line.split()
                        port = int(parts[1].rsplit(":", 1)[1], 16)
                        if parts[3] == "0A" and port in ports:
                            inodes.add(parts[9])
            except FileNotFoundError:
                pass
        return inodes

    def children(self, pid=None):
        """The MPM's child processes of our parent httpd: children that
        hold one of our listening sockets (which mod_cgid's daemon, also a
        child, has closed)."""
        pid = pid or self.running_pid
        inodes = self._listen_inodes()
        out = []
        for d in child_pids(pid):
            try:
                fds = os.listdir(f"/proc/{d}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(f"/proc/{d}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    out.append(int(d))
                    break
        return sorted(out)

    @staticmethod
    def threads(pid):
        try:
            return len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            return 0

    @staticmethod
    def rss_kb(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def fatal_lines(self):
        """Crash markers anywhere in the error log."""
        try:
            with open(self.error_log_path, errors="replace") as f:
                return [ln.rstrip() for ln in f if FATAL_RE.search(ln)]
        except FileNotFoundError:
            return []

    # -- the stress client -------------------------------------------------------

    def run_client(self, requests, conns=48, tls_conns=48, max_time=300,
                   seed=None, extra=(), check_log=True, timeout=None):
        """Run stress_client.py against this server; returns (exit status,
        summary dict, stdout+stderr)."""
        js = self.path("logs", f"client-{time.monotonic_ns()}.json")
        cmd = [PYTHON, CLIENT, "--port", str(self.port),
               "--tls-port", str(self.tls_port), "--conns", str(conns),
               "--tls-conns", str(tls_conns), "--requests", str(requests),
               "--max-time", str(max_time), "--json", js]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        if check_log:
            cmd += ["--access-log", self.access_log_path]
        cmd += list(extra)
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout or max_time + 120)
        summary = {}
        if os.path.exists(js):
            import json
            with open(js) as f:
                summary = json.load(f)
        return p.returncode, summary, p.stdout + p.stderr


def parse_summary_line(text):
    m = re.search(r"(\d+) requests, (\d+) malformed, (\d+) 102s, wall "
                  r"([\d.]+) s", text)
    return tuple(float(x) if "." in x else int(x)
                 for x in m.groups()) if m else None


def status_counters(env, port=None):
    """mod_processing's lines of /server-status?auto, as a dict."""
    with Connection.open("127.0.0.1", port or env.port, timeout=10) as c:
        c.request("GET", "/server-status?auto", close=True)
        r = c.read_response()
    out = {}
    for line in r.body.decode("latin-1").splitlines():
        m = re.match(r"(Processing\w+): (\d+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def wait_armed_zero(env, timeout=15.0):
    """Poll until no request is armed (every arm was disarmed)."""
    deadline = time.monotonic() + timeout
    while True:
        c = status_counters(env)
        if c.get("ProcessingArmed", 0) == 0 or time.monotonic() > deadline:
            return c
        time.sleep(0.2)
