#!/usr/bin/env python3
"""Where a replica pair's divergent pages come from.

usage: plover-divergence.py QMP-SOCKET [--seconds N] [--top N]
                            [--system-map PATH] [--json]

Asks the secondary's x-query-plover-divergence (resetting it first when
--seconds is given, then waiting that long), and prints:
  * how many bytes of each divergent page differed (histogram),
  * what a sub-page delta of each block size would send, against whole
    pages,
  * the pages that diverged most often, with the guest kernel symbols in
    them when --system-map names the guest kernel's System.map (pages of
    the kernel's image map to symbols; others are the kernel's dynamic
    memory or user memory). The guest must then run with "nokaslr", or
    the kernel's physical placement is random.
"""
import argparse
import bisect
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plover_qmp import Qmp  # noqa: E402

# x86-64 kernels map their image at __START_KERNEL_map + physical address.
START_KERNEL_MAP = 0xffffffff80000000


class Symbols:
    """Symbols of the kernel image, by physical address (no KASLR)."""

    def __init__(self, system_map):
        self.addrs, self.names = [], []
        for line in open(system_map):
            parts = line.split()
            if len(parts) != 3 or parts[1] in "aAuUwWvV":
                continue
            a = int(parts[0], 16)
            if a >= START_KERNEL_MAP:
                self.addrs.append(a - START_KERNEL_MAP)
                self.names.append(parts[2])
        order = sorted(range(len(self.addrs)), key=self.addrs.__getitem__)
        self.addrs = [self.addrs[i] for i in order]
        self.names = [self.names[i] for i in order]
        self.end = self.addrs[-1] if self.addrs else 0

    def lookup(self, pa, size=4096):
        """The symbols overlapping [pa, pa + size), first few."""
        if not self.addrs or pa > self.end or pa + size <= self.addrs[0]:
            return None
        i = max(bisect.bisect_right(self.addrs, pa) - 1, 0)
        names = []
        while i < len(self.addrs) and self.addrs[i] < pa + size:
            names.append(self.names[i])
            i += 1
        shown = names[:3] + (["..."] if len(names) > 3 else [])
        return ", ".join(shown)


def report(info, top, syms, out):
    pages = info["pages"]
    print(f"divergent pages seen: {pages} ({info['zero-pages']} zeroed by "
          f"the leader), differing bytes {info['bytes']}"
          f" (mean {info['bytes'] / max(pages, 1):.0f} per page)", file=out)
    print("\ndiffering bytes per page:", file=out)
    lo = 1
    for b in info["histogram"]:
        share = b["pages"] / max(pages, 1)
        print(f"  {lo:>5}-{b['max-bytes']:<5} {b['pages']:>9} "
              f"{share:6.1%} {'#' * round(share * 50)}", file=out)
        lo = b["max-bytes"] + 1
    print("\nsub-page delta, data only (before any compression):", file=out)
    whole = pages * 4096
    print(f"  whole pages        {whole:>12} B", file=out)
    for c in info["block-cost"]:
        data = c["blocks"] * c["block-size"]
        print(f"  {c['block-size']:>4}-byte blocks   {data:>12} B "
              f"({data / max(whole, 1):6.1%}), {c['blocks']} blocks", file=out)
    print(f"\nmost often divergent pages (of {pages}):", file=out)
    for p in info["top"][:top]:
        where = syms.lookup(p["offset"]) if syms and p["block"] == "pc.ram" \
            else None
        mask = p["lines"]
        print(f"  {p['block']}+{p['offset']:#010x} x{p['count']:<6} "
              f"{p['mean-bytes']:>5} B  64ths {bin(mask).count('1'):>2}  "
              f"{where or '(not in the kernel image)'}", file=out)
    if info["untracked"]:
        print(f"  ({info['untracked']} divergent pages beyond the tracked "
              f"set)", file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("socket", help="QMP socket of the secondary")
    ap.add_argument("--seconds", type=float,
                    help="reset, then collect for this long")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--system-map",
                    help="the guest kernel's System.map, for symbols")
    ap.add_argument("--json", action="store_true", help="print the raw answer")
    a = ap.parse_args()
    try:
        q = Qmp(a.socket, timeout=10)
        if a.seconds:
            q.call("x-query-plover-divergence", {"reset": True})
            time.sleep(a.seconds)
        info = q.call("x-query-plover-divergence", {"top": a.top})
    except (OSError, EOFError, RuntimeError) as e:
        print(f"plover-divergence: {a.socket}: {e}", file=sys.stderr)
        return 1
    if a.json:
        json.dump(info, sys.stdout, indent=1)
        print()
        return 0
    syms = None
    if a.system_map and os.path.exists(a.system_map):
        syms = Symbols(a.system_map)
    report(info, a.top, syms, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
