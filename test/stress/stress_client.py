#!/usr/bin/python3
"""Stress client for mod_processing (issue 4).

Many parallel keep-alive connections, plain and TLS, each sending many
requests to mod_proc_test's handler (/pt) whose run time is drawn around the
102 ticks (ProcessingDelay = ProcessingInterval = 100 ms by default, run times
0 to 400 ms, a good share within a few ms of a tick), so that final responses
often begin within microseconds of a 102. The mix has pipelined bursts,
uploads (Content-Length, chunked, Expect: 100-continue), error statuses,
handlers that stream early bytes, 103 Early Hints from the handler, HTTP/1.0
requests, HEAD, large responses, and a few clients that abort mid-wait.

Every byte stream goes through the strict parser of test/proc/http1.py:
zero or more whole interim blocks, then exactly one whole final response.
On top of the parser this client checks, per request:

- each 102 is exactly "HTTP/1.1 102 Processing\\r\\n\\r\\n";
- no 102 to HTTP/1.0; a 100 only when asked, before any 102; a 103 only
  when asked, at most one;
- no 102 arrives earlier than ProcessingDelay after the request was sent:
  a stray 102 sent after the previous final response would land in the
  next request's interims, and it would be too early there;
- status, headers and body are the expected ones (mod_proc_test's pattern,
  the upload's length and byte sum, httpd's error document);
- with --access-log: the count of 102s the client saw equals the count the
  server logged (%{processing-sent}n), request by request.

Bounded: --requests in total and --max-time seconds, whichever comes first;
each step waits at most --step-timeout seconds.

Prints "N requests, M malformed, K 102s, wall S s" and exits 1 on any
malformed response, 3 if fewer than --requests were done in --max-time.
"""

import argparse
import asyncio
import json
import os
import random
import re
import socket
import ssl
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from proc.http1 import (PROCESSING_BLOCK, ProtocolError,  # noqa: E402
                        ResponseParser, chunk_body, pattern)

MAX_LEN = 1 << 20
BIG = pattern(MAX_LEN + 1)
# httpd closes the connection after these (ap_status_drops_connection)
CLOSING = (500, 503)
KEEPING = (403, 404, 409, 410, 429, 502, 504)


class Req:
    """One request on the wire and what its response must be."""

    __slots__ = ("id", "method", "wire", "status", "length", "error", "cl",
                 "upload", "http10", "allow_103", "expect100", "sleep",
                 "early", "t_send", "first", "kind", "closes")

    def __init__(self, **kw):
        self.upload = None
        self.http10 = False
        self.allow_103 = False
        self.expect100 = False
        self.early = 0
        self.cl = 1
        self.error = False
        self.t_send = None
        self.first = True
        self.closes = False
        for k, v in kw.items():
            setattr(self, k, v)


class Stats:
    def __init__(self):
        self.requests = 0
        self.malformed = 0
        self.n102 = 0
        self.n103 = 0
        self.n100 = 0
        self.aborted = 0
        self.ka_races = 0
        self.ka_closed = 0          # pipelined requests left unanswered
        self.fresh_closed = 0       # new connections closed before a byte
        self.connects = 0
        self.connect_errors = 0
        self.by_kind = {}
        self.tls_requests = 0
        self.lateness = []          # seconds, 102s of body-less requests
        self.gaps = []              # time between 102s minus the interval
        self.missed = 0             # sleep >= 300 ms but no 102 at all
        self.errors = []            # first few malformed, described
        self.sent_by_id = {}        # request id -> 102s seen by the client
        self.raced_ids = []         # closed by the server before any byte
        self.log_checked = 0
        self.log_mismatch = 0

    def bad(self, what, n=1):
        self.malformed += n
        if len(self.errors) < 20:
            self.errors.append(what)


class Uploads:
    """A fixed set of request bodies with their byte sums."""

    def __init__(self, rng):
        blob = bytes(rng.getrandbits(8) for _ in range(4096)) * 64  # 256 KiB
        sizes = [0, 1, 100, 1000, 8191, 8192, 8193, 16384, 65535, 65536,
                 65537, 100000, 200000, 262144]
        sizes += [rng.randint(0, 262144) for _ in range(18)]
        self.bodies = []
        for n in sizes:
            off = rng.randint(0, len(blob) - n)
            b = blob[off:off + n]
            self.bodies.append((b, sum(b) & 0xffffffff))

    def pick(self, rng):
        return rng.choice(self.bodies)


class Plan:
    """Draws requests. The handler's sleep is drawn around the ticks at
    delay + k * interval after the request was armed."""

    def __init__(self, args, rng, uploads):
        self.args = args
        self.rng = rng
        self.uploads = uploads
        self.run = args.run_id
        self.n = 0
        self.fast = args.profile == "fast"
        if self.fast:
            # many short requests (memory test): no large bodies, no aborts
            self.kinds = [("get", 55), ("head", 4), ("post", 12),
                          ("expect", 2), ("error", 6), ("early", 6),
                          ("interim", 3), ("http10", 2), ("pipeline", 10)]
        else:
            self.kinds = [("get", 38), ("head", 3), ("post", 14),
                          ("expect", 3), ("error", 8), ("early", 8),
                          ("interim", 4), ("http10", 2), ("large", 2),
                          ("pipeline", 15),
                          ("abort", 3 if args.aborts else 0)]
            if args.paths:
                # lookup subrequests during the wait, internal redirects,
                # a failing handler, an error without reading the body
                self.kinds += [("lookup", 5), ("redirect", 4), ("fail", 3),
                               ("noread", 3)]
        self.kind_names = [k for k, _ in self.kinds]
        self.kind_weights = [w for _, w in self.kinds]

    def sleep(self):
        r = self.rng.random()
        d, i = self.args.delay, self.args.interval
        if self.fast:
            return self.rng.randint(0, 3)
        if r < 0.25:
            return self.rng.randint(0, 20)
        if r < 0.75:
            k = self.rng.randint(0, 2)
            return max(0, d + k * i + self.rng.randint(-3, 3))
        return self.rng.randint(0, 400)

    def length(self, large=False):
        r = self.rng.random()
        if large:
            return self.rng.randint(131072, MAX_LEN)
        if self.fast:
            return self.rng.randint(0, 4096)
        if r < 0.4:
            return self.rng.randint(0, 100)
        if r < 0.85:
            return self.rng.randint(100, 16384)
        return self.rng.randint(16384, 131072)

    def new_id(self, cid):
        self.n += 1
        return f"{self.run}-{cid}-{self.n}"

    def kind(self):
        return self.rng.choices(self.kind_names, self.kind_weights)[0]

    def one(self, cid, kind, last=False, in_burst=False):
        """A single request of this kind; last: it may close the
        connection (and ends with Connection: close when asked to)."""
        rng = self.rng
        rid = self.new_id(cid)
        sleep = self.sleep()
        q = {"sleep": sleep}
        method = "GET"
        body = None
        chunked = False
        hdrs = [("Host", "127.0.0.1"), ("X-Test-Id", rid)]
        req = Req(id=rid, method="GET", status=200, length=64, sleep=sleep,
                  kind=kind)
        version = "HTTP/1.1"

        if kind in ("get", "large", "http10", "head", "interim"):
            req.length = self.length(large=(kind == "large"))
            q["len"] = req.length
            if kind != "http10" and rng.random() < 0.3:
                q["cl"] = 0
                req.cl = 0
            if kind == "head":
                method = "HEAD"
                q["cl"] = 1
                req.cl = 1
            if kind == "http10":
                version = "HTTP/1.0"
                req.http10 = True
                hdrs.append(("Connection", "keep-alive"))
            if kind == "interim":
                q["sleep"] = req.sleep = max(sleep, 1)
                q["interim"] = rng.randint(0, req.sleep)
                req.allow_103 = True
        elif kind in ("post", "expect"):
            method = rng.choice(("POST", "PUT"))
            body, bsum = self.uploads.pick(rng)
            if self.fast and len(body) > 20000:
                body, bsum = self.uploads.bodies[3]
            req.upload = (len(body), bsum)
            req.length = self.length()
            q["len"] = req.length
            chunked = rng.random() < 0.3
            if kind == "expect":
                hdrs.append(("Expect", "100-continue"))
                req.expect100 = True
        elif kind == "error":
            closing = last and rng.random() < 0.3
            req.status = rng.choice(CLOSING if closing else KEEPING)
            req.error = True
            req.closes = closing
            q["status"] = req.status
            if rng.random() < 0.3:
                method = "POST"
                body, bsum = self.uploads.pick(rng)
        elif kind == "lookup":
            # the handler makes a lookup subrequest every few ms while it
            # waits (as mod_dav's COPY/MOVE look up their Destination)
            req.length = self.length()
            q["len"] = req.length
            q["lookup"] = rng.choice((5, 20, 50))
            hdrs.append(("X-Lookup", rng.choice(
                ("/alive.txt", "/pt?len=1", "/no/such/file"))))
        elif kind == "redirect":
            # after its wait the handler redirects internally to a request
            # that waits again and sends the body
            req.length = self.length()
            sleep2 = self.sleep()
            req.sleep = sleep + sleep2
            hdrs.append(("X-Redirect", f"/pt?sleep={sleep2}&len={req.length}"))
        elif kind == "fail":
            # the handler returns an error status after its wait
            req.status = rng.choice(KEEPING)
            req.error = True
            q["len"] = self.length()
            q["fail"] = req.status
        elif kind == "noread":
            # an error without reading the request body: httpd discards it
            method = "POST"
            body, bsum = self.uploads.pick(rng)
            if self.fast and len(body) > 20000:
                body, bsum = self.uploads.bodies[3]
            req.status = 412
            req.error = True
            q["status"] = 412
            q["read"] = 0
            chunked = rng.random() < 0.3
        elif kind == "early":
            req.length = self.length()
            req.early = rng.randint(1, max(1, req.length))
            req.length = max(req.length, req.early)
            q["len"] = req.length
            q["early"] = req.early
            if rng.random() < 0.5:
                q["cl"] = 0
                req.cl = 0
        else:
            raise ValueError(kind)

        if last and self.args.close_last and not req.http10:
            hdrs.append(("Connection", "close"))
            req.closes = True
        req.method = method
        target = "/pt?" + "&".join(f"{k}={v}" for k, v in q.items())
        lines = [f"{method} {target} {version}"]
        lines += [f"{n}: {v}" for n, v in hdrs]
        wire_body = b""
        if body is not None:
            if chunked:
                lines.append("Transfer-Encoding: chunked")
                wire_body = chunk_body(body, size=rng.choice((100, 8192,
                                                               65536)))
            else:
                lines.append(f"Content-Length: {len(body)}")
                wire_body = body
        req.wire = ("\r\n".join(lines) + "\r\n\r\n").encode() + wire_body
        return req

    def step(self, cid, last):
        """A list of requests sent in one write, or "abort"."""
        kind = self.kind()
        if kind == "abort":
            return "abort"
        if kind == "pipeline":
            n = self.rng.randint(2, 6)
            reqs = []
            for j in range(n):
                k = self.rng.choice(("get", "get", "head", "post", "error",
                                     "early", "interim")
                                    + (("lookup", "redirect", "fail",
                                        "noread") if self.args.paths
                                       else ()))
                reqs.append(self.one(cid, k, last=(last and j == n - 1),
                                     in_burst=True))
            for j, r in enumerate(reqs):
                r.first = j == 0
                if r.closes and j != n - 1:
                    raise AssertionError("closing request inside a burst")
            return reqs
        return [self.one(cid, kind, last=last)]


class Client:

    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.uploads = Uploads(self.rng)
        self.plan = Plan(args, self.rng, self.uploads)
        self.stats = Stats()
        self.prev = {}
        self.budget = args.requests
        self.deadline = None
        self.delay = args.delay / 1000.0
        self.interval = args.interval / 1000.0
        self.ctx = []
        if args.tls_port:
            for maxv in (None, ssl.TLSVersion.TLSv1_2):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                if maxv:
                    ctx.maximum_version = maxv
                self.ctx.append(ctx)

    # -- validation ------------------------------------------------------------

    def check(self, req, resp, tls):
        """Raise ProtocolError unless resp is what req must get."""
        st = self.stats
        seen100 = seen103 = 0
        n102 = 0
        for i, it in enumerate(resp.interims):
            if it.status == 102:
                if req.http10:
                    raise ProtocolError("102 sent to an HTTP/1.0 request")
                if it.raw != PROCESSING_BLOCK:
                    raise ProtocolError(f"102 block not exact: {it.raw!r}")
                if it.t < req.t_send + self.delay - 0.002:
                    raise ProtocolError(
                        f"102 #{n102 + 1} {1000 * (it.t - req.t_send):.1f} ms "
                        f"after the request was sent, before the delay: a "
                        f"stray 102 from an earlier response?")
                n102 += 1
            elif it.status == 100:
                if not req.expect100 or seen100 or n102:
                    raise ProtocolError("unexpected 100 Continue")
                seen100 += 1
            elif it.status == 103:
                if not req.allow_103 or seen103:
                    raise ProtocolError("unexpected 103")
                seen103 += 1
            else:
                raise ProtocolError(f"unexpected interim {it.status}")
        if resp.status != req.status:
            raise ProtocolError(f"status {resp.status}, expected "
                                f"{req.status}")
        if req.error:
            if req.method != "HEAD" and (
                    b"</html>" not in resp.body.lower()
                    or str(req.status).encode() not in resp.body):
                raise ProtocolError(f"error document not whole: "
                                    f"{resp.body[-80:]!r}")
            if req.status in CLOSING and (
                    (resp.header("Connection") or "").lower() != "close"):
                raise ProtocolError("no Connection: close after "
                                    f"{req.status}")
        elif req.method == "HEAD":
            # httpd drops "Content-Length: 0" from HEAD responses
            if resp.body or resp.header("Content-Length", "0") != str(
                    req.length):
                raise ProtocolError("HEAD response wrong")
        else:
            if len(resp.body) != req.length or (
                    resp.body != BIG[:req.length]):
                raise ProtocolError(
                    f"body wrong: {len(resp.body)} bytes, expected "
                    f"{req.length}; first difference at "
                    f"{first_diff(resp.body, BIG[:req.length])}")
            if req.cl and resp.framing != "length":
                raise ProtocolError(f"framing {resp.framing}, expected "
                                    f"Content-Length")
            # without cl, httpd still sets Content-Length when the whole
            # body reaches its filter in one go; otherwise it chunks
            if not req.cl and resp.framing not in ("chunked", "length"):
                raise ProtocolError(f"framing {resp.framing}, expected "
                                    f"chunked or Content-Length")
            if resp.framing == "length" and resp.header(
                    "Content-Length") != str(req.length):
                raise ProtocolError("Content-Length wrong")
        if req.upload is not None:
            n, s = req.upload
            if (resp.header("X-Received") != str(n)
                    or resp.header("X-Received-Sum") != str(s)):
                raise ProtocolError(
                    f"upload echo wrong: {resp.header('X-Received')}/"
                    f"{resp.header('X-Received-Sum')}, expected {n}/{s}")

        # bookkeeping
        st.requests += 1
        if tls:
            st.tls_requests += 1
        st.by_kind[req.kind] = st.by_kind.get(req.kind, 0) + 1
        st.n102 += n102
        st.n100 += seen100
        st.n103 += seen103
        st.sent_by_id[req.id] = n102
        if (req.first and req.upload is None and not req.http10
                and not seen103):
            k = 0
            prev = None
            for it in resp.interims:
                if it.status == 102:
                    if prev is not None:
                        st.gaps.append(it.t - prev - self.interval)
                    prev = it.t
                    late = it.t - (req.t_send + self.delay
                                   + k * self.interval)
                    st.lateness.append(late)
                    if late > 0.05 and os.environ.get("STRESS_DEBUG"):
                        print(f"late {1000 * late:.1f} ms: 102 #{k + 1} of "
                              f"{req.wire[:60]!r} tls={tls} at "
                              f"{[round(1000 * (x.t - req.t_send), 1) for x in resp.interims]}"
                              f" final {1000 * (resp.t_head - req.t_send):.1f}",
                              file=sys.stderr)
                    k += 1
            if (req.sleep >= 300 and n102 == 0 and not req.early
                    and not req.error):
                st.missed += 1

    # -- one connection ----------------------------------------------------------

    async def connect(self, tls):
        port = self.args.tls_port if tls else self.args.port
        ctx = self.rng.choice(self.ctx) if tls else None
        for attempt in range(50):
            try:
                self.stats.connects += 1
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    self.args.host, port, ssl=ctx,
                    server_hostname="127.0.0.1" if ctx else None,
                    limit=1 << 20), self.args.step_timeout)
                sock = w.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return r, w
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                self.stats.connect_errors += 1
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)

    def reserve(self, n):
        if self.budget <= 0 or time.monotonic() >= self.deadline:
            return False
        self.budget -= n
        return True

    async def abort_one(self, cid, tls):
        """A request whose client goes away mid-wait: reset or close,
        at a random time or right after the first 102."""
        rng = self.rng
        r, w = await self.connect(tls)
        req = self.plan.one(cid, "get")
        sleep = rng.randint(150, 400)
        wire = req.wire.replace(f"sleep={req.sleep}&".encode(),
                                f"sleep={sleep}&".encode(), 1)
        w.write(wire)
        try:
            if rng.random() < 0.5:
                await asyncio.wait_for(r.read(28), 1.0)
            else:
                await asyncio.sleep(rng.uniform(0, sleep / 1000.0))
        except (asyncio.TimeoutError, OSError, ssl.SSLError):
            pass
        if rng.random() < 0.5:
            sock = w.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
            except OSError:
                pass
            w.transport.abort()
        else:
            w.close()
        self.stats.aborted += 1

    async def conn_loop(self, cid, tls):
        rng = self.rng
        while self.budget > 0 and time.monotonic() < self.deadline:
            n_steps = rng.choice((1, 3, 10, 30, 100, 300))
            try:
                r, w = await self.connect(tls)
            except Exception as e:       # noqa: BLE001
                self.stats.bad(f"connect failed: {e!r}")
                return
            try:
                await self.conn_steps(cid, tls, r, w, n_steps)
            finally:
                if w.transport:
                    w.transport.abort()

    async def conn_steps(self, cid, tls, r, w, n_steps):
        for s in range(n_steps):
            last = s == n_steps - 1
            step = self.plan.step(cid, last)
            if step == "abort":
                if self.reserve(0):
                    await self.abort_one(cid, tls)
                continue
            if not self.reserve(len(step)):
                return
            t0 = time.monotonic()
            for q in step:
                q.t_send = t0
            w.write(b"".join(q.wire for q in step))
            ok, closed = await self.read_step(step, r, tls, s > 0)
            self.prev[id(r)] = step[-1].wire[:100]
            if not ok or closed:
                return
        # the connection ends here; with --close-last (the default) its
        # last request said Connection: close and the server's close was
        # awaited: nothing may have followed the last response

    async def read_step(self, step, r, tls, reused):
        """Read the responses to step; returns (ok, connection closed)."""
        parsers = [ResponseParser(q.method) for q in step]
        idx = 0
        closes = False
        tmo = self.args.step_timeout
        try:
            while True:
                if idx == len(parsers) and not closes:
                    return True, False
                try:
                    data = await asyncio.wait_for(r.read(1 << 18), tmo)
                except (ConnectionResetError, BrokenPipeError,
                        ssl.SSLError) as e:
                    data = None
                    err = e
                t = time.monotonic()
                if not data:
                    if idx == len(parsers):
                        return True, True      # expected close
                    p = parsers[idx]
                    if (p.state == "status" and not p.buf
                            and not p.response.interims):
                        # the server closed the connection before any byte
                        # of this response: an idle keep-alive connection
                        # as the request went out, a fresh one (prefork,
                        # graceful restart), or after an earlier response
                        # of a pipelined burst (httpd stops a connection at
                        # a response boundary when its child must exit).
                        # These requests were never processed, so they must
                        # not be in the access log (checked later; a crash
                        # shows in the error log); they go back to the
                        # budget
                        st = self.stats
                        unanswered = st.ka_races + st.fresh_closed + \
                            st.ka_closed
                        if unanswered > 100 and unanswered > st.requests:
                            # more closed than answered: a server that
                            # crashes, not the odd race
                            raise ProtocolError(
                                f"connection closed without a response "
                                f"({unanswered} times, {st.requests} "
                                f"answered)")
                        if idx > 0:
                            self.stats.ka_closed += len(step) - idx
                        elif reused:
                            self.stats.ka_races += 1
                        else:
                            self.stats.fresh_closed += 1
                        if os.environ.get("STRESS_DEBUG"):
                            print(f"closed unanswered ({data!r}): "
                                  f"{step[idx].wire[:80]!r}", file=sys.stderr)
                        self.stats.raced_ids.extend(q.id for q in step[idx:])
                        self.budget += len(step) - idx
                        return True, True
                    if data is None:
                        raise ProtocolError(f"connection error {err!r}")
                    parsers[idx].eof(t)
                    # close-delimited responses are never expected here
                    raise ProtocolError("connection closed early")
                while data:
                    if idx == len(parsers):
                        raise ProtocolError(
                            f"unsolicited bytes after the last response: "
                            f"{data[:80]!r}")
                    data = parsers[idx].feed(data, t)
                    if parsers[idx].done:
                        q = step[idx]
                        self.check(q, parsers[idx].response, tls)
                        conn_hdr = (parsers[idx].response.header(
                            "Connection") or "").lower()
                        idx += 1
                        if conn_hdr == "close":
                            # the server ends the connection here (graceful
                            # restart, child exiting): pipelined requests
                            # after this one are never read, must not be in
                            # the access log, and go back to the budget;
                            # nothing but EOF may follow
                            if idx != len(parsers):
                                rest = step[idx:]
                                self.stats.ka_closed += len(rest)
                                self.stats.raced_ids.extend(
                                    q.id for q in rest)
                                self.budget += len(rest)
                                del parsers[idx:]
                            closes = True
        except asyncio.TimeoutError:
            self.stats.bad(f"timeout after {tmo}s waiting for "
                           f"{step[idx].id} ({step[idx].wire[:60]!r})",
                           len(step) - idx)
            return False, True
        except ProtocolError as e:
            q = step[min(idx, len(step) - 1)]
            self.stats.bad(f"{'TLS' if tls else 'plain'} {q.id} "
                           f"{q.wire[:70]!r}: {e}", len(step) - idx)
            return False, True

    # -- run ---------------------------------------------------------------------

    async def run(self):
        a = self.args
        self.deadline = time.monotonic() + a.max_time
        tasks = []
        for i in range(a.conns):
            tasks.append(self.conn_loop(f"p{i}", False))
        if a.tls_port:
            for i in range(a.tls_conns):
                tasks.append(self.conn_loop(f"t{i}", True))
        await asyncio.gather(*tasks)

    def check_log(self, path, timeout=10.0):
        """Compare the client's 102 counts with the server's, by id."""
        st = self.stats
        want = dict(st.sent_by_id)
        raced = set(st.raced_ids)
        found = {}
        rx = re.compile(r"^(\S+) (\d+) (\S+) ")
        deadline = time.monotonic() + timeout
        pos = 0
        while True:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
            end = data.rfind(b"\n") + 1
            pos += end
            for line in data[:end].decode("latin-1").splitlines():
                m = rx.match(line)
                if m and (m.group(1) in want or m.group(1) in raced):
                    v = m.group(3)
                    found[m.group(1)] = 0 if v == "-" else int(v)
            if (len(set(found) & set(want)) >= len(want)
                    or time.monotonic() >= deadline):
                break
            time.sleep(0.2)
        for rid in st.raced_ids:
            if rid in found:
                st.bad(f"{rid}: the connection closed without a response, "
                       f"but the server logged the request")
        for rid, n in want.items():
            if rid not in found:
                st.bad(f"{rid}: no access log entry")
                continue
            st.log_checked += 1
            if found[rid] != n:
                st.log_mismatch += 1
                st.bad(f"{rid}: client saw {n} 102s, server logged "
                       f"{found[rid]}")


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"{i}: {a[i:i + 40]!r}"
    return min(len(a), len(b))


def percentile(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def summary(client, wall):
    st = client.stats
    late = st.lateness
    return {
        "requests": st.requests,
        "malformed": st.malformed,
        "n102": st.n102,
        "wall": round(wall, 2),
        "tls_requests": st.tls_requests,
        "n100": st.n100,
        "n103": st.n103,
        "aborted": st.aborted,
        "keepalive_races": st.ka_races,
        "unanswered_after_close": st.ka_closed,
        "fresh_closed": st.fresh_closed,
        "connects": st.connects,
        "connect_errors": st.connect_errors,
        "missed": st.missed,
        "log_checked": st.log_checked,
        "log_mismatch": st.log_mismatch,
        "late_n": len(late),
        "late_p50_ms": round(1000 * percentile(late, 50), 2),
        "late_p99_ms": round(1000 * percentile(late, 99), 2),
        "late_max_ms": round(1000 * (max(late) if late else 0), 2),
        "gap_max_ms": round(1000 * (max(st.gaps) if st.gaps else 0), 2),
        "gap_p99_ms": round(1000 * percentile(st.gaps, 99), 2),
        "by_kind": st.by_kind,
        "errors": st.errors,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-port", type=int, default=0)
    p.add_argument("--conns", type=int, default=32,
                   help="plain connections in parallel")
    p.add_argument("--tls-conns", type=int, default=32,
                   help="TLS connections in parallel")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--max-time", type=float, default=300.0)
    p.add_argument("--step-timeout", type=float, default=30.0)
    p.add_argument("--delay", type=int, default=100,
                   help="the server's ProcessingDelay, ms")
    p.add_argument("--interval", type=int, default=100,
                   help="the server's ProcessingInterval, ms")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--profile", choices=("mixed", "fast"), default="mixed",
                   help="fast: handlers run 0-3 ms, small bodies, no "
                        "aborts (for the memory test)")
    p.add_argument("--no-aborts", dest="aborts", action="store_false",
                   help="no clients that reset or close mid-wait")
    p.add_argument("--no-paths", dest="paths", action="store_false",
                   help="mixed profile without lookup subrequests, "
                        "internal redirects, fail=N and status=412&read=0")
    p.add_argument("--no-close-last", dest="close_last",
                   action="store_false")
    p.add_argument("--access-log", default=None,
                   help="cross-check 102 counts with this access log")
    p.add_argument("--json", default=None, help="write the summary here")
    p.add_argument("--allow-short", action="store_true",
                   help="fewer requests than asked is not an error")
    a = p.parse_args(argv)
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 30)
    a.run_id = f"s{a.seed}"
    return a


def main(argv=None):
    a = parse_args(argv)
    client = Client(a)
    t0 = time.monotonic()
    asyncio.run(client.run())
    wall = time.monotonic() - t0
    if a.access_log:
        client.check_log(a.access_log)
    s = summary(client, wall)
    s["seed"] = a.seed
    print(f"{s['requests']} requests, {s['malformed']} malformed, "
          f"{s['n102']} 102s, wall {s['wall']:.1f} s")
    print(f"  seed {a.seed}; TLS {s['tls_requests']}; 100s {s['n100']}, "
          f"103s {s['n103']}; aborted {s['aborted']}; keep-alive closes "
          f"{s['keepalive_races']} (+{s['unanswered_after_close']} "
          f"pipelined requests unanswered at a close); new connections "
          f"closed unanswered {s['fresh_closed']}; connects {s['connects']} "
          f"(errors {s['connect_errors']}); log checked {s['log_checked']} "
          f"(mismatch {s['log_mismatch']}); 102 lateness p50 "
          f"{s['late_p50_ms']} p99 {s['late_p99_ms']} max "
          f"{s['late_max_ms']} ms over {s['late_n']}; interval excess "
          f"p99 {s['gap_p99_ms']} max {s['gap_max_ms']} ms; slow without 102 "
          f"{s['missed']}", file=sys.stderr)
    for e in s["errors"]:
        print(f"  MALFORMED: {e}", file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1)
    if s["malformed"]:
        return 1
    if s["requests"] < a.requests and not a.allow_short:
        print(f"only {s['requests']} of {a.requests} requests in "
              f"{a.max_time} s", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
