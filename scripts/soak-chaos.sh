#!/usr/bin/env bash
# Chaos soak: the same test as CI's `chaos_soak_heals_and_keeps_the_books` (tests/chaos_netns.rs),
# for 10 minutes instead of 60 s: six real daemons under impaired links (loss, delay, jitter,
# reordering, duplication), link flaps, kill -9 and restarts, and wall-clock jumps; afterwards
# every wallet's books must match voucher for voucher. Needs root and Debian's faketime.
#
#   sudo scripts/soak-chaos.sh                 # 600 s
#   sudo SOAK_SECS=120 scripts/soak-chaos.sh
#   sudo BITCLOUD_CHAOS_SEED=<hex> scripts/soak-chaos.sh   # replay a schedule
#
# Namespaces are created and removed by the test (names start with "bc"), on 198.18.0.0/15
# underlay, 198.19.0.0/16 and 2001:db8::/32 test-internet and fd00::/8 overlay addresses only.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${SOAK_SECS:-600}"
if [[ $EUID -ne 0 ]]; then
    echo "soak-chaos: needs root (namespaces and TUN devices); try sudo" >&2
    exit 2
fi
export CI="${CI:-1}" # fail rather than skip if anything keeps the test from running
export BITCLOUD_CHAOS_SECS="$secs"
# Each fault waits at most 45 s for convergence; this bounds the whole run.
timeout "$((secs * 3 + 600))" \
    cargo test --test chaos_netns chaos_soak -- --nocapture --test-threads=1
