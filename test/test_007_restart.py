"""Restarts and stops while a request is armed.

graceful and graceful-stop: the old child finishes its long request, which
keeps getting 102s after the signal and ends with its whole body. stop and
restart (hard) may cut the connection, but no child may crash. Runs under
each MPM; the per-test error-log check catches 'exit signal'."""

import time

import pytest

from proc.http1 import ProtocolError, pattern

CONF = """
<Location /pt>
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
"""

LONG = "/pt?sleep=2500&len=20000"


class TestRestart:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, mpm):
        env.install(CONF, mpm=mpm)
        yield
        if not env.running_pid:
            env.start()

    @pytest.fixture(autouse=True)
    def _running(self, env):
        # a test that stopped httpd leaves it to the next one to start it
        if not env.running_pid:
            env.start()

    def start_long(self, env, c):
        tid = env.new_id()
        r = c.request("GET", LONG, headers={"X-Test-Id": tid})
        c.pump_until(lambda: r.count(102) >= 2, timeout=10,
                     what="two 102s")
        return r, tid

    @pytest.mark.parametrize("how", ["graceful", "graceful-stop"])
    def test_graceful(self, env, how):
        pid = env.running_pid
        with env.connect() as c:
            r, tid = self.start_long(env, c)
            t_signal = time.monotonic()
            env.signal(how)
            if how == "graceful-stop":
                env.running_pid = None
            assert c.read_response() is r
        assert r.status == 200 and r.body == pattern(20000)
        after = [i for i in r.processing if i.t > t_signal]
        # about 2 s were left: about 10 ticks after the signal
        assert len(after) >= 3, (t_signal, r.interims)
        assert env.access_log(tid, timeout=10)["sent"] == r.count(102)
        if how == "graceful-stop":
            assert env.wait_exit(pid), "httpd did not stop"
        else:
            # the new generation serves, and arms, too
            deadline = time.monotonic() + 10
            while not env.is_live():
                assert time.monotonic() < deadline
                time.sleep(0.1)
            r = env.get("/pt?sleep=700")
            assert r.status == 200 and r.count(102) >= 2

    @pytest.mark.parametrize("how", ["stop", "restart"])
    def test_hard(self, env, how):
        # the armed request may be cut off; no child may crash
        env.log.ignore(r"AH00045", r"AH00046")  # "still did not exit"
        pid = env.running_pid
        with env.connect() as c:
            r, _ = self.start_long(env, c)
            env.signal(how)
            if how == "stop":
                env.running_pid = None
            try:
                c.read_response()
            except ProtocolError:
                pass    # cut off: fine, as long as what came was whole 102s
            assert all(i.status == 102 for i in r.interims)
        if how == "stop":
            assert env.wait_exit(pid), "httpd did not stop"
        else:
            deadline = time.monotonic() + 10
            while not env.is_live():
                assert time.monotonic() < deadline
                time.sleep(0.1)
            r = env.get("/pt?sleep=700")
            assert r.status == 200 and r.count(102) >= 2
        # give a crashing child time to be noticed by the parent
        time.sleep(0.5)
        bad = env.log.check()
        assert not bad, "\n".join(bad)
