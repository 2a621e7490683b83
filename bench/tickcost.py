#!/usr/bin/python3
"""The watchdog's cost per 102 and per wake, with few or many requests
armed, and its allocations; counted by callgrind on the watchdog thread only.

`apache2 -X` (event MPM, one process) runs under
`valgrind --tool=callgrind --separate-threads=yes`, which writes one profile
per thread (callgrind.out.<pid>-<thread number>).  The watchdog thread
starts on the first armed request, after the MPM's listener and workers, so
its number depends on ThreadsPerChild: its profile is the one (and only one)
whose functions include proc_wd_main.  Valgrind reuses the number of a
thread that has exited (the event MPM's start-up thread, which creates the
workers and then ends), so that file may also hold the earlier thread's
costs: `--toggle-collect=proc_wd_main` counts only what runs inside
proc_wd_main (the thread's whole life but its creation and exit).

Per case:
  IDLE   requests to /idle (ProcessingDelay 1h: armed for the whole run,
         never due), sent first and given time to arm;
  DUE    requests to /due (ProcessingDelay and ProcessingInterval 500ms,
         no count limit) that then each receive K 102s.
Each (IDLE, DUE) case runs with K = K1 and K = K2; the difference of the
watchdog thread's totals divided by DUE * (K2 - K1) is the cost of one more
102 with IDLE other requests armed; the same difference of its calls to
malloc/calloc/realloc (and of apr_palloc) shows whether a tick allocates.

Environment: TK_IDLE ("0,1000"), TK_DUE ("10,100"), TK_K ("2,6").
"""

import glob
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402
from cgparse import Profile, short_fn                    # noqa: E402

IDLES = [int(x) for x in os.environ.get("TK_IDLE", "0,1000").split(",")]
DUES = [int(x) for x in os.environ.get("TK_DUE", "10,100").split(",")]
K1, K2 = [int(x) for x in os.environ.get("TK_K", "2,6").split(",")]
STEP_MS = 500

ALLOC_FNS = ("malloc", "calloc", "realloc")


def conf():
    return f"""
ListenBacklog 2048
ThreadStackSize 262144
<Location "/idle">
    SetHandler proc-test
    Processing On
    ProcessingClients all
    ProcessingDelay 1h
    ProcessingInterval 1h
</Location>
<Location "/due">
    SetHandler proc-test
    Processing On
    ProcessingClients all
    ProcessingDelay {STEP_MS}ms
    ProcessingInterval {STEP_MS}ms
    ProcessingMaxCount 0
</Location>
"""


def send_all(port, n, path):
    socks = []
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), 60)
        s.sendall(req)
        socks.append(s)
    return socks


def read_all(socks, timeout):
    """Read every response to the end (the server closes nothing: read
    until the final response's body is in)."""
    import select
    bufs = {s.fileno(): b"" for s in socks}
    by_fd = {s.fileno(): s for s in socks}
    done = set()
    ep = select.epoll()
    for f in by_fd:
        ep.register(f, select.EPOLLIN)
    deadline = time.monotonic() + timeout
    while len(done) < len(socks) and time.monotonic() < deadline:
        for f, _ in ep.poll(1.0):
            d = by_fd[f].recv(65536)
            bufs[f] += d
            if not d or _complete(bufs[f]):
                done.add(f)
                ep.unregister(f)
    ep.close()
    counts = [bufs[f].count(b"HTTP/1.1 102 Processing") for f in bufs]
    return counts, len(done)


def _complete(b):
    import re
    i = b.find(b"HTTP/1.1 200")
    if i < 0:
        return False
    j = b.find(b"\r\n\r\n", i)
    if j < 0:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", b[i:j])
    return len(b) >= j + 4 + (int(m.group(1)) if m else 0)


def watchdog_profile(outdir):
    """The per-thread profile that runs proc_wd_main (exactly one)."""
    files = glob.glob(os.path.join(outdir, "cg.out.*-*"))
    if not files:
        raise RuntimeError(f"no per-thread callgrind output in {outdir}")
    hits = []
    for f in files:
        with open(f, "rb") as fh:
            if b" proc_wd_main\n" not in fh.read():
                continue
        if any(short_fn(fn) == "proc_wd_main" for (_, fn) in Profile(f).excl):
            hits.append(f)
    if len(hits) != 1:
        raise RuntimeError(f"{len(hits)} thread profiles run proc_wd_main: "
                           f"{hits}")
    return hits[0]


def one_run(so, sleep_so, idle, due, k):
    s = bl.Server(f"tk-{idle}-{due}-{k}", mpm="event", module=True,
                  module_so=so, sleep_so=sleep_so, threads=idle + due + 10,
                  extra=conf())
    out = {"idle": idle, "due": due, "k": k}
    try:
        s.start_fg(["valgrind", "--tool=callgrind", "--collect-systime=no",
                    "--separate-threads=yes",
                    "--toggle-collect=proc_wd_main",
                    f"--max-threads={idle + due + 100}",
                    f"--callgrind-out-file={s.path('out')}/cg.out.%p"],
                   timeout=300)
        due_sleep = STEP_MS * k + STEP_MS // 2
        idle_sleep = due_sleep + 20000 + 30 * idle
        idle_socks = send_all(s.port, idle, f"/idle?sleep={idle_sleep}")
        # let every idle request reach its handler and arm (valgrind runs
        # the server's threads one at a time, slowly)
        time.sleep(3 + idle / 100)
        due_socks = send_all(s.port, due, f"/due?sleep={due_sleep}")
        counts, done = read_all(due_socks, due_sleep / 1000 + 120)
        out["due_completed"] = done
        out["interims_per_due_request"] = sorted(set(counts))
        out["interims"] = sum(counts)
        for x in due_socks + idle_socks:
            x.close()
        time.sleep(0.5)
        s.stop_fg(timeout=300)
        path = watchdog_profile(s.path("out"))
        out["profile_file"] = os.path.basename(path)
        p = Profile(path)
        if not any(short_fn(fn) == "proc_wd_main" for (_, fn) in p.excl):
            raise RuntimeError(f"{path} is not the watchdog thread")
        out["ir"] = p.total
        out["calls"] = {f: p.calls_to(f) for f in
                        ALLOC_FNS + ("apr_palloc", "send",
                                     "apr_thread_cond_timedwait",
                                     "apr_thread_cond_wait", "syscall",
                                     "ap_send_interim_response")}
        out["allocs"] = sum(out["calls"][f] for f in ALLOC_FNS)
        out["errors"] = s.error_lines()[:5]
    finally:
        if s.proc is not None:
            s.stop_fg(timeout=300)
        s.cleanup()
    bl.log(f"idle {idle:5} due {due:4} k {k}: {out['interims']} 102s, "
           f"watchdog {out['ir']} Ir, calls {out['calls']}")
    return out


def main():
    so = bl.build_module()
    sleep_so = bl.build_sleep_module()
    bl.raise_nofile()
    res = {"machine": bl.machine_info(), "module": bl.module_identity(so),
           "k1": K1, "k2": K2, "step_ms": STEP_MS, "cases": []}
    for idle in IDLES:
        for due in DUES:
            r1 = one_run(so, sleep_so, idle, due, K1)
            r2 = one_run(so, sleep_so, idle, due, K2)
            extra = r2["interims"] - r1["interims"]
            # sleeps: futex waits (syscall; the watchdog's only other
            # syscall() is a futex wake after a contended unlock) or, in a
            # -DPROC_APR_LOCK build, condition waits
            wakes1 = sum(r1["calls"][f] for f in (
                "apr_thread_cond_timedwait", "apr_thread_cond_wait",
                "syscall"))
            wakes2 = sum(r2["calls"][f] for f in (
                "apr_thread_cond_timedwait", "apr_thread_cond_wait",
                "syscall"))
            case = {"idle": idle, "due": due, "runs": [r1, r2],
                    "extra_102s": extra,
                    "ir_per_102": round((r2["ir"] - r1["ir"]) / extra, 1)
                    if extra else None,
                    "waits": [wakes1, wakes2],
                    "allocs_delta": r2["allocs"] - r1["allocs"],
                    "palloc_per_102": round(
                        (r2["calls"]["apr_palloc"] - r1["calls"]["apr_palloc"])
                        / extra, 2) if extra else None}
            res["cases"].append(case)
            bl.log(f"  => idle {idle} due {due}: {case['ir_per_102']} Ir per "
                   f"102, malloc/calloc/realloc delta "
                   f"{case['allocs_delta']} over {extra} more 102s")
    bl.save_json("tickcost.json", res)


if __name__ == "__main__":
    main()
