#!/usr/bin/python3
"""A proxied backend that dies, for test_faults.py.

    backend.py PORT MODE WAIT_MS

Accepts connections on 127.0.0.1:PORT (prints "ready" once listening),
reads one request head per connection, waits WAIT_MS, then by MODE:

  close    closes the connection without a byte of response
  reset    resets it (SO_LINGER 0)
  partial  sends half a status line and header, then closes
  exit     the whole process exits (os._exit) without answering
  hang     never answers (the test kills the process with SIGKILL)

Bounded: exits on its own after 60 s.
"""

import os
import socket
import struct
import sys
import threading
import time


def serve(conn, mode, wait):
    conn.settimeout(10)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece
        if mode == "hang":
            time.sleep(60)
            return
        time.sleep(wait)
        if mode == "exit":
            os._exit(0)
        if mode == "partial":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
        if mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
    except OSError:
        pass
    finally:
        conn.close()


def main():
    port, mode, wait = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) / 1e3
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    srv.settimeout(1.0)
    print("ready", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn, mode, wait),
                         daemon=True).start()


if __name__ == "__main__":
    main()
