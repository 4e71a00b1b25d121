#!/usr/bin/env python3
"""A stranger on the replica network: holds idle TCP connections to the
given ports and re-opens each one every INTERVAL seconds, sending nothing
(or, with --garbage, a few bytes that are no HELLO), for SECONDS seconds.
Connections refused (a listener not up yet) are retried at the next round.

    stranger.py SECONDS INTERVAL CONNS_PER_TARGET HOST:PORT...
Prints one closing line: 'stranger: rounds=N opened=N refused=N'.
"""
import signal
import socket
import sys
import time


def main():
    args = sys.argv[1:]
    garbage = "--garbage" in args
    args = [a for a in args if a != "--garbage"]
    seconds, interval, per = float(args[0]), float(args[1]), int(args[2])
    targets = []
    for t in args[3:]:
        host, port = t.rsplit(":", 1)
        targets.append((host, int(port)))
    held = {}
    opened = refused = rounds = 0
    end = [time.monotonic() + seconds]

    def stop(*_):
        end[0] = 0.0            # SIGTERM: finish the round, report, exit
    signal.signal(signal.SIGTERM, stop)
    while time.monotonic() < end[0]:
        rounds += 1
        for t in targets:
            for k in range(per):
                old = held.pop((t, k), None)
                if old:
                    old.close()
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(0.2)
                try:
                    s.connect(t)
                    if garbage:
                        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    held[(t, k)] = s
                    opened += 1
                except OSError:
                    s.close()
                    refused += 1
        time.sleep(max(0.0, min(interval, end[0] - time.monotonic())))
    for s in held.values():
        s.close()
    print(f"stranger: rounds={rounds} opened={opened} refused={refused}", flush=True)


if __name__ == "__main__":
    main()
