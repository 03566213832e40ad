#!/usr/bin/env bash
# Build the Debian package into target/debian/ (installs cargo-deb if missing): the release
# binary first, then the man pages and completions it generates from its own CLI definitions.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release
rm -rf target/assets
target/release/bitcloud gen-assets target/assets
cargo deb --no-build "$@"
ls -1 target/debian/*.deb
