"""Directive values and contexts: 'apache2 -t' accepts the good ones and
refuses the bad ones with a message naming the directive and the value.

Only the directive name and the offending value are pinned, not the rest of
the wording."""

import pytest

GOOD = [
    "Processing On",
    "Processing off",
    "ProcessingInterval 100ms",
    "ProcessingInterval 1h",
    "ProcessingInterval 3600",
    "ProcessingInterval 20s",
    "ProcessingInterval 5mi",
    "ProcessingInterval 250ms",
    "ProcessingDelay 0",
    "ProcessingDelay 0ms",
    "ProcessingDelay 1h",
    "ProcessingDelay 1500ms",
    "ProcessingMaxCount 0",
    "ProcessingMaxCount 1000",
    "ProcessingMaxCount 7",
    "ProcessingMaxTime 0",
    "ProcessingMaxTime 1h",
    "ProcessingMaxTime 90s",
]

# (directive, value)
BAD = [
    ("ProcessingInterval", "50ms"),
    ("ProcessingInterval", "99ms"),
    ("ProcessingInterval", "0"),
    ("ProcessingInterval", "2h"),
    ("ProcessingInterval", "3601"),
    ("ProcessingInterval", "abc"),
    ("ProcessingInterval", "1.5s"),
    ("ProcessingInterval", "-1"),
    ("ProcessingInterval", "10x"),
    ("ProcessingInterval", "''"),
    ("ProcessingDelay", "2h"),
    ("ProcessingDelay", "3601"),
    ("ProcessingDelay", "-1"),
    ("ProcessingDelay", "soon"),
    ("ProcessingMaxCount", "-1"),
    ("ProcessingMaxCount", "1001"),
    ("ProcessingMaxCount", "x"),
    ("ProcessingMaxCount", "5x"),
    ("ProcessingMaxCount", "1.5"),
    ("ProcessingMaxCount", "99999999999999999999"),
    ("ProcessingMaxTime", "2h"),
    ("ProcessingMaxTime", "-5"),
    ("ProcessingMaxTime", "forever"),
    ("Processing", "maybe"),
    ("Processing", "1"),
]

CONTEXTS = {
    "server": "{d}\n",
    "vhost": "<VirtualHost 127.0.0.1:{port}>\n    {d}\n</VirtualHost>\n",
    "directory": '<Directory "{root}/htdocs">\n    {d}\n</Directory>\n',
    "location": "<Location /x>\n    {d}\n</Location>\n",
    "locationmatch": "<LocationMatch ^/y>\n    {d}\n</LocationMatch>\n",
    "files": "<Files x.cgi>\n    {d}\n</Files>\n",
    "if": "<If \"%{{REQUEST_METHOD}} == 'PUT'\">\n    {d}\n</If>\n",
}

ALL_DIRECTIVES = ("Processing On\n    ProcessingInterval 1s\n"
                  "    ProcessingDelay 2s\n    ProcessingMaxCount 3\n"
                  "    ProcessingMaxTime 10s")


class TestConfig:

    def test_base_config_ok(self, env):
        rc, out = env.configtest("")
        assert rc == 0, out

    @pytest.mark.parametrize("line", GOOD)
    def test_good_value(self, env, line):
        rc, out = env.configtest(f"<Location /x>\n{line}\n</Location>\n")
        assert rc == 0, out

    @pytest.mark.parametrize("directive,value", BAD,
                             ids=[f"{d}-{v}" for d, v in BAD])
    def test_bad_value(self, env, directive, value):
        rc, out = env.configtest(f"{directive} {value}\n")
        assert rc != 0, out
        assert directive in out, out
        # httpd's own message for a FLAG directive does not repeat the value
        shown = {"''": "", "maybe": "On or Off", "1": "On or Off"}.get(
            value, value)
        assert shown in out, out
        # the same inside a <Location>
        rc, out = env.configtest(
            f"<Location /x>\n{directive} {value}\n</Location>\n")
        assert rc != 0 and directive in out and shown in out, out

    def test_range_is_named(self, env):
        # the message says what is allowed (wording not pinned beyond the
        # two limits)
        rc, out = env.configtest("ProcessingInterval 50ms\n")
        assert rc != 0
        assert "100ms" in out and "1h" in out, out

    def test_missing_argument(self, env):
        for d in ("Processing", "ProcessingInterval", "ProcessingMaxCount"):
            rc, out = env.configtest(f"{d}\n")
            assert rc != 0 and d in out, out

    def test_too_many_arguments(self, env):
        rc, out = env.configtest("ProcessingInterval 1s 2s\n")
        assert rc != 0 and "ProcessingInterval" in out, out

    @pytest.mark.parametrize("ctx", sorted(CONTEXTS))
    def test_contexts(self, env, ctx):
        body = CONTEXTS[ctx].format(d=ALL_DIRECTIVES, port=env.port,
                                    root=env.root)
        rc, out = env.configtest(body)
        assert rc == 0, out

    def test_limit_context(self, env):
        # httpd applies ordinary directives inside <Limit> to all methods
        # unless a module refuses them there; whatever the module does, it
        # must either accept the directive or name it in the refusal.
        rc, out = env.configtest(
            "<Location /x>\n<Limit PUT>\nProcessing On\n</Limit>\n"
            "</Location>\n")
        assert rc == 0 or "Processing" in out, out
