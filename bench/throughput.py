#!/usr/bin/python3
"""Throughput and latency with wrk over keep-alive, interleaved.

Four servers run side by side (event MPM, one child, 32 threads, the same
configuration but for the module):

  base  the module not loaded
  base2 the same again (A/A: see below)
  off   the module loaded, `Processing Off` in <Location "/">
  on    the module loaded, `Processing On`  in <Location "/">

Each round runs wrk once against each server, in an order that goes through
all the permutations from round to round (base base2 off on, base base2 on
off, ...), so that neither a drift of the machine's load nor what the
previous run leaves behind (the last connections closing, the caches)
favours one configuration.  Every
round gives the ratios off/base and on/base of requests per second and of
the 99th percentile latency, and of the server's CPU time per request
(schedstat of all its threads: less sensitive than requests per second to
other work on the machine); the summary is the median over rounds.

With 2 or more CPUs, httpd is pinned to CPU 0 and wrk to CPU 1 (taskset),
so that the server is CPU-bound on one core and client and server do not
steal each other's CPU.

`base2` is a second server without the module: its ratio to `base` (an
A/A comparison) shows how far two identical servers differ in this harness,
i.e. what a ratio here can resolve.  TP_CONFIGS picks the servers (`base`
first).

Environment: TP_ROUNDS (48: each of the 24 orders of 4 servers twice),
TP_SECONDS (2), TP_CONNECTIONS (16), TP_PROFILE (minimal), TP_PIN (1),
TP_CONFIGS (base,base2,off,on).
"""

import itertools
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402

ROUNDS = int(os.environ.get("TP_ROUNDS", "48"))
SECONDS = int(os.environ.get("TP_SECONDS", "2"))
CONNS = int(os.environ.get("TP_CONNECTIONS", "16"))
PROFILE = os.environ.get("TP_PROFILE", "minimal")
PIN = os.environ.get("TP_PIN", "1") == "1" and (os.cpu_count() or 1) >= 2

KNOWN = {"base": (False, None), "base2": (False, None), "off": (True, "Off"),
         "on": (True, "On")}
CONFIGS = [(n, *KNOWN[n]) for n in
           os.environ.get("TP_CONFIGS", "base,base2,off,on").split(",")]
if CONFIGS[0][0] != "base" or len({c[0] for c in CONFIGS}) != len(CONFIGS):
    sys.exit("TP_CONFIGS: base first, then distinct names among "
             + ", ".join(KNOWN))

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(text):
    out = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else None
    for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text,
                              re.M):
        out[f"p{p}_ms"] = float(v) * UNIT[u]
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = m.group(1) if m else ""
    return out


def server_cpu_ns(server):
    """CPU time of all of a server's processes and threads (schedstat, ns):
    it shows the module's cost even when other work on the machine makes
    requests per second noisy."""
    total = 0
    for pid in [server.parent_pid] + server.children():
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                try:
                    total += bl.task_cpu_ns(pid, int(t))
                except OSError:
                    pass
        except OSError:
            pass
    return total


def wrk(port, seconds, server=None):
    cmd = ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--latency",
           f"http://127.0.0.1:{port}/{bl.SMALL_FILE}"]
    if PIN:
        cmd = ["taskset", "-c", "1"] + cmd
    c0 = server_cpu_ns(server) if server else 0
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = parse_wrk(r.stdout)
    if server and out.get("requests"):
        out["server_cpu_us_per_req"] = (server_cpu_ns(server) - c0) / 1e3 \
            / out["requests"]
    return out, r.stdout


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main():
    so = bl.build_module()
    servers = {}
    res = {"machine": bl.machine_info(), "module": bl.module_identity(so),
           "rounds": ROUNDS, "seconds": SECONDS, "connections": CONNS,
           "profile": PROFILE, "pinned": PIN, "runs": []}
    try:
        for name, module, processing in CONFIGS:
            s = bl.Server(f"tp-{name}", mpm="event", module=module,
                          processing=processing, module_so=so, threads=32,
                          profile=PROFILE)
            if PIN:
                bl.start_pinned(s, {0})
            else:
                s.start()
            servers[name] = s
        for name, s in servers.items():         # warm-up
            wrk(s.port, 1)
        names = [c[0] for c in CONFIGS]
        others = names[1:]
        orders = list(itertools.permutations(names))
        for rnd in range(ROUNDS):
            order = list(orders[rnd % len(orders)])
            row = {"round": rnd + 1, "order": order}
            for name in order:
                la = loadavg()
                r, raw = wrk(servers[name].port, SECONDS, servers[name])
                r["loadavg_before"] = la
                row[name] = r
                if r["rps"] is None:
                    bl.log(raw)
            for name in others:
                row[f"{name}_rps_ratio"] = row[name]["rps"] / row["base"]["rps"]
                row[f"{name}_p99_ratio"] = (row[name]["p99_ms"]
                                            / row["base"]["p99_ms"])
                row[f"{name}_cpu_ratio"] = (
                    row[name]["server_cpu_us_per_req"]
                    / row["base"]["server_cpu_us_per_req"])
            res["runs"].append(row)
            bl.log(f"round {rnd + 1}: " + "  ".join(
                f"{n} {row[n]['rps']:.0f}/s p99 {row[n]['p99_ms']:.2f}ms "
                f"{row[n]['server_cpu_us_per_req']:.1f}us"
                for n in names) + "  " + " ".join(
                f"{n}/base {row[f'{n}_rps_ratio']:.3f}" for n in others))
        summ = {}
        for name in names:
            summ[f"{name}_rps_median"] = bl.median(
                [r[name]["rps"] for r in res["runs"]])
            summ[f"{name}_p99_median_ms"] = bl.median(
                [r[name]["p99_ms"] for r in res["runs"]])
            summ[f"{name}_p50_median_ms"] = bl.median(
                [r[name]["p50_ms"] for r in res["runs"]])
            summ[f"{name}_cpu_us_median"] = bl.median(
                [r[name]["server_cpu_us_per_req"] for r in res["runs"]])
        for name in others:
            for k in ("rps", "p99", "cpu"):
                vals = [r[f"{name}_{k}_ratio"] for r in res["runs"]]
                summ[f"{name}_{k}_ratio_median"] = bl.median(vals)
                summ[f"{name}_{k}_ratio_min"] = min(vals)
                summ[f"{name}_{k}_ratio_max"] = max(vals)
        res["summary"] = summ
        res["errors"] = {n: s.error_lines() for n, s in servers.items()}
        bl.log("median ratios: " + "; ".join(
            f"{n}/base rps {summ[f'{n}_rps_ratio_median']:.3f} p99 "
            f"{summ[f'{n}_p99_ratio_median']:.3f} cpu/req "
            f"{summ[f'{n}_cpu_ratio_median']:.3f}" for n in others))
    finally:
        for s in servers.values():
            s.stop()
            s.cleanup()
    bl.save_json("throughput.json", res)


if __name__ == "__main__":
    main()
