#!/usr/bin/env python3
"""Round trips of query-plover on several QEMUs while a syncvm runs.

usage: qmp-latency.py --max-ms MS --min-samples N SOCKET...

Connects to every QMP socket (waiting for it), then asks each in turn for
query-plover until a leader reports its first completed full syncvm.
The window measured runs from the first reply that shows a syncvm in
flight to that end. Exits 1 if the window holds fewer than N replies
given while a syncvm was in flight, or if any reply in the window took
longer than MS; prints the figures either way.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "scripts"))
from plover_qmp import Qmp  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-ms", type=float, required=True)
    ap.add_argument("--min-samples", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("sockets", nargs="+")
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout
    conns = [Qmp(p, deadline) for p in a.sockets]
    samples = []            # (t, socket index, ms, in flight)
    done = False
    while not done:
        if time.monotonic() > deadline:
            print("qmp-latency: no leader completed a full syncvm in time")
            return 1
        for k, q in enumerate(conns):
            t0 = time.monotonic()
            i = q.call("query-plover")
            ms = (time.monotonic() - t0) * 1000
            sv = i.get("syncvm", {})
            samples.append((t0, k, ms, bool(sv.get("in-flight"))))
            if i.get("role") == "leader" and sv.get("full-count", 0) >= 1:
                done = True
        time.sleep(0.005)
    start = next((s[0] for s in samples if s[3]), None)
    window = [s for s in samples if start is not None and s[0] >= start]
    in_flight = [s for s in window if s[3]]
    lat = sorted(s[2] for s in window) or [0]
    worst = max(window, key=lambda s: s[2]) if window else None
    print("figure: query-plover during the full syncvm: %d replies (%d of them "
          "in flight), p50 %.1f ms, p99 %.1f ms, max %.1f ms%s" % (
              len(window), len(in_flight), lat[len(lat) // 2],
              lat[min(len(lat) - 1, int(len(lat) * 0.99))], lat[-1],
              " (socket %d)" % worst[1] if worst else ""))
    if len(in_flight) < a.min_samples:
        print("qmp-latency: only %d replies while a syncvm was in flight" % len(in_flight))
        return 1
    if lat[-1] > a.max_ms:
        print("qmp-latency: a reply took %.1f ms (limit %.0f ms)" % (lat[-1], a.max_ms))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
