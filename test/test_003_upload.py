"""Request bodies: no 102 before the last body byte arrived.

The client trickles the body over about a second while it keeps reading;
each 102's arrival time is compared with the time the last body byte left
the client. The handler (proc-test, read=1) starts as soon as the headers
are in and then blocks reading the body, so a module that armed at handler
start would send 102s during the upload. Runs under each MPM."""

import pytest

from proc.http1 import PROCESSING_BLOCK, pattern

CONF = """
<Location /pt>
    Processing On
    ProcessingInterval 200ms
    ProcessingDelay 200ms
    ProcessingMaxCount 0
</Location>
# Delay 0: a 102 goes out at once after arming
<Location /pt0>
    SetHandler proc-test
    Processing On
    ProcessingInterval 100ms
    ProcessingDelay 0
    ProcessingMaxCount 0
</Location>
"""


def body_of(n):
    return bytes((i * 7 + 3) & 0xff for i in range(n))


def assert_received(r, body):
    assert r.header("X-Received") == str(len(body))
    assert r.header("X-Received-Sum") == str(sum(body) & 0xffffffff)


def assert_after_upload(r, lo, hi):
    """lo..hi 102s, all after the last body byte left, the first one a
    delay (200 ms) later."""
    assert lo <= r.count(102) <= hi, r.interims
    for i in r.processing:
        assert i.raw == PROCESSING_BLOCK
        assert i.t > r.t_sent, (i.t - r.t_sent, r.interims)
    if r.processing:
        assert r.processing[0].t - r.t_sent >= 0.15, r.interims


class TestUpload:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        env.install(CONF, mpm=mpm)

    @pytest.mark.parametrize("chunked", [False, True], ids=["length",
                                                            "chunked"])
    def test_slow_upload(self, env, chunked):
        body = body_of(3000)
        tid = env.new_id()
        with env.connect() as c:
            r = c.request("POST", "/pt?sleep=700&len=500",
                          headers={"X-Test-Id": tid}, body=body,
                          chunked=chunked, send_time=1.0)
            assert r.interims == [], "interim during the upload"
            assert c.read_response() is r
        assert r.status == 200 and r.body == pattern(500)
        assert_received(r, body)
        # ticks 200, 400, 600 ms after the body was in
        assert_after_upload(r, 2, 6)
        assert env.access_log(tid)["sent"] == r.count(102)

    @pytest.mark.parametrize("chunked", [False, True], ids=["length",
                                                            "chunked"])
    def test_expect_100_continue(self, env, chunked):
        body = body_of(2000)
        tid = env.new_id()
        with env.connect() as c:
            r = c.request("POST", "/pt?sleep=700&len=300",
                          headers={"X-Test-Id": tid}, body=body,
                          chunked=chunked, expect_100=True, send_time=0.6)
            assert c.read_response() is r
        assert r.status == 200 and r.body == pattern(300)
        assert_received(r, body)
        statuses = [i.status for i in r.interims]
        assert statuses[0] == 100, statuses
        assert statuses[1:] == [102] * (len(statuses) - 1), statuses
        # the 100 came before the client sent the body
        assert r.interims[0].t < r.t_sent
        assert_after_upload(r, 2, 6)
        assert env.access_log(tid)["sent"] == r.count(102)

    def test_put_slow_handler(self, env):
        body = body_of(200000)
        r = env.request("PUT", "/pt?sleep=900&len=10", body=body)
        assert r.status == 200 and r.body == pattern(10)
        assert_received(r, body)
        assert_after_upload(r, 3, 8)
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    def test_handler_not_reading_body_gets_none(self, env):
        body = body_of(1000)
        r = env.request("POST", "/pt?sleep=700&read=0", body=body)
        assert r.status == 200 and r.body == pattern(64)
        assert r.header("X-Received") == "0"
        assert r.interims == []
        # control: the same request, body read, gets its 102s
        r = env.request("POST", "/pt?sleep=700&read=1", body=body)
        assert_received(r, body)
        assert_after_upload(r, 2, 6)

    def test_empty_body(self, env):
        # Content-Length: 0 is no body (ap_request_has_body()): armed when
        # the head was read, though the handler never reads.  An empty
        # chunked body is a body: armed at its end, which this handler
        # never reads (httpd discards it after the response): none.
        r = env.request("POST", "/pt?sleep=700&read=0", body=b"")
        assert r.status == 200 and r.body == pattern(64)
        assert 2 <= r.count(102) <= 6, r.interims
        assert env.access_log(r.test_id)["sent"] == r.count(102)
        r = env.request("POST", "/pt?sleep=700&read=0", body=b"",
                        chunked=True)
        assert r.status == 200 and r.body == pattern(64)
        assert r.interims == []

    def test_no_102_when_unread_body_is_discarded(self, env):
        # The handler answers without reading the body; httpd then reads
        # (discards) it, and its EOS must not arm the finished request:
        # with ProcessingDelay 0 a 102 would follow the final response.
        with env.connect() as c:
            for _ in range(3):
                tid = env.new_id()
                r = c.request("POST", "/pt0?read=0&sleep=0&len=20",
                              headers={"X-Test-Id": tid},
                              body=body_of(5000))
                assert c.read_response() is r
                assert r.status == 200 and r.body == pattern(20)
                assert r.interims == []
                c.expect_idle(0.3)
            # the connection still works, and the request after gets its
            # immediate 102s
            r = c.request("GET", "/pt0?sleep=350&len=30")
            assert c.read_response() is r
            assert r.body == pattern(30)
            assert 2 <= r.count(102) <= 7
            assert all(i.t > r.t_sent for i in r.processing)
            c.expect_idle(0.3)

    def test_no_102_when_body_read_after_response(self, env):
        # read=2: the handler sends its whole response (flushed), only then
        # reads the request body to EOS and sleeps 700 ms before it ends.
        # The response has started: the body's EOS must not arm it.
        body = body_of(3000)
        with env.connect() as c:
            tid = env.new_id()
            r = c.request("POST", "/pt?read=2&sleep=700&len=20",
                          headers={"X-Test-Id": tid}, body=body)
            assert c.read_response() is r
            assert r.status == 200 and r.body == pattern(20)
            assert r.interims == []
            c.expect_idle(1.0)
            # and the same when the body trickles in after the response
            head = (f"POST /pt?read=2&sleep=700&len=30 HTTP/1.1\r\n"
                    f"Host: 127.0.0.1\r\nX-Test-Id: {env.new_id()}\r\n"
                    f"User-Agent: mod_processing-test/1\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            [r] = c.send(head, methods=["POST"])
            assert c.read_response() is r
            assert r.status == 200 and r.body == pattern(30)
            c.send_slowly(body, 0.4, pieces=8)
            c.expect_idle(1.0)
            assert r.interims == []
        assert env.access_log(tid)["sent"] in (0, None)
