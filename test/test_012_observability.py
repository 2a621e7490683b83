"""ProcessingClients prefer (RFC 7240 opt-in) and the mod_status counters,
summed over all child processes (prefork: one request per process)."""

import re
import socket
import struct
import threading
import time

import pytest

CONF = """
<Location /pt>
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Location>
<Location /pref>
    SetHandler proc-test
    Processing On
    ProcessingInterval 200ms
    ProcessingClients prefer
</Location>
<Location /server-status>
    SetHandler server-status
</Location>
"""


class TestPreferPolicy:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        env.install(CONF, mpm="event")

    @pytest.mark.parametrize("prefer", [
        "processing",
        "PROCESSING",
        "respond-async, wait=10, processing",
        'wait=5, processing;x="a,b", return=minimal',
    ], ids=["plain", "upper", "listed", "params"])
    def test_prefer_processing_is_armed(self, env, prefer):
        r = env.get("/pref?sleep=700&len=10", headers={"Prefer": prefer})
        assert r.status == 200
        assert 2 <= r.count(102) <= 6, r.interims
        assert r.header("Preference-Applied") == "processing"
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    @pytest.mark.parametrize("prefer", [
        None,
        "respond-async",
        "processing-later",
        'return="processing"',
    ], ids=["absent", "other", "longer-token", "quoted-value"])
    def test_without_the_preference_no_102(self, env, prefer):
        headers = {"Prefer": prefer} if prefer else {}
        r = env.get("/pref?sleep=700&len=10", headers=headers)
        assert r.status == 200
        assert r.interims == []
        assert r.header("Preference-Applied") is None
        assert env.access_log(r.test_id)["sent"] is None

    def test_removed_directive_fails_configtest(self, env):
        rc, out = env.configtest("ProcessingRequirePrefer On\n")
        assert rc != 0
        assert "ProcessingRequirePrefer" in out


def status_counters(env):
    r = env.get("/server-status?auto")
    assert r.status == 200
    text = r.body.decode()
    found = dict(re.findall(r"^(Processing\w+): (\d+)$", text, re.M))
    assert set(found) == {"ProcessingArmed", "ProcessingArmedTotal",
                          "ProcessingSent", "ProcessingSendFailed"}, text
    return {k: int(v) for k, v in found.items()}


class TestStatusCounters:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        env.install(CONF, mpm="prefork")

    def test_html_page_has_the_table(self, env):
        r = env.get("/server-status")
        assert r.status == 200
        assert b"mod_processing" in r.body
        assert b"102 Processing sent" in r.body

    def test_sent_and_total_count_up(self, env):
        before = status_counters(env)
        r = env.get("/pt?sleep=700&len=10")
        assert r.count(102) >= 2
        after = status_counters(env)
        assert after["ProcessingArmedTotal"] - before[
            "ProcessingArmedTotal"] == 1
        assert after["ProcessingSent"] - before["ProcessingSent"] == \
            r.count(102)
        assert after["ProcessingArmed"] == 0

    def test_armed_now_summed_over_children(self, env):
        # prefork: each slow request runs in its own child process
        results = []

        def slow():
            results.append(env.get("/pt?sleep=1500&len=10"))

        threads = [threading.Thread(target=slow) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.7)
        during = status_counters(env)
        for t in threads:
            t.join()
        assert during["ProcessingArmed"] == 3, during
        assert all(r.status == 200 and r.count(102) >= 3 for r in results)
        assert status_counters(env)["ProcessingArmed"] == 0

    def test_failed_send_counted(self, env):
        before = status_counters(env)
        c = env.connect()
        c.request("GET", "/pt?sleep=1500&len=10")
        c.pump_until(lambda: c.parsers[0].response.count(102) >= 1,
                     timeout=5, what="a first 102")
        # reset the connection: the next 102 fails to send
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        c.close()
        time.sleep(1.8)
        after = status_counters(env)
        assert after["ProcessingSendFailed"] - before[
            "ProcessingSendFailed"] == 1, (before, after)
        assert after["ProcessingArmed"] == 0
