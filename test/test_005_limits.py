"""ProcessingMaxCount, ProcessingMaxTime, ProcessingDelay, the defaults, and
inheritance of unset values from outer contexts. Runs under each MPM."""

import pytest

from proc.http1 import PROCESSING_BLOCK, pattern

CONF = """
<Location /pt>
    Processing On
    ProcessingInterval 100ms
</Location>
# inner contexts set one thing and inherit On and the 100 ms interval
<Location /pt/max2>
    ProcessingMaxCount 2
</Location>
<Location /pt/unlimited>
    ProcessingMaxCount 0
</Location>
<Location /pt/maxtime>
    ProcessingMaxCount 0
    ProcessingMaxTime 500ms
</Location>
<Location /pt/delay>
    ProcessingInterval 200ms
    ProcessingDelay 600ms
    ProcessingMaxCount 0
</Location>
<Location /pt/delay0>
    ProcessingInterval 1s
    ProcessingDelay 0
</Location>
# only "On": interval and delay are the default 20 s
<Location /dflt>
    SetHandler proc-test
    Processing On
</Location>
"""


def since_sent(r):
    return [round(i.t - r.t_sent, 3) for i in r.processing]


class TestLimits:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        env.install(CONF, mpm=mpm)

    def check(self, env, r, lo, hi):
        assert r.status == 200 and r.body == pattern(64)
        assert [i.status for i in r.interims] == [102] * len(r.interims)
        assert all(i.raw == PROCESSING_BLOCK for i in r.interims)
        assert lo <= r.count(102) <= hi, since_sent(r)
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    def test_max_count_default_is_5(self, env):
        # about 12 ticks due in 1.3 s, 5 sent
        r = env.get("/pt?sleep=1300")
        self.check(env, r, 5, 5)

    def test_max_count_2(self, env):
        r = env.get("/pt/max2?sleep=1000")
        self.check(env, r, 2, 2)

    def test_max_count_0_is_unlimited(self, env):
        r = env.get("/pt/unlimited?sleep=1300")
        # 12 or 13 due; at least 9 is far above the default 5
        self.check(env, r, 9, 16)

    def test_max_time(self, env):
        # ticks at 100..1200 ms would be due; only those within 500 ms go
        r = env.get("/pt/maxtime?sleep=1300")
        self.check(env, r, 3, 6)
        assert since_sent(r)[-1] < 1.0, since_sent(r)

    def test_delay(self, env):
        # first 102 at 600 ms, then 800, 1000, 1200
        r = env.get("/pt/delay?sleep=1300")
        self.check(env, r, 3, 7)
        assert since_sent(r)[0] >= 0.55, since_sent(r)

    def test_delay_0(self, env):
        # interval 1 s, delay 0: one 102 at once, the next would be due
        # after the handler finished (without the delay: none at all)
        r = env.get("/pt/delay0?sleep=500")
        self.check(env, r, 1, 1)
        assert since_sent(r)[0] < 0.5, since_sent(r)

    def test_default_interval(self, env):
        # default delay and interval are 20 s: nothing in 1.2 s, but armed
        r = env.get("/dflt?sleep=1200")
        self.check(env, r, 0, 0)
