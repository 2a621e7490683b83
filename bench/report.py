#!/usr/bin/python3
"""Turn build/bench/*.json (BENCH_RESULTS) into Markdown tables for BENCHMARKS.md,
with each target and whether this run met it.  Prints to stdout."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402


def load(name):
    p = os.path.join(bl.results_dir(), name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def ok(cond):
    return "yes" if cond else "**NO**"


def machine(res):
    m = res.get("machine", {})
    mod = res.get("module", {})
    return (f"{m.get('nproc')} CPUs ({m.get('cpu')}), Debian "
            f"{m.get('debian')}, kernel {m.get('kernel')}, "
            f"{m.get('apache2')} (package {m.get('apache2_deb')}); module "
            f"{mod.get('git_head')}{' + local changes' if mod.get('source_modified') else ''}"
            f" (source sha256 {mod.get('source_sha256')}); load average at "
            f"start {' '.join(m.get('loadavg_at_start', []))}")


def callgrind(r):
    out = ["### Instructions per fast request (callgrind)", "",
           f"{machine(r)}.", "",
           f"Per request = (total after {r['n2']} requests - total after "
           f"{r['n1']}) / {r['n2'] - r['n1']}; each configuration measured "
           f"{r.get('repeat', 1)} times, interleaved, median shown. `base "
           "spread` = (max - min) / median of the base runs: the run-to-run "
           "noise.", "",
           "| profile | MPM | connection | base Ir/req | base spread | "
           "Off Ir/req | Off vs base (target <= 0.5%) | On Ir/req | "
           "On vs base (target <= 3%) |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in r["cells"]:
        out.append(
            f"| {c['profile']} | {c['mpm']} | {c['pattern']} | "
            f"{c['base']:.0f} | {c.get('base_spread_pct', 0):.2f}% | "
            f"{c['off']:.0f} | {c['off_pct']:+.2f}% {ok(c['off_pct'] <= 0.5)} | "
            f"{c['on']:.0f} | {c['on_pct']:+.2f}% {ok(c['on_pct'] <= 3.0)} |")
    out += ["", "Where the module's own instructions go (code in "
            "mod_processing.so and all it calls, except the rest of the "
            "filter chain), per request:", "",
            "| profile | MPM | connection | config | total delta vs base | "
            "module code | by entry point |", "|---|---|---|---|---:|---:|---|"]
    for c in r["cells"]:
        for cfg in ("off", "on"):
            by = ", ".join(f"{k} {v:.0f}" for k, v in sorted(
                c[cfg + "_by_entry"].items(), key=lambda kv: -kv[1]))
            out.append(f"| {c['profile']} | {c['mpm']} | {c['pattern']} | "
                       f"{cfg} | {c[cfg] - c['base']:.0f} | "
                       f"{c[cfg + '_module_code']:.0f} | {by} |")
    for c in r["cells"]:
        if c["profile"] != "minimal" or c["mpm"] != "event" \
                or "on_detail" not in c:
            continue
        out += ["", f"`Processing On`, profile minimal, event, {c['pattern']}:"
                " each module function's Ir per request, split into its own "
                "instructions (`self`, with what the compiler inlined into it)"
                " and the functions outside the module it calls:", "",
                "| function | Ir/req | self | calls outside the module |",
                "|---|---:|---:|---|"]
        rows = sorted(c["on_detail"].items(),
                      key=lambda kv: -sum(kv[1].values()))
        for fn, parts in rows:
            callees = ", ".join(f"{k} {v:.0f}" for k, v in sorted(
                parts.items(), key=lambda kv: -kv[1]) if k != "self")
            out.append(f"| {fn} | {sum(parts.values()):.0f} | "
                       f"{parts.get('self', 0):.0f} | {callees} |")
        out.append(f"| **total** | "
                   f"{sum(sum(p.values()) for p in c['on_detail'].values()):.0f}"
                   " | | |")
    return out


def cglines(r):
    out = ["### Per source line (callgrind --dump-instr + addr2line)", "",
           f"{machine(r)}.", "",
           f"`Processing {r['config'].capitalize()}`, profile {r['profile']}"
           f", {r['mpm']}, {r['pattern']}: Ir per request = (run with "
           f"{r['n2']} requests - run with {r['n1']}) / {r['n2'] - r['n1']}"
           f"; module total {r['total']:.0f}. Lines worth 3 Ir or more; "
           "`inlined` names the helper the line belongs to when the "
           "compiler inlined it; `calls` is the inclusive cost of a "
           "function outside the module called from that line.", "",
           "| function | Ir | line | inlined | source | self | calls |",
           "|---|---:|---:|---|---|---:|---|"]
    by_fn = {}
    for x in r["lines"]:
        by_fn.setdefault(x["function"], {}).setdefault(
            x["line"], []).append(x)
    for fn, tot in sorted(r["by_function"].items(), key=lambda kv: -kv[1]):
        first = True
        for ln, parts in sorted(by_fn.get(fn, {}).items()):
            total = sum(p["ir"] for p in parts)
            if total < 3:
                continue
            selfir = sum(p["ir"] for p in parts if p["part"] == "self")
            calls = ", ".join(f"{p['part']} {p['ir']:.0f}" for p in parts
                              if p["part"] != "self")
            inl = parts[0]["inlined_from"]
            srcl = parts[0]["source"].replace("|", "\\|")
            if len(srcl) > 60:
                srcl = srcl[:57] + "..."
            out.append(f"| {fn if first else ''} | "
                       f"{f'{tot:.0f}' if first else ''} | {ln} | "
                       f"{inl if inl != fn.split('.')[0] else ''} | "
                       f"`{srcl}` | {selfir:.0f} | {calls} |")
            first = False
    return out


def throughput(r):
    s = r["summary"]
    names = [n for n in ("base", "base2", "off", "on") if n in r["runs"][0]]
    others = names[1:]
    label = {"base": "base", "base2": "base2 (A/A)", "off": "Off", "on": "On"}
    out = ["### Throughput and latency (wrk, keep-alive)", "",
           f"{machine(r)}.", "",
           f"{r['rounds']} rounds x {len(names)} configurations x "
           f"{r['seconds']} s, `wrk -t1 -c{r['connections']} --latency`, "
           f"profile {r['profile']}, httpd pinned to CPU 0 and wrk to CPU 1: "
           f"{r['pinned']}.", "",
           "| round | order | load avg | "
           + " | ".join(f"{label[n]} req/s" for n in names) + " | "
           + " | ".join(f"{label[n]} p99 ms" for n in names) + " | "
           + " / ".join(label[n] for n in names) + " server CPU us per req | "
           + " | ".join(f"{label[n]}/base req/s" for n in others) + " |",
           "|---:|---|---:|" + "---:|" * (2 * len(names)) + "---|"
           + "---:|" * len(others)]
    for row in r["runs"]:
        out.append(
            f"| {row['round']} | {' '.join(row['order'])} | "
            f"{row[row['order'][0]].get('loadavg_before', 0):.1f} | "
            + " | ".join(f"{row[n]['rps']:.0f}" for n in names) + " | "
            + " | ".join(f"{row[n]['p99_ms']:.2f}" for n in names) + " | "
            + " / ".join(f"{row[n].get('server_cpu_us_per_req', 0):.1f}"
                         for n in names) + " | "
            + " | ".join(f"{row[f'{n}_rps_ratio']:.3f}" for n in others)
            + " |")
    out += ["", "| measure | " + " | ".join(f"{label[n]} / base"
                                            for n in others)
            + " | target (On) | met |",
            "|---|" + "---:|" * len(others) + "---|---|"]

    def line(title, key, target, good):
        vals = " | ".join(f"{s.get(f'{n}_{key}', float('nan')):.3f}"
                          for n in others)
        return (f"| {title} | {vals} | {target} | "
                f"{ok(good(s.get(f'on_{key}', float('nan'))))} |")

    out += [line("median of per-round req/s ratios", "rps_ratio_median",
                 ">= 0.98", lambda v: v >= 0.98),
            line("median of per-round p99 ratios", "p99_ratio_median",
                 "<= 1.05", lambda v: v <= 1.05),
            line("median of per-round server-CPU-per-request ratios",
                 "cpu_ratio_median", "(<= 1.02 would match the req/s "
                 "target)", lambda v: v <= 1.02),
            "| range of req/s ratios | " + " | ".join(
                f"{s[f'{n}_rps_ratio_min']:.3f} - "
                f"{s[f'{n}_rps_ratio_max']:.3f}" for n in others) + " | | |",
            "", "Medians: " + ", ".join(
                f"{label[n]} {s[f'{n}_rps_median']:.0f} req/s (p99 "
                f"{s[f'{n}_p99_median_ms']:.2f} ms)" for n in names) + "."]
    return out


def wakeups(r):
    out = ["### Watchdog wake-ups (context switches of the watchdog thread)",
           "", f"{machine(r)}.", "",
           f"{r['requests']} fast requests per batch. The watchdog thread "
           "starts on the child's first armed request; `A` runs right after "
           "that first arm (the thread sleeps toward the first request's due "
           "time), `B` after 10+ s of quiet (the thread is in its untimed "
           "wait). Drain = from the end of the batch until the last "
           "request's first 102 would have been due, plus 1 s.", "",
           "| MPM | ProcessingInterval | idle 10 s after start | batch A "
           "(s) | wakes during A | drain A | idle 10 s after | batch B (s) "
           "| wakes during B | drain B | wrk requests | wakes during wrk "
           "(+ drain) | thread confirmed |",
           "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---|---|"]
    for c in r["cases"]:
        idle = ("no watchdog thread (child has "
                f"{c['threads_idle_start'][1]} thread"
                f"{'s' if c['threads_idle_start'][1] != 1 else ''}, "
                "as without the module)"
                if not c.get("watchdog_at_idle_start") else
                f"{c['idle_start']}")
        out.append(
            f"| {c['mpm']} | {c['interval']} | {idle} | "
            f"{c['fast_a_requests']} on {c['fast_connections']} conn "
            f"({c['fast_a_seconds']} s) | {c['fast_a']} | {c['drain_a']} | "
            f"{c['idle_after']} | {c['fast_b_requests']} "
            f"({c['fast_b_seconds']} s) | {c['fast_b']} | {c['drain_b']} | "
            f"{c.get('wrk_requests')} | {c.get('wrk')} "
            f"(+{c.get('wrk_drain')}) | {ok(c['confirmed'])} "
            f"({c['confirm_watchdog_switches']} switches for "
            f"{c['confirm_102s']} 102s; other threads <= "
            f"{c['confirm_max_other']}) |")
    return out


def scale(r, floor):
    out = ["### 1,000 armed requests in one child (1 s interval)", "",
           f"{machine(r)}.", "",
           "Receive: `loopback` as the kernel does it (each send also runs "
           "the client's TCP receive and wake-up on the watchdog thread); "
           "`steered`: server on CPU 0, client on CPU 1, lo's receive "
           "steered to CPU 1 (RPS), so the receiving side runs on the "
           "client's CPU as it would on the client's host.", "",
           "`ideal`: the same client against bench/idealwd.c, the least "
           "work that sends the same 102s with the module's timing rules: "
           "the floor this machine's kernel sets.", "",
           "| server | pattern | receive | debug log | completed | 102s | lateness against "
           "the server's schedule min / p50 / p99 / max ms (negative: early; "
           "target p99 <= 20) | upper bound, from the client's send time, "
           "min / p50 / p99 / max ms | from the server's debug log min / "
           "p50 / p99 / max ms | watchdog CPU ms | wall s | % of one core (target <= 1%) "
           "| context switches (voluntary / preempted) | CPU us per 102 "
           "| user / system ms (10 ms ticks) |",
           "|---|---|---|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---|"]
    for x in r["runs"]:
        lc = x["lateness_client_ms"]
        ls = x.get("lateness_server_ms")
        lss = (f"{ls['min']} / {ls['p50']} / {ls['p99']} / {ls['max']}"
               if ls and ls.get("n") else "-")
        lx = x.get("lateness_schedule_ms")
        lxs = (f"{lx['min']} / {lx['p50']} / **{lx['p99']}** / {lx['max']} "
               f"{ok(lx['p99'] <= 20)}" if lx and lx.get("n") else "-")
        pct = x["watchdog_cpu_pct_of_core"]
        out.append(
            f"| {x.get('server', 'module')} | {x['pattern']} | "
            f"{x.get('receive', 'loopback')} | "
            f"{'yes' if x['debug_log'] else 'no'} | "
            f"{x['requests_completed']}/{x['connections']} | "
            f"{x['interims_received']} | {lxs} | {lc['min']} / {lc['p50']} / "
            f"{lc['p99']} / "
            f"{lc['max']} | {lss} | {x['watchdog_cpu_ms']} | {x['wall_s']} | "
            f"{pct} {'' if x['debug_log'] or x.get('server') == 'ideal' else ok(pct <= 1.0)} | "
            f"{x['watchdog_wakes']}"
            + (f" ({x['watchdog_voluntary']} / {x['watchdog_nonvoluntary']})"
               if "watchdog_voluntary" in x else "")
            + f" | {x['watchdog_us_per_102']} | "
            + (f"{x['watchdog_user_ms']} / {x['watchdog_sys_ms']} |"
               if "watchdog_user_ms" in x else "- |"))
    summary = r.get("summary")
    if summary:
        by = {(x["server"], x["pattern"], x["receive"]): x for x in summary}
        out += ["", "Watchdog CPU, median of the runs above (% of one core; "
                "all runs in brackets):", "",
                "| pattern | receive | module | ideal (floor) | module / "
                "ideal | us per 102, module / ideal |",
                "|---|---|---|---|---:|---|"]
        for (srv, pat, rx), m in by.items():
            if srv != "module":
                continue
            i = by.get(("ideal", pat, rx))
            fmt = lambda x: (f"**{x['watchdog_cpu_pct_of_core']}** "
                             f"({', '.join(map(str, x['watchdog_cpu_pct_all']))})")
            out.append(
                f"| {pat} | {rx} | {fmt(m)} | {fmt(i) if i else '-'} | "
                + (f"{m['watchdog_cpu_pct_of_core'] / i['watchdog_cpu_pct_of_core']:.2f}"
                   if i else "-")
                + f" | {m['watchdog_us_per_102']} / "
                + (f"{i['watchdog_us_per_102']} |" if i else "- |"))
    if floor:
        out += ["", f"Kernel floor on this machine (bench/sendcost.c): one "
                f"28-byte loopback send {floor['send_us_median']:.1f} us CPU, "
                f"one timed sleep + wake-up {floor['wake_us_median']:.1f} us "
                f"CPU (median of 3)."]
    return out


def syscalls(r):
    runs = {x["config"]: x for x in r["runs"]}
    names = sorted({k for x in r["runs"] for k in x["per_request"]})
    out = ["### System calls per fast request (strace)", "",
           f"{machine(r)}.", "",
           f"{r['requests']} requests for the small static file over "
           f"{r['connections']} keep-alive connections to one event child, "
           "`strace -c -f` attached to it; calls per request.", "",
           "| system call | base | Off | On |", "|---|---:|---:|---:|"]
    for n in names:
        out.append(f"| {n} | " + " | ".join(
            str(runs[c]["per_request"].get(n, 0)) if c in runs else "-"
            for c in ("base", "off", "on")) + " |")
    out.append("| **total** | " + " | ".join(
        f"**{runs[c]['total_per_request']}**" if c in runs else "-"
        for c in ("base", "off", "on")) + " |")
    return out


def tickcost(r):
    out = ["### Cost of a tick vs requests armed (callgrind, watchdog thread "
           "only)", "", f"{machine(r)}.", "",
           f"Each case runs twice, with K = {r['k1']} and {r['k2']} 102s per "
           "due request; Ir per 102 = difference of the watchdog thread's "
           "instructions / difference of 102s sent.", "",
           "| armed, never due | due requests | 102s (K1 / K2) | watchdog Ir "
           "(K1 / K2) | Ir per 102 | sleeps: futex or condition waits (K1 / K2) | "
           "malloc+calloc+realloc calls (K1 / K2) | apr_palloc per 102 |",
           "|---:|---:|---|---|---:|---|---|---:|"]
    for c in r["cases"]:
        a, b = c["runs"]
        out.append(
            f"| {c['idle']} | {c['due']} | {a['interims']} / {b['interims']} "
            f"| {a['ir']} / {b['ir']} | {c['ir_per_102']} | "
            f"{c['waits'][0]} / {c['waits'][1]} | {a['allocs']} / "
            f"{b['allocs']} | {c['palloc_per_102']} |")
    return out


def memory(r):
    return ["### Memory", "",
            "| item | bytes |", "|---|---:|",
            f"| `proc_conn` record per connection (allocated once from "
            f"c->pool, on the connection's first request in a Processing On "
            f"location, or at the TLS handshake) | {r['proc_conn_bytes']} |",
            f"| of which the pending-bytes buffer | "
            f"{r['pending_buffer_bytes']} |",
            f"| gate filter (`ap_filter_t`) per connection, plain / TLS | "
            f"{r['ap_filter_t_bytes']} / {2 * r['ap_filter_t_bytes']} |",
            f"| total per connection, plain / TLS | "
            f"{r['per_connection_plain_bytes']} / "
            f"{r['per_connection_tls_bytes']} |",
            f"| deadline heap per concurrently armed request (array of "
            f"due time + record pointer, grows by doubling to the peak, "
            f"never shrinks) | "
            f"{r['heap_bytes_per_armed_request']} |",
            f"| watchdog state per child (`proc_watchdog`, static; the "
            f"thread itself exists only once the child armed a request) | "
            f"{r['proc_watchdog_bytes']} |"]


def main():
    parts = []
    for name, fn in (("callgrind.json", callgrind),
                     ("cglines.json", cglines),
                     ("syscalls.json", syscalls),
                     ("throughput.json", throughput),
                     ("wakeups.json", wakeups)):
        r = load(name)
        if r:
            parts += fn(r) + [""]
    r = load("scale.json")
    if r:
        parts += scale(r, load("floor.json")) + [""]
    for name, fn in (("tickcost.json", tickcost), ("memory.json", memory)):
        r = load(name)
        if r:
            parts += fn(r) + [""]
    print("\n".join(parts))


if __name__ == "__main__":
    main()
