#!/usr/bin/env bash
# Compares two tokentop binaries on one file: N pairs of one-thread `report --window all`
# runs, the order alternating, and prints each binary's fastest and median wall and the
# median of the per-pair ratios (B / A). On a shared VM whose speed drifts from minute
# to minute, pairs run seconds apart are what a change can be judged by.
#
#   scripts/pair-report.sh 10 events.jsonl ./tokentop-before ./tokentop-after
set -euo pipefail
[[ $# == 4 ]] || { echo "usage: $0 PAIRS FILE BINARY_A BINARY_B" >&2; exit 2; }
n=$1 file=$2 a=$3 b=$4
for i in $(seq "$n"); do
  if ((i % 2)); then order="$a $b"; else order="$b $a"; fi
  for bin in $order; do
    wall=$({ /usr/bin/time -f "%e" "$bin" report --window all --threads 1 "$file" > /dev/null; } 2>&1)
    echo "$bin $wall"
  done
done | python3 -c '
import statistics as st, sys
a, b = sys.argv[1:]
walls = {}
for line in sys.stdin:
    name, wall = line.split()
    walls.setdefault(name, []).append(float(wall))
for name in (a, b):
    w = walls[name]
    print(f"{name}: fastest {min(w):.3f} s, median {st.median(w):.3f} s")
ratios = [y / x for x, y in zip(walls[a], walls[b])]
pairs = " ".join("%.2f" % r for r in ratios)
print(f"B / A: median {st.median(ratios):.3f} (pairs: {pairs})")
' "$a" "$b"
