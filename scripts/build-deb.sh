#!/usr/bin/env bash
# Build the Debian package into target/debian/ (installs cargo-deb if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo deb "$@"
ls -1 target/debian/*.deb
