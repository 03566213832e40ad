#!/usr/bin/env bash
# Crash-safety soak of paid forwarding: the same test as CI's
# `kill9_payer_and_payee_at_random_instants_loses_nothing`, with 1,000 kill -9 cycles of the
# payer and the payee (random victim, random instant) instead of 50. Needs root (network
# namespaces, TUN devices). Takes about 15-20 minutes.
#
#   sudo scripts/soak-money.sh            # 1000 cycles
#   sudo SOAK_CYCLES=200 scripts/soak-money.sh
#
# It runs real daemons in namespaces the test creates and removes (names start with "bc"),
# on 198.18.0.0/15 underlay addresses and fd00::/8 overlay addresses only.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${SOAK_CYCLES:-1000}"
if [[ $EUID -ne 0 ]]; then
    echo "soak-money: needs root (namespaces and TUN devices); try sudo" >&2
    exit 2
fi
export CI="${CI:-1}" # fail rather than skip if anything keeps the test from running
export BITCLOUD_KILL_CYCLES="$cycles"
# The test itself bounds every wait; this bounds the whole run (about 1 s per cycle).
timeout "$((cycles * 3 + 600))" \
    cargo test --test money_crash_netns -- --nocapture --test-threads=1
