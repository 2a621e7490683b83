"""The short stress run of 'make test' (issue 4): 2,000 requests under each
MPM (6,000 in all), 48 plain + 48 TLS keep-alive connections, handler run
times drawn around the 102 ticks (delay = interval = 100 ms), pipelined
bursts, uploads, error statuses, early streaming, 103s, HTTP/1.0, clients
that abort. Every byte is checked by the strict parser, and each request's
102 count against the server's access log. The full run is
test/stress/run-stress."""

import os

import pytest

from stressenv import wait_armed_zero

REQUESTS = int(os.environ.get("PROC_STRESS_SHORT", "2000"))


@pytest.mark.parametrize("mpm", ["event", "worker", "prefork"])
def test_stress_short(senv, mpm):
    senv.install_stress(mpm)
    senv.log.skip()
    rc, s, out = senv.run_client(REQUESTS, conns=48, tls_conns=48,
                                 max_time=80)
    print(f"\n{mpm}: {out}")
    assert rc == 0, out
    assert s["malformed"] == 0 and s["requests"] >= REQUESTS, out
    assert s["n102"] > 0 and s["log_mismatch"] == 0
    c = wait_armed_zero(senv)
    assert c["ProcessingArmed"] == 0, c
    assert not senv.fatal_lines()
    bad = senv.log.check()
    assert not bad, "error log:\n" + "\n".join(bad)
