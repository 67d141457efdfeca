#!/usr/bin/env bash
# Several builds of `parallax` side by side on the training-step benchmark
# (`parallax bench train-step`, batch 64), without the PyTorch reference:
# each round runs every binary once, the order rotated from round to round
# so that none always runs first. Prints each run's step time and, at the
# end, each build's median and its speed-up over the first build (median
# of the per-round ratios, and in how many rounds it was faster).
#
# usage: scripts/compare-builds.sh ROUNDS BIN [BIN...]
#   e.g. build the commit before a change, `cp target/release/parallax
#   /tmp/parallax-before`, build the change, then
#   scripts/compare-builds.sh 6 /tmp/parallax-before target/release/parallax
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n 2,13p "$0" >&2; exit 2; }
rounds=$1
shift
bins=("$@")
n=${#bins[@]}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
    for k in $(seq 0 $((n - 1))); do
        i=$(((k + r) % n))
        step=$("${bins[$i]}" bench train-step --batch 64 --steps 5 --warmup 2 |
            python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["step_s"])')
        echo "round $r build $i ${bins[$i]} step_s $step" | tee -a "$out"
    done
done
python3 - "$out" "${bins[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
bins = sys.argv[2:]
step = {}
for r in rows:
    step.setdefault(int(r[3]), {})[int(r[1])] = float(r[6])
for i, b in enumerate(bins):
    med = statistics.median(step[i].values())
    line = f"build {i} {b}: median step {med:.3f} s"
    if i:
        ratios = [step[0][k] / step[i][k] for k in step[i] if k in step[0]]
        faster = sum(x > 1 for x in ratios)
        line += f", speed x{statistics.median(ratios):.3f} over build 0 ({faster} of {len(ratios)} rounds faster)"
    print(line)
PY
