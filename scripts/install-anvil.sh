#!/usr/bin/env bash
# Installs anvil (local EVM dev chain) from the npm package @foundry-rs/anvil at a pinned
# version into .tools/anvil/ (gitignored) and links the binary at .tools/anvil/bin/anvil,
# where tests/ledger_contracts.rs looks for it (or set BITCLOUD_ANVIL).
set -euo pipefail
ANVIL_VERSION=1.7.1
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/.tools/anvil
if [ -x "$dir/bin/anvil" ] && "$dir/bin/anvil" --version | grep -q "Version: $ANVIL_VERSION"; then
    echo "$dir/bin/anvil"; exit 0
fi
mkdir -p "$dir/bin"
echo '{"name":"bitcloud-anvil","private":true}' >"$dir/package.json"
# The binary ships in a per-platform optional dependency (e.g. @foundry-rs/anvil-linux-amd64);
# the wrapper's postinstall is not needed, so npm may leave it unrun.
npm install --prefix "$dir" --no-audit --no-fund --no-save "@foundry-rs/anvil@$ANVIL_VERSION" >&2
bin=$(find "$dir/node_modules/@foundry-rs" -path '*/anvil-*/bin/anvil' -type f | head -n1)
[ -n "$bin" ] || { echo "no anvil binary for this platform in @foundry-rs/anvil" >&2; exit 1; }
chmod +x "$bin"
ln -sf "$bin" "$dir/bin/anvil"
"$dir/bin/anvil" --version >&2
echo "$dir/bin/anvil"
