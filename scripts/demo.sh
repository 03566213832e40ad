#!/usr/bin/env bash
# Local demo mesh: two Bitcloud nodes in network namespaces joined by a veth (underlay
# 198.18.0.0/30), real daemons, real TUN devices; pings across, shows status, cleans up.
# Usage: sudo scripts/demo.sh            (keeps running until Ctrl-C with DEMO_HOLD=1)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "demo.sh: needs root (network namespaces, TUN devices): sudo $0" >&2; exit 1; }
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=$PWD/target/release/bitcloud
tag="bcdemo$$"
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "${tag}a" 2>/dev/null || true
    ip netns del "${tag}b" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

ip netns add "${tag}a"; ip netns add "${tag}b"
ip link add "${tag}x" type veth peer name "${tag}y"
ip link set "${tag}x" netns "${tag}a"; ip link set "${tag}y" netns "${tag}b"
ip -n "${tag}a" addr add 198.18.0.1/30 dev "${tag}x"; ip -n "${tag}b" addr add 198.18.0.2/30 dev "${tag}y"
for n in a b; do ip -n "$tag$n" link set lo up; done
ip -n "${tag}a" link set "${tag}x" up; ip -n "${tag}b" link set "${tag}y" up

for n in a b; do
    addr=198.18.0.$([ $n = a ] && echo 1 || echo 2)
    "$BIN" init -c "$dir/$n/bitcloud.toml" --listen "$addr:51820" --control-socket bitcloud.sock --data-dir data >/dev/null
done
idof() { "$BIN" id -c "$dir/$1/bitcloud.toml" --json | sed -E "s/.*\"$2\":\"([^\"]+)\".*/\1/"; }
printf '\n[[peer]]\nid = "%s"\nendpoint = "198.18.0.2:51820"\n' "$(idof b id)" >> "$dir/a/bitcloud.toml"
printf '\n[[peer]]\nid = "%s"\nendpoint = "198.18.0.1:51820"\n' "$(idof a id)" >> "$dir/b/bitcloud.toml"
for n in a b; do
    ip netns exec "$tag$n" "$BIN" up -c "$dir/$n/bitcloud.toml" 2>"$dir/$n.log" &
    pids+=($!)
done
for _ in $(seq 50); do [ -S "$dir/a/bitcloud.sock" ] && [ -S "$dir/b/bitcloud.sock" ] && break; sleep 0.1; done

echo "== node a pings node b over the encrypted tunnel (IPv6 and IPv4 overlay addresses)"
ip netns exec "${tag}a" ping -c 3 -i 0.2 "$(idof b ipv6)"
ip netns exec "${tag}a" ping -c 3 -i 0.2 "$(idof b ipv4)"
echo; echo "== bitcloud status on node a"
"$BIN" status -c "$dir/a/bitcloud.toml"
if [ "${DEMO_HOLD:-0}" = 1 ]; then
    echo; echo "Running. Try: sudo ip netns exec ${tag}a ping $(idof b ipv6)   (Ctrl-C to stop)"
    wait
fi
