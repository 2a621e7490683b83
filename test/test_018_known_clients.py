"""The module's known-client families against the measurements.

compat/known-clients.json is what `make compat` measured (its families,
with the User-Agents of the clients that handled 102s, their caps and the
request flows they handle; and the clients that broke). This test sends
each measured User-Agent to the module under the default policy
(ProcessingClients known) and reads what the module decided from the
`processing-client` note and the 102s on the wire:

- every measured User-Agent of a family gets that family's note (a
  browser's only with the Sec-Fetch-Mode header browsers send);
- no User-Agent of a client measured to break gets a family;
- a capped family gets exactly its cap on a long request, one less after
  a 100 Continue;
- an Expect: 100-continue upload gets 102s only where the family was
  measured to handle them after the 100 Continue."""

import json
import re
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
KNOWN = json.load(open(os.path.join(HERE, "..", "compat",
                                    "known-clients.json")))
FAMILIES = KNOWN["families"]
BROKEN = KNOWN["broken"]

CONF = """
LogFormat "%{X-Test-Id}i %>s %{processing-sent}n %{processing-client}n" kl
CustomLog "logs/known_log" kl
<Location /pt>
    Processing On
    ProcessingInterval 100ms
    ProcessingMaxCount 0
</Location>
"""


def is_browser(family):
    return family["browser"]


def expect_ok(family):
    """Measured to take 102s after a 100 Continue: an upload flow sent
    Expect and came out right, and none broke."""
    flows = [v for k, v in family["flows"].items() if k != "GET"]
    return (any(v.startswith("ok") and "no Expect sent" not in v
                for v in flows)
            and not any(v.startswith("breaks") for v in flows))


def note(env, tid):
    """The request's processing-client note ("-": no family)."""
    return env.log_fields("known_log", tid)[2]


def fast(env, ua, sec_fetch):
    headers = {"User-Agent": ua}
    if sec_fetch:
        headers["Sec-Fetch-Mode"] = "navigate"
    r = env.get("/pt?len=10", headers=headers)
    assert r.status == 200
    return note(env, r.test_id)


UAS = [(f["name"], ua) for f in FAMILIES for ua in f["user_agents"]]


@pytest.fixture(scope="module", autouse=True)
def _conf(env):
    env.install(CONF)


def test_measurements_present():
    assert len(FAMILIES) >= 10 and len(BROKEN) >= 10
    assert all({"GET", "PUT+Expect", "POST+Expect"} <= set(f["flows"])
               for f in FAMILIES)


@pytest.mark.parametrize("name,ua", UAS, ids=[n for n, _ in UAS])
def test_measured_user_agent_gets_its_family(env, name, ua):
    family = next(f for f in FAMILIES if f["name"] == name)
    assert fast(env, ua, sec_fetch=True) == name
    assert fast(env, ua, sec_fetch=False) == ("-" if is_browser(family)
                                              else name)


@pytest.mark.parametrize("row", BROKEN, ids=[re.sub(r"\W+", "-", b["client"])
                                             for b in BROKEN])
def test_broken_client_gets_no_family(env, row):
    ua = row["user_agent"] or ""
    assert fast(env, ua, sec_fetch=True) == "-"


CAPPED = [f for f in FAMILIES if 0 < f["cap"] <= 10]


@pytest.mark.parametrize("family", CAPPED, ids=[f["name"] for f in CAPPED])
def test_cap(env, family):
    ua = family["user_agents"][0]
    r = env.get(f"/pt?sleep={(family['cap'] + 4) * 100 + 600}&len=10",
                headers={"User-Agent": ua})
    assert r.count(102) == family["cap"]


def upload(env, ua, sec_fetch):
    headers = {"User-Agent": ua, "X-Test-Id": env.new_id()}
    if sec_fetch:
        headers["Sec-Fetch-Mode"] = "cors"
    with env.connect() as c:
        c.request("PUT", "/pt?sleep=650&len=10&read=1", headers=headers,
                  body=b"x" * 1000, expect_100=True, close=True)
        r = c.read_response()
        c.expect_eof()
    assert r.status == 200
    assert [i.status for i in r.interims][:1] == [100]
    return r


@pytest.mark.parametrize("family", FAMILIES, ids=[f["name"] for f in FAMILIES])
def test_expect_flow(env, family):
    r = upload(env, family["user_agents"][0], is_browser(family))
    if expect_ok(family):
        assert r.count(102) >= 2
    else:
        assert r.count(102) == 0, family["flows"]
