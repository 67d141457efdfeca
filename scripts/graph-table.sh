#!/usr/bin/env bash
# The graph plugin's table: DGI, GRACE and the supervised GCN on Cora and
# CiteSeer, each trained once per seed, with the protocol of its paper:
#   DGI    public split (140 / 120 training nodes, 1000 test nodes), probe
#   GRACE  20 random 10% / 10% / 80% splits, probe (mean over the splits)
#   GCN    public split, the supervised model's own test accuracy
# Each cell is the mean +- standard deviation over the training seeds of
# the run's test accuracy; `train s` is the mean time of the training loop
# (evaluations excluded, `train_seconds` in results.json).
#
# Usage (from the repository root; CiteSeer needs `scripts/fetch-data.sh graph`):
#   scripts/graph-table.sh                    every row, seeds 0..4
#   SEEDS="0 1 2" scripts/graph-table.sh      other seeds
#   scripts/graph-table.sh grace-cora dgi-cora   some rows
#   TABLE_ONLY=1 scripts/graph-table.sh       reprint the table of earlier runs
# Runs go to $OUT/ROW-sSEED; an existing finished run is kept and only
# tabulated (delete it to run again).

set -euo pipefail

OUT=${OUT:-runs/graph-table}
BIN=${BIN:-target/release/parallax}
SEEDS=${SEEDS:-0 1 2 3 4}

# row  recipe  metric  paper figure
ROWS=(
    "dgi-cora       recipes/dgi.toml                     probe_public/acc  82.3 +- 0.6"
    "dgi-citeseer   recipes/dgi_citeseer.toml            probe_public/acc  71.8 +- 0.7"
    "grace-cora     recipes/grace.toml                   probe_random/acc  83.3 +- 0.4"
    "grace-citeseer recipes/grace_citeseer.toml          probe_random/acc  72.1 +- 0.5"
    "gcn-cora       recipes/gcn_supervised.toml          classifier/acc    81.5"
    "gcn-citeseer   recipes/gcn_supervised_citeseer.toml classifier/acc    70.3"
)

log() { echo "graph-table: $*" >&2; }

WANT=("$@")
wanted() {
    [[ ${#WANT[@]} -eq 0 ]] && return 0
    local w
    for w in "${WANT[@]}"; do [[ $w == "$1" ]] && return 0; done
    return 1
}

if [[ -z "${TABLE_ONLY:-}" ]]; then
    if [[ ! -x "$BIN" ]]; then
        log "building $BIN"
        cargo build --release -p parallax
    fi
    if [[ ! -s data/graph/citeseer.public.npz ]]; then
        log "fetching Cora and CiteSeer into data/graph"
        scripts/fetch-data.sh graph
    fi
    mkdir -p "$OUT"
    for row in "${ROWS[@]}"; do
        read -r name recipe _ <<<"$row"
        wanted "$name" || continue
        for s in $SEEDS; do
            run="$OUT/$name-s$s"
            if [[ -s "$run/results.json" ]]; then
                log "$run exists, kept"
                continue
            fi
            rm -rf "$run"
            log "training $name seed $s"
            "$BIN" train "$recipe" --out "$run" --set "seed=$s" >"$run.log" 2>&1 ||
                { log "$name seed $s failed, see $run.log"; exit 1; }
        done
    done
fi

python3 - "$OUT" "$SEEDS" "${ROWS[@]}" <<'EOF'
import json, math, os, sys

out, seeds, rows = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print("| method | data set | protocol | ours (%) | paper (%) | seeds | train s |")
print("|---|---|---|---|---|---|---|")
for row in rows:
    name, recipe, metric, *paper = row.split()
    method, data = name.split("-")
    accs, secs = [], []
    for s in seeds:
        p = os.path.join(out, f"{name}-s{s}", "results.json")
        if not os.path.exists(p):
            continue
        r = json.load(open(p))
        accs.append(100 * r["final"][metric])
        secs.append(r["train_seconds"])
    if not accs:
        continue
    n = len(accs)
    mean = sum(accs) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1)) if n > 1 else 0.0
    protocol = "public split" if metric != "probe_random/acc" else "20 random 10/10/80"
    label = {"dgi": "DGI", "grace": "GRACE", "gcn": "GCN (supervised)"}[method]
    data = {"cora": "Cora", "citeseer": "CiteSeer"}[data]
    print(f"| {label} | {data} | {protocol} | {mean:.1f} +- {std:.1f} | "
          f"{' '.join(paper)} | {n} | {sum(secs) / n:.0f} |")
EOF
