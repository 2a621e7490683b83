"""pytest fixtures for mod_processing's test suite.

- env (session): builds the server root and the test module once, stops
  httpd at the end and checks the error log one last time.
- mpm (class, parametrized): event, worker, prefork; classes that use it run
  once per MPM (pytest groups the tests of one MPM together).
- every test: the error log lines written during the test must not contain a
  crash or an unexpected warn/error/crit line (env.log.ignore() to expect
  some).

Run as root: /usr/bin/python3 -m pytest -q test
PROC_TEST_KEEP=1 keeps the server root under /tmp for inspection;
PROC_TEST_MPMS=event runs the MPM-parametrized classes under event only;
-vv raises httpd's LogLevel to "info processing:trace4".
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from proc.env import HttpdEnv, MPMS  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_env = None


@pytest.fixture(scope="session")
def env(request):
    global _env
    e = HttpdEnv(REPO, verbose=request.config.option.verbose > 1)
    try:
        e.setup()
    except RuntimeError as x:
        pytest.fail(str(x), pytrace=False)
    _env = e
    yield e
    _env = None
    e.stop()
    bad = e.log.check()
    if os.environ.get("PROC_TEST_KEEP"):
        print(f"\nserver root kept: {e.root}")
    else:
        e.cleanup()
    assert not bad, "error log at the end:\n" + "\n".join(bad)


# PROC_TEST_MPMS=event,prefork narrows the MPMs of the parametrized classes.
_MPMS = [m for m in os.environ.get("PROC_TEST_MPMS", ",".join(MPMS)).split(",")
         if m in MPMS] or list(MPMS)


@pytest.fixture(scope="class", params=_MPMS)
def mpm(request):
    return request.param


@pytest.fixture(autouse=True)
def _check_error_log(request):
    if _env is not None:
        _env.test_name = request.node.name
    yield
    if _env is not None and _env.root:
        bad = _env.log.check()
        if bad:
            pytest.fail("unexpected error log lines:\n" + "\n".join(bad),
                        pytrace=False)
