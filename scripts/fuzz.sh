#!/usr/bin/env bash
# Run every cargo-fuzz target for RUNS executions each (default 10 million; or SECS seconds
# each with SECS=N), starting from the committed seeds (fuzz/seeds/TARGET, made by
# tests/fuzz_seeds.rs) plus a working corpus under target/fuzz-corpus/, and print one line per
# target: executions, coverage (libFuzzer's cov and ft), corpus size, crashes. A crash leaves
# its input in fuzz/artifacts/TARGET/ and makes the script exit non-zero; turn it into a
# regression test before fixing it. Usage: scripts/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
RUNS="${RUNS:-10000000}"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
if [ -n "${SECS:-}" ]; then limit=(-max_total_time="$SECS"); else limit=(-runs="$RUNS"); fi
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
failed=0
printf '%-12s %12s %8s %8s %8s %s\n' target executions cov ft corpus result
for t in "${targets[@]}"; do
    corpus="target/fuzz-corpus/$t"
    mkdir -p "$corpus"
    dirs=("$PWD/$corpus")
    [ -d "fuzz/seeds/$t" ] && dirs+=("$PWD/fuzz/seeds/$t")
    result=ok
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$t" "${dirs[@]}" -- \
        "${limit[@]}" -print_final_stats=1 >"$log/$t" 2>&1) || { result=CRASH; failed=1; }
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log/$t" | tail -1)
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log/$t" | tail -1 || true)
    cov=$(sed -nE 's/.*[[:space:]]cov: ([0-9]+).*/\1/p' <<<"$done_line")
    ft=$(sed -nE 's/.*[[:space:]]ft: ([0-9]+).*/\1/p' <<<"$done_line")
    size=$(find "$corpus" -type f | wc -l)
    printf '%-12s %12s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$size" "$result"
    [ "$result" = ok ] || tail -30 "$log/$t" >&2
done
exit "$failed"
