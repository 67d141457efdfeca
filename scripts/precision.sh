#!/usr/bin/env bash
# Trains one recipe in f32, bf16 and f16 (`[train] precision`) side by side
# and prints a table: final loss, the recipe's evaluator results, training
# time, and the time relative to f32.
#
#   scripts/precision.sh [RECIPE]            # default: recipes/simclr.toml
#
# Environment (all optional):
#   OUT         run directories (default runs/precision); a precision whose
#               run already has results.json is not trained again
#   PRECISIONS  which to run (default "f32 bf16 f16")
#   DEVICE      --device for every run (default: the recipe's)
#   SET         extra "key=value ..." overrides for every run
#   BIN         the parallax binary (default target/release/parallax, built
#               with `cargo build --release` when missing)
#
# On the CPU the half-precision runs store weights and activations in 16
# bits but multiply in f32 (Candle's CPU matmul has no bf16), so they show
# the numerics of mixed precision, not its speed: that needs a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

recipe=${1:-recipes/simclr.toml}
out=${OUT:-runs/precision}
precisions=${PRECISIONS:-f32 bf16 f16}
bin=${BIN:-target/release/parallax}

[[ -f $recipe ]] || { echo "precision.sh: no recipe $recipe" >&2; exit 1; }
if [[ ! -x $bin ]]; then
    cargo build --release -p parallax
fi

args=()
[[ -n ${DEVICE:-} ]] && args+=(--device "$DEVICE")
for kv in ${SET:-}; do
    args+=(--set "$kv")
done

for p in $precisions; do
    case $p in f32 | bf16 | f16) ;; *)
        echo "precision.sh: unknown precision $p (f32, bf16 or f16)" >&2
        exit 1
        ;;
    esac
    run=$out/$p
    if [[ -f $run/results.json ]]; then
        echo "== $p: $run/results.json exists, not retrained" >&2
        continue
    fi
    rm -rf "$run"
    echo "== $p -> $run" >&2
    "$bin" train "$recipe" --out "$run" --set "train.precision=\"$p\"" "${args[@]}" >&2
done

python3 - "$out" $precisions <<'EOF'
import json, sys, os
out, precisions = sys.argv[1], sys.argv[2:]
rows = {}
for p in precisions:
    f = os.path.join(out, p, "results.json")
    if os.path.exists(f):
        rows[p] = json.load(open(f))
if not rows:
    sys.exit("precision.sh: no results")
keys = sorted({k for r in rows.values() for k in r["final"]})
base = rows.get("f32", {}).get("train_seconds")
print("| precision | " + " | ".join(keys) + " | train s | time / f32 |")
print("| --- " * (len(keys) + 3) + "|")
for p, r in rows.items():
    vals = [f"{r['final'].get(k, float('nan')):.4f}" for k in keys]
    t = r["train_seconds"]
    ratio = f"{t / base:.2f}" if base else "-"
    print(f"| {p} | " + " | ".join(vals) + f" | {t:.0f} | {ratio} |")
EOF
