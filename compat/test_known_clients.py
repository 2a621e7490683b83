"""The module's built-in known-client list comes from measurements.

Reads the table between "BEGIN known clients" and "END known clients" in
mod_processing.c and the project's own compatibility results (the "rows" of
compat/known-clients.json, the compact summary compat/known_clients.py
writes at the end of `make -f Makefile.apxs compat`), and
checks, with the module's own matching rule (prefix, optional contained
token, or the exact string):

- every entry matches the User-Agent of at least one measured client that
  handled 102s on a single request and on its keep-alive probe (where it
  has one), and its cap is what was measured;
- no client measured to break (with 102s sent to every client) matches any
  entry.

    /usr/bin/python3 -m pytest -q compat/test_known_clients.py
"""

import json
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "mod_processing.c"
RESULTS = HERE / "known-clients.json"


def c_string(s):
    return None if s == "NULL" else json.loads(s)


def known_table():
    text = SOURCE.read_text()
    body = text.split("/* BEGIN known clients */", 1)[1]
    body = body.split("/* END known clients */", 1)[0]
    entries = []
    # PROC_KNOWN("name", "prefix" "continued", NULL|"contains", exact, cap),
    for m in re.finditer(r'PROC_KNOWN\(\s*("(?:[^"\\]|\\.)*")\s*,\s*'
                         r'((?:"(?:[^"\\]|\\.)*"\s*)+)\s*,\s*'
                         r'(NULL|(?:"(?:[^"\\]|\\.)*"\s*)+)\s*,\s*'
                         r'(\d)\s*,\s*(\d+)\s*\)', body):
        def joined(group):
            if group == "NULL":
                return None
            return "".join(json.loads(p) for p in
                           re.findall(r'"(?:[^"\\]|\\.)*"', group))
        entries.append({"name": json.loads(m.group(1)),
                        "prefix": joined(m.group(2)),
                        "contains": joined(m.group(3)),
                        "exact": m.group(4) == "1",
                        "cap": int(m.group(5))})
    return entries


def matches(entry, ua):
    if ua is None:
        return False
    if entry["exact"]:
        return ua == entry["prefix"]
    return ua.startswith(entry["prefix"]) and (
        entry["contains"] is None or entry["contains"] in ua)


def client_rows():
    rows = json.loads(RESULTS.read_text()).get("rows") or []
    assert rows, "no client rows in compat/known-clients.json"
    return rows


def handled(row):
    """Handled 102s on one request and, where probed, on a kept-alive
    connection (with 102s sent to every client)."""
    return bool(row.get("ok")) and (not row.get("keepalive_probe")
                                    or bool(row.get("ka_ok")))


ENTRIES = known_table()


def test_table_parsed():
    text = SOURCE.read_text()
    block = text.split("/* BEGIN known clients */", 1)[1].split(
        "/* END known clients */", 1)[0]
    # every row of the C table was read (the sentinel aside)
    assert len(ENTRIES) == block.count("PROC_KNOWN(") and len(ENTRIES) >= 5


@pytest.mark.parametrize("entry", ENTRIES,
                         ids=[f'{e["name"]}:{e["prefix"]}' for e in ENTRIES])
def test_entry_is_measured(entry):
    rows = [r for r in client_rows() if matches(entry, r.get("user_agent"))]
    good = [r for r in rows if handled(r)]
    assert good, (f"no measured client that handles 102s matches "
                  f"{entry}: rows {[r['name'] for r in rows]}")
    for r in good:
        cap, maxn = r.get("cap"), r.get("maxn")
        if cap is not None and maxn and cap < maxn:
            # a limit was found: the entry keeps to it
            assert 1 <= entry["cap"] <= cap, (entry, r["name"], cap)
        else:
            # none found up to maxn: no cap, or one above what was searched
            assert entry["cap"] == 0 or entry["cap"] >= maxn, (entry, r)


def test_no_broken_client_matches():
    broken = [r for r in client_rows() if not handled(r)]
    assert broken, "no broken client in the results: nothing checked"
    bad = [(r["name"], r.get("user_agent"), e["name"])
           for r in broken for e in ENTRIES
           if matches(e, r.get("user_agent"))]
    assert not bad, bad


@pytest.mark.parametrize("ua", [
    "Mozilla/5.0",                                            # Qt5
    "Mozilla/5.0 (Unix; U; Linux 6.1) http/2.9.8 Tcl/8.6.13",  # Tcl http
    "Wget",                                                   # BusyBox
    "", "python-requests/2.28.1", "Go-http-client/2.0"])
def test_imitators_and_others_do_not_match(ua):
    assert not [e["name"] for e in ENTRIES if matches(e, ua)]
