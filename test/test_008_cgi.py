"""A slow CGI under mod_cgid gets 102s and its output arrives intact.
Runs under each MPM."""

import re

import pytest

CONF = """
<Directory "{root}/htdocs/cgi-bin">
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Directory>
"""


class TestCgi:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        env.install(CONF.format(root=env.root), mpm=mpm)

    def test_slow_cgi(self, env):
        # the script sleeps 1 s: ticks at 200, 400, 600, 800 ms
        r = env.get("/cgi-bin/slow.cgi")
        assert r.status == 200, r.body
        assert 3 <= r.count(102) <= 8, r.interims
        assert [i.status for i in r.interims] == [102] * r.count(102)
        assert re.fullmatch(rb"cgi slept 1s\npid \d+\n", r.body), r.body
        assert r.header("Content-Type").startswith("text/plain")
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    @pytest.mark.parametrize("chunked", [False, True],
                             ids=["length", "chunked"])
    def test_slow_cgi_with_slow_upload(self, env, chunked):
        body = bytes(range(256)) * 40
        tid = env.new_id()
        with env.connect() as c:
            r = c.request("POST", "/cgi-bin/slow-echo.cgi",
                          headers={"X-Test-Id": tid}, body=body,
                          chunked=chunked, send_time=0.6)
            assert c.read_response() is r
            c.expect_idle(0.2)
        assert r.status == 200
        assert r.body == body
        # mod_cgid hands the body over, then waits while the script, which
        # read it all, thinks for 1 s
        assert 3 <= r.count(102) <= 8, r.interims
        assert all(i.t > r.t_sent for i in r.processing), r.interims
        assert env.access_log(tid)["sent"] == r.count(102)
