"""The configuration examples shipped in conf-examples/ are valid: each one
included into a server configuration passes 'apache2 -t'."""

import glob
import os

import pytest

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "conf-examples")
EXAMPLES = sorted(glob.glob(os.path.join(EXAMPLES_DIR, "*.conf")))
MODULES = ("proxy", "proxy_http", "auth_basic", "authn_file", "authn_core",
           "authz_user")


def test_examples_exist():
    names = {os.path.basename(p) for p in EXAMPLES}
    assert {"processing.conf", "processing-webdav.conf",
            "processing-reverse-proxy.conf"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_passes_configtest(env, path):
    rc, out = env.configtest(f'DAVLockDB "{env.root}/davlock/lock2"\n'
                             f'Include "{path}"\n', modules=MODULES)
    assert rc == 0, out
    assert "Syntax OK" in out
