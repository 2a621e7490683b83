"""Where the directives work: .htaccess (AllowOverride FileInfo), <If>,
<Files>, <VirtualHost>, and inheritance between <Directory> and
<Location>. Each slow request sleeps 700 ms; with a 200 ms interval an armed
one sees about 3 102s, with the default 20 s none."""

import os

import pytest

from proc.http1 import pattern

CONF = """
<Directory "{root}/htdocs/ht">
    AllowOverride FileInfo
</Directory>
<Directory "{root}/htdocs/ht-nofileinfo">
    AllowOverride AuthConfig
    SetHandler proc-test
</Directory>

<Location /pif>
    SetHandler proc-test
    ProcessingInterval 200ms
    ProcessingMaxCount 0
    <If "%{{HTTP:X-Want-Processing}} == 'yes'">
        Processing On
    </If>
</Location>

<Directory "{root}/htdocs/files">
    SetHandler proc-test
    <Files "slow.*">
        Processing On
        ProcessingInterval 200ms
    </Files>
</Directory>

# the interval comes from <Directory>, "On" from <Location>
<Directory "{root}/htdocs/inh">
    SetHandler proc-test
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</Directory>
<Location /inh>
    Processing On
</Location>

<VirtualHost 127.0.0.1:{port}>
    ServerName 127.0.0.1
</VirtualHost>
<VirtualHost 127.0.0.1:{port}>
    ServerName other.test
    Processing On
    ProcessingInterval 200ms
    ProcessingMaxCount 0
</VirtualHost>
"""

HTACCESS = """SetHandler proc-test
Processing On
ProcessingInterval 200ms
ProcessingMaxCount 0
"""


class TestContexts:

    @pytest.fixture(autouse=True, scope="class")
    def _conf(self, env):
        for d in ("ht", "ht-nofileinfo", "files", "inh"):
            os.makedirs(env.path("htdocs", d), exist_ok=True)
        with open(env.path("htdocs", "ht", ".htaccess"), "w") as f:
            f.write(HTACCESS)
        with open(env.path("htdocs", "ht-nofileinfo", ".htaccess"),
                  "w") as f:
            f.write("Processing On\n")
        env.install(CONF.format(root=env.root, port=env.port), mpm="event")

    def armed(self, env, r):
        assert r.status == 200 and r.body == pattern(64)
        assert 2 <= r.count(102) <= 6, r.interims
        assert env.access_log(r.test_id)["sent"] == r.count(102)

    def not_armed(self, env, r, sent=None):
        assert r.status == 200 and r.body == pattern(64)
        assert r.interims == []
        assert env.access_log(r.test_id)["sent"] == sent

    def test_htaccess_fileinfo(self, env):
        self.armed(env, env.get("/ht/anything?sleep=700"))

    def test_htaccess_without_fileinfo(self, env):
        # httpd refuses the .htaccess: 500, and says why in the error log
        env.log.ignore(r"\.htaccess: Processing not allowed here")
        r = env.get("/ht-nofileinfo/x?sleep=700")
        assert r.status == 500 and r.interims == []
        assert env.log.scan(r"\.htaccess: Processing not allowed here")

    def test_if(self, env):
        self.armed(env, env.get("/pif?sleep=700",
                                headers={"X-Want-Processing": "yes"}))
        self.not_armed(env, env.get("/pif?sleep=700",
                                    headers={"X-Want-Processing": "no"}))
        self.not_armed(env, env.get("/pif?sleep=700"))

    def test_files(self, env):
        # <Files> sets On and the interval; the default MaxCount 5 applies
        self.armed(env, env.get("/files/slow.x?sleep=700"))
        self.not_armed(env, env.get("/files/fast.x?sleep=700"))

    def test_directory_and_location_merge(self, env):
        self.armed(env, env.get("/inh/x?sleep=700"))

    def test_virtual_host(self, env):
        self.armed(env, env.get("/pt?sleep=700",
                                headers={"Host": "other.test"}))
        self.not_armed(env, env.get("/pt?sleep=700",
                                    headers={"Host": "127.0.0.1"}))
