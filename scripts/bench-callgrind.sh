#!/usr/bin/env bash
# Instructions per data-path operation, counted by valgrind's callgrind: the regression
# benchmark of issue 11 (seal, open, replay window, route lookup, meters, a whole
# Node::handle_tun / handle_udp). Counts do not depend on the host's load, unlike wall time.
#
#   scripts/bench-callgrind.sh                 # every op, 20000 iterations each
#   scripts/bench-callgrind.sh seal open       # some ops
#   BENCH_ITERS=5000 scripts/bench-callgrind.sh
#
# It builds `cargo bench --bench per_packet` (release profile) and runs the binary once per op
# under `valgrind --tool=callgrind --toggle-collect=*measure*`: only instructions executed
# inside benches/per_packet.rs's `measure` loop are counted, so setup (handshakes, sealing
# the messages `open` consumes, route convergence) is never in the figure. Prints one line
# per op: instructions per operation (the loop's own overhead, a handful, included).
# Needs valgrind (apt-get install valgrind). See docs/benchmarks.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
ITERS=${BENCH_ITERS:-20000}
OPS=("$@")
if [[ ${#OPS[@]} -eq 0 ]]; then
    OPS=(seal open seal_aes open_aes seal_header_aes replay route meter_payer meter_payee node_tun node_udp)
fi
if ! [[ $ITERS =~ ^[1-9][0-9]*$ ]]; then
    echo "error: BENCH_ITERS must be a positive integer (got '$ITERS')" >&2
    exit 2
fi
command -v valgrind >/dev/null || {
    echo "error: valgrind not found (apt-get install -y valgrind)" >&2
    exit 1
}

cd "$REPO_DIR"
# The executable's path is the last "executable" cargo reports for the bench target.
BIN=$(cargo bench --bench per_packet --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
exe=None
for line in sys.stdin:
    try: m=json.loads(line)
    except ValueError: continue
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="per_packet":
        exe=m["executable"]
print(exe or "")')
[[ -x $BIN ]] || {
    echo "error: could not build the per_packet bench" >&2
    exit 1
}

WORK=$(mktemp -d /tmp/bench-callgrind.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
printf '%-12s %14s %12s\n' op instructions "per op"
for op in "${OPS[@]}"; do
    out="$WORK/$op.out"
    if ! valgrind --tool=callgrind --callgrind-out-file="$out" \
        --toggle-collect='*per_packet*measure*' "$BIN" "$op" "$ITERS" \
        >"$WORK/$op.log" 2>&1; then
        echo "error: $op failed under valgrind:" >&2
        tail -n 20 "$WORK/$op.log" >&2
        exit 1
    fi
    # "summary:" (or "totals:") holds the collected instruction count (event Ir).
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out")
    if [[ -z $ir || $ir -eq 0 ]]; then
        echo "error: $op: nothing collected (did the symbol name of measure change?)" >&2
        exit 1
    fi
    awk -v op="$op" -v ir="$ir" -v n="$ITERS" 'BEGIN { printf "%-12s %14d %12.1f\n", op, ir, ir / n }'
done
