#!/usr/bin/env bash
# Fuzzes every decoder of user files (the targets of tests/src/fuzz.rs) for
# SECONDS each and prints a table of the inputs tried and the panics found.
#
#   scripts/fuzz.sh SECONDS [SEED]
#
# Two engines (FUZZ_ENGINE):
# - libfuzzer (the default when `cargo +nightly fuzz` works: rustup's
#   nightly toolchain and `cargo install cargo-fuzz`): coverage-guided
#   libFuzzer with AddressSanitizer, the targets in tests/fuzz/ (one per
#   decoder). Each starts from the target's seed inputs and saved crashes
#   (corpus in tests/fuzz/corpus/TARGET, kept between runs) and stops at
#   the first crash, which libFuzzer saves as fuzz-crashes/TARGET/crash-SHA1;
#   an allocation over FUZZ_MEMORY_MB (default 4096) or an input slower
#   than 30 s counts as one. Columns: inputs executed, panics (crashes),
#   coverage (edges) and features at the end, corpus size.
# - mutator (stable Rust, no install): the same targets under the project's
#   own seeded mutation fuzzer, each in its own process under a memory
#   limit (ulimit -v FUZZ_MEMORY_MB, default 8192), so an input that would
#   exhaust memory aborts that process rather than the machine; an abort
#   (or a hang past SECONDS + 120 s) counts as a panic and its input is
#   kept as fuzz-crashes/TARGET/abort-N; panicking inputs are saved as
#   fuzz-crashes/TARGET/crash-ID (message in crash-ID.txt). Columns: inputs
#   tried, panics, inputs on which a dependency panicked and the decoder's
#   guard made it an error ("caught"), inputs the decoder accepted, and the
#   slowest input's time.
#
# Replay a saved input with
#   cargo run --release -p parallax-tests --example fuzz -- replay TARGET FILE
# and keep it as a test by copying it into tests/fixtures/fuzz/TARGET/.
# FUZZ_TARGETS="idx image" limits the run to some targets.
# Exit status: 0 when nothing panicked, 1 otherwise.
set -euo pipefail

secs=${1:?usage: scripts/fuzz.sh SECONDS [SEED]}
seed=${2:-24301}
cd "$(dirname "$0")/.."

cargo build --release -q -p parallax-tests --example fuzz
bin=target/release/examples/fuzz
targets=${FUZZ_TARGETS:-$("$bin" list | awk '{print $1}')}

engine=${FUZZ_ENGINE:-}
if [[ -z "$engine" ]]; then
  if cargo +nightly fuzz --version >/dev/null 2>&1; then engine=libfuzzer; else engine=mutator; fi
fi

if [[ "$engine" == libfuzzer ]]; then
  memory_mb=${FUZZ_MEMORY_MB:-4096}
  cargo +nightly fuzz build --fuzz-dir tests/fuzz >/dev/null
  triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
  total_panics=0
  rows=()
  for t in $targets; do
    corpus=tests/fuzz/corpus/$t
    mkdir -p "$corpus" "fuzz-crashes/$t"
    "$bin" seeds "$t" "$corpus"
    log=$(mktemp)
    set +e
    HF_HUB_OFFLINE=1 "tests/fuzz/target/$triple/release/$t" -max_total_time="$secs" -seed="$seed" \
      -rss_limit_mb="$memory_mb" -malloc_limit_mb="$memory_mb" -timeout=30 -print_final_stats=1 \
      -artifact_prefix="fuzz-crashes/$t/" "$corpus" >"$log" 2>&1
    rc=$?
    set -e
    inputs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    panics=0; note=""
    if [[ $rc -ne 0 ]]; then
      panics=1
      art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
      why=$(grep -m1 -E 'the decoder panicked|ERROR: (libFuzzer|AddressSanitizer)' "$log" || tail -n 1 "$log")
      note="crash (exit $rc): $why; input: ${art:-?}"
      grep -m1 -E 'the decoder panicked' "$log" >&2 || true
    fi
    rmdir "fuzz-crashes/$t" 2>/dev/null || true
    total_panics=$((total_panics + panics))
    rows+=("$(printf '%-12s %10s %8s %8s %8s %8s  %s' "$t" "${inputs:-?}" "$panics" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$note")")
    rm -f "$log"
  done
  rmdir fuzz-crashes 2>/dev/null || true
  printf '%-12s %10s %8s %8s %8s %8s\n' target inputs panics cov ft corpus
  printf '%s\n' "${rows[@]}"
  printf 'libFuzzer, %s s per target, seed %s: %d panic(s)\n' "$secs" "$seed" "$total_panics"
  [[ $total_panics -eq 0 ]]
  exit
fi

memory_mb=${FUZZ_MEMORY_MB:-8192}

total_panics=0
rows=()
for t in $targets; do
  out=$(mktemp)
  set +e
  (ulimit -v $((memory_mb * 1024)); timeout $((secs + 120)) "$bin" "$t" "$secs" "$seed") >"$out" 2>"$out.err"
  rc=$?
  set -e
  line=$(grep '^RESULT ' "$out" | tail -n 1 || true)
  if [[ -n "$line" ]]; then
    read -r _ _ inputs panics caught accepted slowest <<<"$line"
    note=""
  else
    # the process died: stack overflow, failed allocation, killed, or a hang
    inputs="?"; panics=1; caught="?"; accepted="?"; slowest="?"
    note="aborted (exit $rc): $(tail -n 1 "$out.err")"
    if [[ -f "fuzz-crashes/$t/in-flight" ]]; then
      n=$(find "fuzz-crashes/$t" -name 'abort-*' | wc -l)
      mv "fuzz-crashes/$t/in-flight" "fuzz-crashes/$t/abort-$n"
      note="$note; input: fuzz-crashes/$t/abort-$n"
    fi
  fi
  grep -h ': panic (' "$out.err" >&2 || true
  total_panics=$((total_panics + panics))
  rows+=("$(printf '%-12s %10s %8s %8s %10s %12s  %s' "$t" "$inputs" "$panics" "$caught" "$accepted" "$slowest" "$note")")
  rm -f "$out" "$out.err"
done

printf '%-12s %10s %8s %8s %10s %12s\n' target inputs panics caught accepted slowest_ms
printf '%s\n' "${rows[@]}"
printf 'mutator, %s s per target, seed %s: %d panic(s)\n' "$secs" "$seed" "$total_panics"
[[ $total_panics -eq 0 ]]
