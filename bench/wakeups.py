#!/usr/bin/python3
"""How often fast requests and an idle server wake the watchdog thread.

A wake-up of a thread blocked in a condition wait is one voluntary context
switch when it blocks again, so the count of the watchdog's switches
(/proc/<child>/task/<tid>/status: voluntary_ctxt_switches +
nonvoluntary_ctxt_switches) is the number of times it ran.

The watchdog thread starts lazily, on the child's first armed request; a
child that has armed nothing has only the MPM's threads (event: main,
listener, workers; prefork: one).  So:

  idle-start   10 s with no request at all, right after start: the child
               must still have no watchdog thread (the strongest form of
               "an idle server wakes it 0 times"; recorded as
               watchdog_at_idle_start = false and the thread counts)
  first-arm    one fast request in the Processing On location; the thread
               that appears is the watchdog (benchlib.start_watchdog)
  fast-A       WK_REQUESTS (10,000) requests for a 94-byte static file in
               the Processing On location (4 keep-alive connections, 1 with
               prefork's single process), right after the first arm: the
               thread sleeps toward the first request's due time
               ("horizon ahead")
  drain-A      until the last fast request's first 102 would have been due,
               plus 1 s (the thread passes its horizon: expect 1 timed wake)
  idle-after   10 s more with no request (thread exists: expect 0)
  fast-B       the same 10,000 requests again, the thread now in an untimed
               wait (past its horizon: the state of any server that has been
               quiet for one ProcessingDelay), then drain-B
  wrk          WK_WRK (5) s of wrk with 16 keep-alive connections (both
               CPUs busy), then a drain as above
  confirm      a request to /confirm (delay 100ms, interval 100ms, ~1s
               handler) must make the chosen thread switch at least as often
               as it received 102s, and more than any other thread

Each request in the fast phases ends long before its first 102 would be
due.  The delay is the interval (ProcessingDelay unset).

Environment: WK_REQUESTS (10000), WK_IDLE (10 s), WK_INTERVALS ("20s,1s":
the default interval, and the shortest one in whole seconds), WK_MPMS
("event,prefork"), WK_WRK (5 s; 0 skips wrk).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402

REQUESTS = int(os.environ.get("WK_REQUESTS", "10000"))
IDLE = float(os.environ.get("WK_IDLE", "10"))
INTERVALS = os.environ.get("WK_INTERVALS", "20s,1s").split(",")
MPMS = os.environ.get("WK_MPMS", "event,prefork").split(",")
WRK_SECONDS = int(os.environ.get("WK_WRK", "5"))


def seconds(v):
    return float(v[:-2]) / 1000 if v.endswith("ms") else float(v.rstrip("s"))


def switches(pid, tid):
    st = bl.task_status(pid, tid)
    return st["voluntary_ctxt_switches"] + st["nonvoluntary_ctxt_switches"]


def run_case(so, sleep_so, mpm, interval):
    extra = f"""
<Location "/{bl.SMALL_FILE}">
    ProcessingInterval {interval}
</Location>
<Location "/confirm">
    SetHandler proc-test
    Processing On
    ProcessingClients all
    ProcessingDelay 100ms
    ProcessingInterval 100ms
    ProcessingMaxCount 0
</Location>
"""
    s = bl.Server(f"wk-{mpm}", mpm=mpm, module=True, processing="On",
                  module_so=so, sleep_so=sleep_so, extra=extra, threads=32)
    out = {"mpm": mpm, "interval": interval}
    path = "/" + bl.SMALL_FILE
    conns = 1 if mpm == "prefork" else 4

    def fast_phase(tag, child, wd):
        """WK_REQUESTS fast requests, then the drain; returns the count at
        the end of the drain."""
        c0 = switches(child, wd)
        t0 = time.monotonic()
        ok = bl.run_requests_parallel(s.port, path, REQUESTS, conns)
        t1 = time.monotonic()
        c1 = switches(child, wd)
        out[f"fast_{tag}_requests"] = ok
        out[f"fast_{tag}_seconds"] = round(t1 - t0, 2)
        out[f"fast_{tag}"] = c1 - c0
        # the last fast request armed just before t1: its first 102 would
        # have been due one interval later
        wait = seconds(interval) + 1.0 - (time.monotonic() - t1)
        if wait > 0:
            time.sleep(wait)
        c2 = switches(child, wd)
        out[f"drain_{tag}"] = c2 - c1
        out[f"drain_{tag}_seconds"] = round(time.monotonic() - t1, 1)
        return c2

    try:
        s.start()
        child = s.child_pid
        out["child_pid"] = child
        out["fast_connections"] = conns
        out["mpm_threads"] = s.mpm_threads()

        time.sleep(1)
        t_before = bl.thread_ids(child)
        time.sleep(IDLE)
        t_after = bl.thread_ids(child)
        out["idle_seconds"] = IDLE
        out["threads_idle_start"] = [len(t_before), len(t_after)]
        # no watchdog thread before the first arm: nothing to wake
        out["watchdog_at_idle_start"] = (t_before != t_after
                                         or len(t_after) > s.mpm_threads())
        if out["watchdog_at_idle_start"]:
            raise RuntimeError(f"child {child} has a thread more than the "
                               "MPM's before any request: is this a build "
                               "without the lazy watchdog start?")
        # no thread to wake: 0 wakes, by construction
        out["idle_start"] = 0

        def first_arm():
            c = bl.Http1(s.port)
            out["first_arm_status"] = c.request(path, close=True)[0]
            c.close()

        wd = bl.start_watchdog(child, first_arm)
        out["watchdog_tid"] = wd
        out["threads_in_child"] = len(bl.thread_ids(child))
        out["first_arm_switches"] = switches(child, wd)

        c3 = fast_phase("a", child, wd)
        time.sleep(IDLE)
        c4 = switches(child, wd)
        out["idle_after"] = c4 - c3
        c4 = fast_phase("b", child, wd)

        # the same under load: wrk keeps 16 connections busy for WK_WRK s
        # (both CPUs busy, so the watchdog may run late after a signal)
        if WRK_SECONDS > 0:
            import subprocess
            r = subprocess.run(["wrk", "-t1", "-c16", f"-d{WRK_SECONDS}s",
                                f"http://127.0.0.1:{s.port}/{bl.SMALL_FILE}"],
                               capture_output=True, text=True, check=True)
            import re
            m = re.search(r"(\d+) requests in", r.stdout)
            c5 = switches(child, wd)
            out["wrk_requests"] = int(m.group(1)) if m else None
            out["wrk_seconds"] = WRK_SECONDS
            out["wrk"] = c5 - c4
            time.sleep(seconds(interval) + 1.0)
            c6 = switches(child, wd)
            out["wrk_drain"] = c6 - c5

        # confirm the identification by behaviour
        before = bl.all_tasks_switches(child)
        conn = bl.Http1(s.port)
        st, interim, _ = conn.request("/confirm?sleep=1050")
        conn.close()
        time.sleep(0.2)
        after = bl.all_tasks_switches(child)
        deltas = {t: after[t] - before.get(t, 0) for t in after}
        top = max(deltas, key=deltas.get)
        out["confirm_102s"] = interim
        out["confirm_watchdog_switches"] = deltas.get(wd, 0)
        out["confirm_max_other"] = max(
            [v for t, v in deltas.items() if t != wd] or [0])
        out["confirmed"] = (top == wd and deltas.get(wd, 0) >= interim > 0)
        out["errors"] = s.error_lines()
    finally:
        s.stop()
        s.cleanup()
    bl.log(f"{mpm:8} interval {interval:4}: idle at start: no watchdog "
           f"thread ({out['threads_idle_start']} threads); fast A "
           f"{out['fast_a_requests']} in {out['fast_a_seconds']}s -> "
           f"{out['fast_a']}, drain {out['drain_a']}; idle after "
           f"{out['idle_after']}; fast B {out['fast_b_requests']} in "
           f"{out['fast_b_seconds']}s -> {out['fast_b']}, drain "
           f"{out['drain_b']}; wrk {out.get('wrk_requests')} requests -> "
           f"{out.get('wrk')} (+{out.get('wrk_drain')} drain); confirmed={out['confirmed']} "
           f"({out['confirm_watchdog_switches']} switches for "
           f"{out['confirm_102s']} 102s, max other thread "
           f"{out['confirm_max_other']})")
    return out


def main():
    so = bl.build_module()
    sleep_so = bl.build_sleep_module()
    res = {"machine": bl.machine_info(), "module": bl.module_identity(so),
           "requests": REQUESTS, "cases": []}
    for mpm in MPMS:
        for interval in INTERVALS:
            res["cases"].append(run_case(so, sleep_so, mpm, interval))
    bl.save_json("wakeups.json", res)


if __name__ == "__main__":
    main()
