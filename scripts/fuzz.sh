#!/usr/bin/env bash
# Fuzzes every reader of untrusted bytes (the cargo-fuzz crate in fuzz/) for SECONDS per target.
#   scripts/fuzz.sh SECONDS [TARGET...]      (default: every target in TARGETS)
# Builds once into target/fuzz (reused), starts from fuzz/seeds/<target>/ plus a working corpus
# in target/fuzz-corpus/<target>/ (outside git), and prints one line per target. Exits non-zero
# when a target crashes, naming the reproducer under target/fuzz-artifacts/<target>/; rerun
# one with target/fuzz[/address]/x86_64-unknown-linux-gnu/release/<target> <file>.
#   FUZZ_SANITIZER=address (default) | none   none builds faster and runs ~3x more inputs,
#   but misses memory errors in C code and leaks; scripts/test.sh's smoke uses it.
# Needs nightly and cargo-fuzz (scripts/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift

# Per target, the largest input libFuzzer makes: above the largest seed, small enough that
# an input is still fast to run.
declare -A MAX_LEN=(
  [bundle]=262144         # the seed bundle is ~120 KB
  [tokenizer_json]=65536  # the seed tokenizer.json is ~7 KB plus a text
  [search_index]=16384
  [tables]=8192
  [pickle]=262144         # the seed checkpoints are 5-135 KB
  [serve_request]=20000   # just past serve's 16 KiB head limit
)
TARGETS=(bundle tokenizer_json search_index tables pickle serve_request)

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
for t in "${targets[@]}"; do
  [ -n "${MAX_LEN[$t]:-}" ] || { echo "fuzz: unknown target $t (known: ${TARGETS[*]})" >&2; exit 2; }
done

root=$PWD
sanitizer=${FUZZ_SANITIZER:-address}
# One build folder per sanitizer: switching flags in one would rebuild everything each time.
case $sanitizer in
  none) export CARGO_TARGET_DIR=$root/target/fuzz ;;
  *) export CARGO_TARGET_DIR=$root/target/fuzz/$sanitizer ;;
esac
# --debug-assertions: overflow checks on, so a wrapped length is a crash rather than a quiet
# wrong read.
mkdir -p target/fuzz-logs
if ! (cd fuzz && cargo +nightly fuzz build --sanitizer "$sanitizer" --debug-assertions) >target/fuzz-logs/build.log 2>&1; then
  tail -40 target/fuzz-logs/build.log >&2
  echo "fuzz: the build failed (target/fuzz-logs/build.log)" >&2
  exit 2
fi
bin_dir=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release

failed=0
for t in "${targets[@]}"; do
  corpus=$root/target/fuzz-corpus/$t
  artifacts=$root/target/fuzz-artifacts/$t/
  log=$root/target/fuzz-logs/$t.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  status=0
  seeds=()
  [ -d "$root/fuzz/seeds/$t" ] && seeds+=("$root/fuzz/seeds/$t")
  "$bin_dir/$t" "$corpus" "${seeds[@]}" \
    -max_total_time="$seconds" -rss_limit_mb=4096 -max_len="${MAX_LEN[$t]}" -timeout=20 \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(awk '/stat::number_of_executed_units/{print $NF}' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  crash=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //' || true)
  if [ "$status" -ne 0 ] || [ -n "$crash" ]; then
    failed=1
    reason=$(grep -m1 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|SUMMARY" "$log" || true)
    printf 'fuzz %-15s runs=%-9s %-22s CRASH %s (%s; log %s)\n' "$t" "${runs:-?}" "${cov:-cov: ?}" \
      "${crash:-none written}" "$reason" "${log#"$root"/}"
  else
    printf 'fuzz %-15s runs=%-9s %-22s crashes=0 corpus=%s\n' "$t" "${runs:-?}" "${cov:-cov: ?}" \
      "$(find "$corpus" -type f | wc -l)"
  fi
done
exit "$failed"
