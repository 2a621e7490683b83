#!/usr/bin/python3
"""1,000 concurrently armed requests in one child: lateness of each 102 and
the watchdog thread's CPU time.

Server: event MPM, one child with ThreadsPerChild 1050 (ServerLimit 1), a
location /slow handled by mod_proc_test's `proc-test` (it sleeps for
`?sleep=MS` after reading the request) with

    Processing On, ProcessingDelay 1s, ProcessingInterval 1s,
    ProcessingMaxCount 0 (no limit)

Client (this script, one epoll loop): opens SC_CONNS (1000) connections,
then sends `GET /slow?sleep=SC_SLEEP_MS` on each, either

  spread   one request every 1 ms (the arm times cover one interval: at
           each instant about one request is due), or
  burst    all requests at once (about 1,000 requests due at the same
           moment every second: the worst case for a tick),

and reads on every connection.  Each 102's arrival time is the kernel's
receive timestamp (SO_TIMESTAMPNS), so that the client's own scheduling
does not add to it.

  lateness = arrival - (send time + delay + (k-1) * interval)

for the k-th 102 of a request: an upper bound.  The exact figure is
against the schedule the server gave the request: its clock starts at
r->request_time (when httpd read the request line), which the access log
records (`%{usec}t`, each request named by an `X-Conn: N` header), so

  lateness = arrival - (request_time + delay + (k-1) * interval)

both on CLOCK_REALTIME, with no debug logging to slow the watchdog down
(negative when a repeat 102 went out early: each wake-up of the watchdog
also sends the repeat 102s due before the end of its 10 ms slot, up to
10 ms early).  The client's send time (read just before send()) is earlier
than request_time (the request still has to cross loopback and be read),
so the first figure over-estimates lateness by that much: a few ms when
requests are spread, up to ~150 ms in a burst of 1,000 where the last
requests wait for a worker thread to read them.  With SC_DEBUG_RUN=1 each
pattern is run a second time with `LogLevel processing:debug` (whose log
lines slow the watchdog down: ~15 us per 102 here), and lateness is also
computed from the server's own log: the time of "sent 102 ... #k" minus the due time the
server gave it, (k-1) * interval after the first 102's, which the "armed"
line states as "first 102 in N ms" from its own time (to the ms; the clock
of a request without a body starts when httpd read its request line, so
the arm time itself is not the schedule's start).  The CPU figure comes
from the run without debug logging only.

Watchdog CPU: /proc/<child>/task/<watchdog>/schedstat (ns on CPU) over the
whole run, from just before the first request is sent to the last final
response, divided by that wall time; its context switches count its wakes
(voluntary: it blocked, in its timed or untimed wait or on the mutex a
worker held; nonvoluntary: it was preempted).
The watchdog thread starts on the child's first armed request, so before
the run one `GET /slow?sleep=0` creates it: the one thread that appears is
the watchdog (benchlib.start_watchdog); the run starts once that request's
due time has passed.

Receive side (SC_RX, default "loopback,steered": each pattern runs in both):

  loopback  as the kernel does it by default: a send on loopback runs the
            whole receiving side (the client's TCP receive, waking the
            client) in the sender's context, so the watchdog's CPU time
            includes work that, on a real network, the receiving host does;
  steered   the server pinned to CPU 0, this client to CPU 1, and
            Receive Packet Steering on lo (/sys/class/net/lo/queues/rx-0/
            rps_cpus = CPU 1) hands every packet received on loopback to
            CPU 1's backlog: the sender's part of a send (TCP and IP
            output, queueing the packet, an inter-processor interrupt) stays
            with the watchdog, the receiving side runs on the client's CPU,
            as a NIC's receive does on the client's host.  The previous
            rps_cpus value is restored afterwards (if the run is killed,
            `echo 0 > /sys/class/net/lo/queues/rx-0/rps_cpus` restores
            the default).  Skipped without root or 2 CPUs.

The floor (SC_IDEAL, default 1): after each run against httpd the same
client runs against bench/idealwd.c, a stand-in server whose one sending
thread does the least work that sends the same 102s with the module's
timing rules (same 10 ms slots, same early repeats, same wake-up rule, a
queue in due order, constant bytes, no httpd).  Its thread's CPU time,
measured the same way, is what this machine's kernel charges for those
sends and wake-ups: the module's watchdog can only be compared with it,
not go below it.  SC_REPEAT (3) repeats each pair of runs; the summary
gives the median of each.

Environment: SC_CONNS (1000), SC_SLEEP_MS (10500: ten 102s per request),
SC_PATTERNS ("spread,burst"), SC_DEBUG_RUN (0), SC_RX ("loopback,steered"),
SC_IDEAL (1), SC_REPEAT (3).
"""

import contextlib
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402

CONNS = int(os.environ.get("SC_CONNS", "1000"))
SLEEP_MS = int(os.environ.get("SC_SLEEP_MS", "10500"))
PATTERNS = os.environ.get("SC_PATTERNS", "spread,burst").split(",")
DEBUG_RUN = os.environ.get("SC_DEBUG_RUN", "0") == "1"
RX_MODES = os.environ.get("SC_RX", "loopback,steered").split(",")
IDEAL_RUN = os.environ.get("SC_IDEAL", "1") == "1"
REPEAT = int(os.environ.get("SC_REPEAT", "3"))
SERVER_CPU = 0
CLIENT_CPU = 1
LO_RPS = "/sys/class/net/lo/queues/rx-0/rps_cpus"
DELAY = 1.0
INTERVAL = 1.0
WAKE_GRID_MS = 10                       # the module's PROC_WAKE_GRID

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
INTERIM = b"HTTP/1.1 102 Processing\r\n\r\n"


@contextlib.contextmanager
def steered_receive():
    """Receive Packet Steering on lo to CLIENT_CPU and this process pinned
    there (the server is started on SERVER_CPU); both undone on exit."""
    if (os.cpu_count() or 1) < 2 or os.geteuid() != 0:
        raise RuntimeError("SC_RX=steered needs root and 2 CPUs")
    with open(LO_RPS) as f:
        old_rps = f.read().strip()
    with open(LO_RPS, "w") as f:
        f.write(f"{1 << CLIENT_CPU:x}")
    try:
        with bl.pinned({CLIENT_CPU}):
            yield
    finally:
        with open(LO_RPS, "w") as f:
            f.write(old_rps)


def server_conf():
    # the access log gives each request's r->request_time (%{usec}t: when
    # httpd read its request line), where the clock of its 102s starts
    return f"""
LogFormat "%{{usec}}t %{{X-Conn}}i" scale
CustomLog "logs/scale_log" scale
ListenBacklog 2048
ThreadStackSize 1048576
<Location "/slow">
    SetHandler proc-test
    Processing On
    ProcessingClients all
    ProcessingDelay {int(DELAY * 1000)}ms
    ProcessingInterval {int(INTERVAL * 1000)}ms
    ProcessingMaxCount 0
</Location>
"""


class Conn:
    __slots__ = ("sock", "buf", "sent_ns", "arrivals", "done", "status")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.sent_ns = None
        self.arrivals = []
        self.done = False
        self.status = None


def open_connections(port, n):
    conns = []
    ep = select.epoll()
    pending = {}
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.connect_ex(("127.0.0.1", port))
        pending[s.fileno()] = s
        ep.register(s.fileno(), select.EPOLLOUT)
        conns.append(Conn(s))
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for fd, ev in ep.poll(1.0):
            s = pending.pop(fd, None)
            if s is None:
                continue
            ep.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, f"connect failed: {os.strerror(err)}")
    ep.close()
    if pending:
        raise RuntimeError(f"{len(pending)} connections did not complete")
    return conns


def parse(conn, ts_ns):
    """Consume complete 102s and the final response from conn.buf."""
    while True:
        if conn.buf.startswith(INTERIM):
            conn.arrivals.append(ts_ns)
            conn.buf = conn.buf[len(INTERIM):]
            continue
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = conn.buf[:end]
        status = int(head.split(b" ", 2)[1])
        if 100 <= status < 200:             # some other interim response
            conn.buf = conn.buf[end + 4:]
            continue
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        need = end + 4 + (int(m.group(1)) if m else 0)
        if len(conn.buf) >= need:
            conn.status = status
            conn.done = True
        return


def run_client(port, pattern, conns, wd_probe):
    ep = select.epoll()
    by_fd = {c.sock.fileno(): c for c in conns}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    reqs = [(f"GET /slow?sleep={SLEEP_MS} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"X-Conn: {i}\r\n\r\n").encode() for i in range(len(conns))]
    n = len(conns)
    step = 0.0 if pattern == "burst" else INTERVAL / n
    t0 = time.monotonic() + 0.05
    nxt = 0
    open_left = n
    probe0 = wd_probe()
    wall0 = time.monotonic_ns()
    last_done = None
    deadline = t0 + SLEEP_MS / 1000 + INTERVAL + 30
    anc = socket.CMSG_SPACE(16)
    while open_left and time.monotonic() < deadline:
        now = time.monotonic()
        while nxt < n and now >= t0 + nxt * step:
            c = conns[nxt]
            # taken before send(): the arm cannot be earlier, so lateness
            # is never under-estimated (a preemption between send() and
            # the clock would otherwise make it look early)
            c.sent_ns = time.time_ns()
            c.sock.send(reqs[nxt])
            nxt += 1
            if step:
                now = time.monotonic()
        if nxt < n:
            timeout = max(0.0, t0 + nxt * step - time.monotonic())
        else:
            timeout = 1.0
        for fd, ev in ep.poll(timeout):
            c = by_fd[fd]
            try:
                data, cmsgs, _, _ = c.sock.recvmsg(65536, anc)
            except BlockingIOError:
                continue
            ts = None
            for lvl, typ, cdata in cmsgs:
                if lvl == socket.SOL_SOCKET and typ == SCM_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    ts = sec * 1_000_000_000 + nsec
            if ts is None:
                ts = time.time_ns()
            if not data:
                c.done = True
            else:
                c.buf += data
                parse(c, ts)
            if c.done:
                ep.unregister(fd)
                open_left -= 1
                last_done = time.monotonic_ns()
    probe1 = wd_probe()
    wall1 = last_done or time.monotonic_ns()
    ep.close()
    return probe0, probe1, (wall1 - wall0) / 1e9


def lateness(conns, start_ns):
    """Lateness in ms of each 102 of conns[i] against start_ns[i] + delay +
    (k-1) x interval; connections without a start are left out."""
    late = []
    for i, c in enumerate(conns):
        if start_ns.get(i) is None:
            continue
        for k, ts in enumerate(c.arrivals, 1):
            sched = start_ns[i] + (DELAY + (k - 1) * INTERVAL) * 1e9
            late.append((ts - sched) / 1e6)
    return late


def request_times(access_log):
    """r->request_time (ns) of each connection's request, by its X-Conn."""
    start = {}
    with open(access_log) as f:
        for line in f:
            m = re.match(r"(\d+) (\d+)$", line.strip())
            if m:
                start[int(m.group(2))] = int(m.group(1)) * 1000
    return start


LOG_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})\]")


def lateness_server(error_log):
    """From `LogLevel processing:debug`: arm and send times per request."""
    armed = {}
    sends = []
    with open(error_log, errors="replace") as f:
        for line in f:
            m = LOG_TS.match(line)
            if not m or "processing:debug" not in line:
                continue
            ts = datetime.strptime(m.group(1),
                                   "%Y-%m-%d %H:%M:%S.%f").timestamp()
            rid = re.search(r"request (\S+?)[,;:]?\s*$", line)
            if not rid:
                continue
            first = re.search(r"\] armed: first 102 in (\d+)ms", line)
            if first:
                # the first 102's due time as the server scheduled it: the
                # clock of a request without a body starts when httpd read
                # its request line (r->request_time), before this line
                armed[rid.group(1)] = ts + int(first.group(1)) / 1e3
            else:
                k = re.search(r"sent 102 Processing #(\d+)", line)
                if k:
                    sends.append((rid.group(1), int(k.group(1)), ts))
    late = []
    for rid, k, ts in sends:
        if rid in armed:
            sched = armed[rid] + (k - 1) * INTERVAL
            late.append((ts - sched) * 1e3)
    return late, len(armed), len(sends)


def stats(v):
    if not v:
        return {"n": 0}
    return {"n": len(v), "min": round(min(v), 3),
            "p50": round(bl.percentile(v, 50), 3),
            "p90": round(bl.percentile(v, 90), 3),
            "p99": round(bl.percentile(v, 99), 3),
            "max": round(max(v), 3)}


def one_run(run, *args):
    """run(*args), with the receive side steered when args[-1] (rx) says
    so."""
    if args[-1] == "steered":
        with steered_receive():
            return run(*args)
    return run(*args)


def measure(port, pid, tid, pattern, out):
    """Runs the client against the server on port; the thread tid of
    process pid sends the 102s.  Fills out with the client's figures and
    that thread's CPU time and switches; returns the connections."""
    def probe():
        st = bl.task_status(pid, tid)
        return (bl.task_cpu_ns(pid, tid),
                (st["voluntary_ctxt_switches"],
                 st["nonvoluntary_ctxt_switches"],
                 *bl.task_user_sys_ms(pid, tid)))

    conns = open_connections(port, CONNS)
    (cpu0, sw0), (cpu1, sw1), wall = run_client(port, pattern, conns, probe)
    # upper bound: from the client's send time
    late = lateness(conns, {i: c.sent_ns for i, c in enumerate(conns)})
    per_req = [len(c.arrivals) for c in conns]
    out["requests_completed"] = sum(1 for c in conns if c.status == 200)
    out["interims_received"] = len(late)
    out["interims_per_request_min"] = min(per_req)
    out["interims_per_request_max"] = max(per_req)
    out["lateness_client_ms"] = stats(late)
    out["wall_s"] = round(wall, 2)
    out["watchdog_cpu_ms"] = round((cpu1 - cpu0) / 1e6, 2)
    out["watchdog_cpu_pct_of_core"] = round(
        100.0 * (cpu1 - cpu0) / 1e9 / wall, 3)
    # voluntary: the thread blocked (timed or untimed wait, or the
    # mutex held by a worker); nonvoluntary: it was preempted
    out["watchdog_voluntary"] = sw1[0] - sw0[0]
    out["watchdog_nonvoluntary"] = sw1[1] - sw0[1]
    out["watchdog_wakes"] = out["watchdog_voluntary"] + \
        out["watchdog_nonvoluntary"]
    # user space (the module's own work) vs kernel (the sends, the
    # wake-ups, loopback delivering each 102 to the client)
    out["watchdog_user_ms"] = sw1[2] - sw0[2]
    out["watchdog_sys_ms"] = sw1[3] - sw0[3]
    out["watchdog_us_per_102"] = round(
        (cpu1 - cpu0) / 1e3 / max(1, len(late)), 2)
    return conns


def log_run(out):
    lc = out["lateness_client_ms"]
    lx = out.get("lateness_schedule_ms", {})
    msg = (f"{out['server']:6} {out['pattern']:6} {out['receive']:8} "
           f"debug={int(out['debug_log'])}: {out['requests_completed']}/"
           f"{CONNS} ok, {out['interims_received']} 102s, client lateness "
           f"p50 {lc.get('p50')} p99 {lc.get('p99')} max {lc.get('max')} ms, "
           f"against the schedule min {lx.get('min')} p50 {lx.get('p50')} "
           f"p99 {lx.get('p99')} max {lx.get('max')} ms; "
           f"watchdog {out['watchdog_cpu_ms']} ms CPU in {out['wall_s']} s "
           f"= {out['watchdog_cpu_pct_of_core']}% of a core, "
           f"{out['watchdog_wakes']} wakes")
    if out["debug_log"]:
        ls = out["lateness_server_ms"]
        msg += (f"; server-log lateness p50 {ls.get('p50')} p99 "
                f"{ls.get('p99')} max {ls.get('max')} ms")
    bl.log(msg)


def module_run(so, sleep_so, pattern, debug, rx):
    s = bl.Server(f"sc-{pattern}", mpm="event", module=True,
                  processing=None, module_so=so, sleep_so=sleep_so,
                  threads=CONNS + 50, extra=server_conf(),
                  loglevel="debug" if debug else "warn")
    out = {"server": "module", "pattern": pattern, "debug_log": debug,
           "connections": CONNS, "sleep_ms": SLEEP_MS, "receive": rx}
    try:
        bl.start_pinned(s, server_cpus(rx), timeout=60)
        child = s.child_pid

        # The watchdog thread starts on the child's first armed request:
        # arm one short request to create it (the new thread is the
        # watchdog), then wait until its due time (the horizon it sleeps
        # toward) has passed, so that the measured run starts with the
        # thread in its untimed wait, as on a server that has been quiet.
        def first_arm():
            c = bl.Http1(s.port)
            out["first_arm_status"] = c.request("/slow?sleep=0",
                                                close=True)[0]
            c.close()

        wd = bl.start_watchdog(child, first_arm)
        time.sleep(DELAY + 1.0)
        out["threads_in_child"] = len(os.listdir(f"/proc/{child}/task"))

        conns = measure(s.port, child, wd, pattern, out)
        for _ in range(50):                 # the last log lines
            start = request_times(s.path("logs", "scale_log"))
            if len(start) >= out["requests_completed"]:
                break
            time.sleep(0.1)
        # exact: from the server's own schedule
        out["lateness_schedule_ms"] = stats(lateness(conns, start))
        out["access_log_requests"] = len(start)
        for c in conns:
            c.sock.close()
        if debug:
            time.sleep(0.5)
            late_s, n_armed, n_sent = lateness_server(s.error_log)
            out["lateness_server_ms"] = stats(late_s)
            out["server_log_armed"] = n_armed
            out["server_log_sent"] = n_sent
        out["errors"] = [ln for ln in s.error_lines()][:10]
    finally:
        s.stop(timeout=60)
        s.cleanup()
    log_run(out)
    return out


def server_cpus(rx):
    """Where the server runs: CPU 0 when the receive side is steered to
    the client's CPU, anywhere otherwise."""
    return {SERVER_CPU} if rx == "steered" else None


def ideal_run(exe, pattern, rx):
    """The same client against bench/idealwd.c: the floor."""
    out = {"server": "ideal", "pattern": pattern, "debug_log": False,
           "connections": CONNS, "sleep_ms": SLEEP_MS, "receive": rx}
    port = bl.free_port()
    with bl.pinned(server_cpus(rx)):
        proc = subprocess.Popen(
            [exe, str(port), str(int(DELAY * 1000)),
             str(int(INTERVAL * 1000)), str(SLEEP_MS), str(WAKE_GRID_MS)],
            stdout=subprocess.PIPE, text=True)
    try:
        # printed by its watchdog thread, after the socket listens
        tid = int(proc.stdout.readline().split()[1])
        time.sleep(0.5)
        conns = measure(port, proc.pid, tid, pattern, out)
        for c in conns:
            c.sock.close()
    finally:
        proc.terminate()
        proc.wait(10)
    log_run(out)
    return out


def summarize(runs):
    """Median watchdog CPU per server, pattern and receive side (runs
    without debug logging)."""
    groups = {}
    for x in runs:
        if not x["debug_log"]:
            key = (x["server"], x["pattern"], x["receive"])
            groups.setdefault(key, []).append(x)
    return [{"server": k[0], "pattern": k[1], "receive": k[2],
             "runs": len(v),
             "watchdog_cpu_pct_of_core": round(bl.median(
                 [x["watchdog_cpu_pct_of_core"] for x in v]), 3),
             "watchdog_cpu_pct_all": [x["watchdog_cpu_pct_of_core"]
                                      for x in v],
             "watchdog_us_per_102": round(bl.median(
                 [x["watchdog_us_per_102"] for x in v]), 2)}
            for k, v in groups.items()]


def main():
    nofile = bl.raise_nofile()
    if nofile < CONNS + 100:
        sys.exit(f"need {CONNS + 100} file descriptors, have {nofile}")
    so = bl.build_module()
    sleep_so = bl.build_sleep_module()
    ideal = bl.build_c("idealwd", "-pthread") if IDEAL_RUN else None
    res = {"machine": bl.machine_info(), "module": bl.module_identity(so),
           "delay_s": DELAY, "interval_s": INTERVAL, "runs": []}
    for rx in RX_MODES:
        if rx == "steered" and (os.geteuid() != 0
                                or (os.cpu_count() or 1) < 2):
            bl.log("skipping SC_RX=steered: it needs root and 2 CPUs")
            continue
        for pattern in PATTERNS:
            for _ in range(REPEAT):
                res["runs"].append(one_run(module_run, so, sleep_so, pattern,
                                           False, rx))
                if DEBUG_RUN:
                    res["runs"].append(one_run(module_run, so, sleep_so,
                                               pattern, True, rx))
                if ideal:
                    res["runs"].append(one_run(ideal_run, ideal, pattern,
                                               rx))
    res["summary"] = summarize(res["runs"])
    for x in res["summary"]:
        bl.log(f"median of {x['runs']}: {x['server']:6} {x['pattern']:6} "
               f"{x['receive']:8} {x['watchdog_cpu_pct_of_core']}% of a "
               f"core, {x['watchdog_us_per_102']} us per 102")
    bl.save_json("scale.json", res)


if __name__ == "__main__":
    main()
