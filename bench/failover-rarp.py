#!/usr/bin/env python3
"""failover-rarp.py MAC [IFACE]: the arrival of every RARP frame from MAC on
IFACE (default eth0), one line each: the wall-clock time in ns since the
epoch (the clock of `date +%s%N`). A replica that takes over the guest's
NIC announces its MAC with such frames (qemu_announce_self), so this is
when the clients' segment heard of the new leader. The first line,
"# listening", says the socket is bound. Runs until killed."""
import socket
import sys
import time

ETH_P_RARP = 0x8035

mac = bytes.fromhex(sys.argv[1].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_RARP))
s.bind((sys.argv[2] if len(sys.argv) > 2 else "eth0", ETH_P_RARP))
print("# listening", flush=True)
while True:
    frame = s.recv(2048)
    t = time.time_ns()
    if frame[6:12] == mac:
        print(t, flush=True)
