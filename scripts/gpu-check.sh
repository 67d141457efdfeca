#!/usr/bin/env bash
# The GPU checks of the CUDA work in one run, for a machine with an NVIDIA
# GPU and no Rust toolchain (the binaries are built elsewhere).
#
# Where nvcc is (any machine, no GPU needed):
#   scripts/gpu-check.sh prepare     # builds with --features cuda into gpu/
# On the GPU machine, from the repository root with gpu/ next to it:
#   scripts/gpu-check.sh run OUT     # writes OUT/*.txt, OUT/*.json, prints a summary
#
# prepare: `cargo build --release --features cuda` and the `cuda_ops` test
# binary (CARGO_TARGET_DIR, default target-cuda next to the repository),
# stripped and gzipped into gpu/ (about 40 MB: small enough to carry).
#
# run:
#   1. nvidia-smi, and the CUDA libraries the binary needs (searched in the
#      Python NVIDIA packages, e.g. PyTorch's, added to LD_LIBRARY_PATH);
#   2. the cuda_ops tests with CUDA_TESTS_REQUIRE_GPU=1 (every op against
#      the CPU, f32 and bf16);
#   3. `parallax bench train-step --device cuda:0` in f32 and bf16, and the
#      PyTorch + lightly reference (../shared/bench/reference/simclr_step.py,
#      REFERENCE overrides) run unchanged on the GPU (torch's default device
#      set to cuda), alternating, ROUNDS times (default 3);
#   4. a short run of one recipe per modality on cuda:0: vision (SimCLR,
#      f32 and bf16), text (SimCSE from scratch) and multimodal (CLIP).
# Each step's output goes to OUT; a failing step is reported and the next
# one runs.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case $mode in
prepare)
    set -e
    target=${CARGO_TARGET_DIR:-$(cd .. && pwd)/target-cuda}
    eval "$(scripts/setup-cuda.sh)"
    CARGO_TARGET_DIR=$target cargo build --release -p parallax --features cuda
    test_bin=$(CARGO_TARGET_DIR=$target cargo test -p parallax-core --features cuda \
        --test cuda_ops --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_ops":
        print(m["executable"])')
    [[ -x $test_bin ]] || { echo "gpu-check: no cuda_ops test binary" >&2; exit 1; }
    mkdir -p gpu
    for pair in "parallax:$target/release/parallax" "cuda_ops:$test_bin"; do
        name=${pair%%:*}
        cp "${pair#*:}" "gpu/$name"
        strip "gpu/$name"
        gzip -f -9 "gpu/$name"
    done
    ls -la gpu
    exit 0
    ;;
run) ;;
*)
    echo "usage: scripts/gpu-check.sh prepare | run OUT" >&2
    exit 2
    ;;
esac

out=${2:?usage: scripts/gpu-check.sh run OUT}
mkdir -p "$out"
rounds=${ROUNDS:-3}
py=${PYTHON:-python3}
ref=${REFERENCE:-../shared/bench/reference/simclr_step.py}
summary=$out/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

for name in parallax cuda_ops; do
    if [[ -f gpu/$name.gz ]]; then
        gunzip -c "gpu/$name.gz" >"gpu/$name" && chmod +x "gpu/$name"
    fi
    [[ -x gpu/$name ]] || { note "missing gpu/$name(.gz): run 'scripts/gpu-check.sh prepare' first"; exit 1; }
done

# 1. the GPU and the CUDA libraries
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 && note "gpu: $(nvidia-smi -L 2>/dev/null | head -1)"
libs=$("$py" - <<'EOF' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
dirs = set()
for r in roots:
    for f in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(f))
print(":".join(sorted(dirs)))
EOF
)
export LD_LIBRARY_PATH=${libs:+$libs:}${LD_LIBRARY_PATH:-}
ldd gpu/parallax >"$out/ldd.txt" 2>&1
if grep -q "not found" "$out/ldd.txt"; then
    note "missing libraries: $(grep 'not found' "$out/ldd.txt" | awk '{print $1}' | tr '\n' ' ')"
else
    note "libraries: all found"
fi

# 2. every op on the GPU against the CPU
if CUDA_TESTS_REQUIRE_GPU=1 gpu/cuda_ops --nocapture --test-threads 1 >"$out/cuda_ops.txt" 2>&1; then
    note "cuda_ops: $(grep -E '^test result' "$out/cuda_ops.txt")"
else
    note "cuda_ops: FAILED (see cuda_ops.txt): $(grep -E 'panicked|rel err' "$out/cuda_ops.txt" | head -3)"
fi

# 3. the train-step benchmark against PyTorch on the same GPU
: >"$out/bench.jsonl"
for _ in $(seq "$rounds"); do
    gpu/parallax bench train-step --device cuda:0 --steps 20 --warmup 5 >>"$out/bench.jsonl" 2>>"$out/bench.err" ||
        note "bench f32 failed: $(tail -1 "$out/bench.err")"
    gpu/parallax bench train-step --device cuda:0 --steps 20 --warmup 5 --set 'train.precision="bf16"' \
        >>"$out/bench.jsonl" 2>>"$out/bench.err" || note "bench bf16 failed: $(tail -1 "$out/bench.err")"
    "$py" -c "import runpy, sys, torch; torch.set_default_device('cuda'); \
sys.argv = ['simclr_step.py', '--steps', '20', '--warmup', '5']; runpy.run_path('$ref', run_name='__main__')" \
        >>"$out/bench.jsonl" 2>>"$out/bench.err" || note "PyTorch reference failed: $(tail -1 "$out/bench.err")"
done
"$py" - "$out/bench.jsonl" <<'EOF' | tee -a "$summary"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(pred):
    v = [r["images_per_s"] for r in rows if pred(r)]
    return statistics.median(v) if v else None
ours = med(lambda r: r.get("impl") == "parallax" and r.get("precision") == "f32")
half = med(lambda r: r.get("impl") == "parallax" and r.get("precision") == "bf16")
ref = med(lambda r: r.get("impl") != "parallax")
print(f"bench images/s (median): parallax f32 {ours}, bf16 {half}, pytorch {ref}")
if ours and ref:
    print(f"ratio parallax f32 / pytorch: {ours / ref:.3f}" + (f", bf16 / pytorch: {half / ref:.3f}" if half else ""))
EOF

# 4. one short recipe per modality
for spec in "simclr:recipes/simclr.toml:" "simclr-bf16:recipes/simclr.toml:train.precision=\"bf16\"" \
    "simcse:recipes/simcse_scratch.toml:" "clip:recipes/clip.toml:"; do
    IFS=: read -r name recipe set <<<"$spec"
    args=(train "$recipe" --out "$out/runs/$name" --device cuda:0 --max-steps 100)
    [[ -n $set ]] && args+=(--set "$set")
    if gpu/parallax "${args[@]}" >"$out/$name.txt" 2>&1; then
        note "$name: $(grep -E 'train/loss =|top1 =' "$out/$name.txt" | tr '\n' ' ')"
    else
        note "$name: FAILED: $(grep -E 'error|caused by' "$out/$name.txt" | head -2 | tr '\n' ' ')"
    fi
done
cat "$summary"
