#!/usr/bin/env bash
# The README's SimCSE table: Lee document similarity (Spearman, Pearson) and
# the polarity probe before and after training, for
#   1. all-MiniLM-L6-v2 + unsupervised SimCSE (recipes/simcse.toml, one
#      epoch of the embedded corpus), and
#   2. a small BERT (4 layers, width 256) from random initialisation +
#      unsupervised SimCSE (recipes/simcse_scratch.toml, 10 epochs), against
#      the same model untrained.
# "before" is the evaluators' run at step 0 (the pretrained or random
# weights), "after" their run at the end; both come from each run's
# results.json. About 20 minutes on 2 CPU cores.
#
# usage: scripts/text-experiment.sh   (runs scripts/fetch-models.sh and
#        scripts/fetch-data.sh text first if needed)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-models.sh >/dev/null
scripts/fetch-data.sh text
cargo build --release -q -p parallax
bin=target/release/parallax
stamp=$(date +%Y%m%d-%H%M%S)

run() {
    local name=$1 recipe=$2
    shift 2
    HF_HUB_OFFLINE=1 "$bin" train "$recipe" --out "runs/text-$name-$stamp" "$@" >&2
}

run minilm recipes/simcse.toml
run scratch recipes/simcse_scratch.toml

python3 - "runs/text-minilm-$stamp" "runs/text-scratch-$stamp" <<'PY'
import json, sys
print(f"{'model':<32} {'metric':<22} {'before':>8} {'after':>8}")
for run, label in zip(sys.argv[1:], ["all-MiniLM-L6-v2 + SimCSE", "small BERT from scratch + SimCSE"]):
    r = json.load(open(f"{run}/results.json"))
    for k in ["lee/spearman", "lee/pearson", "text_probe/accuracy"]:
        print(f"{label:<32} {k:<22} {r['init'][k]:>8.4f} {r['final'][k]:>8.4f}")
PY
