#!/usr/bin/env bash
# The label-efficiency experiment (the vision issue's table): pretrain each
# self-supervised method on the 60,000 unlabeled Fashion-MNIST training
# images, then evaluate with 10 labelled images per class (100 in all)
# against the supervised baseline trained from scratch on those 100 images.
#
# Which 100 images are labelled moves a 10-per-class probe by a point or
# more, so every figure is the mean over DRAWS draws (label seeds 0 ..
# DRAWS-1; each draw is the same 100 images for every method): the probes
# with `label_draws`, the supervised baseline by one run per seed. The
# probe's weight decay is chosen per draw by 5-fold cross-validation on
# the 100 labelled images (`weight_decay_grid`), never on test images.
#
# Usage (from the repository root):
#   scripts/label-efficiency.sh                 every method in recipes/label-efficiency/
#   scripts/label-efficiency.sh simclr moco     some of them
#   TABLE_ONLY=1 scripts/label-efficiency.sh    reprint the table of earlier runs
#   REEVAL=1 scripts/label-efficiency.sh        re-run the linear probes of existing
#                                               runs with the recipes' current
#                                               [[eval]] linear_probe (no retraining)
#   SET="encoder.pool_grid=2" OUT=runs/le-grid scripts/label-efficiency.sh
#                                               every training with extra --set overrides
#
# Runs go to $OUT/NAME (an existing run is kept and only tabulated: delete it
# to run again); $OUT/init is the encoder at its seeded initialisation
# (`--max-steps 0`), $OUT/pixels the raw pixels (the `pixels` encoder, no
# training), $OUT/supervised-sS the baseline on label seed S. Each
# recipe's epochs are chosen so that pretraining takes at most 15 minutes on
# 2 cores with the machine to itself; `train_seconds` in each results.json is
# the measured time of the training loop (evaluations excluded).
#
# Columns: random init + linear probe, raw pixels + linear probe (and kNN),
# supervised from scratch on the 100
# images (its classifier's test accuracy), the method + linear probe on its
# frozen, L2-normalised and standardised features (mean over the draws, its
# standard deviation, and label seed 0 alone), the method + fine-tuning on
# the 100 images of seed 0, and kNN (k = 20) with all 60,000 labels, all on
# the 10,000 test images.

set -euo pipefail

DATA=${DATA:-data/fashion-mnist}
OUT=${OUT:-runs/label-efficiency}
BIN=${BIN:-target/release/parallax}
DRAWS=${DRAWS:-5}
SETS=(--set "data.path=\"$DATA\"")
for kv in ${SET:-}; do SETS+=(--set "$kv"); done
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
    # train RECIPE RUN [--set ...]: one training run unless it exists
    train() {
        local recipe=$1 run=$2
        shift 2
        if [[ -f "$run/results.json" ]]; then
            log "$run/results.json exists, kept"
            return
        fi
        rm -rf "$run"
        log "training $recipe -> $run"
        "$BIN" train "$recipe" "${SETS[@]}" "$@" --out "$run" 2>&1 | tee "$run.log" | grep -v '^step ' || true
        [[ -f "$run/results.json" ]] || { log "$run failed: see $run.log"; exit 1; }
    }
    # reeval RECIPE RUN: the run's linear probes again, with RECIPE's
    # [[eval]] linear_probe sections, into RUN/probe.json
    reeval() {
        local recipe=$1 run=$2
        rm -rf "$run/reeval"
        mkdir -p "$run/reeval"
        ln -s ../checkpoint.safetensors "$run/reeval/checkpoint.safetensors"
        python3 - "$run/recipe.toml" "$recipe" "$run/reeval/recipe.toml" <<'PY'
import re, sys
def sections(text):
    return re.split(r"(?m)^(?=\[)", text)
saved, current, out = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3]
# every [[eval]] section and its sub-tables ([eval.views], ...)
kept = [s for s in sections(saved) if not re.match(r"\[+eval[].]", s)]
probes = [s for s in sections(current) if s.startswith("[[eval]]") and re.search(r'(?m)^name\s*=\s*"linear_probe"', s)]
open(out, "w").write("".join(kept) + "\n" + "".join(probes))
PY
        log "re-evaluating the linear probe of $run"
        "$BIN" eval "$run/reeval" | python3 -c '
import json, sys
m = {}
for line in sys.stdin:
    k, _, v = line.partition(" = ")
    if v:
        m[k.strip()] = float(v)
json.dump({"final": m}, open(sys.argv[1], "w"), indent=1)
' "$run/probe.json"
    }
    for m in "${METHODS[@]}"; do
        recipe="recipes/label-efficiency/$m.toml"
        [[ -f "$recipe" ]] || { log "no recipe $recipe"; exit 1; }
        if [[ $m == supervised ]]; then
            for ((s = 0; s < DRAWS; s++)); do
                if ((s == 0)); then
                    train "$recipe" "$OUT/supervised-s0"
                else
                    train "$recipe" "$OUT/supervised-s$s" --set "train.label_seed=$s" \
                        --set 'eval=[{name="classifier"}]'
                fi
            done
            continue
        fi
        if [[ -n "${REEVAL:-}" && -f "$OUT/$m/results.json" ]]; then
            reeval "$recipe" "$OUT/$m"
        else
            train "$recipe" "$OUT/$m"
        fi
    done
    # the encoder at its seeded initialisation (every method's recipe
    # builds the same encoder from the same seed), probed the same way
    if [[ -n "${REEVAL:-}" ]]; then rm -rf "$OUT/init"; fi
    train recipes/label-efficiency/simclr.toml "$OUT/init" --max-steps 0 \
        --set 'eval=[{name="knn",k=20,temperature=0.1}]'
    reeval recipes/label-efficiency/simclr.toml "$OUT/init"
    # raw pixels (no parameters, nothing to train): the same probe and kNN
    if [[ -n "${REEVAL:-}" ]]; then rm -rf "$OUT/pixels"; fi
    train recipes/label-efficiency/pixels.toml "$OUT/pixels" --max-steps 0
fi

python3 - "$OUT" "$DRAWS" "${METHODS[@]}" <<'PY'
import json, os, statistics, sys
out, draws, methods = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(run):
    """results.json of a run, its final metrics updated by probe.json (REEVAL)"""
    p = os.path.join(out, run, "results.json")
    if not os.path.exists(p):
        return None
    r = json.load(open(p))
    q = os.path.join(out, run, "probe.json")
    if os.path.exists(q):
        r["final"].update(json.load(open(q))["final"])
    return r
def pct(v):
    return "" if v is None else f"{100 * v:.1f}%"
def rankme(f):
    v = f.get("representation/rankme")
    return "" if v is None else f"{v:.1f}"
def probe(f):
    """mean ± sd (seed 0) of a linear_probe with label_draws"""
    m, sd, s0 = (f.get(k) for k in ("linear_probe/top1", "linear_probe/top1_sd", "linear_probe/top1_seed0"))
    if sd is None:
        return pct(m)
    return f"{100 * m:.1f} ± {100 * sd:.1f}% ({pct(s0)})"
init = load("init")
init_probe = probe(init["final"]) if init else ""
init_knn = pct(init["final"].get("knn/top1")) if init else ""
sups = [load(f"supervised-s{s}") for s in range(draws)]
sup_acc = [r["final"]["classifier/top1"] for r in sups if r]
sup = ""
if sup_acc:
    sd = f" ± {100 * statistics.stdev(sup_acc):.1f}" if len(sup_acc) > 1 else ""
    sup = f"{100 * statistics.mean(sup_acc):.1f}{sd}% ({pct(sup_acc[0])})"
print(f"random init + linear: {init_probe}; kNN at random init: {init_knn}")
pixels = load("pixels")
if pixels:
    print(f"raw pixels + linear: {probe(pixels['final'])}; kNN on raw pixels: {pct(pixels['final'].get('knn/top1'))}")
print(f"supervised from scratch on the 100 images, {len(sup_acc)} label seed(s): {sup}")
print()
print("| method | pretraining | method + linear, 100 labels: mean ± sd (seed 0) | method + fine-tuning, 100 labels | kNN, all labels | RankMe |")
print("| --- | --- | --- | --- | --- | --- |")
for m in methods:
    r = load(m)
    if r is None or m == "supervised":
        continue
    f = r["final"]
    mins = r.get("train_seconds", 0) / 60
    print(f"| {m} | {mins:.1f} min | **{probe(f)}** | {pct(f.get('finetune/top1'))} | "
          f"**{pct(f.get('knn/top1'))}** | {rankme(f)} |")
PY
