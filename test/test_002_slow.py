"""A slow handler gets 102s; a fast one none; the final response is whole.

Runs under each MPM. Timing: delay = interval = 200 ms, so a handler that
sleeps S ms should see about S/200 102s (ticks at 200, 400, ... ms after it
started). Bounds are wide and lopsided: one tick fewer, or a few more,
because on a loaded machine the handler may wake up late from its sleep
(other test sessions may share the two cores)."""

import pytest

from proc.http1 import PROCESSING_BLOCK, TEST_USER_AGENT, pattern

CONF = """
<Location /pt>
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
"""


def assert_processing_blocks(r):
    """Every 102 is exactly the 30 bytes of 'HTTP/1.1 102 Processing'."""
    for i in r.processing:
        assert i.raw == PROCESSING_BLOCK


def assert_gaps(r, low=0.05, high=1.0):
    """Consecutive 102s are about one interval (200 ms) apart: never in a
    burst, never a long pause."""
    times = [i.t for i in r.processing]
    for a, b in zip(times, times[1:]):
        assert low <= b - a <= high, f"102 gaps {times}"


class TestSlow:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        env.install(CONF, mpm=mpm)

    def test_slow_handler_gets_102s(self, env):
        r = env.get("/pt?sleep=1100&len=5000")
        assert r.status == 200
        # ticks at 200, 400, 600, 800, 1000 ms: 5
        assert 4 <= r.count(102) <= 8, r.interims
        assert [i.status for i in r.interims] == [102] * r.count(102)
        assert_processing_blocks(r)
        assert_gaps(r)
        # the first one comes one delay (200 ms) after the request
        assert r.processing[0].t - r.t_sent >= 0.15
        assert r.body == pattern(5000)
        assert r.header("Content-Length") == "5000"
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    def test_fast_handler_gets_none(self, env):
        for q in ("sleep=0", "sleep=50&len=100000"):
            r = env.get(f"/pt?{q}")
            assert r.status == 200
            assert r.interims == []
            assert r.body == pattern(len(r.body)) and len(r.body) in (
                64, 100000)
            # eligible, armed, nothing sent: "0", not "-"
            assert env.access_log(r.test_id)["sent"] == 0

    def test_static_file_gets_none(self, env):
        # not under a Processing On location: not eligible at all
        r = env.get("/alive.txt")
        assert (r.status, r.body, r.interims) == (200, b"alive\n", [])
        assert env.access_log(r.test_id)["sent"] is None

    def test_chunked_response(self, env):
        r = env.get("/pt?sleep=700&len=3000&cl=0")
        assert r.status == 200 and r.framing == "chunked"
        assert 2 <= r.count(102) <= 6
        assert r.body == pattern(3000)
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    def test_head(self, env):
        r = env.request("HEAD", "/pt?sleep=700&len=3000")
        assert r.status == 200
        assert 2 <= r.count(102) <= 6
        assert r.body == b""
        assert r.header("Content-Length") == "3000"
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    @pytest.mark.parametrize("status", [500, 503, 404])
    def test_slow_error_response(self, env, status):
        r = env.get(f"/pt?sleep=700&status={status}")
        assert r.status == status
        assert 2 <= r.count(102) <= 6
        assert_processing_blocks(r)
        # httpd's error document, whole
        assert r.framing in ("length", "chunked")
        assert b"</html>" in r.body
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    @pytest.mark.parametrize("cl", [1, 0])
    def test_early_bytes_stop_102s(self, env, cl):
        # 10 body bytes go out at once, then 800 ms of sleep: the response
        # has started, so no 102 may follow
        r = env.get(f"/pt?sleep=800&early=10&len=100&cl={cl}")
        assert r.status == 200
        assert r.interims == []
        assert r.body == pattern(100)
        assert env.access_log(r.test_id)["sent"] == 0

    def test_103_stops_102s(self, env):
        # 102s at 200 and 400 ms, a 103 at 500 ms, then nothing until the
        # final response at 1100 ms
        r = env.get("/pt?sleep=1100&interim=500")
        assert r.status == 200 and r.body == pattern(64)
        statuses = [i.status for i in r.interims]
        assert statuses.count(103) == 1
        assert statuses[-1] == 103, statuses
        assert 1 <= r.count(102) <= 5
        assert r.interims[-1].headers == [("Link", "</pt.css>; rel=preload")]
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    def test_keepalive_reuse(self, env):
        with env.connect() as c:
            for q, lo, hi in (("sleep=700&len=1000", 2, 6),
                              ("sleep=0&len=2000", 0, 0),
                              ("sleep=500&len=3000", 1, 5)):
                tid = env.new_id()
                c.request("GET", f"/pt?{q}", headers={"X-Test-Id": tid})
                r = c.read_response()
                n = int(q.split("len=")[1])
                assert r.status == 200 and r.body == pattern(n)
                assert lo <= r.count(102) <= hi, (q, r.interims)
                assert r.header("Connection") != "close"
                assert env.access_log(tid)["sent"] == r.count(102)
            # nothing more may arrive: a late 102 would show here
            c.expect_idle(0.5)

    def test_pipelined(self, env):
        tids = [env.new_id() for _ in range(3)]
        reqs = ["GET /pt?sleep=700&len=100 HTTP/1.1\r\n",
                "GET /pt?sleep=0&len=200&cl=0 HTTP/1.1\r\n",
                "GET /pt?sleep=500&len=300 HTTP/1.1\r\n"]
        raw = b"".join(
            (q + f"Host: 127.0.0.1\r\nX-Test-Id: {t}\r\n"
             f"User-Agent: {TEST_USER_AGENT}\r\n\r\n").encode()
            for q, t in zip(reqs, tids))
        with env.connect() as c:
            c.send(raw, methods=["GET"] * 3)
            rs = [c.read_response() for _ in range(3)]
            c.expect_idle(0.5)
        assert [r.status for r in rs] == [200, 200, 200]
        assert [r.body for r in rs] == [pattern(100), pattern(200),
                                        pattern(300)]
        assert 2 <= rs[0].count(102) <= 6
        assert rs[1].count(102) == 0
        assert 1 <= rs[2].count(102) <= 5
        for r, t in zip(rs, tids):
            assert env.access_log(t)["sent"] == r.count(102)

    def test_debug_log_lines(self, env):
        # LogLevel processing:debug (the harness default) logs arming,
        # disarming and each 102 sent; only that much of the wording is
        # pinned
        r = env.get("/pt?sleep=500")
        assert r.count(102) >= 1
        assert env.log.scan(r"\[processing:debug\].* armed", timeout=3)
        assert env.log.scan(r"\[processing:debug\].* disarmed", timeout=3)
        sends = env.log.scan(r"\[processing:debug\].*102", timeout=3)
        assert len(sends) >= r.count(102), sends
