#!/usr/bin/python3
"""Python clients for compat/run-compat.

usage: pyclients.py http.client|requests URL1 URL2

Fetches URL1 then URL2 over one connection (http.client) or one Session
(requests) and prints one line per request:
    RESULT <i> <status> <body length> <md5 of body>
    ERROR <i> <exception>
"""
import hashlib
import sys
import urllib.parse


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


def main():
    mode, urls = sys.argv[1], sys.argv[2:]
    if mode == "version":
        import requests
        print("python %s, requests %s" % (sys.version.split()[0],
                                          requests.__version__))
        return
    {"http.client": with_http_client, "requests": with_requests}[mode](urls)


if __name__ == "__main__":
    main()
