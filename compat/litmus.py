#!/usr/bin/python3
"""WebDAV conformance with and without mod_processing: the litmus suite.

Run through compat/run-litmus (`make -f Makefile.apxs litmus`), as root.

Three runs of litmus (basic copymove props locks http) against mod_dav_fs
on a fresh apache2 each:

  plain     no mod_processing, requests not slowed (reference only)
  without   no mod_processing, every response slowed by SLOW_MS
  with      mod_processing on (ProcessingDelay/Interval 100ms), every
            response slowed by SLOW_MS, so each request that reaches its
            handler with its body read gets 102s before its final response

Requests are slowed by compat/mod_compat_slow.c: a protocol-level output
filter that sleeps SLOW_MS the first time the response passes it (after
mod_dav has read the request body and decided the answer, error responses
included). The verdict: the "with" run passes exactly the tests that the
"without" run passes. The access log's %{processing-sent}n says how many
102s each request got; requests that got none are listed with the reason.
Writes compat/litmus-results.md and exits 1 if the verdict fails.
"""
import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compat  # noqa: E402  (Server, free_port, paths, build helpers)

SLOW_MS = 250
INTERVAL = "100ms"
DELAY = "100ms"
SUITES = "basic copymove props locks http"


def conf(root, port, slow_so, with_module, slow_ms):
    mods = ["mpm_event", "authz_core", "mime", "alias", "dav", "dav_fs"]
    lines = ['ServerRoot "%s"' % root, "ServerName 127.0.0.1",
             "Listen 127.0.0.1:%d" % port,
             'PidFile "%s/run/httpd.pid"' % root,
             'DefaultRuntimeDir "%s/run"' % root,
             "Mutex file:%s/run default" % root]
    lines += ['LoadModule %s_module "%s/mod_%s.so"' % (m, compat.MODDIR, m)
              for m in mods]
    lines.append('LoadModule compat_slow_module "%s"' % slow_so)
    if with_module:
        lines.append('LoadModule processing_module "%s"' % compat.MODULE_SO)
    lines += ["User www-data", "Group www-data",
              'ErrorLog "%s/logs/error.log"' % root, "LogLevel warn",
              'LogFormat "%{processing-sent}n %>s %m %U %D" litmus',
              'CustomLog "%s/logs/access.log" litmus' % root,
              "TypesConfig /etc/mime.types",
              'DocumentRoot "%s/htdocs"' % root,
              "<Directory />\n    Require all granted\n</Directory>",
              'DavLockDB "%s/var/davlock"' % root,
              'Alias "/dav/" "%s/dav/"' % root,
              '<Location "/dav/">\n    DAV On\n    CompatSlow %d\n%s'
              "</Location>" % (slow_ms, (
                  "    Processing On\n    ProcessingInterval %s\n"
                  "    ProcessingDelay %s\n" % (INTERVAL, DELAY))
                  if with_module else "")]
    return "\n".join(lines) + "\n"


RESULT_RE = re.compile(r"^\s*(\d+)\.\s+(\S+?)\.*\s+(pass|FAIL|SKIPPED|"
                       r"WARNING|skipped)\b(.*)$")


def parse(out):
    """{(suite, test): outcome} from litmus's output."""
    res = {}
    suite = None
    last = None
    # litmus rewrites its lines with \r; the last write of a line wins
    for raw in out.split("\n"):
        ln = raw.split("\r")[-1] if "\r" in raw else raw
        m = re.match(r"^-> running `(\w+)':", ln)
        if m:
            suite = m.group(1)
            continue
        m = RESULT_RE.match(ln)
        if m and suite:
            outcome = m.group(3).lower()
            key = (suite, "%s. %s" % (m.group(1), m.group(2)))
            if outcome == "warning":
                # the verdict follows on a line of dots, after the warning
                outcome = "warning: " + \
                    m.group(4).lstrip(": ").strip()[:80]
            res[key] = outcome
            last = key
            continue
        m = re.match(r"^\s+\.+\s+(pass|FAIL)\b(.*)$", ln)
        if m and suite and last in res and \
                res[last].startswith("warning"):
            res[last] = "%s (%s)" % (m.group(1).lower(), res[last])
    return res


def one_run(work, label, with_module, slow_ms, slow_so):
    root = work / label
    for d in ("logs", "run", "htdocs", "dav", "var"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.chown(root / "dav", "www-data", "www-data")
    shutil.chown(root / "var", "www-data", "www-data")
    port = compat.free_port()
    (root / "httpd.conf").write_text(conf(root, port, slow_so, with_module,
                                          slow_ms))
    subprocess.run(["chmod", "-R", "a+rX", str(work)], check=True)
    compat.run(["apache2", "-d", str(root), "-f", str(root / "httpd.conf"),
                "-t"])
    srv = compat.Server("apache2 (%s)" % label,
                        ["apache2", "-d", str(root), "-f",
                         str(root / "httpd.conf"), "-DFOREGROUND"],
                        port, logfile=root / "logs" / "stdout")
    t0 = time.time()
    try:
        r = subprocess.run(["litmus", "-k", "http://127.0.0.1:%d/dav/" % port],
                           cwd=str(root), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=1800,
                           env=dict(os.environ, TESTS=SUITES))
        out = r.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + \
            "\nlitmus killed after 1800 s"
    finally:
        srv.stop()
    secs = time.time() - t0
    (root / "litmus.out").write_text(out)
    reqs = []
    for ln in (root / "logs" / "access.log").read_text().splitlines():
        p = ln.split(" ")
        if len(p) >= 5:
            reqs.append({"sent": None if p[0] == "-" else int(p[0]),
                         "status": p[1], "method": p[2], "uri": p[3],
                         "usec": int(p[4])})
    summary = [ln.split("\r")[-1].strip() for ln in out.split("\n")
               if "summary for" in ln]
    compat.say("litmus %-8s %.0f s, %d requests: %s" % (
        label, secs, len(reqs), "; ".join(summary)))
    return {"label": label, "results": parse(out), "requests": reqs,
            "secs": secs, "summary": summary, "output": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(compat.HERE / "litmus-results.md"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--slow", type=int, default=SLOW_MS)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("litmus.py: run as root")
    started = time.time()
    import signal
    signal.signal(signal.SIGTERM, compat.on_signal)
    signal.signal(signal.SIGINT, compat.on_signal)
    work = Path(tempfile.mkdtemp(prefix="litmus-", dir="/tmp"))
    os.chmod(work, 0o755)
    if not args.keep:
        compat.CLEANUP.append(work)
    try:
        b = work / "build"
        b.mkdir()
        shutil.copy(compat.SLOW_C, b / compat.SLOW_C.name)
        compat.run(["apxs", "-c", "-o", "mod_compat_slow.so",
                    compat.SLOW_C.name], cwd=b)
        slow_so = b / ".libs" / "mod_compat_slow.so"
        runs = [one_run(work, "plain", False, 0, slow_so),
                one_run(work, "without", False, args.slow, slow_so),
                one_run(work, "with", True, args.slow, slow_so)]
        ok = report(runs, args, started)
    finally:
        compat.stop_all_servers()
        if args.keep:
            compat.say("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


def report(runs, args, started):
    plain, without, with_ = runs
    tests = list(without["results"])
    for t in with_["results"]:
        if t not in tests:
            tests.append(t)
    diff = [t for t in tests
            if without["results"].get(t) != with_["results"].get(t)]
    ok = bool(tests) and not diff
    reqs = with_["requests"]
    got = [r for r in reqs if (r["sent"] or 0) > 0]
    none = [r for r in reqs if not r["sent"]]
    counts = {}
    for r in reqs:
        counts[r["sent"] or 0] = counts.get(r["sent"] or 0, 0) + 1
    now = datetime.datetime.now(datetime.timezone.utc)
    L = ["# mod_processing: WebDAV conformance (litmus)", "",
         "Generated by `compat/run-litmus` (`make -f Makefile.apxs litmus`)"
         " on %s UTC, %s, in %.0f s." % (now.strftime("%Y-%m-%d %H:%M"),
                                          compat.os_release(),
                                          time.time() - started),
         "",
         "%s; Apache %s, mod_dav_fs; suites: %s." % (
             compat.first_line(["litmus", "--version"]),
             compat.first_line(["apache2", "-v"]).split("/")[-1], SUITES),
         "Slowing: compat/mod_compat_slow.c delays every response under "
         "/dav/ by %d ms in a protocol-level output filter (after mod_dav "
         "has read the request body and chosen its answer; error responses "
         "too). With the module: `Processing On`, `ProcessingDelay %s`, "
         "`ProcessingInterval %s`." % (args.slow, DELAY, INTERVAL), "",
         "**Verdict: %s** — with the module litmus passes %s the tests it "
         "passes without it (%d tests compared)." % (
             "PASS" if ok else "FAIL", "exactly" if ok else "NOT",
             len(tests)), "",
         "| run | summary | time |", "|---|---|---|"]
    def short(line):
        m = re.search(r"`(\w+)': of (\d+) tests run: (\d+) passed, (\d+) "
                      r"failed(?:.*?(\d+) warning)?", line)
        if not m:
            return line
        return "%s %s/%s%s" % (m.group(1), m.group(3), m.group(2),
                               " (%s warnings)" % m.group(5)
                               if m.group(5) else "")
    for r in runs:
        L.append("| %s | %s | %.0f s |" % (
            {"plain": "no module, not slowed",
             "without": "no module, slowed %d ms" % args.slow,
             "with": "module on, slowed %d ms" % args.slow}[r["label"]],
            ", ".join(short(x) for x in r["summary"]),
            r["secs"]))
    L += ["", "102s per request in the run with the module (%d requests): "
          % len(reqs) + ", ".join("%d x %d" % (v, k)
                                   for k, v in sorted(counts.items()))
          + " (count x 102s).", ""]
    if none:
        L += ["Requests that got no 102 (%d) ('-': the module never "
              "looked at it, no handler ran; 0: the module did not arm, "
              "since the body was not read to its end, or its 102s could "
              "not be sent):" % len(none), ""]
        L += ["- `%s %s` -> %s, %s, %d ms" % (
            r["method"], r["uri"], r["status"],
            "-" if r["sent"] is None else r["sent"], r["usec"] // 1000)
            for r in none]
        L.append("")
    if diff:
        L += ["Tests whose outcome differs:", "",
              "| test | without | with |", "|---|---|---|"]
        for t in diff:
            L.append("| %s %s | %s | %s |" % (t[0], t[1],
                                              without["results"].get(t),
                                              with_["results"].get(t)))
        L.append("")
    warned = [t for t in tests if "warning" in without["results"].get(t, "")]
    if warned:
        L += ["Tests with a litmus warning (mod_dav_fs's own, with and "
              "without the module): " + "; ".join(
                  "%s %s: %s" % (t[0], t[1], without["results"][t])
                  for t in warned), ""]
    notpass = [t for t in tests if not without["results"].get(t, "")
               .startswith("pass")]
    if notpass:
        L += ["Tests that do not pass even without the module: " +
              ", ".join("%s %s (%s)" % (t[0], t[1], without["results"][t])
                        for t in notpass), ""]
    Path(args.out).write_text("\n".join(L) + "\n")
    compat.say("wrote %s: %s" % (args.out, "PASS" if ok else "FAIL"))
    return ok


if __name__ == "__main__":
    main()
