#!/usr/bin/python3
"""The known-client families, checked against a run's results.

    known_clients.py [results.json] [known-clients.json]

results.json: the raw results of `make compat`, build/compat/results.json
by default (outside git). FAMILIES below names, for each client family, a
User-Agent regex (POSIX ERE, also valid PCRE) and the rows of results.json
it stands for.
This script checks every entry against the measured results and writes
compat/known-clients.json:

  - each row exists, got its 102s (the origin counted them) and handled
    them: the slow request right with 102s for all, and the keep-alive
    probe right where the client can reuse a connection;
  - the regex matches the row's measured User-Agent;
  - no regex matches the User-Agent of any client measured to break (the
    "broken" list, written out too so a test can check the module's table).

The cap of a family is the smallest measured cap of its rows; 0 when none
was found up to the search's limit ("searched_to"). "flows" gives, per
family, what its rows did with 102s in each request flow measured (GET,
and PUT/POST with "Expect: 100-continue"): "ok", "breaks: ..." or "n/a:
..."; a flow that breaks is reported, not an error (the module decides per
flow). "browser": the family counts only with Sec-Fetch-Mode; desktop
browsers' User-Agents come from build/compat/browsers.json
(compat/browsers.py). test/test_018_known_clients.py sends every
User-Agent and flow of this file to the module.

It exits 1 (and writes nothing) if an entry does not hold.
"""
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name, regex, rows (results.json "name"s)
FAMILIES = [
    ("curl", r"^curl/[0-9]", ["curl"]),
    # GNU Wget only: BusyBox wget sends "Wget" and breaks
    ("wget", r"^Wget/[0-9]", ["wget"]),
    ("aria2", r"^aria2/[0-9]", ["aria2c"]),
    ("lftp", r"^lftp/[0-9]", ["lftp"]),
    ("npm", r"^npm/[0-9]+\.[0-9.]+ node/v[0-9]", ["npm"]),
    ("python-aiohttp", r"^Python/[0-9.]+ aiohttp/[0-9]", ["python-aiohttp"]),
    ("python-httpx", r"^python-httpx/[0-9]", ["python-httpx"]),
    ("perl-http-tiny", r"^HTTP-Tiny/[0-9]", ["perl-HTTP::Tiny"]),
    ("perl-mojolicious", r"^Mojolicious \(Perl\)$", ["perl-Mojo::UserAgent"]),
    ("ruby-net-http", r"^Ruby$", ["ruby-Net::HTTP"]),
    ("java-httpclient", r"^Java-http-client/[0-9]", ["java-HttpClient"]),
    ("apache-httpclient", r"^Apache-HttpClient/[45]\.[0-9.]+ \(Java/[0-9]",
     ["java-ApacheHttpClient4", "java-ApacheHttpClient5"]),
    # Node's fetch (undici) in Node 20 sends exactly "node"
    ("node-fetch", r"^node$", ["node-fetch"]),
    ("node-axios", r"^axios/[0-9]", ["node-axios"]),
    ("node-got", r"^got \(https://github\.com/sindresorhus/got\)$",
     ["node-got"]),
    ("go", r"^Go-http-client/1\.1$", ["go-net/http"]),
    # Debian's rclone 1.60.1 sends "rclone/" (no version); Go underneath: cap 5
    ("rclone", r"^rclone/", ["rclone-webdav"]),
    ("gvfs", r"^gvfs/[0-9]", ["gio-cat (gvfs http)"]),
    ("neon", r"^[A-Za-z0-9._-]+/[0-9.]+ neon/0\.[0-9]+\.[0-9]+$",
     ["neon-cadaver"]),
    ("davix", r"^libdavix/[0-9]", ["davix-get"]),
    ("check_curl", r"^check_curl/v[0-9]", ["check_curl"]),
    # browsers: the full Mozilla/AppleWebKit/Chrome or Mozilla/Gecko/Firefox
    # shape, not just "Mozilla/5.0" (Qt5, Tcl's http send that prefix)
    ("chromium",
     r"^Mozilla/5\.0 \([^)]+\) AppleWebKit/537\.36 \(KHTML, like Gecko\) "
     r"(Headless)?Chrome/[0-9]{2,3}\.[0-9.]+ Safari/537\.36$",
     ["chromium"]),
    ("firefox",
     r"^Mozilla/5\.0 \([^)]+; rv:[0-9]{2,3}\.[0-9]+\) Gecko/20100101 "
     r"Firefox/[0-9]{2,3}\.[0-9]+$", ["firefox-esr"]),
]


# families whose requests count only with the Sec-Fetch-Mode header
BROWSERS = ("chromium", "firefox")


def verdict(r):
    """(works, why) for one client row."""
    off, st = r.get("off"), r.get("all")
    if not off or not off["ok"]:
        return None, "the driver fails without 102s"
    if not st["ok"]:
        return False, "slow request: %s" % st["results"][0]["error"]
    if st.get("ka_ok") is False:
        bad = [x for x in st["results"][1:] if not x["ok"]]
        return False, "keep-alive probe: %s" % bad[0]["error"]
    if not st.get("sent"):
        return None, "the module sent it no 102 (%s)" % st.get("proto")
    return True, "ok"


def flow_verdicts(r):
    """{"GET": ..., "PUT+Expect": ..., "POST+Expect": ...} for one row."""
    ok, why = verdict(r)
    out = {"GET": "ok" if ok else "breaks: %s" % why if ok is False
           else "n/a: %s" % why}
    for m, f in sorted((r.get("uploads") or {}).items()):
        k = "%s+Expect" % m
        if "na" in f:
            out[k] = "n/a: %s" % f["na"]
        elif not f["off"]["ok"]:
            out[k] = "n/a: fails without 102s: %s" % (
                f["off"]["results"][0]["error"] or "?")[:80]
        else:
            a = f["all"]
            bad = [x for x in a["results"][1:] if not x["ok"]]
            out[k] = "ok" if a["ok"] and not bad else "breaks: %s" % (
                (a["results"][0] if not a["ok"] else bad[0])["error"]
                or "?")[:80]
            if not a.get("expect"):
                out[k] += " (no Expect sent)"
    return out


def main():
    res_path = Path(sys.argv[1]) if len(sys.argv) > 1 else \
        HERE.parent / "build" / "compat" / "results.json"
    # desktop browsers (compat/browsers.py, under Xvfb): their User-Agents
    # join the headless ones of the families they handled 102s in
    desktop = {}
    browsers_path = res_path.parent / "browsers.json"
    if browsers_path.exists():
        for b in json.loads(browsers_path.read_text()):
            if b.get("ok"):
                desktop.setdefault(b["browser"], set()).add(
                    b["nav"][1]["user-agent"])
    out_path = Path(sys.argv[2]) if len(sys.argv) > 2 else \
        HERE / "known-clients.json"
    rows = {r["name"]: r for r in json.loads(res_path.read_text())
            if r.get("kind") == "client"}
    broken = []
    for name, r in rows.items():
        ok, why = verdict(r)
        if ok is False:
            broken.append({"client": name, "user_agent": r["user_agent"]
                           if r["user_agent"] not in (None, "-") else "",
                           "how": why[:100]})
    problems = []
    fams = []
    for fname, rx, names in FAMILIES:
        c = re.compile(rx)
        caps, searched, ka = [], [], []
        for n in names:
            r = rows.get(n)
            if r is None:
                problems.append("%s: row %s not in %s" % (fname, n, res_path))
                continue
            ok, why = verdict(r)
            if not ok:
                problems.append("%s: row %s does not work: %s" % (
                    fname, n, why))
            ua = r.get("user_agent") or ""
            if not c.search(ua):
                problems.append("%s: %r does not match row %s's "
                                "User-Agent %r" % (fname, rx, n, ua))
            caps.append(r["cap"])
            searched.append(r["maxn"])
            a = r["all"]
            if a.get("ka_ok"):
                ka.append("ok")
            elif a.get("fast_same_conn"):
                # npm: the tarball after the slow document, same connection
                ka.append("ok (%d later request(s) on the connection)"
                          % a["fast_same_conn"])
            else:
                ka.append("n/a")
        for b in broken:
            if c.search(b["user_agent"]):
                problems.append("%s: %r matches broken %s (%r)" % (
                    fname, rx, b["client"], b["user_agent"]))
        if not caps:
            continue
        cap = min(caps)
        flows = {}
        for n in names:
            if n in rows:
                for k, v in flow_verdicts(rows[n]).items():
                    if k not in flows or not v.startswith("ok"):
                        flows[k] = v
        fams.append({"name": fname, "regex": rx, "flows": flows,
                     "cap": 0 if cap >= min(searched) else cap,
                     "searched_to": min(searched),
                     "keepalive_probe": sorted(ka)[0],
                     "user_agents": sorted({rows[n]["user_agent"]
                                            for n in names if n in rows}
                                           | desktop.get(fname, set())),
                     "browser": fname in BROWSERS,
                     "rows": names})
    if problems:
        for p in problems:
            print("known_clients: " + p, file=sys.stderr)
        sys.exit(1)
    out_path.write_text(json.dumps({
        "generated_from": "make -f Makefile.apxs compat",
        "note": "cap 0: no cap found up to searched_to 102s",
        "families": fams, "broken": broken}, indent=1) + "\n")
    for f in fams:
        bad = ["%s %s" % (k, v) for k, v in f["flows"].items()
               if v.startswith("breaks")]
        if bad:
            print("known_clients: %s: %s" % (f["name"], "; ".join(bad)))
    print("known_clients: %d families, %d broken clients -> %s" % (
        len(fams), len(broken), out_path))


if __name__ == "__main__":
    main()
