#!/usr/bin/env python3
"""soak-report.py FAULTS REPLIES: the soak's figures.

FAULTS has one line per fault: start and end (seconds since the epoch),
kind, target. REPLIES is kvctl's reply log (--reply-log): per request its
end in ns since the epoch, its latency in us, and 0 if it was answered.

A fault's service gap is the longest time without an answered request
that overlaps the fault or the 5 s after it: what the fault cost the
clients. Prints the faults by kind, the median and longest gap per kind,
and the longest gap of the run with the fault it followed.
"""
import statistics
import sys

AFTER_S = 5.0


def main():
    faults_path, replies_path = sys.argv[1:3]
    faults = []
    with open(faults_path) as f:
        for line in f:
            t0, t1, kind, who = line.split()
            faults.append((float(t0), float(t1), kind, who))
    ok = []
    with open(replies_path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            t, _us, st = line.split()
            if st == "0":
                ok.append(int(t) / 1e9)
    ok.sort()
    # Every interval between two consecutive answers, longest first.
    gaps = sorted(((b - a, a, b) for a, b in zip(ok, ok[1:])), reverse=True)

    def gap_of(t0, t1):
        hi = t1 + AFTER_S
        for g, a, b in gaps:
            if b >= t0 and a <= hi:
                return g
        return 0.0

    by_kind = {}
    worst = (0.0, None)
    for t0, t1, kind, who in faults:
        g = gap_of(t0, t1)
        by_kind.setdefault(kind, []).append(g)
        if g > worst[0]:
            worst = (g, (kind, who, t0 - faults[0][0]))
    print("figure: soak faults by kind (count, median gap s, longest gap s):")
    for kind in sorted(by_kind):
        gs = by_kind[kind]
        print(f"figure:   {kind:11s} {len(gs):4d} {statistics.median(gs):7.2f} "
              f"{max(gs):7.2f}")
    print(f"figure: soak faults: {len(faults)}; answered requests: {len(ok)}")
    if worst[1]:
        kind, who, at = worst[1]
        print(f"figure: longest service gap {worst[0]:.2f} s, after {kind} "
              f"of {who} at +{at:.0f} s")


if __name__ == "__main__":
    main()
