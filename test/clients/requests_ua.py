"""requests_ua.py BASE: python-requests, as scripts often use it, with a
desktop Firefox User-Agent: a slow request, then a fast one on the same
Session. Prints "status length status length"."""
import sys

import requests

UA = ("Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 "
      "Firefox/115.0")

base = sys.argv[1]
with requests.Session() as s:
    s.headers["User-Agent"] = UA
    out = []
    for path in ("/pt?sleep=2000&len=5000", "/pt?len=100"):
        r = s.get(base + path, timeout=30)
        out += [str(r.status_code), str(len(r.content))]
print(" ".join(out))
