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
    for _ in $(seq "$rounds"); do
        "$bin" bench train-step --batch 64 --steps 5 --warmup 2 | tee -a "$out"
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
ours = [r["step_s"] for r in rows if r["impl"] == "parallax"]
ref = [r["step_s"] for r in rows if r["impl"] != "parallax"]
ratios = [a / b for a, b in zip(ours, ref)]
summary = {
    "rounds": len(ratios),
    "ours_step_s_median": statistics.median(ours),
    "pytorch_step_s_median": statistics.median(ref),
    "step_time_ratio_ours_over_pytorch_median": round(statistics.median(ratios), 3),
}
if all("images_per_s" in r for r in rows):
    tp = [a["images_per_s"] / b["images_per_s"] for a, b in zip(
        [r for r in rows if r["impl"] == "parallax"], [r for r in rows if r["impl"] != "parallax"])]
    summary["throughput_ratio_ours_over_pytorch_median"] = round(statistics.median(tp), 3)
if all(r.get("peak_rss_mib") for r in rows):
    mem = [a["peak_rss_mib"] / b["peak_rss_mib"] for a, b in zip(
        [r for r in rows if r["impl"] == "parallax"], [r for r in rows if r["impl"] != "parallax"])]
    summary["peak_rss_ratio_ours_over_pytorch_median"] = round(statistics.median(mem), 3)
print(json.dumps(summary))
PY
