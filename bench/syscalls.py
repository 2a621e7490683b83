#!/usr/bin/python3
"""System calls per fast request, counted by strace.

callgrind counts user-space instructions only; the kernel work a request
causes is its system calls.  wrk's figures on a shared 2-CPU machine move
by +-10% from round to round, far more than the few percent at stake, so
this counts instead what the module could add in the kernel: for base
(module not loaded), Off and On (see callgrind.py), one event child (32
threads) serves SC_WARMUP requests (the first of them starts the watchdog
thread), then `strace -c -f` is attached to the child while SC_REQUESTS
fast requests (the small static file) go over SC_CONNS keep-alive
connections; calls of each kind / requests.  futex and epoll calls vary
with how the MPM's threads happened to be scheduled (listener and
workers hand connections over through them), in every configuration.

Environment: SC_REQUESTS (4000), SC_CONNS (4), SC_WARMUP (500).
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402

N = int(os.environ.get("SC_REQUESTS", "4000"))
CONNS = int(os.environ.get("SC_CONNS", "4"))
WARMUP = int(os.environ.get("SC_WARMUP", "500"))
CONFIGS = [("base", False, None), ("off", True, "Off"), ("on", True, "On")]


def parse_strace_summary(path):
    """{syscall: calls} from `strace -c` output."""
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[0][0].isdigit() \
                    and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    return calls


def one(so, cfg, module, processing):
    s = bl.Server(f"sys-{cfg}", mpm="event", module=module,
                  processing=processing, module_so=so, threads=32)
    s.start()
    try:
        path = "/" + bl.SMALL_FILE
        bl.run_requests_parallel(s.port, path, WARMUP, CONNS)
        child = s.children()[0]
        out = s.path("out", "strace.txt")
        st = subprocess.Popen(["strace", "-c", "-f", "-o", out,
                               "-p", str(child)],
                              stderr=subprocess.DEVNULL)
        time.sleep(1.0)             # strace attached to every thread
        bl.run_requests_parallel(s.port, path, N, CONNS)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        calls = parse_strace_summary(out)
    finally:
        s.stop()
        s.cleanup()
    per = {k: round(v / N, 3) for k, v in sorted(calls.items())}
    total = round(sum(calls.values()) / N, 3)
    bl.log(f"{cfg:5}: {total} system calls per request: {per}")
    return {"config": cfg, "requests": N, "calls": calls,
            "per_request": per, "total_per_request": total}


def main():
    so = bl.build_module()
    res = {"machine": bl.machine_info(), "module": bl.module_identity(so),
           "requests": N, "connections": CONNS, "runs": []}
    for cfg, module, processing in CONFIGS:
        res["runs"].append(one(so, cfg, module, processing))
    bl.save_json("syscalls.json", res)


if __name__ == "__main__":
    main()
