"""The clients compat/compat.py measures: real tools and libraries, each with
its default User-Agent and default settings, driven non-interactively.

A driver gets a Req (the mode, the number of 102s, its URLs and an output
directory) and returns one result per request it was asked to make:
    {"status": int|None, "ok": bool, "error": str|None}
Keep-alive drivers (ka=True) make 1 + KA_FAST requests: the slow one (which
gets the 102s), then KA_FAST fast ones that the client may send on the same
connection, each with a body of its own length (so a body that belongs to
another request is seen). The others make the slow request only (their
tool fetches one URL per run, or opens a connection per URL).
"""
import hashlib
import json
import os
import re
import subprocess
import tarfile
import io
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CL = HERE / "clients"
NPM_DIR = Path(os.environ.get("COMPAT_NPM_DIR",
                              "/var/cache/mod_processing-compat/npm"))
JARS = "/usr/share/java"
JAVA_CP_LIBS = ["httpclient.jar", "httpcore.jar", "commons-logging.jar",
                "commons-codec.jar", "httpclient5.jar", "httpcore5.jar",
                "httpcore5-h2.jar", "slf4j-api.jar", "slf4j-nop.jar",
                "okhttp.jar", "okio.jar"]

PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
BODY_LEN = 1000
FAST_LEN = 100
UPLOAD_LEN = 4000    # request body of the upload flows (PUT/POST + Expect)
KA_FAST = 7
INTERVAL_MS = 100
TAIL_MS = 400
BASIC_N = 3


def body_of(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def md5(b):
    return hashlib.md5(b).hexdigest()


def sleep_for(n):
    # 25 % more than N intervals: on a busy machine the watchdog skips the
    # ticks it is late for and reaches N later (ProcessingMaxCount N still
    # stops it at N); exact_step() checks the count the module reports
    return n * INTERVAL_MS * 5 // 4 + TAIL_MS


def fast_len(i):
    """Body length of request i (2..): all different."""
    return FAST_LEN + i


def sh(argv, timeout, env=None, cwd=None, input=None):
    """(exit status or None if killed, output)."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout,
                           env=env, cwd=cwd, input=input,
                           stdin=None if input is not None
                           else subprocess.DEVNULL)
        return r.returncode, r.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        return None, out.decode("utf-8", "replace") + " [killed after %ds]" \
            % timeout
    except FileNotFoundError as e:
        return 127, str(e)


def squash(s, n=240):
    return re.sub(r"\s+", " ", s or "").strip()[-n:]


def why(out, n=240):
    """The tool's own complaint: its last lines that say error/failed/...,
    else the end of its output."""
    hits = [ln.strip() for ln in (out or "").splitlines() if re.search(
        r"error|fail|unable|bad |denied|refused|^E: |cannot|invalid|"
        r"unexpected|prematurely|not found|no matching", ln, re.I)]
    return squash(" | ".join(hits[-2:]) if hits else out, n)


class Req:
    def __init__(self, origin, work, mode, n, tag, ka, upload=None):
        self.origin, self.mode, self.n, self.tag, self.ka = \
            origin, mode, n, tag, ka
        # upload flows: "PUT" or "POST" with "Expect: 100-continue"; the
        # first request sends upload_file (UPLOAD_LEN bytes), the drivers
        # of lines_driver() get it as COMPAT_UPLOAD(_FILE)
        self.upload = upload
        self.d = work / "out" / tag
        self.d.mkdir(parents=True)
        self.env = dict(os.environ, HOME=str(self.d / "home"),
                        XDG_CONFIG_HOME=str(self.d / "home" / ".config"),
                        XDG_CACHE_HOME=str(self.d / "home" / ".cache"),
                        XDG_RUNTIME_DIR=str(self.d / "run"))
        for k in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
            self.env.pop(k, None)
        (self.d / "home").mkdir()
        (self.d / "run").mkdir(mode=0o700)
        self.upload_file = self.d / "upload"
        self.upload_body = body_of(UPLOAD_LEN)[::-1]
        if upload:
            self.upload_file.write_bytes(self.upload_body)
            self.env["COMPAT_UPLOAD"] = upload
            self.env["COMPAT_UPLOAD_FILE"] = str(self.upload_file)
        sn = BASIC_N if mode == "off" else n
        self.sleep = sleep_for(sn)
        self.timeout = self.sleep / 1000.0 + 90
        pfx = {"off": "c", "all": "c", "known": "k"}[mode]
        self.path_n = 0 if mode == "off" else n
        self.slow_path = "/%s/%d/%s-1?sleep=%d&len=%d" % (
            pfx, self.path_n, tag, self.sleep, BODY_LEN)
        self.paths = [self.slow_path]
        self.expect = [body_of(BODY_LEN)]
        if ka:
            for i in range(2, KA_FAST + 2):
                self.paths.append("/c/0/%s-%d?len=%d" % (tag, i, fast_len(i)))
                self.expect.append(body_of(fast_len(i)))
        self.urls = [origin.url(p) for p in self.paths]

    # static files, served by the default handler (slowed by CompatSlow)
    def files(self, i):
        d = self.origin.root / "files" / ("%s-%d" % (self.tag, i))
        d.mkdir(parents=True, exist_ok=True)
        return d

    def static_path(self, i, rel):
        if i == 1:
            return "/s%s/%d/%s-1/%s" % ("k" if self.mode == "known" else "c",
                                        self.path_n, self.tag, rel)
        return "/f/%s-%d/%s" % (self.tag, i, rel)

    def static_url(self, i, rel):
        return self.origin.url(self.static_path(i, rel))


def result(ok, status=None, error=None):
    return {"status": status, "ok": bool(ok), "error": None if ok else error}


def file_results(req, files, rc, out, statuses=None, what=""):
    res = []
    for i, f in enumerate(files):
        f = Path(f)
        b = f.read_bytes() if f.exists() else None
        st = statuses[i] if statuses and i < len(statuses) else None
        ok = b == req.expect[i] and (st is None or st == 200)
        if b is not None and st is None and ok:
            st = 200
        err = None
        if not ok:
            err = "%sexit %s, %s%s; %s" % (
                what, rc, "no file" if b is None else "%d bytes" % len(b),
                "" if st is None else ", status %s" % st, why(out) or "-")
        res.append({"status": st, "ok": ok, "error": err})
    return res


def parse_lines(out, expect):
    got = {}
    for ln in out.splitlines():
        p = ln.split(" ")
        try:
            if p[0] == "RESULTHEX" and len(p) >= 3:
                i, st = int(p[1]), p[2]
                b = bytes.fromhex(p[3]) if len(p) > 3 else b""
                p = ["RESULT", str(i), st, str(len(b)), md5(b)]
            if p[0] == "RESULT" and len(p) >= 5:
                i = int(p[1])
                st = int(p[2]) if p[2].isdigit() else None
                ok = st == 200 and i <= len(expect) and \
                    int(p[3]) == len(expect[i - 1]) and p[4] == md5(
                        expect[i - 1])
                got[i] = {"status": st, "ok": ok, "error": None if ok else
                          ("wrong body (%s bytes)" % p[3] if st == 200 else
                           "status %s, %s body bytes" % (p[2], p[3]))}
            elif p[0] == "ERROR" and len(p) >= 2:
                got[int(p[1])] = {"status": None, "ok": False,
                                  "error": " ".join(p[2:])[:300]}
        except (ValueError, IndexError):
            continue
    return [got.get(i + 1, {"status": None, "ok": False,
                            "error": "no result (output: %s)" % squash(out)})
            for i in range(len(expect))]


def lines_driver(argv_fn, env_fn=None):
    def f(req, ctx):
        argv = argv_fn(req, ctx) + req.urls
        env = dict(req.env, **(env_fn(req, ctx) if env_fn else {}))
        rc, out = sh(argv, req.timeout, env=env)
        return parse_lines(out, req.expect)
    return f


# --- command-line downloaders -------------------------------------------

def d_curl(req, ctx):
    argv = ["curl", "-sS", "-w", "%{http_code} %{num_connects}\\n"]
    files = []
    for i, u in enumerate(req.urls, 1):
        files.append(req.d / str(i))
        argv += ["-o", str(files[-1]), u]
    rc, out = sh(argv, req.timeout)
    sts = [int(m) for m in re.findall(r"^(\d{3}) \d+$", out, re.M)]
    return file_results(req, files, rc, out, sts)


def d_wget(req, ctx):
    rc, out = sh(["wget", "-S", "--tries=1", "-P", str(req.d)] + req.urls,
                 req.timeout, env=req.env)
    blocks = re.split(r"^--\d{4}-\d\d-\d\d \d\d:\d\d:\d\d--  ", out,
                      flags=re.M)[1:]
    sts = []
    for i in range(len(req.urls)):
        s = re.findall(r"^  HTTP/1\.\d (\d{3})", blocks[i] if i < len(blocks)
                       else "", flags=re.M)
        sts.append(int(s[-1]) if s else None)
    files = []
    for i in range(len(req.urls)):
        g = sorted(req.d.glob("%s-%d?*" % (req.tag, i + 1)))
        files.append(g[0] if g else req.d / "missing")
    return file_results(req, files, rc, out, sts)


def d_wget2(req, ctx):
    # one thread, so the fast requests follow the slow one on its connection
    rc, out = sh(["wget2", "--tries=1", "--max-threads=1", "-S", "-P",
                  str(req.d)] + req.urls, req.timeout, env=req.env)
    files = []
    for i in range(len(req.urls)):
        g = sorted(req.d.glob("%s-%d?*" % (req.tag, i + 1)))
        files.append(g[0] if g else req.d / "missing")
    return file_results(req, files, rc, out)


def d_single(argv_fn, what=""):
    """A tool that writes the slow URL's body to a file (argv_fn(req, out,
    url)) or, if it returns (argv, None), to its stdout."""
    def f(req, ctx):
        o = req.d / "1"
        argv, to = argv_fn(req, o, req.urls[0])
        if to is None:
            try:
                r = subprocess.run(argv, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=req.env,
                                   stdin=subprocess.DEVNULL,
                                   timeout=req.timeout)
                o.write_bytes(r.stdout)
                rc, out = r.returncode, r.stderr.decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                rc, out = None, "killed after %ds" % req.timeout
        else:
            rc, out = sh(argv, req.timeout, env=req.env)
        res = file_results(req, [o], rc, out, what=what)
        if res[0]["ok"] and rc not in (0, None):
            res[0].update(ok=False, error="right body but exit %s: %s" % (
                rc, squash(out)))
        return res
    return f


def d_aria2(req, ctx):
    lst = req.d / "list"
    lst.write_text("".join("%s\n  out=%d\n" % (u, i)
                           for i, u in enumerate(req.urls, 1)))
    rc, out = sh(["aria2c", "-q", "-j1", "--max-tries=1", "-d",
                  str(req.d / "o"), "-i", str(lst)], req.timeout, env=req.env)
    return file_results(req, [req.d / "o" / str(i) for i in
                              range(1, len(req.urls) + 1)], rc, out)


def d_lftp(req, ctx):
    # full URLs: lftp keeps the connection between them (with "open" and
    # paths it would drop the query string)
    cmds = ["set cmd:fail-exit no", "set net:max-retries 1"]
    files = []
    for i, u in enumerate(req.urls, 1):
        files.append(req.d / str(i))
        cmds.append('get "%s" -o "%s"' % (u, files[-1]))
    rc, out = sh(["lftp", "-c", "; ".join(cmds)], req.timeout, env=req.env)
    return file_results(req, files, rc, out)


def d_httpie(req, ctx):
    return d_single(lambda r, o, u: (["http", "--check-status",
                                      "--ignore-stdin", "--timeout", "300",
                                      "--download", "--output", str(o), u],
                                     o))(req, ctx)


# --- package managers ---------------------------------------------------

def d_apt(req, ctx):
    """apt's http method through apt-helper download-file (all URLs in one
    run: one http method process, which keeps its connection and
    pipelines)."""
    argv = ["/usr/lib/apt/apt-helper", "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Retries=0", "download-file"]
    files = []
    for i, u in enumerate(req.urls, 1):
        files.append(req.d / ("f%d" % i))
        argv += [u, str(files[-1])]
    rc, out = sh(argv, req.timeout, env=req.env)
    return file_results(req, files, rc, out)


def make_wheel(path):
    z = zipfile.ZipFile(path, "w")
    z.writestr("compatpkg/__init__.py", "")
    z.writestr("compatpkg-1.0.dist-info/METADATA",
               "Metadata-Version: 2.1\nName: compatpkg\nVersion: 1.0\n")
    z.writestr("compatpkg-1.0.dist-info/WHEEL",
               "Wheel-Version: 1.0\nGenerator: compat\nRoot-Is-Purelib: "
               "true\nTag: py3-none-any\n")
    z.writestr("compatpkg-1.0.dist-info/RECORD", "")
    z.close()


def d_pip(req, ctx):
    """pip download from a simple index whose project page is slow; the
    wheel it links to comes fast (the second request, on pip's session)."""
    whl = "compatpkg-1.0-py3-none-any.whl"
    make_wheel(req.files(2) / whl)
    data = (req.files(2) / whl).read_bytes()
    idx = req.files(1) / "simple" / "compatpkg"
    idx.mkdir(parents=True)
    (idx / "index.html").write_text(
        '<!DOCTYPE html><html><body><a href="%s#sha256=%s">%s</a>'
        '</body></html>\n' % (req.static_url(2, whl),
                              hashlib.sha256(data).hexdigest(), whl))
    req.expect = [data]
    rc, out = sh(["/usr/bin/python3", "-m", "pip", "download", "--no-deps",
                  "--no-cache-dir", "--disable-pip-version-check",
                  "--retries", "0", "--timeout", "300",
                  "--index-url", req.static_url(1, "simple/"), "-d",
                  str(req.d / "o"), "compatpkg"], req.timeout, env=req.env)
    return file_results(req, [req.d / "o" / whl], rc, out)


def d_npm(req, ctx):
    """npm install from a registry whose package document is slow; the
    tarball comes fast (the second request)."""
    buf = io.BytesIO()
    pj = json.dumps({"name": "compatpkg", "version": "1.0.0"}).encode()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        ti = tarfile.TarInfo("package/package.json")
        ti.size = len(pj)
        ti.mode = 0o644
        t.addfile(ti, io.BytesIO(pj))
    tgz = buf.getvalue()
    (req.files(2) / "compatpkg-1.0.0.tgz").write_bytes(tgz)
    reg = req.files(1) / "npm"
    reg.mkdir()
    (reg / "compatpkg").write_text(json.dumps({
        "name": "compatpkg", "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {
            "name": "compatpkg", "version": "1.0.0",
            "dist": {"tarball": req.static_url(2, "compatpkg-1.0.0.tgz"),
                     "shasum": hashlib.sha1(tgz).hexdigest()}}}}))
    prefix = req.d / "proj"
    prefix.mkdir()
    (prefix / "package.json").write_text('{"name":"p","version":"1.0.0"}')
    rc, out = sh(["npm", "install", "--no-audit", "--no-fund",
                  "--no-update-notifier", "--fetch-retries=0",
                  "--cache", str(req.d / "cache"),
                  "--registry", req.static_url(1, "npm/"), "compatpkg"],
                 req.timeout, env=req.env, cwd=str(prefix))
    req.expect = [pj]
    return file_results(req, [prefix / "node_modules" / "compatpkg" /
                              "package.json"], rc, out)


# --- WebDAV -------------------------------------------------------------

def dav_file(req):
    """A file the /davn/N/ location slows (its name starts slow-)."""
    name = "slow-%s-1.txt" % req.tag   # compat.py finds "-<tag>-1."
    p = req.origin.root / "dav" / name
    p.write_bytes(body_of(BODY_LEN))
    os.chmod(p, 0o644)
    base = "/davn/%d/" % req.path_n if req.mode != "known" else \
        "/davk/%d/" % req.path_n
    return base, name


def cadaver_fast_gets(req, files):
    """cadaver commands for the keep-alive probe's fast files (made on the
    server here), each file's local copy appended to files."""
    script = ""
    if req.ka:
        for i in range(2, KA_FAST + 2):
            nm = "fast-%s-%d.txt" % (req.tag, i)
            p = req.origin.root / "dav" / nm
            p.write_bytes(body_of(fast_len(i)))
            os.chmod(p, 0o644)
            files.append(req.d / str(i))
            script += "get %s %s\n" % (nm, files[-1])
    return script


def d_cadaver(req, ctx):
    base, name = dav_file(req)
    files = [req.d / "1"]
    script = "get %s %s\n" % (name, files[0]) + cadaver_fast_gets(req, files)
    rc, out = sh(["cadaver", req.origin.url(base)], req.timeout,
                 env=req.env, input=(script + "quit\n").encode())
    return file_results(req, files, rc, out)


def d_davix(req, ctx):
    base, name = dav_file(req)
    return d_single(lambda r, o, u: (["davix-get", "--retry", "0",
                                      req.origin.url(base + name), str(o)],
                                     o))(req, ctx)


def d_rclone(req, ctx):
    base, name = dav_file(req)
    return d_single(lambda r, o, u: (
        ["rclone", "--config", "/dev/null", "--low-level-retries", "1",
         "--retries", "1", "copyto",
         ":webdav,url='%s':%s" % (req.origin.url(base), name), str(o)],
        o))(req, ctx)


def d_svn(req, ctx):
    path = ctx.origin.svn_repo(req.path_n, known=req.mode == "known",
                               tag=req.tag)
    o = req.d / "1"
    try:
        r = subprocess.run(["svn", "cat", "--non-interactive", "--config-dir",
                            str(req.d / "cfg"),
                            req.origin.url(path + "file.txt")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=req.timeout, env=req.env)
        o.write_bytes(r.stdout)
        rc, out = r.returncode, r.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        rc, out = None, "killed"
    return file_results(req, [o], rc, out)


def d_gio(req, ctx):
    return d_single(lambda r, o, u: (
        ["dbus-run-session", "--", "gio", "cat", u], None))(req, ctx)


# --- monitoring ---------------------------------------------------------

def d_check(prog):
    def f(req, ctx):
        argv = ["/usr/lib/nagios/plugins/" + prog, "-H", "127.0.0.1",
                "-p", str(req.origin.port), "-u", req.slow_path, "-t", "120"]
        rc, out = sh(argv, req.timeout, env=req.env)
        m = re.search(r"HTTP/1\.\d (\d{3})", out)
        st = int(m.group(1)) if m else None
        m2 = re.search(r" - (\d+) bytes in", out)
        nb = int(m2.group(1)) if m2 else None
        ok = rc == 0 and st == 200
        return [{"status": st, "ok": ok, "error": None if ok else
                 "exit %s (%s), %s bytes: %s" % (
                     rc, {0: "OK", 1: "WARNING", 2: "CRITICAL",
                          3: "UNKNOWN"}.get(rc, "?"), nb, squash(out))}]
    return f


# --- media --------------------------------------------------------------

def d_ffmpeg(req, ctx):
    # raw unsigned 8-bit audio in, copied out unchanged: output == body
    return d_single(lambda r, o, u: (
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
         "-f", "u8", "-ar", "8000", "-ac", "1", "-i", u, "-c", "copy",
         "-f", "u8", str(o)], o))(req, ctx)


# --- browsers -----------------------------------------------------------

PAGE_JS = r"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>compat %(tag)s</title></head>
<body><pre id="out">page loaded</pre>
<script>
var P = "%(pattern)s";
function exp(n) { var s = ""; while (s.length < n) s += P; return s.slice(0, n); }
var r = [];
var nav = (performance.getEntriesByType && performance.getEntriesByType("navigation")[0]) || {};
r.push("1:" + (nav.responseStatus || 0) + ":" + document.documentElement.outerHTML.length);
var fast = %(fast)s;
for (var k = 0; k < fast.length; k++) {
  var x = new XMLHttpRequest();
  try {
    x.open("GET", fast[k][0], false);
    x.send();
    r.push(fast[k][1] + ":" + x.status + ":" + x.responseText.length + ":" +
           (x.responseText === exp(fast[k][2]) ? "ok" : "bad"));
  } catch (e) { r.push(fast[k][1] + ":0:0:err"); }
}
var rep = new XMLHttpRequest();
rep.open("GET", "/f/%(tag)s-report/" + r.join(","), false);
try { rep.send(); } catch (e) {}
document.getElementById("out").textContent = "RESULTS " + r.join(",");
</script></body></html>
"""


def browser_page(req):
    fast = [[req.paths[i - 1], i, fast_len(i)]
            for i in range(2, len(req.paths) + 1)]
    html = PAGE_JS % {"tag": req.tag, "pattern": PATTERN.decode(),
                      "fast": json.dumps(fast)}
    (req.files(1) / "page.html").write_text(html)
    return req.static_url(1, "page.html"), html.encode()


def browser_results(req, ctx, rc, out):
    recs = ctx.origin.log_lines("/%s-report/" % req.tag, want=1, timeout=3)
    if not recs:
        return [result(False, None, "no report from the page (exit %s): %s"
                       % (rc, squash(out)))] + \
            [result(False, None, "not run") for _ in req.paths[1:]]
    rep = recs[0]["uri"].split("/%s-report/" % req.tag, 1)[1].split(",")
    res = [result(True, 200)]
    for i in range(2, len(req.paths) + 1):
        m = [x for x in rep if x.startswith("%d:" % i)]
        if not m:
            res.append(result(False, None, "no result"))
            continue
        _, st, ln, verdict = m[0].split(":")
        ok = verdict == "ok" and st == "200"
        res.append({"status": int(st), "ok": ok, "error": None if ok else
                    "status %s, %s chars, %s" % (st, ln, verdict)})
    return res


def d_chromium(req, ctx):
    url, _ = browser_page(req)
    prof = req.d / "profile"
    prof.mkdir()
    rc, out = sh(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-quic", "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--user-data-dir=%s" % prof, "--dump-dom", url],
                 req.timeout, env=req.env)
    return browser_results(req, ctx, rc, out)


def d_firefox(req, ctx):
    url, _ = browser_page(req)
    prof = req.d / "profile"
    prof.mkdir()
    (prof / "user.js").write_text(
        'user_pref("browser.shell.checkDefaultBrowser", false);\n'
        'user_pref("datareporting.policy.dataSubmissionEnabled", false);\n'
        'user_pref("app.update.enabled", false);\n')
    rc, out = sh(["firefox-esr", "--headless", "--no-remote", "--profile",
                  str(prof), "--screenshot", str(req.d / "shot.png"), url],
                 req.timeout, env=dict(req.env, MOZ_HEADLESS="1"))
    return browser_results(req, ctx, rc, out)


def d_textbrowser(argv):
    return d_single(lambda r, o, u: (argv + [u], None))


# --- languages ----------------------------------------------------------

def py(mode):
    return lines_driver(lambda r, c: ["/usr/bin/python3",
                                      str(CL / "pyclients.py"), mode])


def node(mode):
    return lines_driver(lambda r, c: ["node", str(CL / "nodeclients.js"),
                                      mode],
                        lambda r, c: {"COMPAT_NODE_PATH":
                                      str(NPM_DIR / "node_modules")})


def java(cls, mode=None):
    return lines_driver(lambda r, c: ["java", "-cp", c.java_classpath(),
                                      cls] + ([mode] if mode else []))


def perl(mode):
    return lines_driver(lambda r, c: ["perl", str(CL / "perlclients.pl"),
                                      mode])


# --- versions -----------------------------------------------------------

def first(argv, pat=None, grp=0):
    rc, out = sh(argv, 30)
    if pat:
        m = re.search(pat, out, re.M)
        return m.group(grp) if m else "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def dpkg(pkg):
    rc, out = sh(["dpkg-query", "-W", "-f", "${Version}", pkg], 30)
    return out.strip() if rc == 0 else "?"


def vpy(mode):
    return lambda: first(["/usr/bin/python3", str(CL / "pyclients.py"),
                          "version", mode])


def vnode(i):
    def f():
        parts = first(["node", str(CL / "nodeclients.js"),
                       "version"]).split(", ")
        return ", ".join([parts[0]] + [parts[j] for j in i])
    return f


def vperl(mode):
    return lambda: first(["perl", str(CL / "perlclients.pl"), "version",
                          mode])


JAVA_V = lambda: "OpenJDK " + first(["java", "-version"],
                                    r"\(build ([^)]+)\)", 1)


# name, version, driver, keep-alive probe?, what is measured
CLIENTS = [
    # command-line downloaders
    ("curl", lambda: first(["curl", "--version"]).split()[1], d_curl, True,
     "curl URL1 -o f1 URL2 -o f2 ... (one connection)"),
    ("wget", lambda: first(["wget", "--version"]).split()[2], d_wget, True,
     "wget URL1 ... URL8"),
    ("wget2", lambda: first(["wget2", "--version"]).split()[2], d_wget2,
     True, "wget2 --max-threads=1 URL1 ... URL8"),
    ("busybox-wget", lambda: first(["busybox"]).split()[1],
     d_single(lambda r, o, u: (["busybox", "wget", "-O", str(o), u], o)),
     False, "busybox wget -O file URL"),
    ("aria2c", lambda: first(["aria2c", "--version"]).split()[2], d_aria2,
     True, "aria2c -j1 -i list"),
    ("lftp", lambda: first(["lftp", "--version"], r"Version (\S+)", 1),
     d_lftp, True, "lftp -c 'open http://...; get ...; get ...'"),
    ("httpie", lambda: "HTTPie " + first(["http", "--version"]), d_httpie,
     False, "http --download URL"),
    ("axel", lambda: first(["axel", "--version"]).split()[1],
     d_single(lambda r, o, u: (["axel", "-q", "-o", str(o), u], o)), False,
     "axel -o file URL"),
    # package managers
    ("apt-http", lambda: "apt " + dpkg("apt"), d_apt, True,
     "apt-helper download-file URL1 f1 ... (the http method)"),
    ("apt-http (one file)", lambda: "apt " + dpkg("apt"), d_apt, False,
     "apt-helper download-file URL f (the http method)"),
    ("pip", lambda: first(["/usr/bin/python3", "-m", "pip", "--version"])
     .split()[1], d_pip, False,
     "pip download from a simple index (slow page, then the wheel)"),
    ("npm", lambda: first(["npm", "--version"]), d_npm, False,
     "npm install from a registry (slow document, then the tarball)"),
    # languages
    ("python-http.client", vpy("http.client"), py("http.client"), True,
     "one HTTPConnection"),
    ("python-urllib", vpy("urllib"), py("urllib"), True,
     "urllib.request.urlopen (a connection per request)"),
    ("python-requests", vpy("requests"), py("requests"), True,
     "one Session"),
    ("python-httplib2", vpy("httplib2"), py("httplib2"), True, "one Http()"),
    ("python-aiohttp", vpy("aiohttp"), py("aiohttp"), True,
     "one ClientSession"),
    ("python-httpx", vpy("httpx"), py("httpx"), True, "one Client"),
    ("perl-LWP", vperl("lwp"), perl("lwp"), True,
     "LWP::UserAgent->new (no keep-alive)"),
    ("perl-LWP-keepalive", vperl("lwp"), perl("lwp-ka"), True,
     "LWP::UserAgent->new(keep_alive => 1)"),
    ("perl-HTTP::Tiny", vperl("tiny"), perl("tiny"), True,
     "HTTP::Tiny->new"),
    ("perl-Mojo::UserAgent", vperl("mojo"), perl("mojo"), True,
     "Mojo::UserAgent->new"),
    ("ruby-Net::HTTP", lambda: first(["ruby", str(CL / "rbclient.rb"),
                                      "version"]),
     lines_driver(lambda r, c: ["ruby", str(CL / "rbclient.rb"), "get"]),
     True, "Net::HTTP.start, requests on it"),
    ("php-curl", lambda: first(["php", str(CL / "phpclient.php"), "version",
                                "curl"]),
     lines_driver(lambda r, c: ["php", str(CL / "phpclient.php"), "curl"]),
     True, "one curl handle"),
    ("php-file_get_contents", lambda: first(["php", str(CL / "phpclient.php"),
                                             "version", "fgc"]),
     lines_driver(lambda r, c: ["php", str(CL / "phpclient.php"), "fgc"]),
     True, "file_get_contents (HTTP/1.0 by default)"),
    ("java-HttpClient", JAVA_V, java("JavaClients", "httpclient"), True,
     "java.net.http.HttpClient, HTTP/1.1"),
    ("java-HttpURLConnection", JAVA_V, java("JavaClients", "urlconnection"),
     True, "HttpURLConnection (keep-alive cache)"),
    ("java-ApacheHttpClient4", lambda: "HttpClient " +
     dpkg("libhttpclient-java"), java("ApacheHc4"), True,
     "HttpClients.createDefault()"),
    ("java-ApacheHttpClient5", lambda: "HttpClient " +
     dpkg("libhttpclient5-java"), java("ApacheHc5"), True,
     "HttpClients.createDefault() (classic)"),
    ("java-OkHttp3", lambda: "OkHttp " + dpkg("libokhttp-java"),
     java("OkHttp3"), True, "new OkHttpClient()"),
    ("node-http", vnode([1]), node("http"), True,
     "http.get, a keepAlive Agent"),
    ("node-fetch", vnode([2]), node("fetch"), True, "global fetch (undici)"),
    ("node-axios", vnode([3]), node("axios"), True, "axios.get"),
    ("node-got", vnode([4]), node("got"), True, "got()"),
    ("go-net/http", lambda: first([ "go", "version"]).split()[2],
     lines_driver(lambda r, c: [str(c.goclient)]), True, "one http.Client"),
    ("lua-socket", lambda: first(["lua5.4", str(CL / "luaclient.lua"),
                                  "version"]),
     lines_driver(lambda r, c: ["lua5.4", str(CL / "luaclient.lua")]), True,
     "socket.http.request (a connection per request)"),
    ("tcl-http", lambda: first(["tclsh", str(CL / "tclclient.tcl"),
                                "version"]),
     lines_driver(lambda r, c: ["tclsh", str(CL / "tclclient.tcl")]), True,
     "http::geturl (a connection per request)"),
    ("qt5-QNetworkAccessManager", vpy("qt5"), py("qt5"), True,
     "one QNetworkAccessManager (PyQt5)"),
    ("libsoup2", vpy("soup2"), py("soup2"), True, "one SoupSession (gi)"),
    ("libsoup3", vpy("soup3"), py("soup3"), True, "one SoupSession (gi)"),
    ("gio-cat (gvfs http)", lambda: "gvfs " + dpkg("gvfs-backends"), d_gio,
     False, "dbus-run-session -- gio cat URL"),
    # WebDAV
    ("neon-cadaver", lambda: "cadaver %s, neon %s" % (
        dpkg("cadaver"), dpkg("libneon27-gnutls")), d_cadaver, True,
     "cadaver: get slow file, then 7 fast ones"),
    ("serf-svn", lambda: "svn %s, serf %s" % (dpkg("subversion"),
                                             dpkg("libserf-1-1")),
     d_svn, False, "svn cat (its first request, OPTIONS, is the slow one)"),
    ("davix-get", lambda: first(["davix-get", "--version"]), d_davix, False,
     "davix-get URL file"),
    ("rclone-webdav", lambda: first(["rclone", "version"]).split()[1],
     d_rclone, False, "rclone copyto :webdav:file"),
    # monitoring
    ("check_http", lambda: first(["/usr/lib/nagios/plugins/check_http",
                                  "-V"]), d_check("check_http"), False,
     "check_http -H -p -u"),
    ("check_curl", lambda: first(["/usr/lib/nagios/plugins/check_curl",
                                  "-V"]), d_check("check_curl"), False,
     "check_curl -H -p -u"),
    # media
    ("ffmpeg", lambda: first(["ffmpeg", "-version"]).split()[2], d_ffmpeg,
     False, "ffmpeg -i URL (raw audio copied out)"),
    # text browsers
    ("lynx", lambda: first(["lynx", "-version"]).split()[2],
     d_textbrowser(["lynx", "-source"]), False, "lynx -source URL"),
    ("w3m", lambda: first(["w3m", "-version"]).split()[2].rstrip(","),
     d_textbrowser(["w3m", "-dump_source"]), False, "w3m -dump_source URL"),
    ("elinks", lambda: first(["elinks", "--version"]),
     d_textbrowser(["elinks", "-no-home", "-source"]), False,
     "elinks -source URL"),
    ("links2", lambda: first(["links2", "-version"]),
     d_textbrowser(["links2", "-source"]), False, "links2 -source URL"),
    # headless browsers
    # Debian's launcher script may print a shell error before the version.
    ("chromium", lambda: first(["chromium", "--version"], r"^Chromium (\S+)",
                               1), d_chromium, True,
     "headless --dump-dom: slow page, its script makes 7 sync XHRs"),
    ("firefox-esr", lambda: first(["firefox-esr", "--version"]), d_firefox,
     True, "headless --screenshot: slow page, its script makes 7 sync XHRs"),
]


# --- upload flows: PUT / POST with "Expect: 100-continue" ---------------
#
# The first request sends Req.upload_body (UPLOAD_LEN bytes) with
# "Expect: 100-continue"; httpd answers 100 Continue when the handler reads
# the body, the module arms at its end, N 102s follow, then the final
# response (mod_proc_test: 200 and the usual body; mod_dav: 201/204 and the
# file written). Keep-alive drivers then make the fast GETs.

def u_curl(req, ctx):
    fmt = ["-w", "%{http_code} %{num_connects}\\n"]
    files = [req.d / str(i) for i in range(1, len(req.urls) + 1)]
    send = ["-T", str(req.upload_file)] if req.upload == "PUT" else \
        ["--data-binary", "@%s" % req.upload_file, "-H",
         "Content-Type: application/octet-stream"]
    argv = ["curl", "-sS"] + fmt + send + [
        "-H", "Expect: 100-continue", "-o", str(files[0]), req.urls[0]]
    for f, u in zip(files[1:], req.urls[1:]):
        argv += ["--next", "-sS"] + fmt + ["-o", str(f), u]
    rc, out = sh(argv, req.timeout)
    sts = [int(m) for m in re.findall(r"^(\d{3}) \d+$", out, re.M)]
    return file_results(req, files, rc, out, sts)


def u_wget(req, ctx):
    # wget applies --method to every URL of a run: the upload alone
    send = ["--method=PUT", "--body-file=%s" % req.upload_file] \
        if req.upload == "PUT" else ["--post-file=%s" % req.upload_file]
    o = req.d / "1"
    rc, out = sh(["wget", "-S", "--tries=1", "--header",
                  "Expect: 100-continue"] + send + ["-O", str(o),
                                                     req.urls[0]],
                 req.timeout, env=req.env)
    s = re.findall(r"^  HTTP/1\.\d (\d{3})", out, flags=re.M)
    return file_results(req, [o], rc, out, [int(s[-1]) if s else None])


def u_check_curl(req, ctx):
    argv = ["/usr/lib/nagios/plugins/check_curl", "-H", "127.0.0.1",
            "-p", str(req.origin.port), "-u", req.slow_path, "-t", "120",
            "-j", req.upload, "-P", req.upload_body.decode(),
            "-k", "Expect: 100-continue", "-s", body_of(BODY_LEN)[-40:]
            .decode()]
    rc, out = sh(argv, req.timeout, env=req.env)
    m = re.search(r"HTTP/1\.\d (\d{3})", out)
    st = int(m.group(1)) if m else None
    ok = rc == 0 and st == 200
    return [{"status": st, "ok": ok, "error": None if ok else
             "exit %s, status %s: %s" % (rc, st, squash(out, 120))}]


def dav_upload_target(req):
    name = "slow-%s-1.txt" % req.tag
    base = "/davn/%d/" % req.path_n if req.mode != "known" else \
        "/davk/%d/" % req.path_n
    return base, name, req.origin.root / "dav" / name


def dav_upload_result(req, rc, out, st=None):
    _, _, p = dav_upload_target(req)
    got = p.read_bytes() if p.exists() else None
    ok = rc == 0 and got == req.upload_body
    return [{"status": st or (201 if ok else None), "ok": ok,
             "error": None if ok else "exit %s, %s on the server; %s" % (
                 rc, "no file" if got is None else "%d bytes" % len(got),
                 why(out, 120) or "-")}]


def u_rclone(req, ctx):
    base, name, _ = dav_upload_target(req)
    rc, out = sh(["rclone", "--config", "/dev/null", "--low-level-retries",
                  "1", "--retries", "1", "--header-upload",
                  "Expect: 100-continue", "copyto", str(req.upload_file),
                  ":webdav,url='%s':%s" % (req.origin.url(base), name)],
                 req.timeout, env=req.env)
    return dav_upload_result(req, rc, out)


def u_cadaver(req, ctx):
    base, name, _ = dav_upload_target(req)
    # cadaver 0.24 has no option for Expect (neon sends none): a plain PUT
    files = []
    script = "put %s %s\n" % (req.upload_file, name) + \
        cadaver_fast_gets(req, files)
    rc, out = sh(["cadaver", req.origin.url(base)], req.timeout,
                 env=req.env, input=(script + "quit\n").encode())
    # cadaver exits 0 whatever happened: the file on the server decides
    res = dav_upload_result(req, 0 if rc == 0 else rc, out)
    if req.ka:
        res += file_results_for(req, files, rc, out)
    return res


def file_results_for(req, files, rc, out):
    """file_results for the fast requests only (expect[1:])."""
    saved = req.expect
    req.expect = saved[1:]
    try:
        return file_results(req, files, rc, out)
    finally:
        req.expect = saved


def u_davix(req, ctx):
    base, name, _ = dav_upload_target(req)
    # davix sends "Expect: 100-continue" on a PUT by itself (with -H it
    # sends it twice and hangs, even without 102s)
    rc, out = sh(["davix-put", "--retry", "0",
                  str(req.upload_file), req.origin.url(base + name)],
                 req.timeout, env=req.env)
    return dav_upload_result(req, rc, out)


def u_gio(req, ctx):
    base, name, _ = dav_upload_target(req)
    # a dav:// location must be mounted first (in the same session bus)
    loc = "dav://127.0.0.1:%d%s" % (req.origin.port, base)
    rc, out = sh(["dbus-run-session", "--", "sh", "-c",
                  'gio mount "$1" </dev/null && gio copy "$2" "$1$3"',
                  "sh", loc, str(req.upload_file), name], req.timeout,
                 env=req.env)
    return dav_upload_result(req, rc, out)


# row name -> (driver, keep-alive probe?, how) or (None, reason): the
# upload flows of every row that stands for a known client family
_L = None     # "the row's own driver": lines_driver honours COMPAT_UPLOAD
UPLOADS = {
    "curl": (u_curl, True, "curl -T f / --data-binary @f -H 'Expect: "
             "100-continue' URL1 --next URL2 ..."),
    "wget": (u_wget, False, "wget --method=PUT --body-file / --post-file,"
             " --header 'Expect: 100-continue' (wget does not wait for the "
             "100)"),
    "aria2c": (None, "download only"),
    "lftp": (None, "no request body with a chosen method and Expect "
             "over HTTP"),
    "npm": (None, "sends no Expect and takes no extra request header"),
    "python-aiohttp": (_L, True, "s.request(M, url, data=, expect100="
                       "True)"),
    "python-httpx": (_L, True, "c.request(M, url, content=, headers="
                     "{Expect}) (sends the body at once)"),
    "perl-HTTP::Tiny": (_L, True, "request(M, url, {content, headers => "
                        "{Expect}}) (body at once)"),
    "perl-Mojo::UserAgent": (_L, True, "build_tx(M => url => {Expect} => "
                             "body)"),
    "ruby-Net::HTTP": (_L, True, "Net::HTTP::Put/Post with Expect, "
                       "continue_timeout 5"),
    "java-HttpClient": (_L, True, "HttpRequest.newBuilder()"
                        ".expectContinue(true)"),
    "java-ApacheHttpClient4": (_L, True, "HttpPut/HttpPost, "
                               "RequestConfig expectContinueEnabled"),
    "java-ApacheHttpClient5": (_L, True, "HttpPut/HttpPost, "
                               "RequestConfig expectContinueEnabled"),
    "node-fetch": (_L, True, "fetch(url, {method, body, headers: "
                   "{Expect}})"),
    "node-axios": (_L, True, "axios.request({method, data, headers: "
                   "{Expect}}) (body at once)"),
    "node-got": (_L, True, "got(url, {method, body, headers: {Expect}}) "
                 "(body at once)"),
    "go-net/http": (_L, True, "http.NewRequest(M, url, body), Expect "
                    "header (DefaultTransport waits up to 1 s)"),
    "rclone-webdav": (u_rclone, False, "rclone copyto f :webdav: "
                      "--header-upload 'Expect: 100-continue' (WebDAV "
                      "PUT: 201)"),
    "gio-cat (gvfs http)": (u_gio, False, "gio mount dav://...; gio copy "
                            "f dav://... (gvfs dav backend: PUT, 201; no "
                            "Expect)"),
    "neon-cadaver": (u_cadaver, True, "cadaver: put f, then 7 gets (no "
                     "option to send Expect; WebDAV PUT: 201)"),
    "davix-get": (u_davix, False, "davix-put f URL (sends Expect itself; "
                  "WebDAV PUT: 201)"),
    "check_curl": (u_check_curl, False, "check_curl -j M -P data -k "
                   "'Expect: 100-continue'"),
    "chromium": (None, "browsers send no Expect"),
    "firefox-esr": (None, "browsers send no Expect"),
}
# flows a tool cannot make: POST over WebDAV tools
UPLOAD_METHODS_NA = {
    ("rclone-webdav", "POST"): "WebDAV client: PUT only",
    ("gio-cat (gvfs http)", "POST"): "WebDAV client: PUT only",
    ("neon-cadaver", "POST"): "WebDAV client: PUT only",
    ("davix-get", "POST"): "davix-put: PUT only",
}
