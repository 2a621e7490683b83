"""Who really receives the 102: the front, the whole 1xx stream, the
request flow, the borrowed User-Agent (ProcessingClients known, the
default, with only 'Processing On').

Driven with the suite's strict client and the headers each case shows;
test_017_fronts.py puts real fronts and clients in front of the module.

Timing: delay = interval = 100 ms, the handler sleeps 650 ms after the
body: an armed request gets about 6 102s (at least 2 on a busy machine);
with a cap, exactly the cap (the handler runs long enough for 8)."""

import pytest

CONF = """
LogFormat "%{X-Test-Id}i %>s %{processing-sent}n %{processing-client}n" rl
CustomLog "logs/recipient_log" rl
<Location /pt>
    Processing On
    ProcessingInterval 100ms
    ProcessingMaxCount 0
</Location>
"""

SLOW = "/pt?sleep=650&len=20"
LONG = "/pt?sleep=1500&len=20"   # longer than 9 102s
CURL = "curl/7.88.1"
GO = "Go-http-client/1.1"
JAVA = "Java-http-client/17.0.15"
FIREFOX = ("Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 "
           "Firefox/115.0")
CHROMIUM = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, "
            "like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36")
# What nginx's usual proxy configuration adds (X-Real-IP and friends),
# what Apache's mod_proxy_http adds by default, what Varnish adds.
NGINX = {"X-Real-IP": "192.0.2.7", "X-Forwarded-For": "192.0.2.7",
         "X-Forwarded-Proto": "http"}
MOD_PROXY = {"X-Forwarded-For": "192.0.2.7",
             "X-Forwarded-Host": "www.example.org",
             "X-Forwarded-Server": "www.example.org"}
VARNISH = {"X-Forwarded-For": "192.0.2.7", "X-Varnish": "32770",
           "Via": "1.1 varnish (Varnish/7.1)"}


def recipient_log(env, tid):
    """(processing-sent, processing-client) of the request."""
    return env.log_fields("recipient_log", tid)[1:3]


def get(env, ua, target=SLOW, **headers):
    headers["User-Agent"] = ua
    r = env.get(target, headers=headers)
    assert r.status == 200 and len(r.body) == 20
    return r


def upload(env, ua, method="PUT", target=SLOW, expect_100=True, **headers):
    """A request body sent after the 100 Continue (as the client waits for
    it); the handler reads it, then sleeps."""
    headers["User-Agent"] = ua
    headers["X-Test-Id"] = env.new_id()
    body = bytes(range(256)) * 8
    with env.connect() as c:
        c.request(method, target + "&read=1", headers=headers, body=body,
                  expect_100=expect_100, close=True)
        r = c.read_response()
        c.expect_eof()
    assert r.status == 200 and r.header("X-Received") == str(len(body))
    r.test_id = headers["X-Test-Id"]
    return r


def interim_statuses(r):
    return [i.status for i in r.interims]


class TestFront:
    """Nothing declared: a front shows by its headers."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        env.install(CONF)

    def test_direct_known_client(self, env):
        r = get(env, CURL)
        assert r.count(102) >= 2
        assert recipient_log(env, r.test_id) == (str(r.count(102)), "curl")

    @pytest.mark.parametrize("name", [
        "Via", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host",
        "X-Forwarded-Proto", "X-Real-IP", "CDN-Loop"])
    def test_unknown_front_gets_none(self, env, name):
        r = get(env, CURL, **{name: "x"})
        assert r.count(102) == 0
        assert recipient_log(env, r.test_id)[0] == "-"

    def test_nginx_headers_get_none(self, env):
        assert get(env, CURL, **NGINX).count(102) == 0

    def test_prefer_behind_unknown_front_gets_none(self, env):
        r = get(env, "my-app/1.0", Prefer="processing", **NGINX)
        assert r.count(102) == 0

    def test_varnish_gets_none(self, env):
        assert get(env, CURL, **VARNISH).count(102) == 0
        assert get(env, CURL, **{"X-Varnish": "5"}).count(102) == 0

    def test_mod_proxy_front_recognised(self, env):
        r = get(env, CURL, **MOD_PROXY)
        assert r.count(102) >= 2

    def test_mod_proxy_front_cap(self, env):
        # mod_proxy_http answers 502 at a backend's 10th interim response
        assert get(env, CURL, LONG, **MOD_PROXY).count(102) == 9
        r = upload(env, CURL, target=LONG, **MOD_PROXY)
        assert interim_statuses(r) == [100] + [102] * 8

    def test_two_mod_proxy_fronts_recognised(self, env):
        h = {"X-Forwarded-For": "192.0.2.7, 10.0.0.1",
             "X-Forwarded-Host": "a, b", "X-Forwarded-Server": "a, b"}
        assert get(env, CURL, **h).count(102) >= 2

    @pytest.mark.parametrize("extra", [
        {"X-Real-IP": "192.0.2.7"}, {"Via": "1.1 proxy"},
        {"X-Forwarded-For": "192.0.2.7, 10.0.0.1"}],
        ids=["real-ip", "via", "longer-xff"])
    def test_another_front_before_mod_proxy_gets_none(self, env, extra):
        assert get(env, CURL, **{**MOD_PROXY, **extra}).count(102) == 0

    def test_unknown_client_behind_mod_proxy_gets_none(self, env):
        assert get(env, "python-requests/2.28.1",
                   **MOD_PROXY).count(102) == 0

    def test_capped_client_behind_mod_proxy_gets_none(self, env):
        # the front may send its own 1xx, or forward a backend's: the
        # total Go sees cannot be counted here
        assert get(env, GO, LONG, **MOD_PROXY).count(102) == 0

    def test_force_processing_skips_the_front_test(self, env):
        r = get(env, "mod_processing-test/1", **NGINX)
        assert r.count(102) >= 2


class TestDeclaredFront:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        env.install(CONF + "ProcessingTrustedProxy 10.1.2.3 127.0.0.0/8\n")

    def test_declared_front_passes(self, env):
        assert get(env, CURL, **NGINX).count(102) >= 2

    def test_declared_front_client_must_qualify(self, env):
        assert get(env, "python-requests/2.28.1", **NGINX).count(102) == 0

    def test_varnish_even_declared_gets_none(self, env):
        assert get(env, CURL, **VARNISH).count(102) == 0

    def test_traffic_server_even_declared_gets_none(self, env):
        via = "http/1.1 traffic_server[0a1b] (ApacheTrafficServer/9.2.9)"
        assert get(env, CURL, Via=via,
                   **{"X-Forwarded-For": "192.0.2.7"}).count(102) == 0
        assert get(env, CURL, Via="1.1 vm (squid/5.7)").count(102) >= 2

    def test_capped_client_behind_declared_front_gets_none(self, env):
        assert get(env, GO, LONG, **NGINX).count(102) == 0


class TestStream:
    """The 1xx stream and the request flow."""

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        env.install(CONF)

    def test_go_cap_is_on_all_1xx(self, env):
        r = upload(env, GO, target=LONG)
        assert interim_statuses(r) == [100] + [102] * 4
        assert recipient_log(env, r.test_id) == ("4", "go")

    def test_go_cap_without_expect(self, env):
        r = upload(env, GO, target=LONG, expect_100=False)
        assert interim_statuses(r) == [102] * 5

    @pytest.mark.parametrize("method", ["PUT", "POST"])
    def test_java_gets_none_after_continue(self, env, method):
        r = upload(env, JAVA, method=method)
        assert interim_statuses(r) == [100]

    def test_java_get_keeps_its_cap(self, env):
        assert get(env, JAVA, LONG).count(102) == 8

    def test_java_with_prefer_after_continue(self, env):
        # the client says it takes them: its own word wins over the flow
        r = upload(env, JAVA, Prefer="processing")
        assert r.count(102) >= 2

    def test_curl_upload_with_expect(self, env):
        r = upload(env, CURL)
        assert interim_statuses(r)[0] == 100 and r.count(102) >= 2


class TestBorrowedUserAgent:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        env.install(CONF)

    @pytest.mark.parametrize("ua", [FIREFOX, CHROMIUM],
                             ids=["firefox", "chromium"])
    def test_browser_ua_alone_gets_none(self, env, ua):
        r = get(env, ua)
        assert r.count(102) == 0
        assert recipient_log(env, r.test_id) == ("-", "-")

    @pytest.mark.parametrize("ua,family", [(FIREFOX, "firefox"),
                                           (CHROMIUM, "chromium")],
                             ids=["firefox", "chromium"])
    def test_browser_with_sec_fetch_gets_102s(self, env, ua, family):
        r = get(env, ua, **{"Sec-Fetch-Mode": "navigate",
                            "Sec-Fetch-Dest": "document"})
        assert r.count(102) >= 2
        assert recipient_log(env, r.test_id)[1] == family


@pytest.mark.parametrize("value", ["example.org", "10", "1.2.3.4/99",
                                   "::1/200", "-"])
def test_bad_trusted_proxy(env, value):
    rc, out = env.configtest(f"ProcessingTrustedProxy {value}\n")
    assert rc != 0
    assert "ProcessingTrustedProxy" in out and value in out
    assert "IP address or address/prefix" in out


def test_trusted_proxy_not_in_directory(env):
    rc, out = env.configtest("<Location /x>\nProcessingTrustedProxy "
                             "10.0.0.1\n</Location>\n")
    assert rc != 0 and "ProcessingTrustedProxy" in out
