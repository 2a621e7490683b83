"""WebDAV (mod_dav_fs) on a collection of 20,000 files: COPY, MOVE and
DELETE take long enough for 102s, answer with the right status, and leave
the trees as they should be.

Measured on the 2-core test machine: COPY about 1.2 s, DELETE about 0.6 s,
MOVE (a rename, plus mod_dav's lock check over the whole tree) only about
0.2 s; so /dav/ uses ProcessingDelay 50ms with the 100 ms interval, and
MOVE is expected to see at least one 102 as long as it takes over 50 ms."""

import os
import re
import time

import pytest

DIRS = 20
FILES = 1000

CONF = """
DavDepthInfinity On
<Location /dav/>
    Dav On
    Processing On
    ProcessingInterval 100ms
    ProcessingDelay 50ms
    ProcessingMaxCount 0
</Location>
"""


def make_tree(top):
    os.mkdir(top)
    for d in range(DIRS):
        dd = os.path.join(top, f"d{d:02d}")
        os.mkdir(dd)
        for f in range(FILES):
            with open(os.path.join(dd, f"f{f:04d}"), "w") as fh:
                fh.write(f"{d}/{f}\n")


def snapshot(top):
    """{relative path: content} of every file below top."""
    out = {}
    for dirpath, _, files in os.walk(top):
        for n in files:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, top)] = fh.read()
    return out


@pytest.mark.parametrize("davmpm", ["event", "prefork"], scope="class")
class TestDav:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env, davmpm):
        env.install(CONF, mpm=davmpm)
        top = os.path.join(env.dav_dir, f"src-{davmpm}")
        t = time.monotonic()
        make_tree(top)
        env.chown_www(top, recursive=True)
        print(f"\n{DIRS * FILES} files made in {time.monotonic() - t:.2f}s")
        type(self).expected = snapshot(top)
        assert len(self.expected) == DIRS * FILES

    def url(self, env, path):
        return f"http://127.0.0.1:{env.port}{path}"

    def run(self, env, method, path, headers=None):
        t = time.monotonic()
        # generous: on a loaded machine COPY has taken over 15 s
        r = env.request(method, path, headers=headers or {}, timeout=180)
        took = time.monotonic() - t
        print(f"{method} {path}: {r.status} in {took:.2f}s, "
              f"{r.count(102)} 102s")
        assert [i.status for i in r.interims] == [102] * len(r.interims)
        assert env.access_log(r.test_id)["sent"] == r.count(102)
        return r, took

    def test_1_copy(self, env, davmpm):
        r, took = self.run(env, "COPY", f"/dav/src-{davmpm}/", {
            "Destination": self.url(env, f"/dav/copy-{davmpm}/"),
            "Depth": "infinity"})
        assert r.status == 201, r.body
        assert r.count(102) >= 1, f"COPY took {took:.2f}s"
        assert snapshot(os.path.join(env.dav_dir, f"copy-{davmpm}")) \
            == self.expected
        assert snapshot(os.path.join(env.dav_dir, f"src-{davmpm}")) \
            == self.expected

    def test_2_move(self, env, davmpm):
        r, took = self.run(env, "MOVE", f"/dav/copy-{davmpm}/", {
            "Destination": self.url(env, f"/dav/moved-{davmpm}/")})
        assert r.status == 201, r.body
        assert r.count(102) >= 1, f"MOVE took {took:.2f}s"
        assert not os.path.exists(os.path.join(env.dav_dir,
                                               f"copy-{davmpm}"))
        assert snapshot(os.path.join(env.dav_dir, f"moved-{davmpm}")) \
            == self.expected

    def test_3_propfind_depth_infinity(self, env, davmpm):
        # mod_dav streams the multistatus while it walks: whatever number
        # of 102s came first, the 207 body must be whole and well formed
        r, _ = self.run(env, "PROPFIND", f"/dav/moved-{davmpm}/", {
            "Depth": "infinity"})
        assert r.status == 207
        body = r.body.decode()
        assert body.rstrip().endswith("</D:multistatus>")
        assert len(re.findall(r"<D:response", body)) == \
            1 + DIRS + DIRS * FILES
        assert "HTTP/1.1 102" not in body

    def test_4_delete(self, env, davmpm):
        r, took = self.run(env, "DELETE", f"/dav/moved-{davmpm}/")
        assert r.status == 204 and r.body == b""
        assert r.count(102) >= 1, f"DELETE took {took:.2f}s"
        assert not os.path.exists(os.path.join(env.dav_dir,
                                               f"moved-{davmpm}"))
        # the source is untouched
        assert snapshot(os.path.join(env.dav_dir, f"src-{davmpm}")) \
            == self.expected

    def test_5_small_requests_get_none(self, env, davmpm):
        body = b"x" * 1000
        r, _ = self.run(env, "PUT", f"/dav/small-{davmpm}.txt")
        assert r.status in (201, 204)
        r = env.request("PUT", f"/dav/small-{davmpm}.txt", body=body)
        assert r.status in (201, 204) and r.interims == []
        r = env.get(f"/dav/small-{davmpm}.txt")
        assert r.status == 200 and r.body == body and r.interims == []
