#!/usr/bin/env bash
# The label-efficiency experiment (the vision issue's table): pretrain each
# self-supervised method on the 60,000 unlabeled Fashion-MNIST training
# images, then evaluate with the same 10 labelled images per class (100 in
# all, picked by label_seed 0) against the supervised baseline trained from
# scratch on those 100 images.
#
# Usage (from the repository root):
#   scripts/label-efficiency.sh                 every method in recipes/label-efficiency/
#   scripts/label-efficiency.sh simclr moco     some of them
#   TABLE_ONLY=1 scripts/label-efficiency.sh    reprint the table of earlier runs
#
# Runs go to runs/label-efficiency/NAME (an existing run is kept and only
# tabulated: delete it to run again). Each recipe's epochs are chosen so
# that pretraining takes at most 15 minutes on 2 cores with the machine to
# itself; `train_seconds` in each results.json is the measured time of the
# training loop (evaluations excluded).
#
# Columns: random init + linear probe (the encoder before pretraining, from
# the same run's "init" metrics), supervised from scratch on the 100 images
# (its classifier's test accuracy), the method + linear probe on its frozen,
# L2-normalised and standardised features, the method + fine-tuning on the
# 100 images, and kNN (k = 20) with all 60,000 labels, all on the 10,000
# test images.

set -euo pipefail

DATA=${DATA:-data/fashion-mnist}
OUT=${OUT:-runs/label-efficiency}
BIN=${BIN:-target/release/parallax}
ALL=(supervised simclr moco byol simsiam dino triplet)
METHODS=("$@")
[[ ${#METHODS[@]} -eq 0 ]] && METHODS=("${ALL[@]}")

log() { echo "label-efficiency: $*" >&2; }

if [[ -z "${TABLE_ONLY:-}" ]]; then
    if [[ ! -s "$DATA/train-images-idx3-ubyte.gz" ]]; then
        log "fetching Fashion-MNIST into $DATA"
        scripts/fetch-data.sh fashion-mnist
    fi
    if [[ ! -x "$BIN" ]]; then
        log "building $BIN"
        cargo build --release -p parallax
    fi
    mkdir -p "$OUT"
    for m in "${METHODS[@]}"; do
        recipe="recipes/label-efficiency/$m.toml"
        [[ -f "$recipe" ]] || { log "no recipe $recipe"; exit 1; }
        run="$OUT/$m"
        if [[ -f "$run/results.json" ]]; then
            log "$m: $run/results.json exists, kept"
            continue
        fi
        rm -rf "$run"
        log "$m: training $recipe"
        "$BIN" train "$recipe" --set "data.path=\"$DATA\"" --out "$run" 2>&1 | tee "$OUT/$m.log" | grep -v '^step ' || true
        [[ -f "$run/results.json" ]] || { log "$m failed: see $OUT/$m.log"; exit 1; }
    done
fi

python3 - "$OUT" "${METHODS[@]}" <<'PY'
import json, os, sys
out, methods = sys.argv[1], sys.argv[2:]
res = {}
for m in methods:
    p = os.path.join(out, m, "results.json")
    if os.path.exists(p):
        res[m] = json.load(open(p))
def pct(v):
    return "" if v is None else f"{100 * v:.1f}%"
sup = res.get("supervised", {}).get("final", {}).get("classifier/top1")
print("| method | pretraining | random init + linear | supervised, 100 labels | method + linear, 100 labels | method + fine-tuning, 100 labels | kNN, all labels (random init -> method) | RankMe |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for m in methods:
    r = res.get(m)
    if r is None or m == "supervised":
        continue
    f, i = r["final"], r["init"]
    mins = r.get("train_seconds", 0) / 60
    print(f"| {m} | {mins:.1f} min | {pct(i.get('linear_probe/top1'))} | {pct(sup)} | "
          f"**{pct(f.get('linear_probe/top1'))}** | {pct(f.get('finetune/top1'))} | "
          f"{pct(i.get('knn/top1'))} -> **{pct(f.get('knn/top1'))}** | {f.get('representation/rankme', 0):.1f} |")
if "supervised" in res:
    r = res["supervised"]
    print(f"\nsupervised from scratch on the 100 images: classifier {pct(r['final'].get('classifier/top1'))}, "
          f"linear probe on its features {pct(r['final'].get('linear_probe/top1'))}, "
          f"{r.get('train_seconds', 0) / 60:.1f} min")
PY
