#!/usr/bin/python3
"""Which functions of the whole server a configuration adds, per request.

  bench/cgdiff.py CELL A B [TOP]

CELL names the callgrind.py runs kept in build/bench/callgrind/ (the first
of the repeats), e.g. minimal-prefork-ka or debian-event-close; A and B are
configurations (base, off, on).  For each (object, function) the exclusive
Ir per request, (N2 run - N1 run) / (N2 - N1), of B minus that of A: it
shows the cost B adds outside the module's own code too (e.g. glibc's
multi-threaded paths once the watchdog thread exists).  Prints the totals per
object and the TOP (25) largest differences.  Reads callgrind.json for N1
and N2.  Not run by bench/run-all.
"""

import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402
from cgparse import Profile, short_fn                    # noqa: E402


def per_request(d, cell, cfg, n1, n2):
    p1 = Profile(os.path.join(d, f"{cell}-{cfg}-{n1}.callgrind"))
    p2 = Profile(os.path.join(d, f"{cell}-{cfg}-{n2}.callgrind"))
    out = collections.Counter()
    for k in set(p1.excl) | set(p2.excl):
        ob = os.path.basename(k[0] or "?")
        if ob.startswith("mod_processing"):
            ob = "mod_processing.so"
        out[(ob, short_fn(k[1]))] += (p2.excl.get(k, 0)
                                      - p1.excl.get(k, 0)) / (n2 - n1)
    return out, (p2.total - p1.total) / (n2 - n1)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    cell, a, b = sys.argv[1:4]
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 25
    with open(os.path.join(bl.results_dir(), "callgrind.json")) as f:
        meta = json.load(f)
    n1, n2 = meta["n1"], meta["n2"]
    d = os.path.join(bl.results_dir(), "callgrind")
    ca, ta = per_request(d, cell, a, n1, n2)
    cb, tb = per_request(d, cell, b, n1, n2)
    diff = {k: cb.get(k, 0) - ca.get(k, 0) for k in set(ca) | set(cb)}
    print(f"{cell}: {a} {ta:.1f} Ir/request, {b} {tb:.1f}, "
          f"difference {tb - ta:+.1f} (one run each)")
    by_ob = collections.Counter()
    for (ob, _), v in diff.items():
        by_ob[ob] += v
    print("by object: " + ", ".join(f"{ob} {v:+.0f}" for ob, v in
                                     by_ob.most_common() if abs(v) >= 1))
    for (ob, fn), v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
        if abs(v) >= 1:
            print(f"  {v:+8.1f}  {ob}: {fn}")


if __name__ == "__main__":
    main()
