#!/usr/bin/python3
"""Python clients for compat/run-compat.

usage: pyclients.py MODE URL...   (MODE: http.client, urllib, requests,
       httplib2, aiohttp, httpx, qt5, soup2, soup3; or: version MODE)

Fetches the URLs one after the other with the library's defaults, over one
connection/session/client object where the library has one (urllib opens
one per request), and prints one line per request:
    RESULT <i> <status> <body length> <md5 of body>
    ERROR <i> <exception>
"""
import hashlib
import os
import sys
import urllib.parse

# COMPAT_UPLOAD=PUT|POST (and COMPAT_UPLOAD_FILE): the first request sends
# that file as its body with "Expect: 100-continue" (modes aiohttp, httpx)
UPLOAD = os.environ.get("COMPAT_UPLOAD")
UPLOAD_BODY = open(os.environ["COMPAT_UPLOAD_FILE"], "rb").read() \
    if UPLOAD else None
EXPECT = {"Expect": "100-continue"}


def res(i, status, body):
    print("RESULT %d %s %d %s" % (i, status, len(body),
                                  hashlib.md5(body).hexdigest()), flush=True)


def err(i, e):
    print("ERROR %d %s: %s" % (i, type(e).__name__,
                               str(e).replace("\n", " ")[:300]), flush=True)


def with_http_client(urls):
    import http.client
    u = urllib.parse.urlsplit(urls[0])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    for i, url in enumerate(urls, 1):
        path = urllib.parse.urlsplit(url)
        path = path.path + ("?" + path.query if path.query else "")
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            res(i, r.status, r.read())
        except Exception as e:  # report and go on with the next request
            err(i, e)


def with_requests(urls):
    import requests
    s = requests.Session()
    for i, url in enumerate(urls, 1):
        try:
            r = s.get(url, timeout=300)
            res(i, r.status_code, r.content)
        except Exception as e:
            err(i, e)


def with_urllib(urls):
    import urllib.request
    import urllib.error
    for i, url in enumerate(urls, 1):
        try:
            with urllib.request.urlopen(url, timeout=300) as r:
                res(i, r.status, r.read())
        except urllib.error.HTTPError as e:
            res(i, e.code, e.read())
        except Exception as e:
            err(i, e)


def with_httplib2(urls):
    import httplib2
    h = httplib2.Http(timeout=300)
    for i, url in enumerate(urls, 1):
        try:
            r, body = h.request(url, "GET")
            res(i, r.status, body)
        except Exception as e:
            err(i, e)


def with_aiohttp(urls):
    import asyncio
    import aiohttp

    async def go():
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=300)) as s:
            for i, url in enumerate(urls, 1):
                try:
                    if i == 1 and UPLOAD:
                        # aiohttp's own Expect handling: waits for the 100
                        cm = s.request(UPLOAD, url, data=UPLOAD_BODY,
                                       expect100=True)
                    else:
                        cm = s.get(url)
                    async with cm as r:
                        res(i, r.status, await r.read())
                except Exception as e:
                    err(i, e)
    asyncio.run(go())


def with_httpx(urls):
    import httpx
    with httpx.Client(timeout=300) as c:
        for i, url in enumerate(urls, 1):
            try:
                if i == 1 and UPLOAD:
                    r = c.request(UPLOAD, url, content=UPLOAD_BODY,
                                  headers=EXPECT)
                else:
                    r = c.get(url)
                res(i, r.status_code, r.content)
            except Exception as e:
                err(i, e)


def with_qt5(urls):
    # QNetworkAccessManager: one manager, requests one after the other
    # (its connection pool keeps the connection alive)
    from PyQt5.QtCore import QCoreApplication, QUrl, QTimer
    from PyQt5.QtNetwork import QNetworkAccessManager, QNetworkRequest
    app = QCoreApplication([])
    nam = QNetworkAccessManager()
    state = {"i": 0}

    def next_req():
        if state["i"] >= len(urls):
            app.quit()
            return
        i = state["i"]
        state["i"] += 1
        reply = nam.get(QNetworkRequest(QUrl(urls[i])))

        def done():
            st = reply.attribute(QNetworkRequest.HttpStatusCodeAttribute)
            body = bytes(reply.readAll())
            if reply.error() and st is None:
                err(i + 1, Exception("QNetworkReply error %d: %s" % (
                    reply.error(), reply.errorString())))
            else:
                res(i + 1, st, body)
            reply.deleteLater()
            QTimer.singleShot(0, next_req)
        reply.finished.connect(done)
    QTimer.singleShot(0, next_req)
    QTimer.singleShot(600000, app.quit)
    app.exec_()


def with_soup(ver):
    def f(urls):
        import gi
        gi.require_version("Soup", ver)
        from gi.repository import Soup
        if ver == "3.0":
            s = Soup.Session()
            s.set_timeout(300)
            for i, url in enumerate(urls, 1):
                try:
                    m = Soup.Message.new("GET", url)
                    b = s.send_and_read(m, None)
                    res(i, int(m.get_status()), bytes(b.get_data()))
                except Exception as e:
                    err(i, e)
        else:
            s = Soup.Session()
            s.props.timeout = 300
            for i, url in enumerate(urls, 1):
                try:
                    m = Soup.Message.new("GET", url)
                    st = s.send_message(m)
                    body = m.props.response_body.flatten().get_data()
                    if st < 100:
                        err(i, Exception("libsoup status %d (%s)" % (
                            st, m.props.reason_phrase)))
                    else:
                        res(i, st, bytes(body))
                except Exception as e:
                    err(i, e)
    return f


def versions(mode):
    v = sys.version.split()[0]
    if mode in ("http.client", "urllib"):
        return "Python %s" % v
    if mode == "qt5":
        from PyQt5.QtCore import QT_VERSION_STR, PYQT_VERSION_STR
        return "Qt %s, PyQt %s" % (QT_VERSION_STR, PYQT_VERSION_STR)
    if mode.startswith("soup"):
        import gi
        gi.require_version("Soup", "3.0" if mode == "soup3" else "2.4")
        from gi.repository import Soup
        return "libsoup %d.%d.%d" % (Soup.get_major_version(),
                                     Soup.get_minor_version(),
                                     Soup.get_micro_version())
    mod = __import__(mode)
    return "python %s, %s %s" % (v, mode, mod.__version__)


MODES = {"http.client": with_http_client, "requests": with_requests,
         "urllib": with_urllib, "httplib2": with_httplib2,
         "aiohttp": with_aiohttp, "httpx": with_httpx, "qt5": with_qt5,
         "soup2": with_soup("2.4"), "soup3": with_soup("3.0")}


def main():
    mode, urls = sys.argv[1], sys.argv[2:]
    if mode == "version":
        print(versions(urls[0]))
        return
    MODES[mode](urls)


if __name__ == "__main__":
    main()
