#!/usr/bin/python3
"""Where the module's instructions go, per source line of mod_processing.c.

callgrind.py splits the module's cost per function; this splits it per
source line, so that the code the compiler inlined into a function (the
small static helpers) shows where it came from.  Valgrind 3.19 does not
read the line tables gcc 12 writes (DWARF 5: every line is 0 in its
output), so the runs use `--dump-instr=yes` and the instruction addresses
are mapped to lines with `addr2line -i` (innermost inlined function).

One configuration (default: profile minimal, MPM event, keep-alive,
`Processing On`) is run as in callgrind.py, with N1 and N2 requests; per
request = (N2 run - N1 run) / (N2 - N1), for each (function, line, part),
part being the line's own instructions ("self") or a function outside the
module called from that line (inclusive Ir of those calls; ap_pass_brigade
and ap_get_brigade, the rest of the filter chain, are left out as in
callgrind.py).

Environment: CL_PROFILE (minimal), CL_MPM (event), CL_PATTERN (keepalive or
close), CL_CONFIG (on or off), CL_N1 (200), CL_N2 (1200).
Writes cglines.json; report.py prints the lines worth 3 Ir or more.
"""

import collections
import glob
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402
from cgparse import name_decoder, short_fn               # noqa: E402

PROFILE = os.environ.get("CL_PROFILE", "minimal")
MPM = os.environ.get("CL_MPM", "event")
PATTERN = os.environ.get("CL_PATTERN", "keepalive")
CONFIG = os.environ.get("CL_CONFIG", "on")
N1 = int(os.environ.get("CL_N1", "200"))
N2 = int(os.environ.get("CL_N2", "1200"))

MODULE_OBJ = "mod_processing"
DOWNSTREAM = ("ap_pass_brigade", "ap_get_brigade")


def run(so, n):
    s = bl.Server(f"cl-{CONFIG}", mpm=MPM, module=True,
                  processing=CONFIG.capitalize(), module_so=so, threads=4,
                  profile=PROFILE)
    try:
        s.start_fg(["valgrind", "--tool=callgrind", "--collect-systime=no",
                    "--dump-instr=yes",
                    f"--callgrind-out-file={s.path('out')}/callgrind.out.%p"])
        ok = bl.run_requests(s.port, "/" + bl.SMALL_FILE, n,
                             keepalive=PATTERN == "keepalive")
        if ok != n:
            raise RuntimeError(f"{ok}/{n} requests succeeded")
        time.sleep(0.3)
        s.stop_fg()
        return parse(glob.glob(s.path("out", "callgrind.out.*"))[0])
    finally:
        if s.proc is not None:
            s.stop_fg()
        s.cleanup()


def parse(path):
    """{(function, address, part): Ir} for code in the module; addresses
    are offsets in the .so (positions: instr line)."""
    name = name_decoder()

    ob = fn = cob = cfn = None
    in_call = False
    last = 0
    cost = collections.Counter()
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line[0] == "#":
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                p = line.split()
                a = p[0]
                if a == "*":
                    addr = last
                elif a[0] in "+-":
                    addr = last + int(a, 0)
                else:
                    addr = int(a, 0)
                last = addr
                v = int(p[2]) if len(p) > 2 else 0
                ours = ob and MODULE_OBJ in ob
                if in_call:
                    callee = short_fn(cfn)
                    outside = not (cob and MODULE_OBJ in cob)
                    if ours and outside and callee not in DOWNSTREAM:
                        cost[(short_fn(fn), addr, callee)] += v
                    in_call = False
                    cob = None
                elif ours:
                    cost[(short_fn(fn), addr, "self")] += v
                continue
            k, sep, v = line.partition("=")
            if not sep:
                continue
            if k == "ob":
                ob = name(k, v)
            elif k == "fn":
                fn = name(k, v)
                cob = None
            elif k == "cob":
                cob = name(k, v)
            elif k == "cfn":
                cfn = name(k, v)
            elif k == "calls":
                in_call = True
                if cob is None:
                    cob = ob
    return cost


def addr2line(so, addrs):
    """address -> (innermost function, line)"""
    out = {}
    for a in addrs:
        r = subprocess.run(["addr2line", "-e", so, "-i", "-f", hex(a)],
                           capture_output=True, text=True).stdout.split("\n")
        fn, loc = r[0], r[1] if len(r) > 1 else "?:0"
        m = re.search(r":(\d+)", loc)
        out[a] = (fn, int(m.group(1)) if m else 0)
    return out


def main():
    so = bl.build_module()
    c1 = run(so, N1)
    c2 = run(so, N2)
    per = {k: (c2.get(k, 0) - c1.get(k, 0)) / (N2 - N1)
           for k in set(c1) | set(c2)}
    per = {k: v for k, v in per.items() if abs(v) >= 0.05}
    where = addr2line(so, sorted({k[1] for k in per}))
    # the source the build was pinned with (bench/run-all), else the tree's
    srcpath = so[:-3] + ".c"
    if not os.path.exists(srcpath):
        srcpath = os.path.join(bl.REPO, "mod_processing.c")
    with open(srcpath) as f:
        src = f.read().split("\n")
    rows = collections.Counter()
    inl = {}
    for (fn, addr, part), v in per.items():
        ifn, ln = where[addr]
        rows[(fn, ln, part)] += v
        inl[(fn, ln)] = ifn
    out = []
    for (fn, ln, part), v in rows.items():
        if abs(v) < 0.5:
            continue
        out.append({"function": fn, "line": ln, "inlined_from": inl[(fn, ln)],
                    "part": part, "ir": round(v, 1),
                    "source": src[ln - 1].strip() if 0 < ln <= len(src)
                    else ""})
    out.sort(key=lambda r: (r["function"], r["line"], r["part"]))
    totals = collections.Counter()
    for r in out:
        totals[r["function"]] += r["ir"]
    res = {"machine": bl.machine_info(), "module": bl.module_identity(so),
           "profile": PROFILE, "mpm": MPM, "pattern": PATTERN,
           "config": CONFIG, "n1": N1, "n2": N2,
           "total": round(sum(totals.values()), 1),
           "by_function": {k: round(v, 1) for k, v in totals.most_common()},
           "lines": out}
    for fn, t in totals.most_common():
        bl.log(f"{fn:24} {t:7.1f}")
    bl.log(f"{'total':24} {res['total']:7.1f} Ir per request")
    bl.save_json("cglines.json", res)


if __name__ == "__main__":
    main()
