#!/usr/bin/python3
"""Instructions per fast request, counted by callgrind.

For each server configuration

  base  the module not loaded
  off   the module loaded, `Processing Off` in <Location "/">
  on    the module loaded, `Processing On`  in <Location "/">

`apache2 -X` (one process) runs under `valgrind --tool=callgrind` as
www-data; a client fetches a 94-byte static file N1 times, the server is
stopped and callgrind's total is read; then the same with N2 requests.
(total(N2) - total(N1)) / (N2 - N1) is the cost of one request with start-up
and shutdown removed.  Counts are user-space instructions of all threads
(kernel work is not counted: see the throughput run for that).

Matrix: MPM event and prefork, keep-alive (all requests on one connection)
and close (a new connection per request), profile minimal and debian (see
benchlib).  Besides the totals, the module's own share is split by entry
function (code in mod_processing.so and everything it calls, except the
rest of the filter chain it passes data to), and each function's Ir is
split again into its own instructions and each outside function it calls
(the "_detail" entries of callgrind.json).

Environment: CG_N1 (default 200), CG_N2 (default 1200), CG_MPMS, CG_PATTERNS,
CG_PROFILES (comma lists), CG_REPEAT (default 3: each configuration is
measured that many times, interleaved, and the median is kept; the spread of
the base runs shows the run-to-run noise, which comes from the event MPM's
listener/worker hand-offs and from time-dependent caches).
"""

import glob
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402
from cgparse import Profile, short_fn                    # noqa: E402

N1 = int(os.environ.get("CG_N1", "200"))
N2 = int(os.environ.get("CG_N2", "1200"))
MPMS = os.environ.get("CG_MPMS", "event,prefork").split(",")
PATTERNS = os.environ.get("CG_PATTERNS", "keepalive,close").split(",")
PROFILES = os.environ.get("CG_PROFILES", "minimal,debian").split(",")
REPEAT = int(os.environ.get("CG_REPEAT", "3"))

CONFIGS = {"base": (False, None), "off": (True, "Off"), "on": (True, "On")}
MODULE_OBJ = "mod_processing"       # bench/.build/mod_processing-<hash>.so
DOWNSTREAM = ("ap_pass_brigade", "ap_get_brigade")


def one_run(so, mpm, profile, cfg, n, keepalive, keep_dir=None):
    module, processing = CONFIGS[cfg]
    # Names of one length: the root path's length feeds httpd's string
    # functions, and only the module should differ between the servers.
    s = bl.Server(f"cg-{cfg}".ljust(7, "-"), mpm=mpm, module=module,
                  processing=processing, module_so=so, threads=4,
                  profile=profile)
    try:
        s.start_fg(["valgrind", "--tool=callgrind", "--collect-systime=no",
                    f"--callgrind-out-file={s.path('out')}/callgrind.out.%p"])
        ok = bl.run_requests(s.port, "/" + bl.SMALL_FILE, n,
                             keepalive=keepalive)
        if ok != n:
            raise RuntimeError(f"{ok}/{n} requests succeeded")
        # let the server go idle (the event MPM's listener finishes its
        # bookkeeping) before stopping it
        time.sleep(0.3)
        rc = s.stop_fg()
        files = glob.glob(s.path("out", "callgrind.out.*"))
        if rc not in (0, None) and not files:
            raise RuntimeError(f"callgrind run failed rc={rc}: "
                               f"{s.tail_log()}")
        prof = Profile(files[0])
        if keep_dir:
            shutil.copy(files[0], os.path.join(
                keep_dir, f"{profile}-{mpm}-{'ka' if keepalive else 'close'}"
                f"-{cfg}-{n}.callgrind"))
        bad = s.error_lines()
        if bad:
            bl.log("error log:", *bad[:5], sep="\n  ")
        return prof
    finally:
        if s.proc is not None:
            s.stop_fg()
        s.cleanup()


def per_request(p1, p2):
    return (p2.total - p1.total) / (N2 - N1)


def breakdown(p1, p2):
    t1, f1 = p1.attributable(MODULE_OBJ, DOWNSTREAM)
    t2, f2 = p2.attributable(MODULE_OBJ, DOWNSTREAM)
    by_fn = {}
    for k in set(f1) | set(f2):
        v = (f2.get(k, 0) - f1.get(k, 0)) / (N2 - N1)
        if abs(v) >= 0.5:
            by_fn[short_fn(k)] = round(v, 1)
    return round((t2 - t1) / (N2 - N1), 1), by_fn


def detail(p1, p2):
    """Per request: {function: {"self" or external callee: Ir}} for the
    module's functions (entries under 0.5 Ir dropped)."""
    d1 = p1.attributable_detail(MODULE_OBJ, DOWNSTREAM)
    d2 = p2.attributable_detail(MODULE_OBJ, DOWNSTREAM)
    out = {}
    for k in set(d1) | set(d2):
        v = (d2.get(k, 0) - d1.get(k, 0)) / (N2 - N1)
        if abs(v) >= 0.5:
            out.setdefault(k[0], {})[k[1]] = round(v, 1)
    return out


def main():
    so = bl.build_module()
    keep = os.path.join(bl.results_dir(), "callgrind")
    os.makedirs(keep, exist_ok=True)
    results = {"n1": N1, "n2": N2, "repeat": REPEAT, "machine":
               bl.machine_info(), "module": bl.module_identity(so),
               "cells": []}
    for profile in PROFILES:
        for mpm in MPMS:
            for pattern in PATTERNS:
                ka = pattern == "keepalive"
                cell = {"mpm": mpm, "pattern": pattern, "profile": profile}
                # repeats interleaved: base off on, base off on, ...
                for rep in range(REPEAT):
                    for cfg in CONFIGS:
                        t0 = time.monotonic()
                        kd = keep if rep == 0 else None
                        p1 = one_run(so, mpm, profile, cfg, N1, ka, kd)
                        p2 = one_run(so, mpm, profile, cfg, N2, ka, kd)
                        ir = per_request(p1, p2)
                        cell.setdefault(cfg + "_runs", []).append(round(ir, 1))
                        if rep == 0 and cfg != "base":
                            total, by_fn = breakdown(p1, p2)
                            cell[cfg + "_module_code"] = total
                            cell[cfg + "_by_entry"] = by_fn
                            cell[cfg + "_detail"] = detail(p1, p2)
                        bl.log(f"{profile:8} {mpm:8} {pattern:9} {cfg:4} "
                               f"#{rep + 1} {ir:10.1f} Ir/request  "
                               f"({time.monotonic() - t0:.0f}s)")
                for cfg in CONFIGS:
                    cell[cfg] = bl.median(cell[cfg + "_runs"])
                for cfg in ("off", "on"):
                    cell[cfg + "_pct"] = round(
                        100.0 * (cell[cfg] - cell["base"]) / cell["base"], 2)
                b = cell["base_runs"]
                cell["base_spread_pct"] = round(
                    100.0 * (max(b) - min(b)) / cell["base"], 2)
                results["cells"].append(cell)
                bl.log(f"  -> median: base {cell['base']:.0f}, off "
                       f"{cell['off_pct']:+.2f}%, on {cell['on_pct']:+.2f}% "
                       f"(base spread {cell['base_spread_pct']:.2f}%)")
    bl.save_json("callgrind.json", results)


if __name__ == "__main__":
    main()
