#!/usr/bin/env bash
# Side-by-side benchmarks of Parallax against the PyTorch (+ lightly)
# references, alternating on the same machine so that the ratios hold even
# when absolute times drift. Prints every JSON line and, at the end, the
# median ratio ours / PyTorch of the step time (lower is better for us).
#
# usage: scripts/bench.sh [loss|train-step] [ROUNDS]
#   loss: nt_xent forward + backward, N = 4096, D = 128 (lightly's NTXentLoss)
#   train-step: one SimCLR training step, CIFAR ResNet-18, batch 64, two
#     views, SGD (../shared/bench/reference/simclr_step.py); also compares
#     peak memory (RSS)
# needs: a Python with torch and lightly, e.g.
#   python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch torchvision lightly
#   PYTHON=/tmp/ref/bin/python scripts/bench.sh loss
# REFERENCE overrides the path of simclr_step.py (default ../shared/bench/reference).
# BASELINE=path/to/an/older/parallax (train-step only) runs that binary too,
#   in the same rounds (before ours in odd rounds, after it in even ones), so
#   that a change is measured side by side with the build before it; the
#   summary then gives its ratios as well. E.g. build the commit before a
#   change, `cp target/release/parallax /tmp/parallax-base`, build the change,
#   then `BASELINE=/tmp/parallax-base scripts/bench.sh train-step 8`.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-loss}
rounds=${2:-3}
py=${PYTHON:-python3}
threads=$(nproc)

cargo build --release -q -p parallax
bin=target/release/parallax
out=$(mktemp)
trap 'rm -f "$out"' EXIT

case "$what" in
loss)
    for _ in $(seq "$rounds"); do
        "$bin" bench loss --n 4096 --d 128 --steps 5 --warmup 2 | tee -a "$out"
        # the reference alone runs with the OpenBLAS overrides unset (see the env notes)
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" scripts/bench_loss_ref.py \
            --n 4096 --d 128 --steps 5 --warmup 2 --threads "$threads" | tee -a "$out"
    done
    ;;
train-step)
    ref=${REFERENCE:-../shared/bench/reference/simclr_step.py}
    [ -f "$ref" ] || { echo "missing $ref (set REFERENCE)" >&2; exit 2; }
    baseline() {
        if [[ -n ${BASELINE:-} ]]; then
            "$BASELINE" bench train-step --batch 64 --steps 5 --warmup 2 |
                sed 's/"impl":"parallax"/"impl":"baseline"/' | tee -a "$out"
        fi
    }
    for r in $(seq "$rounds"); do
        # baseline and ours in alternating order (ABBA), so that neither
        # always runs right after the reference
        if ((r % 2)); then baseline; fi
        "$bin" bench train-step --batch 64 --steps 5 --warmup 2 | tee -a "$out"
        if ((r % 2 == 0)); then baseline; fi
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$ref" \
            --batch 64 --steps 5 --warmup 2 --threads "$threads" | tee -a "$out"
    done
    ;;
*)
    echo "unknown benchmark '$what' (known: loss, train-step)" >&2
    exit 2
    ;;
esac

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {
    "ours": [r for r in rows if r["impl"] == "parallax"],
    "baseline": [r for r in rows if r["impl"] == "baseline"],
    "pytorch": [r for r in rows if r["impl"] not in ("parallax", "baseline")],
}
def med(rs, key):
    return statistics.median(r[key] for r in rs)
def ratio(a, b, key):
    # per round, then the median over rounds
    return round(statistics.median(x[key] / y[key] for x, y in zip(by[a], by[b])), 3)
summary = {
    "rounds": len(by["ours"]),
    "ours_step_s_median": med(by["ours"], "step_s"),
    "pytorch_step_s_median": med(by["pytorch"], "step_s"),
    "step_time_ratio_ours_over_pytorch_median": ratio("ours", "pytorch", "step_s"),
}
pairs = [("ours", "pytorch")]
if by["baseline"]:
    summary["baseline_step_s_median"] = med(by["baseline"], "step_s")
    pairs += [("baseline", "pytorch"), ("ours", "baseline")]
for a, b in pairs:
    if all("images_per_s" in r for r in by[a] + by[b]):
        summary[f"throughput_ratio_{a}_over_{b}_median"] = ratio(a, b, "images_per_s")
    if all(r.get("peak_rss_mib") for r in by[a] + by[b]):
        summary[f"peak_rss_ratio_{a}_over_{b}_median"] = ratio(a, b, "peak_rss_mib")
print(json.dumps(summary))
PY
