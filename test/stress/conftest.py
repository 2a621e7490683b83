"""Fixtures for the stress and fault tests (issue 4).

senv (session): one StressEnv (server root, TLS certificate, test module),
stopped and removed at the end. Each test installs its own configuration.

PROC_STRESS_FULL=1 (set by test/stress/run-stress) enables the long tests:
20 graceful restarts per MPM and the 200,000-request memory test.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from stressenv import FULL, StressEnv  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "full: long stress, only with PROC_STRESS_FULL=1")


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    skip = pytest.mark.skip(reason="long stress: PROC_STRESS_FULL=1 "
                                   "(make -f Makefile.apxs stress)")
    for item in items:
        if "full" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def senv(request):
    e = StressEnv(verbose=request.config.option.verbose > 1)
    try:
        e.setup()
    except RuntimeError as x:
        pytest.fail(str(x), pytrace=False)
    yield e
    try:
        e.stop()
    finally:
        if os.environ.get("PROC_TEST_KEEP"):
            print(f"\nstress server root kept: {e.root}")
        else:
            e.cleanup()
