#!/usr/bin/env bash
# Local demo mesh: three Bitcloud nodes in network namespaces, a - b - c, where a and c share
# no link (underlay 198.18.0.0/30 and 198.18.0.4/30 only). Real daemons on real TUN devices:
# a pings c through relay b, which sees only the mesh header and charges 1000 units per MiB;
# a pays b in signed vouchers. Shows routes, status and both wallets, then cleans up. Usage: cargo build --release && sudo scripts/demo.sh   (DEMO_HOLD=1 keeps it up)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "demo.sh: needs root (network namespaces, TUN devices): sudo $0" >&2; exit 1; }
cd "$(dirname "$0")/.."
# Under sudo, root's PATH usually lacks the user's cargo: build if we can, else use the build.
if command -v cargo >/dev/null; then
    cargo build --release -q
fi
BIN=$PWD/target/release/bitcloud
[ -x "$BIN" ] || { echo "demo.sh: no $BIN; run 'cargo build --release' first" >&2; exit 1; }
tag="bcdemo$$"
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for n in a b c; do ip netns del "$tag$n" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

for n in a b c; do ip netns add "$tag$n"; ip -n "$tag$n" link set lo up; done
link() { # link NS1 IF1 ADDR1 NS2 IF2 ADDR2
    ip link add "$2" type veth peer name "$5"
    ip link set "$2" netns "$1"; ip link set "$5" netns "$4"
    ip -n "$1" addr add "$3/30" dev "$2"; ip -n "$4" addr add "$6/30" dev "$5"
    ip -n "$1" link set "$2" up; ip -n "$4" link set "$5" up
}
link "${tag}a" "${tag}ab" 198.18.0.1 "${tag}b" "${tag}ba" 198.18.0.2
link "${tag}b" "${tag}bc" 198.18.0.5 "${tag}c" "${tag}cb" 198.18.0.6

for n in a b c; do
    "$BIN" init -c "$dir/$n/bitcloud.toml" --listen 0.0.0.0:51820 --control-socket bitcloud.sock --data-dir data >/dev/null
done
idof() { "$BIN" id -c "$dir/$1/bitcloud.toml" --json | sed -E "s/.*\"$2\":\"([^\"]+)\".*/\1/"; }
peer() { printf '\n[[peer]]\nid = "%s"\nendpoint = "%s:51820"\n' "$(idof "$2" id)" "$3" >> "$dir/$1/bitcloud.toml"; }
peer a b 198.18.0.2; peer b a 198.18.0.1; peer b c 198.18.0.6; peer c b 198.18.0.5
printf '\n[pricing]\nfee_per_mib = 1000\n' >> "$dir/b/bitcloud.toml"
for n in a b c; do printf '\n[wallet]\npay_interval_ms = 500\n' >> "$dir/$n/bitcloud.toml"; done
for n in a b c; do
    ip netns exec "$tag$n" "$BIN" up -c "$dir/$n/bitcloud.toml" 2>"$dir/$n.log" &
    pids+=($!)
done
for _ in $(seq 50); do [ -S "$dir/a/bitcloud.sock" ] && [ -S "$dir/c/bitcloud.sock" ] && break; sleep 0.1; done

c6=$(idof c ipv6)
echo "== a pings c ($c6) through relay b: a and c have no link of their own"
for _ in $(seq 20); do ip netns exec "${tag}a" ping -c 1 -W 1 "$c6" >/dev/null 2>&1 && break; sleep 0.5; done
ip netns exec "${tag}a" ping -c 3 -i 0.2 "$c6"
ip netns exec "${tag}a" ping -c 3 -i 0.2 "$(idof c ipv4)"
echo; echo "== bitcloud routes on a"
"$BIN" routes -c "$dir/a/bitcloud.toml"
echo; echo "== bitcloud status on a"
"$BIN" status -c "$dir/a/bitcloud.toml"
echo; echo "== a sends 1.4 MB of pings to c; relay b bills it"
ip netns exec "${tag}a" ping -q -c 1000 -i 0.002 -s 1400 "$c6" >/dev/null || true
sleep 2
echo; echo "== bitcloud wallet channels on b (the relay)"
"$BIN" wallet channels -c "$dir/b/bitcloud.toml"
echo; echo "== bitcloud wallet balance on a (the payer) and b (the relay)"
"$BIN" wallet balance -c "$dir/a/bitcloud.toml"
"$BIN" wallet balance -c "$dir/b/bitcloud.toml"
if [ "${DEMO_HOLD:-0}" = 1 ]; then
    echo; echo "Running. Try: sudo ip netns exec ${tag}a ping $c6   (Ctrl-C to stop)"
    wait
fi
