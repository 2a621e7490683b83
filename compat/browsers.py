#!/usr/bin/python3
"""Desktop browsers (not headless) under Xvfb against mod_processing.

    compat/browsers.py [--keep] [--out FILE]     (as root; compat/setup-deps
                                                   compat, plus xvfb,
                                                   libnss3-tools, imagemagick)

For Debian's chromium and firefox-esr, each with a fresh profile, over plain
HTTP and over TLS (a CA of its own, made here: Chromium is started with
--ignore-certificate-errors, Firefox's profile trusts the CA), to 127.0.0.1
and to a name that does not look like loopback (ALIAS, added to /etc/hosts
for the run as 127.0.0.2, removed after): the browser opens a page that the
origin serves slowly with 3 102s (a top-level navigation), whose script then
fetch()es a slow resource (3 102s) and a fast one and reports what it got.
The origin's forensic log gives the request headers of the navigation and
of the fetch() (User-Agent, Sec-Fetch-*, Sec-CH-UA); its access log the
102s the module sent. Writes a Markdown summary (and --json).
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compat  # noqa: E402
from compat import Server, free_port, run, say, MODDIR, MODULE_SO  # noqa

ALIAS = "compat-browser.test"
ALIAS_IP = "127.0.0.2"
N = 3
SLEEP = compat.sleep_for(N)
CHROMIUM_FLAGS = ["--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SHOWN = ("user-agent", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest",
         "sec-fetch-user", "sec-ch-ua", "sec-ch-ua-mobile",
         "sec-ch-ua-platform", "upgrade-insecure-requests", "priority")

PAGE = r"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>compat</title></head>
<body><pre id="out">page loaded</pre>
<script>
var P = "%(pattern)s";
function exp(n) { var s = ""; while (s.length < n) s += P; return s.slice(0, n); }
var tag = new URLSearchParams(location.search).get("tag");
(async function () {
  var r = [];
  var nav = (performance.getEntriesByType("navigation") || [])[0] || {};
  r.push("nav=" + (nav.responseStatus || "?"));
  try {
    var a = await fetch("/c/" + tag + "-fetch?sleep=%(sleep)d&len=1000");
    var t = await a.text();
    r.push("fetch=" + a.status + (t === exp(1000) ? "-ok" : "-bad" + t.length));
  } catch (e) { r.push("fetch=err-" + e.name); }
  try {
    var b = await fetch("/f/fast.txt?tag=" + tag);
    var u = await b.text();
    r.push("fast=" + b.status + (u === exp(100) ? "-ok" : "-bad" + u.length));
  } catch (e) { r.push("fast=err-" + e.name); }
  document.getElementById("out").textContent = "RESULTS " + r.join(" ");
  try { await fetch("/report/" + tag + "/" + r.join(",")); } catch (e) {}
})();
</script></body></html>
"""


def make_certs(d):
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
         "-days", "30", "-subj", "/CN=compat test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
         str(d / "srv.key"), "-out", str(d / "srv.csr"), "-subj",
         "/CN=%s" % ALIAS])
    (d / "ext").write_text(
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1,IP:%s\n"
        % (ALIAS, ALIAS_IP))
    run(["openssl", "x509", "-req", "-in", str(d / "srv.csr"), "-CA",
         str(d / "ca.pem"), "-CAkey", str(d / "ca.key"), "-CAcreateserial",
         "-days", "30", "-out", str(d / "srv.pem"), "-extfile",
         str(d / "ext")])


def origin_conf(d, hp, sp, mods_so):
    r = d / "origin"
    for sub in ("logs", "run", "files/f"):
        (r / sub).mkdir(parents=True, exist_ok=True)
    (r / "files" / "page.html").write_text(PAGE % {
        "pattern": compat.PATTERN.decode(), "sleep": SLEEP})
    (r / "files" / "f" / "fast.txt").write_bytes(compat.body_of(100))
    all_ = "    ProcessingClients all\n" if compat.has_processing_clients() \
        else ""
    mods = ["mpm_event", "authz_core", "mime", "alias", "log_forensic",
            "ssl", "socache_shmcb"]
    conf = ['ServerRoot "%s"' % r, "ServerName 127.0.0.1"]
    for ip in ("127.0.0.1", ALIAS_IP):
        conf += ["Listen %s:%d" % (ip, hp), "Listen %s:%d https" % (ip, sp)]
    conf += ['PidFile "%s/run/httpd.pid"' % r,
             'DefaultRuntimeDir "%s/run"' % r, "Mutex file:%s/run default" % r]
    conf += ['LoadModule %s_module "%s/mod_%s.so"' % (m, MODDIR, m)
             for m in mods]
    conf += ['LoadModule processing_module "%s"' % MODULE_SO,
             'LoadModule proc_test_module "%s"' % mods_so[0],
             'LoadModule compat_slow_module "%s"' % mods_so[1],
             "User www-data", "Group www-data", "KeepAliveTimeout 15",
             'ErrorLog "%s/logs/error.log"' % r, "LogLevel warn",
             'LogFormat "%{%s}t %{remote}p %k %{processing-sent}n %>s %H '
             '%m %U%q %{SSL_PROTOCOL}x" b',
             'CustomLog "%s/logs/access.log" b' % r,
             'ForensicLog "%s/logs/forensic.log"' % r,
             "TypesConfig /etc/mime.types",
             'DocumentRoot "%s/files"' % r,
             "<Directory />\n    Require all granted\n</Directory>",
             'AliasMatch "^/sc/(.*)$" "%s/files/$1"' % r,
             '<Location "/sc/">\n    Processing On\n%s    ProcessingInterval '
             "100ms\n    ProcessingDelay 0\n    ProcessingMaxCount %d\n"
             "    CompatSlow %d\n</Location>" % (all_, N, SLEEP),
             '<Location "/c/">\n    SetHandler proc-test\n    Processing On\n'
             "%s    ProcessingInterval 100ms\n    ProcessingDelay 0\n"
             "    ProcessingMaxCount %d\n</Location>" % (all_, N),
             "<VirtualHost *:%d>\n    SSLEngine on\n"
             '    SSLCertificateFile "%s/srv.pem"\n'
             '    SSLCertificateKeyFile "%s/srv.key"\n</VirtualHost>'
             % (sp, d, d)]
    (r / "httpd.conf").write_text("\n".join(conf) + "\n")
    run(["chmod", "-R", "a+rX", str(d)])
    return r


def forensic(r, needle):
    for ln in (r / "logs" / "forensic.log").read_text(
            errors="replace").splitlines():
        if ln.startswith("+") and needle in ln:
            f = ln.split("|")
            h = {}
            for x in f[2:]:
                k, _, v = x.partition(":")
                h[k.lower()] = v.replace("%3a", ":").replace(
                    "%7c", "|").replace("%20", " ").replace("%22", '"')
            return f[1], h
    return None, {}


def access(r, needle):
    return [ln for ln in (r / "logs" / "access.log").read_text(
        errors="replace").splitlines() if needle in ln]


def firefox_profile(p, ca):
    p.mkdir()
    prefs = {
        "browser.shell.checkDefaultBrowser": False,
        "browser.startup.homepage_override.mstone": "ignore",
        "startup.homepage_welcome_url": "",
        "startup.homepage_welcome_url.additional": "",
        "browser.aboutwelcome.enabled": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "datareporting.policy.firstRunURL": "",
        "toolkit.telemetry.reportingpolicy.firstRun": False,
        "app.update.enabled": False, "app.normandy.enabled": False,
        "browser.safebrowsing.malware.enabled": False,
        "browser.safebrowsing.phishing.enabled": False,
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
        "extensions.update.enabled": False,
        "browser.newtabpage.enabled": False,
        "network.proxy.type": 0,
    }
    (p / "user.js").write_text("".join(
        "user_pref(%s, %s);\n" % (json.dumps(k), json.dumps(v))
        for k, v in prefs.items()))
    run(["certutil", "-N", "-d", "sql:%s" % p, "--empty-password"])
    run(["certutil", "-A", "-n", "compat-ca", "-t", "C,,", "-i", str(ca),
         "-d", "sql:%s" % p])


def browser_run(name, url, d, display, r, tag, ca):
    prof = d / ("prof-" + tag)
    if name == "chromium":
        prof.mkdir()
        argv = ["chromium", "--no-sandbox", "--user-data-dir=%s" % prof] + \
            CHROMIUM_FLAGS + ["--ignore-certificate-errors",
                              "--password-store=basic", url]
    else:
        firefox_profile(prof, ca)
        argv = ["firefox-esr", "--no-remote", "--profile", str(prof), url]
    env = dict(os.environ, DISPLAY=display, HOME=str(prof))
    env.pop("MOZ_HEADLESS", None)
    log = open(d / ("%s.log" % tag), "wb")
    p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    rep = None
    end = time.monotonic() + 60
    while time.monotonic() < end and p.poll() is None:
        lines = access(r, "/report/%s/" % tag)
        if lines:
            rep = lines[0].split("/report/%s/" % tag, 1)[1].split()[0]
            break
        time.sleep(0.5)
    subprocess.run(["import", "-display", display, "-window", "root",
                    str(d / ("%s.png" % tag))], timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            break
        try:
            p.wait(5)
            break
        except subprocess.TimeoutExpired:
            pass
    nav = forensic(r, "/sc/page.html?tag=%s " % tag)
    fet = forensic(r, "/c/%s-fetch" % tag)
    sent = {"nav": [x.split()[3] for x in access(r, "?tag=%s " % tag)
                    if "/sc/page.html" in x],
            "fetch": [x.split()[3] for x in access(r, "/c/%s-fetch" % tag)]}
    return {"report": rep, "nav": nav, "fetch": fet, "sent": sent,
            "ok": bool(rep) and "fetch=200-ok" in rep and
            "fast=200-ok" in rep}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=str(compat.MAIN / "build" / "compat" /
                                         "browsers.md"))
    ap.add_argument("--json", default=str(compat.MAIN / "build" / "compat" /
                                          "browsers.json"))
    ap.add_argument("--only", default="")
    ap.add_argument("--append-to", default=None,
                    help="also put the section into this Markdown file "
                    "(compat/results.md), before its last line")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="browsers-", dir="/tmp"))
    os.chmod(d, 0o755)
    hosts = Path("/etc/hosts")
    orig_hosts = hosts.read_text()
    line = "%s %s  # compat/browsers.py\n" % (ALIAS_IP, ALIAS)
    if ALIAS not in orig_hosts:
        hosts.write_text(orig_hosts + line)
    servers = []
    results = []
    try:
        b = d / "build"
        b.mkdir()
        for src in (compat.PROC_TEST_C, compat.SLOW_C):
            shutil.copy(src, b / src.name)
            run(["apxs", "-c", "-o", src.stem + ".so", src.name], cwd=b)
        make_certs(d)
        hp, sp = free_port(), free_port()
        r = origin_conf(d, hp, sp, [b / ".libs" / "mod_proc_test.so",
                                     b / ".libs" / "mod_compat_slow.so"])
        run(["apache2", "-d", str(r), "-f", str(r / "httpd.conf"), "-t"])
        servers.append(Server("origin", ["apache2", "-d", str(r), "-f",
                                         str(r / "httpd.conf"),
                                         "-DFOREGROUND"], hp,
                              logfile=r / "logs" / "stdout"))
        disp_n = 77
        while Path("/tmp/.X11-unix/X%d" % disp_n).exists() or \
                Path("/tmp/.X%d-lock" % disp_n).exists():
            disp_n += 1
        display = ":%d" % disp_n
        xv = subprocess.Popen(["Xvfb", display, "-screen", "0",
                               "1280x1024x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              start_new_session=True)
        time.sleep(2)
        try:
            seq = 0
            for name in ("chromium", "firefox-esr"):
                if args.only and args.only not in name:
                    continue
                ver = compat.first_line([name, "--version"])
                for scheme, port in (("http", hp), ("https", sp)):
                    for host in ("127.0.0.1", ALIAS):
                        seq += 1
                        tag = "b%d%s" % (seq, re.sub(r"\W", "", name))
                        url = "%s://%s:%d/sc/page.html?tag=%s" % (
                            scheme, host, port, tag)
                        res = browser_run(name, url, d, display, r, tag,
                                          d / "ca.pem")
                        res.update(browser=name, version=ver, url=url,
                                   scheme=scheme, host=host)
                        say("%s %s %s: %s" % (name, scheme, host,
                                              res["report"]))
                        results.append(res)
        finally:
            xv.terminate()
            xv.wait(10)
    finally:
        for s in servers:
            s.stop()
        if ALIAS not in orig_hosts:
            cur = hosts.read_text()
            hosts.write_text(cur.replace(line, ""))
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        write_md(results, args.out)
        if args.append_to:
            md = Path(args.append_to)
            old = md.read_text().rstrip("\n").split("\n")
            sec = Path(args.out).read_text().rstrip("\n").split("\n")
            md.write_text("\n".join(old[:-1] + sec + [""] + old[-1:]) +
                          "\n")
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        else:
            say("kept %s" % d)


ALL_OK = "nav=200,fetch=200-ok,fast=200-ok"
SEC_FETCH = ("sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest",
             "sec-fetch-user")


def write_md(results, out):
    """The section of compat/results.md: one row per browser, scheme and
    host; each browser's User-Agent and Sec-CH-UA once below the table."""
    lines = ["## Desktop browsers (Xvfb, not headless)", "",
             "Generated by `compat/browsers.py` on %s UTC (run on its own: "
             "it adds a line to /etc/hosts for the run)." %
             time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "",
             "Fresh profile; Chromium: `%s --ignore-certificate-errors`; "
             "Firefox: its profile trusts the run's CA. `%s`: an /etc/hosts "
             "alias for %s. The page is a top-level navigation served with "
             "%d 102s; its script fetch()es a slow resource (%d 102s), then "
             "a fast one. **result**: ok is `%s`. Headers as the origin "
             "received them, navigation / fetch(); **Sec-Fetch**: "
             "Mode,Site,Dest,User ('-': none of them)." % (
                 " ".join(CHROMIUM_FLAGS), ALIAS, ALIAS_IP, N, N, ALL_OK),
             "",
             "| browser | URL | result | 102s sent | Sec-Fetch | Sec-CH-UA |",
             "|---|---|---|---|---|---|"]
    for x in results:
        nh, fh = x["nav"][1], x["fetch"][1]

        def sf(h):
            v = [h.get(k, "-") for k in SEC_FETCH]
            return "-" if v == ["-"] * len(v) else ",".join(v)
        lines.append("| %s | %s://%s | %s | %s / %s | %s / %s | %s / %s |" % (
            x["browser"], x["scheme"], x["host"],
            "ok" if x["ok"] and x["report"] == ALL_OK else
            ("ok (%s)" if x["ok"] else "FAIL (%s)") % (
                x["report"] or "no report"),
            ",".join(x["sent"]["nav"]) or "-",
            ",".join(x["sent"]["fetch"]) or "-", sf(nh), sf(fh),
            "yes" if nh.get("sec-ch-ua") else "-",
            "yes" if fh.get("sec-ch-ua") else "-"))
    lines.append("")
    for b in dict.fromkeys(x["browser"] for x in results):
        ua = list(dict.fromkeys(x["nav"][1].get("user-agent", "-")
                                for x in results if x["browser"] == b))
        ch = list(dict.fromkeys(x["nav"][1].get("sec-ch-ua")
                                for x in results if x["browser"] == b
                                and x["nav"][1].get("sec-ch-ua")))
        lines.append("- %s: User-Agent %s%s" % (
            b, " or ".join("`%s`" % u for u in ua),
            "; Sec-CH-UA %s" % " or ".join("`%s`" % c for c in ch)
            if ch else ""))
    lines.append("")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
