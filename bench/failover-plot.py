#!/usr/bin/env python3
"""failover-plot.py REPLIES OUT TITLE [LABEL=NS ...]: a timeline picture of
a fault under load.

REPLIES is a `kvctl load --reply-log` file (end time in ns, latency in us,
status per request). Writes OUT.dat (per 100 ms from the load's start:
answered requests per second, p99 latency in ms of the replies that ended
in it, requests given up and the longest wait among them), OUT.gp (a gnuplot script) and, with gnuplot,
OUT.svg: throughput above, p99 latency below, each LABEL=NS (a wall-clock
time in ns, as `date +%s%N` prints) a vertical line on both, labelled with
its time after the first mark. Prints one line: the picture's path and the
longest time without an answer, or why there is no picture."""
import math
import os
import shutil
import subprocess
import sys

BIN_S = 0.1


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    replies, out, title = sys.argv[1:4]
    marks = []
    for a in sys.argv[4:]:
        label, _, ns = a.rpartition("=")
        if label and ns.isdigit():
            marks.append((label, int(ns)))

    start_ns, recs = None, []
    try:
        with open(replies) as f:
            for line in f:
                if line.startswith("#"):
                    for word in line.split():
                        if word.startswith("start_ns="):
                            start_ns = int(word[9:])
                    continue
                t, us, st = line.split()
                recs.append((int(t), int(us), int(st)))
    except (OSError, ValueError) as e:
        print(f"no picture for {title}: {replies}: {e}")
        return
    if not recs:
        print(f"no picture for {title}: no requests in {replies}")
        return
    if start_ns is None:
        start_ns = recs[0][0]

    def sec(ns):
        return (ns - start_ns) / 1e9

    nbins = int(sec(recs[-1][0]) / BIN_S)   # whole bins only
    done = [0] * nbins
    gaveup = [0] * nbins
    gaveup_ms = [float("nan")] * nbins
    lat = [[] for _ in range(nbins)]
    last_ok, gap, gap_at = start_ns, 0, 0.0
    for t, us, st in recs:
        if st == 0 and t - last_ok > gap:
            gap, gap_at = t - last_ok, sec(last_ok)
        if st == 0:
            last_ok = max(last_ok, t)
        b = int(sec(t) / BIN_S)
        if b < 0 or b >= nbins:
            continue
        if st == 2:
            gaveup[b] += 1
            gaveup_ms[b] = max(us / 1000, 0 if gaveup[b] == 1 else gaveup_ms[b])
            continue
        lat[b].append(us)
        if st == 0:
            done[b] += 1

    with open(out + ".dat", "w") as f:
        f.write(f"# {title}\n# per {int(BIN_S * 1000)} ms from the load's start: "
                "bin centre (s), answered/s, p99 latency (ms; nan: no reply), "
                "requests given up, the longest wait of those (ms)\n")
        for b in range(nbins):
            ls = sorted(lat[b])
            p99 = ls[max(0, math.ceil(0.99 * len(ls)) - 1)] / 1000 if ls else float("nan")
            f.write(f"{(b + 0.5) * BIN_S:.2f} {done[b] / BIN_S:.0f} {p99:.3f} {gaveup[b]} {gaveup_ms[b]:.0f}\n")

    xmax = max([nbins * BIN_S] + [sec(ns) + 0.5 for _, ns in marks])
    t0 = marks[0][1] if marks else start_ns
    gp = [
        f'# {title}: from {replies} by bench/failover-plot.py; gnuplot redraws it',
        'set terminal svg size 1000,640 dynamic noenhanced font "sans,12" background "white"',
        f'set output "{out}.svg"',
        f'set xrange [0:{xmax:.2f}]',
        'set grid ytics lc rgb "#dddddd"',
        'set style textbox opaque noborder',
        'set lmargin 12',
        'set rmargin 4',
    ]
    for i, (label, ns) in enumerate(marks):
        x = sec(ns)
        dt = (ns - t0) / 1e6
        when = "" if i == 0 else (f" (+{dt:.0f} ms)" if abs(dt) < 10000 else f" (+{dt / 1000:.1f} s)")
        gp.append(f'set arrow {i + 1} from {x:.3f}, graph 0 to {x:.3f}, graph 1 nohead '
                  f'lc rgb "#aa3333" dt 2 lw 1.5')
        gp.append(f'set label {i + 1} "{label}{when}" at {x:.3f}, graph {0.95 - 0.075 * i:.3f} '
                  'offset 0.5,0 left front boxed textcolor rgb "#aa3333" font "sans,11"')
    gaveup_plot = (f', "{out}.dat" using 1:($5) with points pt 2 ps 1 lc rgb "#cc6600" '
                   f'title "requests given up ({sum(gaveup)}), after (ms)"'
                   if any(gaveup) else "")
    gp += [
        'set multiplot layout 2,1 title "' + title.replace('"', "'") +
        f'\\n{len(recs)} requests; longest time without an answer: {gap / 1e6:.0f} ms '
        f'from {gap_at:.2f} s" font "sans,13"',
        'set key bottom right opaque box',
        'set ylabel "answered requests per second"',
        'set format x ""',
        'set yrange [0:*]',
        # Room above the curve for the marks' labels.
        f'set offsets 0, 0, graph {0.1 + 0.075 * len(marks):.3f}, 0',
        f'plot "{out}.dat" using 1:2 with histeps lw 1.5 lc rgb "#1f5fa8" '
        f'title "throughput per {int(BIN_S * 1000)} ms"',
        'unset label',
        'set format x "%g"',
        'set xlabel "time since the load started (s)"',
        'set ylabel "p99 latency (ms)"',
        'set logscale y',
        'set key top left opaque box',
        'set yrange [*:*]',
        'set offsets 0, 0, 0, 0',
        # ($3), not 3: a NaN (no reply in the bin) then breaks the line.
        f'plot "{out}.dat" using 1:($3) with linespoints pt 7 ps 0.35 lw 1.2 lc rgb "#2e8b57" '
        f'title "p99 latency of the replies of each {int(BIN_S * 1000)} ms"' + gaveup_plot,
        'unset multiplot',
    ]
    with open(out + ".gp", "w") as f:
        f.write("\n".join(gp) + "\n")

    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print(f"no picture for {title}: gnuplot is not installed ({out}.dat has the figures)")
        return
    r = subprocess.run([gnuplot, out + ".gp"], capture_output=True, text=True)
    if r.returncode or not os.path.exists(out + ".svg"):
        print(f"no picture for {title}: gnuplot failed: {r.stderr.strip()[:200]}")
        return
    print(f"{out}.svg ({title}; longest time without an answer {gap / 1e6:.0f} ms)")


main()
