"""A raw HTTP/1.1 client that sees every interim response.

Used by compat.py to talk to reverse proxies: it counts the 102s that reach
it (and when), reads the final response whatever its framing, and can send
a second request on the same connection.
"""
import socket
import time


class Exchange:
    """What one request on the connection got."""

    def __init__(self):
        self.interim = []        # [(status, seconds after the request)]
        self.status = None       # final status, None if none came
        self.reason = ""
        self.headers = []        # final response's [(name, value)]
        self.body = b""
        self.error = None        # why the exchange did not complete
        self.elapsed = None      # seconds to the end of the final response

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def summary(self):
        s = "%d x 1xx, " % len(self.interim)
        if self.status is not None:
            s += "final %s, %d body bytes" % (self.status, len(self.body))
        else:
            s += "no final response"
        if self.error:
            s += " (%s)" % self.error
        return s


class _Reader:
    def __init__(self, sock, deadline):
        self.sock = sock
        self.buf = b""
        self.deadline = deadline
        self.eof = False

    def _fill(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("client deadline")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise EOFError("connection closed by peer")
        self.buf += data

    def until(self, sep, limit=1 << 20):
        while sep not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (sep, limit))
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self):
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        out, self.buf = self.buf, b""
        return out


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError("bad status line %r" % lines[0][:80])
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for ln in lines[1:]:
        if ln:
            k, _, v = ln.partition(":")
            headers.append((k.strip(), v.strip()))
    return status, reason, headers


def _read_exchange(rd, ex, t0, method):
    while True:
        head = rd.until(b"\r\n\r\n")
        status, reason, headers = _parse_head(head)
        if 100 <= status < 200 and status != 101:
            ex.interim.append((status, round(time.monotonic() - t0, 3)))
            continue
        break
    ex.status, ex.reason, ex.headers = status, reason, headers
    if method == "HEAD" or status in (204, 304):
        return
    te = (ex.header("Transfer-Encoding") or "").lower()
    cl = ex.header("Content-Length")
    if "chunked" in te:
        body = b""
        while True:
            size = int(rd.until(b"\r\n").split(b";")[0].strip(), 16)
            if size == 0:
                while rd.until(b"\r\n") != b"\r\n":
                    pass
                break
            body += rd.exactly(size)
            rd.until(b"\r\n")
        ex.body = body
    elif cl is not None:
        ex.body = rd.exactly(int(cl))
    else:
        ex.body = rd.rest()


def request(host, port, paths, headers=None, timeout=60.0, method="GET"):
    """Send one request per path on one connection, one after the other.

    Returns a list of Exchange, one per path tried; it stops after the first
    exchange that did not complete (a later request could not be framed).
    """
    out = []
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        ex = Exchange()
        ex.error = "connect: %s" % e
        return [ex]
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        rd = _Reader(sock, time.monotonic() + timeout)
        for path in paths:
            ex = Exchange()
            out.append(ex)
            hdrs = {"Host": "%s:%d" % (host, port),
                    "User-Agent": "compat-raw/1"}
            hdrs.update(headers or {})
            req = "%s %s HTTP/1.1\r\n" % (method, path)
            req += "".join("%s: %s\r\n" % kv for kv in hdrs.items())
            req += "\r\n"
            t0 = time.monotonic()
            try:
                sock.sendall(req.encode("latin-1"))
                _read_exchange(rd, ex, t0, method)
            except (OSError, EOFError, ValueError) as e:
                ex.error = "%s: %s" % (type(e).__name__, e)
                if rd.buf:
                    ex.error += " [unparsed: %r]" % rd.buf[:120]
                ex.elapsed = round(time.monotonic() - t0, 3)
                break
            ex.elapsed = round(time.monotonic() - t0, 3)
            if (ex.header("Connection") or "").lower() == "close":
                break
    finally:
        sock.close()
    return out
