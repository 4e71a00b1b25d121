#!/usr/bin/env python3
"""Round trips of query-plover on several QEMUs while a full syncvm runs.

usage: qmp-latency.py --p99-ms MS --max-ms MS --min-samples N
                      --full-count K --ready FILE SOCKET...

Connects to every QMP socket, creates FILE once each has answered, then
asks each in turn for query-plover until a leader reports K completed
full syncvms. The window measured runs from the first reply that shows a
full syncvm in flight (the source's full-progress) to that end. Exits 1
if the window holds fewer than N replies given while one was, if the 99th percentile of
the replies in the window took longer than --p99-ms, or any one longer
than --max-ms; prints the figures, and the slowest replies with their
times, either way.

A single reply is a poor measure of the main loop on a small shared host:
the host itself sometimes runs nothing of ours for about 100 ms (perf sched
showed a kernel thread, rcu_preempt, waiting 98 ms for a CPU beside such a
reply). The percentile, and the replicas' own count of how long the syncvm
held QEMU's lock (query-plover's bql-hold-max-us), measure the main loop.
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
    ap.add_argument("--p99-ms", type=float, required=True)
    ap.add_argument("--max-ms", type=float, required=True)
    ap.add_argument("--min-samples", type=int, required=True)
    ap.add_argument("--full-count", type=int, required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("sockets", nargs="+")
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout
    conns = [Qmp(p, deadline) for p in a.sockets]
    samples = []            # (t, socket index, ms, full syncvm shown, wall clock)
    done = False
    while not done:
        if time.monotonic() > deadline:
            print("qmp-latency: no leader completed full syncvm %d in time"
                  % a.full_count)
            return 1
        for k, q in enumerate(conns):
            t0 = time.monotonic()
            wall = time.time()
            i = q.call("query-plover")
            ms = (time.monotonic() - t0) * 1000
            sv = i.get("syncvm", {})
            samples.append((t0, k, ms, "full-progress" in sv, wall))
            if i.get("role") == "leader" and sv.get("full-count", 0) >= a.full_count:
                done = True
        if not os.path.exists(a.ready):
            open(a.ready, "w").close()
        time.sleep(0.001)
    start = next((s[0] for s in samples if s[3]), None)
    window = [s for s in samples if start is not None and s[0] >= start]
    showing = [s for s in window if s[3]]
    lat = sorted(s[2] for s in window) or [0]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    worst = max(window, key=lambda s: s[2]) if window else None
    print("figure: query-plover during the full syncvm: %d replies (%d of them "
          "showing it), p50 %.1f ms, p99 %.1f ms, max %.1f ms%s" % (
              len(window), len(showing), lat[len(lat) // 2], p99, lat[-1],
              " (socket %d)" % worst[1] if worst else ""))
    for s in sorted(window, key=lambda s: -s[2])[:3]:
        print("figure: slow reply: socket %d at %.3f (+%.3f s in the window): %.1f ms"
              % (s[1], s[4], s[0] - start, s[2]))
    if len(showing) < a.min_samples:
        print("qmp-latency: only %d replies showed the full syncvm" % len(showing))
        return 1
    if p99 > a.p99_ms:
        print("qmp-latency: the 99th percentile took %.1f ms (limit %.0f ms)"
              % (p99, a.p99_ms))
        return 1
    if lat[-1] > a.max_ms:
        print("qmp-latency: a reply took %.1f ms (limit %.0f ms)" % (lat[-1], a.max_ms))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
