#!/usr/bin/env python3
"""Sends a recorded ClientHello with a given IP TTL on an established TCP
connection (handshake at full TTL) and prints what came back within the wait:
"answer <hex of the first 64 KiB>" or "silence".

usage: ttl_probe.py HOST PORT TTL CLIENTHELLO.hex [WAIT_SECONDS]
"""
import select, socket, sys, time

host, port, ttl, hello_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
wait = float(sys.argv[5]) if len(sys.argv) > 5 else 1.5
hello = bytes.fromhex("".join(open(hello_file).read().split()))
s = socket.create_connection((host, port), timeout=5)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)  # only later segments carry it
s.sendall(hello)
got = b""
deadline = time.time() + wait
while time.time() < deadline and len(got) < 65536:
    r, _, _ = select.select([s], [], [], max(0.0, deadline - time.time()))
    if not r:
        break
    try:
        chunk = s.recv(65536)
    except OSError:  # a soft ICMP error can surface here
        continue
    if not chunk:
        break
    got += chunk
print(("answer " + got.hex()) if got else "silence")
