#!/usr/bin/python3
"""Memory: the per-connection record and what else the module keeps.

Sizes are read from the module's debug information with gdb (apxs builds
with -g): sizeof(proc_conn), the record each connection gets on its first
armed request (apr_pcalloc from c->pool, reused by every later request),
the gate filter (one ap_filter_t per connection, two with TLS), the
deadline heap's entry (a due time and a pointer) per armed request, and
the layout of the record.  Whether a tick allocates is measured by tickcost.py
(malloc/calloc/realloc calls on the watchdog thread).
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402


def gdb(so, *exprs):
    cmd = ["gdb", "-batch", "-nx"]
    for e in exprs:
        cmd += ["-ex", e]
    return subprocess.run(cmd + [so], capture_output=True, text=True).stdout


def main():
    so = bl.build_module()
    out = gdb(so, "print sizeof(proc_conn)", "print sizeof(ap_filter_t)",
              "print sizeof(((proc_conn *)0)->inline_buf)",
              "print sizeof(proc_watchdog)", "print sizeof(proc_wd.heap[0])")
    vals = [int(v) for v in re.findall(r"^\$\d+ = (\d+)", out, re.M)]
    if len(vals) != 5:
        sys.exit("gdb could not read the sizes:\n" + out)
    layout = gdb(so, "ptype /o proc_conn")
    res = {"module": bl.module_identity(so),
           "proc_conn_bytes": vals[0], "ap_filter_t_bytes": vals[1],
           "pending_buffer_bytes": vals[2], "proc_watchdog_bytes": vals[3],
           "per_connection_plain_bytes": vals[0] + vals[1],
           "per_connection_tls_bytes": vals[0] + 2 * vals[1],
           "heap_bytes_per_armed_request": vals[4],
           "layout": layout.strip().splitlines()}
    bl.log(f"proc_conn {vals[0]} bytes (pending buffer {vals[2]}), gate "
           f"filter {vals[1]}: {res['per_connection_plain_bytes']} bytes per "
           f"plain connection, {res['per_connection_tls_bytes']} with TLS")
    bl.save_json("memory.json", res)


if __name__ == "__main__":
    main()
