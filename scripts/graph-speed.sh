#!/usr/bin/env bash
# One GRACE epoch on Cora (the paper's Cora model: GCN 1433 -> 256 -> 128,
# projection 128, two views, node-level NT-Xent over 2 x 2708 nodes, Adam
# step), Parallax against a plain PyTorch Geometric implementation of the
# same model (scripts/bench_grace_ref.py), side by side: ROUNDS rounds,
# each running one then the other, so that both see the same machine.
#
# Ours: `parallax train recipes/grace.toml` for EPOCHS epochs with the
# probe cut to nothing; seconds per epoch = `train_seconds` (the training
# loop, evaluations excluded, first epoch included) / EPOCHS.
# PyG: bench_grace_ref.py --epochs EPOCHS after 5 untimed warm-up epochs,
# torch.set_num_threads(THREADS).
# Prints each round and the medians, and the ratio PyG / ours (above 1:
# Parallax is faster).
#
# Usage (from the repository root):
#   PY=/tmp/gvenv/bin/python scripts/graph-speed.sh
#   (PY: a Python with torch and torch-geometric; see bench_grace_ref.py)
#   ROUNDS=5 EPOCHS=50 THREADS=2 ... also settable

set -euo pipefail

BIN=${BIN:-target/release/parallax}
PY=${PY:-python3}
ROUNDS=${ROUNDS:-3}
EPOCHS=${EPOCHS:-50}
THREADS=${THREADS:-2}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[[ -x "$BIN" ]] || cargo build --release -p parallax
"$PY" -c "import torch, torch_geometric" ||
    { echo "graph-speed: $PY has no torch / torch_geometric (see scripts/bench_grace_ref.py)" >&2; exit 1; }

ours=()
pyg=()
for r in $(seq 1 "$ROUNDS"); do
    RAYON_NUM_THREADS=$THREADS "$BIN" train recipes/grace.toml --out "$TMP/r$r" \
        --set "train.epochs=$EPOCHS" --set train.checkpoint_every=100000 \
        --set 'eval=[{name="node_probe", protocol="random", splits=1, epochs=1, weight_decay_grid=[1.0]}]' \
        >"$TMP/r$r.log" 2>&1 || { cat "$TMP/r$r.log" >&2; exit 1; }
    o=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['train_seconds']/$EPOCHS)" \
        "$TMP/r$r/results.json")
    p=$("$PY" scripts/bench_grace_ref.py --epochs "$EPOCHS" --threads "$THREADS" 2>/dev/null |
        tail -1 | python3 -c "import json,sys; print(json.load(sys.stdin)['seconds_per_epoch'])")
    echo "round $r: parallax $o s/epoch, pyg $p s/epoch"
    ours+=("$o")
    pyg+=("$p")
done
python3 - "${ours[*]}" "${pyg[*]}" <<'EOF'
import statistics, sys
o = statistics.median(map(float, sys.argv[1].split()))
p = statistics.median(map(float, sys.argv[2].split()))
print(f"median: parallax {o:.3f} s/epoch, pyg {p:.3f} s/epoch, ratio pyg/parallax {p / o:.2f}x")
EOF
