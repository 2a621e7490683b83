"""Unit tests of the strict HTTP/1.1 response parser (proc/http1.py).

No httpd here: crafted byte strings, and a socketpair standing in for the
server. If the parser accepted broken framing, every other test in the suite
could pass on a broken module."""

import socket
import threading
import time

import pytest

from proc.http1 import (Connection, PROCESSING_BLOCK, ProtocolError,
                        ResponseParser, build_request, chunk_body, pattern,
                        parse_responses)

P = PROCESSING_BLOCK
OK5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")


class TestParserAccepts:

    def test_plain_response(self):
        [r] = parse_responses(OK5)
        assert (r.status, r.reason, r.body, r.framing) == (
            200, "OK", b"hello", "length")
        assert r.interims == []
        assert r.header("content-length") == "5"

    def test_interims_then_final(self):
        data = P + P + b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK5
        [r] = parse_responses(data)
        assert [i.status for i in r.interims] == [102, 102, 103]
        assert r.count(102) == 2 and r.count(103) == 1
        assert all(i.raw == P for i in r.processing)
        assert r.interims[2].headers == [("Link", "</a>")]
        assert r.body == b"hello"

    def test_byte_by_byte(self):
        data = P + P + CHUNKED
        [r] = parse_responses([bytes([b]) for b in data])
        assert r.count(102) == 2
        assert r.body == b"hello world"
        assert r.framing == "chunked"
        # arrival times: one "second" per byte fed
        assert r.interims[0].t == len(P)
        assert r.interims[1].t == 2 * len(P)
        assert r.t_head == 2 * len(P) + 1

    def test_chunked_with_trailers(self):
        data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
        [r] = parse_responses(data)
        assert r.body == b"abc" and r.trailers == [("X-T", "1")]

    def test_close_delimited(self):
        [r] = parse_responses(P + b"HTTP/1.1 200 OK\r\n\r\nuntil close")
        assert r.framing == "close" and r.body == b"until close"

    def test_head_and_pipelining(self):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        rs = parse_responses(P + head + OK5 + P + P + CHUNKED,
                             methods=["HEAD", "GET", "GET"])
        assert [r.status for r in rs] == [200, 200, 200]
        assert [r.count(102) for r in rs] == [1, 0, 2]
        assert [r.body for r in rs] == [b"", b"hello", b"hello world"]

    def test_error_response_and_204(self):
        err = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n"
               b"\r\nbad")
        rs = parse_responses(P + err + b"HTTP/1.1 204 No Content\r\n\r\n",
                             methods=["GET", "GET"])
        assert [(r.status, r.body) for r in rs] == [(503, b"bad"), (204, b"")]

    def test_pattern(self):
        assert pattern(5) == b"01234"
        assert pattern(64)[60:] == b"YZ01"
        assert pattern(3, 61) == b"Z01"
        assert len(pattern(100000)) == 100000


# name: (what the ProtocolError must say, bytes received)
CL0 = b"Content-Length: 0\r\n\r\n"
TE = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
REJECT = {
    "http10-status": ("expected a status line", b"HTTP/1.0 200 OK\r\n" + CL0),
    "status-4-digits": ("bad status line", b"HTTP/1.1 2000 OK\r\n" + CL0),
    "status-no-space": ("bad status line", b"HTTP/1.1 200\r\n" + CL0),
    "bare-lf": ("CRLF", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    "junk-before": ("expected a status line", b"xHTTP/1.1 200 OK\r\n" + CL0),
    "junk-between-102-and-final": ("expected a status line",
                                   P + b"junk" + OK5),
    "crlf-between-102-and-final": ("expected a status line",
                                   P + b"\r\n" + OK5),
    "102-without-blank-line": ("bad header line",
                               b"HTTP/1.1 102 Processing\r\n" + OK5),
    "102-after-final": ("unsolicited", OK5 + P),
    "102-inside-length-body": ("unsolicited",
                               b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                               b"\r\nhe" + P + b"llo"),
    "102-inside-chunked-body": ("bad chunk size",
                                TE + b"5\r\nhello\r\n" + P + b"0\r\n\r\n"),
    "102-inside-final-head": ("bad header line",
                              b"HTTP/1.1 200 OK\r\n" + P + CL0),
    "truncated-chunked": ("inside the chunked body", TE + b"5\r\nhello\r\n"),
    "truncated-chunk-data": ("inside the chunked body", TE + b"9\r\nhello"),
    "chunk-without-crlf": ("not followed by CRLF",
                           TE + b"5\r\nhelloX\r\n0\r\n\r\n"),
    "bad-chunk-size": ("bad chunk size", TE + b" 5\r\nhello\r\n0\r\n\r\n"),
    "truncated-length": ("body bytes missing",
                         b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
                         b"hello"),
    "truncated-head": ("inside a response head",
                       b"HTTP/1.1 200 OK\r\nContent-Len"),
    "te-and-cl": ("both Transfer-Encoding and Content-Length",
                  b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "conflicting-cl": ("bad Content-Length",
                       b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                       b"Content-Length: 6\r\n\r\nhello "),
    "bad-cl": ("bad Content-Length",
               b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
    "gzip-te": ("unsupported Transfer-Encoding",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    "space-before-colon": ("bad header line",
                           b"HTTP/1.1 200 OK\r\nX-A : 1\r\n" + CL0),
    "obs-fold": ("obsolete line folding",
                 b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n" + CL0),
    "nul-in-header": ("NUL", b"HTTP/1.1 200 OK\r\nX-A: \0\r\n" + CL0),
    "switching-protocols": ("101",
                            b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
    "only-interims": ("closed before a further response", P + P),
    "nothing": ("closed before any response", b""),
}


class TestParserRejects:

    @pytest.mark.parametrize("name", sorted(REJECT))
    def test_reject(self, name):
        why, data = REJECT[name]
        with pytest.raises(ProtocolError, match=why):
            parse_responses(data)

    @pytest.mark.parametrize("name", sorted(REJECT))
    def test_reject_byte_by_byte(self, name):
        why, data = REJECT[name]
        with pytest.raises(ProtocolError, match=why):
            parse_responses([bytes([b]) for b in data])

    def test_missing_pipelined_response(self):
        with pytest.raises(ProtocolError):
            parse_responses(OK5 + P, methods=["GET", "GET"])

    def test_eof_false_keeps_waiting(self):
        p = ResponseParser()
        assert p.feed(P + b"HTTP/1.1 200 OK\r\n", 1.0) == b""
        assert not p.done and p.response.count(102) == 1
        assert p.feed(b"Content-Length: 2\r\n\r\nokREST", 2.0) == b"REST"
        assert p.done and p.response.body == b"ok"
        assert p.response.t_head == 1.0 and p.response.t_end == 2.0


class TestRequestBuilder:

    def test_content_length(self):
        head, body = build_request("PUT", "/x", "h:1", {"A": "b"}, b"abc")
        assert head == (b"PUT /x HTTP/1.1\r\nHost: h:1\r\n"
                        b"User-Agent: mod_processing-test/1\r\nA: b\r\n"
                        b"Content-Length: 3\r\n\r\n")
        assert body == b"abc"

    def test_chunked(self):
        head, body = build_request("POST", "/", "h", None, b"a" * 2500,
                                   chunked=True)
        assert b"Transfer-Encoding: chunked\r\n" in head
        assert body == chunk_body(b"a" * 2500)
        [r] = parse_responses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                              b"chunked\r\n\r\n" + body)
        assert r.body == b"a" * 2500

    def test_http10_no_host(self):
        head, _ = build_request("GET", "/", None, version="HTTP/1.0")
        assert head == (b"GET / HTTP/1.0\r\n"
                        b"User-Agent: mod_processing-test/1\r\n\r\n")


class FakeServer:
    """The far end of a socketpair, scripted from a thread."""

    def __init__(self):
        self.client_sock, self.sock = socket.socketpair()
        self.got = bytearray()
        self.times = []

    def run(self, script):
        def go():
            for step in script:
                if isinstance(step, float):
                    time.sleep(step)
                elif isinstance(step, int):
                    while len(self.got) < step:
                        data = self.sock.recv(65536)
                        if not data:
                            return
                        self.got += data
                elif step is None:
                    self.sock.close()
                    return
                else:
                    self.times.append(time.monotonic())
                    self.sock.sendall(step)
        t = threading.Thread(target=go, daemon=True)
        t.start()
        return t


class TestConnection:

    def test_unsolicited_102_after_final(self):
        srv = FakeServer()
        conn = Connection(srv.client_sock, timeout=5)
        srv.run([1, OK5, 0.1, P])
        conn.send(b"GET / HTTP/1.1\r\n\r\n", methods=["GET"])
        assert conn.read_response().body == b"hello"
        with pytest.raises(ProtocolError, match="unsolicited"):
            conn.expect_idle(1.0)

    def test_102_timestamps_while_sending_slowly(self):
        srv = FakeServer()
        conn = Connection(srv.client_sock, timeout=5)
        head = b"PUT / HTTP/1.1\r\nContent-Length: 20\r\n\r\n"
        # the fake sends a 102 while the body is still trickling in
        th = srv.run([len(head) + 1, P, len(head) + 20, P, OK5])
        resp = conn.send(head, methods=["PUT"])[0]
        conn.send_slowly(b"x" * 20, 0.5)
        t_sent = conn.t_last_send
        r = conn.read_response()
        th.join(5)
        assert r is resp and r.count(102) == 2
        assert r.interims[0].t < t_sent <= r.interims[1].t
        assert srv.got == head + b"x" * 20

    def test_expect_100(self):
        srv = FakeServer()
        conn = Connection(srv.client_sock, timeout=5)
        conn.host = "x"
        cont = b"HTTP/1.1 100 Continue\r\n\r\n"
        srv.run([1, 0.3, cont, 0.2, P, OK5])
        t0 = time.monotonic()
        resp = conn.request("POST", "/", body=b"abc", expect_100=True)
        r = conn.read_response()
        assert r is resp
        assert [i.status for i in r.interims] == [100, 102]
        # the body was only sent after the 100 arrived
        assert r.t_sent - t0 >= 0.25
        assert r.interims[0].t <= r.t_sent

    def test_closed_mid_body(self):
        srv = FakeServer()
        conn = Connection(srv.client_sock, timeout=5)
        srv.run([1, P, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
                 None])
        # the close may already be seen while sending
        with pytest.raises(ProtocolError, match="missing"):
            conn.send(b"GET / HTTP/1.1\r\n\r\n", methods=["GET"])
            conn.read_response()

    def test_timeout(self):
        srv = FakeServer()
        conn = Connection(srv.client_sock, timeout=0.3)
        srv.run([1, P])
        conn.send(b"GET / HTTP/1.1\r\n\r\n", methods=["GET"])
        with pytest.raises(ProtocolError, match="timeout"):
            conn.read_response()
