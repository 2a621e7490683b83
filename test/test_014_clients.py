"""ProcessingClients: who gets 102s with just 'Processing On'.

The default (known) sends 102s only to a request whose client asked
(Prefer: processing), that the administrator allowed (force-processing),
or whose User-Agent belongs to a client family measured to handle them
(with that family's cap). no-processing and processing-max-count win.

Timing: delay = interval = 100 ms, the handler sleeps 650 ms: an armed
request gets about 6 102s (at least 3 on a busy machine)."""

import pytest

CONF = """
LogFormat "%{X-Test-Id}i %>s %{processing-sent}n %{processing-client}n" cl
CustomLog "logs/clients_log" cl
SetEnvIf X-Allow "^1$" force-processing
SetEnvIf X-Deny "^1$" no-processing
SetEnvIf X-Cap "^2$" processing-max-count=2
<Location /pt>
    Processing On
    ProcessingInterval 100ms
    ProcessingMaxCount 0
</Location>
<Location /pt/prefer>
    ProcessingClients prefer
</Location>
<Location /pt/all>
    ProcessingClients all
</Location>
"""

SLOW = "?sleep=650&len=20"
UNKNOWN = ["python-requests/2.28.1", "Python-urllib/3.11", "Mozilla/5.0",
           "libwww-perl/6.68", "okhttp/3.14.9", "Java/17.0.15", None]


def client_log(env, tid):
    """(processing-sent, processing-client) of the request."""
    return env.log_fields("clients_log", tid)[1:3]


class TestClientPolicy:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        env.install(CONF)

    def get(self, env, path, ua, **headers):
        if ua is not None:
            headers["User-Agent"] = ua
        else:
            headers["User-Agent"] = ""
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        r = env.get(path + SLOW, headers=hdrs)
        assert r.status == 200 and len(r.body) == 20
        env.access_log(r.test_id)
        return r

    @pytest.mark.parametrize("ua", UNKNOWN, ids=range(len(UNKNOWN)))
    def test_unknown_clients_get_none(self, env, ua):
        r = self.get(env, "/pt", ua)
        assert r.count(102) == 0
        assert client_log(env, r.test_id) == ("-", "-")

    @pytest.mark.parametrize("ua,family", [
        ("curl/7.88.1", "curl"), ("Wget/1.21.3 (linux-gnu)", "wget")],
        ids=["curl", "wget"])
    def test_known_family_gets_102s(self, env, ua, family):
        r = self.get(env, "/pt", ua)
        assert r.count(102) >= 3
        assert client_log(env, r.test_id) == (str(r.count(102)), family)

    @pytest.mark.parametrize("ua,cap", [("Go-http-client/1.1", 5),
                                        ("Java-http-client/17.0.15", 8)],
                             ids=["go", "java"])
    def test_family_cap(self, env, ua, cap):
        r = env.get("/pt?sleep=1500&len=20", headers={"User-Agent": ua})
        assert r.count(102) == cap

    def test_no_builtin_cap_with_all(self, env):
        # "all" is the behaviour before the client policy: the
        # administrator caps clients (processing-clients.conf)
        r = env.get("/pt/all?sleep=1500&len=20",
                    headers={"User-Agent": "Go-http-client/1.1"})
        assert r.count(102) >= 8

    def test_family_cap_lowered_by_env(self, env):
        r = self.get(env, "/pt", "Go-http-client/1.1", X_Cap="2")
        assert r.count(102) == 2

    def test_prefer_asks(self, env):
        r = self.get(env, "/pt", "python-requests/2.28.1",
                     Prefer="respond-async, processing")
        assert r.count(102) >= 3
        assert r.header("Preference-Applied") == "processing"

    def test_force_processing_allows(self, env):
        r = self.get(env, "/pt", "my-app/1.0", X_Allow="1")
        assert r.count(102) >= 3
        assert r.header("Preference-Applied") is None

    @pytest.mark.parametrize("ua,extra", [
        ("curl/7.88.1", {}), ("my-app/1.0", {"X_Allow": "1"}),
        ("my-app/1.0", {"Prefer": "processing"})],
        ids=["family", "force", "prefer"])
    def test_no_processing_wins(self, env, ua, extra):
        r = self.get(env, "/pt", ua, X_Deny="1", **extra)
        assert r.count(102) == 0

    def test_prefer_policy(self, env):
        path = "/pt/prefer"
        assert self.get(env, path, "curl/7.88.1").count(102) == 0
        assert self.get(env, path, "my-app/1.0", X_Allow="1").count(102) == 0
        assert self.get(env, path, "curl/7.88.1",
                        Prefer="processing").count(102) >= 3

    @pytest.mark.parametrize("ua", UNKNOWN, ids=range(len(UNKNOWN)))
    def test_all_policy(self, env, ua):
        assert self.get(env, "/pt/all", ua).count(102) >= 3


def test_bad_value(env):
    rc, out = env.configtest("ProcessingClients everyone\n")
    assert rc != 0
    assert "ProcessingClients" in out and "everyone" in out
    assert "known, prefer or all" in out
