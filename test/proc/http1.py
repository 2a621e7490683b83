"""A strict HTTP/1.1 client for mod_processing's tests.

It talks raw bytes over one socket (plain, or an ssl.SSLSocket: nothing here
assumes plain TCP) and checks what httpd sends byte for byte:

- each request gets zero or more interim (1xx) responses, then exactly one
  final response, whole (Content-Length, chunked, close-delimited, or none for
  HEAD/204/304);
- anything else is a ProtocolError: a malformed status or header line, junk
  between responses, a truncated body or chunk, a 102 (or any byte) arriving
  after the last expected response ("unsolicited"), an interim after a final
  status line.

Everything is single-threaded: while the client sends (slowly, or waits for
100-continue) it keeps reading what the server sends and stamps every
received piece with time.monotonic(), so tests can compare the arrival time
of each 102 with the time the last request byte left.
"""

import collections
import re
import select
import socket
import ssl
import time

PATTERN = (b"0123456789abcdefghijklmnopqrstuvwxyz"
           b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")

PROCESSING_BLOCK = b"HTTP/1.1 102 Processing\r\n\r\n"

MAX_LINE = 16384

_STATUS_RE = re.compile(
    rb"HTTP/1\.1 ([1-5][0-9][0-9]) ([\t\x20-\x7e\x80-\xff]*)")
_HEADER_RE = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")
_CHUNK_RE = re.compile(rb"([0-9a-fA-F]{1,16})(;[\t\x20-\x7e]*)?")


def pattern(n, start=0):
    """The body mod_proc_test sends for len=n: byte i is PATTERN[i % 62]."""
    out = bytearray()
    i = start
    while len(out) < n:
        k = i % len(PATTERN)
        piece = PATTERN[k:k + (n - len(out))]
        out += piece
        i += len(piece)
    return bytes(out)


class ProtocolError(Exception):
    """The server's bytes break HTTP/1.1 or the test's expectations."""


class Interim:
    """One 1xx response: status, reason, headers, raw bytes, arrival time."""

    def __init__(self, status, reason, headers, raw, t):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.raw = raw
        self.t = t

    def __repr__(self):
        return f"<Interim {self.status} {self.reason!r} t={self.t:.3f}>"


class Response:
    """One exchange: the interims that preceded the final response, and the
    final response itself."""

    def __init__(self, method):
        self.method = method
        self.interims = []
        self.status = None
        self.reason = None
        self.headers = []
        self.trailers = []
        self.body = b""
        self.framing = None     # "length", "chunked", "close", "none",
                                # "tunnel" (CONNECT 2xx)
        self.t_head = None      # first byte of the final status line arrived
        self.t_end = None       # last byte of the final response arrived
        self.t_sent = None      # last byte of the request was sent
        self.raw_head = b""

    def header(self, name, default=None):
        """The value of header name (the only one; ProtocolError if it is
        repeated with different values)."""
        values = self.header_values(name)
        if not values:
            return default
        if len(set(values)) > 1:
            raise ProtocolError(f"header {name} repeated: {values}")
        return values[0]

    def header_values(self, name):
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def count(self, status=102):
        return len([i for i in self.interims if i.status == status])

    @property
    def processing(self):
        """The 102 interims, in order."""
        return [i for i in self.interims if i.status == 102]

    def __repr__(self):
        return (f"<Response {self.method} {self.status} "
                f"interims={[i.status for i in self.interims]} "
                f"body={len(self.body)}B {self.framing}>")


class ResponseParser:
    """Incremental parser for one exchange (1xx* then one final response).

    feed(data, t) returns the bytes that follow the end of this exchange
    (b"" while it is not complete); eof(t) tells it the connection closed.
    """

    def __init__(self, method="GET"):
        self.response = Response(method)
        self.head_only = method.upper() == "HEAD"
        self.state = "status"
        self.buf = bytearray()
        self.done = False
        self.remaining = 0
        self._block = bytearray()
        self._t_block = None
        self._status = None
        self._reason = None
        self._headers = []

    # -- helpers -----------------------------------------------------------

    def _fail(self, msg):
        raise ProtocolError(f"{msg} (state {self.state}, next bytes "
                            f"{bytes(self.buf[:80])!r})")

    def _line(self):
        """Pop one CRLF-terminated line from buf, or None if incomplete."""
        i = self.buf.find(b"\n")
        if i < 0:
            if len(self.buf) > MAX_LINE:
                self._fail("line too long")
            return None
        if i == 0 or self.buf[i - 1] != 0x0d:
            self._fail("line not terminated by CRLF")
        line = bytes(self.buf[:i - 1])
        if b"\r" in line or b"\0" in line:
            self._fail("CR or NUL inside a line")
        self._block += self.buf[:i + 1]
        del self.buf[:i + 1]
        return line

    # -- states --------------------------------------------------------------

    def _do_status(self, t):
        if not self.buf:
            return False
        if self._t_block is None:
            self._t_block = t
        prefix = b"HTTP/1.1 "
        n = min(len(self.buf), len(prefix))
        if bytes(self.buf[:n]) != prefix[:n]:
            self._fail("expected a status line 'HTTP/1.1 '")
        line = self._line()
        if line is None:
            return False
        m = _STATUS_RE.fullmatch(line)
        if not m:
            self._fail(f"bad status line {line!r}")
        self._status = int(m.group(1))
        self._reason = m.group(2).decode("latin-1")
        if self._status == 101:
            self._fail("unexpected 101 Switching Protocols")
        self._headers = []
        self.state = "headers"
        return True

    def _do_headers(self, t):
        line = self._line()
        if line is None:
            return False
        if line:
            if line[:1] in (b" ", b"\t"):
                self._fail(f"obsolete line folding {line!r}")
            m = _HEADER_RE.fullmatch(line)
            if not m:
                self._fail(f"bad header line {line!r}")
            self._headers.append((m.group(1).decode("latin-1"),
                                  m.group(2).decode("latin-1")))
            return True
        # end of a header block
        if 100 <= self._status < 200:
            self.response.interims.append(
                Interim(self._status, self._reason, self._headers,
                        bytes(self._block), t))
            self._block = bytearray()
            self._t_block = None
            self.state = "status"
            return True
        r = self.response
        r.status = self._status
        r.reason = self._reason
        r.headers = self._headers
        r.t_head = self._t_block
        r.raw_head = bytes(self._block)
        self._block = bytearray()
        self._start_body(t)
        return True

    def _start_body(self, t):
        r = self.response
        te = r.header_values("Transfer-Encoding")
        cl = r.header_values("Content-Length")
        if self.head_only or r.status in (204, 304):
            r.framing = "none"
            if r.status in (204, 304) and te:
                self._fail(f"{r.status} with Transfer-Encoding")
            self._finish(t)
            return
        if te:
            if cl:
                self._fail("both Transfer-Encoding and Content-Length")
            if len(te) != 1 or te[0].strip().lower() != "chunked":
                self._fail(f"unsupported Transfer-Encoding {te}")
            r.framing = "chunked"
            self.state = "chunk-size"
            return
        if cl:
            if len(set(cl)) != 1 or not re.fullmatch(r"[0-9]{1,18}", cl[0]):
                self._fail(f"bad Content-Length {cl}")
            r.framing = "length"
            self.remaining = int(cl[0])
            self.state = "body-length"
            if self.remaining == 0:
                self._finish(t)
            return
        # a tunnel after a successful CONNECT reads like a close-delimited
        # body: every byte until the close belongs to the tunnel
        r.framing = ("tunnel" if self.response.method.upper() == "CONNECT"
                     and 200 <= r.status < 300 else "close")
        self.state = "body-close"

    def _do_body_length(self, t):
        if not self.buf:
            return False
        n = min(self.remaining, len(self.buf))
        self.response.body += bytes(self.buf[:n])
        del self.buf[:n]
        self.remaining -= n
        if self.remaining == 0:
            self._finish(t)
        return True

    def _do_chunk_size(self, t):
        line = self._line()
        if line is None:
            return False
        m = _CHUNK_RE.fullmatch(line)
        if not m:
            self._fail(f"bad chunk size line {line!r}")
        self.remaining = int(m.group(1), 16)
        self.state = "chunk-data" if self.remaining else "trailers"
        return True

    def _do_chunk_data(self, t):
        if not self.buf:
            return False
        n = min(self.remaining, len(self.buf))
        self.response.body += bytes(self.buf[:n])
        del self.buf[:n]
        self.remaining -= n
        if self.remaining == 0:
            self.state = "chunk-end"
        return True

    def _do_chunk_end(self, t):
        if len(self.buf) < 2:
            if self.buf and self.buf[:1] != b"\r":
                self._fail("chunk data not followed by CRLF")
            return False
        if bytes(self.buf[:2]) != b"\r\n":
            self._fail("chunk data not followed by CRLF")
        del self.buf[:2]
        self.state = "chunk-size"
        return True

    def _do_trailers(self, t):
        line = self._line()
        if line is None:
            return False
        if line:
            m = _HEADER_RE.fullmatch(line)
            if not m:
                self._fail(f"bad trailer line {line!r}")
            self.response.trailers.append((m.group(1).decode("latin-1"),
                                           m.group(2).decode("latin-1")))
            return True
        self._finish(t)
        return True

    def _do_body_close(self, t):
        if not self.buf:
            return False
        self.response.body += bytes(self.buf)
        self.buf.clear()
        return True

    def _finish(self, t):
        self.response.t_end = t
        self.state = "done"
        self.done = True

    # -- API -----------------------------------------------------------------

    def feed(self, data, t=None):
        """Feed received bytes; return the bytes after the end of this
        exchange."""
        if t is None:
            t = time.monotonic()
        if self.done:
            return bytes(data)
        self.buf += data
        steps = {
            "status": self._do_status,
            "headers": self._do_headers,
            "body-length": self._do_body_length,
            "chunk-size": self._do_chunk_size,
            "chunk-data": self._do_chunk_data,
            "chunk-end": self._do_chunk_end,
            "trailers": self._do_trailers,
            "body-close": self._do_body_close,
        }
        while not self.done and steps[self.state](t):
            pass
        if self.done:
            rest = bytes(self.buf)
            self.buf.clear()
            return rest
        return b""

    def eof(self, t=None):
        """The connection closed (cleanly)."""
        if t is None:
            t = time.monotonic()
        if self.done:
            return
        if self.state == "body-close":
            self._finish(t)
            return
        if self.state == "body-length":
            self._fail(f"connection closed with {self.remaining} body bytes "
                       f"missing")
        if self.state.startswith("chunk") or self.state == "trailers":
            self._fail("connection closed inside the chunked body")
        if self.state == "status" and not self.buf and not self._block:
            kind = "a further" if self.response.interims else "any"
            self._fail(f"connection closed before {kind} response")
        self._fail("connection closed inside a response head")


def parse_responses(data, methods=("GET",), eof=True):
    """Parse the whole byte string (or list of byte strings, fed one by one)
    sent on one connection as the responses to requests with these methods.
    Anything after the last response is an error, as is an incomplete one
    when eof is true."""
    chunks = [data] if isinstance(data, (bytes, bytearray)) else list(data)
    parsers = collections.deque(ResponseParser(m) for m in methods)
    out = []
    t = 0.0
    for chunk in chunks:
        t += 1.0
        chunk = bytes(chunk)
        while chunk:
            if not parsers:
                raise ProtocolError(f"unsolicited bytes after the last "
                                    f"response: {chunk[:80]!r}")
            chunk = parsers[0].feed(chunk, t)
            if parsers[0].done:
                out.append(parsers.popleft().response)
    if eof:
        if parsers:
            parsers[0].eof(t + 1)
            if parsers[0].done:
                out.append(parsers.popleft().response)
            if parsers:
                raise ProtocolError(f"connection closed with {len(parsers)} "
                                    f"responses missing")
    return out


TEST_USER_AGENT = "mod_processing-test/1"


def build_request(method, target, host, headers=None, body=None,
                  chunked=False, version="HTTP/1.1"):
    """Return (head, body_bytes) for a request; body_bytes already carries
    the chunked framing when chunked is true. headers is a list of
    (name, value) or a dict; a Content-Length is added for a body unless
    chunked or given."""
    hdrs = list(headers.items() if isinstance(headers, dict)
                else (headers or []))
    names = {n.lower() for n, _ in hdrs}
    lines = [f"{method} {target} {version}"]
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    if "user-agent" not in names:
        # The suite's own client: the test server allows it 102s with
        # force-processing (proc.env), as an administrator allows an
        # application of their own.
        lines.append(f"User-Agent: {TEST_USER_AGENT}")
    for n, v in hdrs:
        lines.append(f"{n}: {v}")
    wire = b""
    if body is not None:
        if chunked:
            if "transfer-encoding" not in names:
                lines.append("Transfer-Encoding: chunked")
            wire = chunk_body(body)
        else:
            if "content-length" not in names:
                lines.append(f"Content-Length: {len(body)}")
            wire = bytes(body)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head, wire


def chunk_body(body, size=1000):
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


class Connection:
    """One client connection. Requests queue a parser each; responses are
    returned in order by read_response(). Any byte received while no
    response is expected is a ProtocolError."""

    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.timeout = timeout
        self.parsers = collections.deque()
        self.responses = collections.deque()
        self.closed = False
        self.reset = False
        self.t_last_send = None
        self.received = bytearray()   # everything, for error messages
        self.host = None

    @classmethod
    def open(cls, host, port, timeout=10.0, ssl_context=None,
             server_hostname=None):
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(
                sock, server_hostname=server_hostname or host)
        conn = cls(sock, timeout)
        conn.host = f"{host}:{port}"
        return conn

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- receiving ---------------------------------------------------------

    def _recv_nb(self):
        """Receive what is there without blocking: bytes, b"" at EOF, or
        None if nothing (yet)."""
        self.sock.settimeout(0)
        try:
            return self.sock.recv(65536)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError):
            return None
        except (ConnectionResetError, ssl.SSLEOFError):
            self.reset = True
            return b""
        finally:
            self.sock.settimeout(self.timeout)

    def _deliver(self, data, t):
        self.received += data
        while data:
            if not self.parsers:
                raise ProtocolError(
                    f"unsolicited bytes after the last expected response: "
                    f"{data[:120]!r}")
            p = self.parsers[0]
            data = p.feed(data, t)
            if p.done:
                self.responses.append(self.parsers.popleft().response)

    def _on_eof(self, t):
        self.closed = True
        if self.parsers:
            p = self.parsers[0]
            p.eof(t)   # raises unless close-delimited
            if p.done:
                self.responses.append(self.parsers.popleft().response)
            if self.parsers:
                raise ProtocolError(f"connection closed with "
                                    f"{len(self.parsers)} responses missing")

    def pump(self, until):
        """Receive and parse until time.monotonic() >= until or EOF."""
        while not self.closed:
            if not (isinstance(self.sock, ssl.SSLSocket)
                    and self.sock.pending()):
                wait = max(0.0, until - time.monotonic())
                r, _, _ = select.select([self.sock], [], [], wait)
                if not r:
                    return
            data = self._recv_nb()
            t = time.monotonic()
            if data is None:
                continue
            if data == b"":
                self._on_eof(t)
                return
            self._deliver(data, t)

    def pump_until(self, predicate, timeout=None, what="condition"):
        """Pump until predicate() is true; ProtocolError on timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not predicate():
            if self.closed:
                raise ProtocolError(f"connection closed waiting for {what}")
            if time.monotonic() >= deadline:
                raise ProtocolError(
                    f"timeout waiting for {what}; received so far: "
                    f"{bytes(self.received[-300:])!r}")
            self.pump(min(deadline, time.monotonic() + 0.05))

    # -- sending -------------------------------------------------------------

    def _sendall(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)
        self.t_last_send = time.monotonic()

    def send(self, data, methods=()):
        """Send raw bytes. methods lists one request method per request
        that starts in data (pipelining), each expecting one response."""
        new = [ResponseParser(m) for m in methods]
        self.parsers.extend(new)
        self._sendall(data)
        self.pump(time.monotonic())
        for p in new:
            p.response.t_sent = self.t_last_send
        return [p.response for p in new]

    def send_slowly(self, data, duration, pieces=None):
        """Send data spread evenly over duration seconds (pieces pieces,
        default one per byte up to 50), reading all the while."""
        if not data:
            return
        pieces = pieces or min(len(data), 50)
        size = -(-len(data) // pieces)
        parts = [data[i:i + size] for i in range(0, len(data), size)]
        gap = duration / max(len(parts) - 1, 1)
        start = time.monotonic()
        for i, part in enumerate(parts):
            self.pump(start + i * gap)
            self._sendall(part)
        self.pump(time.monotonic())

    def request(self, method, target, headers=None, body=None,
                chunked=False, version="HTTP/1.1", send_time=None,
                expect_100=False, close=False):
        """Send one request; return its Response object (filled in as the
        response arrives; read_response() returns it when complete).

        send_time: spread the body over this many seconds.
        expect_100: send "Expect: 100-continue" and the body only after a
        100 arrived (or not at all if a final response came first).
        """
        hdrs = list(headers.items() if isinstance(headers, dict)
                    else (headers or []))
        if expect_100:
            hdrs.append(("Expect", "100-continue"))
        if close:
            hdrs.append(("Connection", "close"))
        head, wire = build_request(method, target, self.host, hdrs, body,
                                   chunked, version)
        parser = ResponseParser(method)
        self.parsers.append(parser)
        resp = parser.response
        self._sendall(head)
        if expect_100 and wire:
            self.pump_until(lambda: parser.done or any(
                i.status == 100 for i in resp.interims),
                what="100 Continue")
            if parser.done:
                resp.t_sent = self.t_last_send
                return resp
        if wire:
            if send_time:
                self.send_slowly(wire, send_time)
            else:
                self._sendall(wire)
        resp.t_sent = self.t_last_send
        self.pump(time.monotonic())
        return resp

    # -- results -----------------------------------------------------------

    def read_response(self, timeout=None):
        """The next complete response, in request order."""
        self.pump_until(lambda: bool(self.responses), timeout,
                        what="a complete response")
        return self.responses.popleft()

    def expect_idle(self, duration):
        """Read for duration seconds; any byte is a ProtocolError."""
        if self.parsers:
            raise ProtocolError("expect_idle with responses outstanding")
        self.pump(time.monotonic() + duration)

    def expect_eof(self, timeout=None):
        """Wait for the server to close; any byte first is an error."""
        if self.parsers:
            raise ProtocolError("expect_eof with responses outstanding")
        self.pump_until(lambda: self.closed, timeout, what="connection close")
