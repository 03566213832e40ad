#!/usr/bin/env bash
# Fails if contracts/build/*.json differ from a fresh compile of contracts/*.sol (CI).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$root/scripts/compile-contracts.sh" "$tmp"
for f in Cloudcoin.json CloudcoinChannels.json; do
    if ! cmp -s "$tmp/$f" "$root/contracts/build/$f"; then
        echo "contracts/build/$f is stale: run scripts/compile-contracts.sh and commit" >&2
        diff <(head -c 2000 "$root/contracts/build/$f") <(head -c 2000 "$tmp/$f") >&2 || true
        exit 1
    fi
done
echo "contracts/build matches a fresh compile" >&2
