#!/usr/bin/python3
"""The kernel's floor on this machine: CPU time of one non-blocking 28-byte
send() on a loopback TCP connection (1,000 connections, 10 rounds) and of one
timed sleep and wake-up (1 ms nanosleep), measured by bench/sendcost.c with
CLOCK_THREAD_CPUTIME_ID.  The watchdog pays one send per 102 and one wake per
tick, so these bound what bench/scale.py can show.  Three runs; the median
is kept."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl                                    # noqa: E402


def main():
    exe = bl.build_c("sendcost")
    bl.raise_nofile()
    sends, wakes = [], []
    for _ in range(3):
        out = subprocess.run([exe, "1000", "10"], capture_output=True,
                             text=True, check=True).stdout
        sends.append(float(re.search(r"([\d.]+) us CPU each", out).group(1)))
        wakes.append(float(re.search(r"([\d.]+) us CPU per wake",
                                     out).group(1)))
    res = {"machine": bl.machine_info(), "send_us": sends, "wake_us": wakes,
           "send_us_median": bl.median(sends),
           "wake_us_median": bl.median(wakes)}
    bl.log(f"send {res['send_us_median']} us, wake {res['wake_us_median']} us"
           " (CPU, median of 3)")
    bl.save_json("floor.json", res)


if __name__ == "__main__":
    main()
