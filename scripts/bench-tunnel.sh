#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions called indirectly ("layout_$layout", traps)
# Tunnel throughput / latency / CPU benchmark: bitcloud vs wireguard-go vs
# boringtun (and a plain veth baseline), in throw-away network namespaces.
#
#   sudo scripts/bench-tunnel.sh
#   BENCH_DURATION=3 BENCH_RUNS=1 BENCH_IMPLS="veth wireguard-go" scripts/bench-tunnel.sh
#
# See docs/benchmarks.md for what is measured and how to read the table.
#
# Environment knobs:
#   BENCH_DURATION   seconds per iperf3 run                       (default 10)
#   BENCH_RUNS       runs per measurement; the table shows medians (default 3)
#   BENCH_IMPLS      "veth bitcloud wireguard-go boringtun"
#   BENCH_LAYOUTS    "direct relay"
#   BENCH_OUT        also write the table (markdown) to this file
#   BENCH_PINGS      pings for the RTT figures                     (default 200)
#   BENCH_PING_INTERVAL  seconds between pings                     (default 0.01)
#   BENCH_UP_TIMEOUT seconds for a tunnel to pass its first ping   (default 10)
#   BENCH_KEEP=1     keep the work dir (logs, configs, iperf3 JSON) afterwards
#   BENCH_STRICT=1   exit 1 if any row is n/a, except bitcloud rows
#   BITCLOUD_BIN     use this bitcloud binary instead of `cargo build --release`
#   BENCH_BITCLOUD_RELAY_PEERS  "hub" (default: A and C list only R as a peer)
#                    or "full" (A and C also list each other by id, no endpoint)
#   BENCH_BITCLOUD_FEE  relay layout: R's fee in units per MiB (default 0: an unpaid relay);
#                    with a fee, A and C pay R in vouchers and the table notes the payment
#                    bytes per GB carried (run once with 0 and once with a fee to compare)
#   BENCH_PAID_COMPARE=1  run relay/bitcloud twice, unpaid (fee 0) and paid (row
#                    "bitcloud paid", fee BENCH_BITCLOUD_FEE or 1000), and print paid/unpaid
#   BENCH_UDP        1 (default): also find the highest iperf3 UDP rate (-u -l 1380) with
#                    under 1 % receiver-side loss; 0 skips it (and its table column)
#   BENCH_UDP_DURATION  seconds per UDP probe                      (default 3)
#   BENCH_UDP_RUNS   at most this many UDP probes per row           (default 8)
#   BENCH_UDP_WINDOW iperf3 -w for the UDP probes, both ends' socket buffers (default 4M;
#                    empty: the kernel defaults); the kernel caps it at net.core.rmem_max
#   BENCH_BITCLOUD_CONFIG  TOML text appended to every bitcloud node's config
#                    (e.g. $'[wallet]\npay_interval_ms = 500')
#   BORINGTUN_VERSION  boringtun-cli version for `cargo install` (default 0.7.1)
#
# Addresses used (nothing else is ever contacted):
#   underlay  198.18.0.0/15 (benchmarking range, RFC 2544), only on veths
#             between namespaces this script creates;
#   overlay   100.64.0.0/10 and fd00::/8 on the tunnel interfaces.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-netns.sh
. "$SCRIPT_DIR/lib-netns.sh"

usage() {
    sed -n '3,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}
case "${1:-}" in
-h | --help)
    usage
    exit 0
    ;;
"") ;;
*)
    echo "error: unexpected argument '$1' (configuration is by environment variables, see --help)" >&2
    exit 2
    ;;
esac

if [[ $(id -u) -ne 0 ]]; then
    echo "error: bench-tunnel.sh must run as root (it creates network namespaces, veths and TUN devices)." >&2
    echo "       try: sudo -E $0" >&2
    exit 1
fi

BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_IMPLS=${BENCH_IMPLS:-"veth bitcloud wireguard-go boringtun"}
BENCH_LAYOUTS=${BENCH_LAYOUTS:-"direct relay"}
BENCH_OUT=${BENCH_OUT:-}
BENCH_PINGS=${BENCH_PINGS:-200}
BENCH_PING_INTERVAL=${BENCH_PING_INTERVAL:-0.01}
BENCH_UP_TIMEOUT=${BENCH_UP_TIMEOUT:-10}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_STRICT=${BENCH_STRICT:-0}
BITCLOUD_BIN=${BITCLOUD_BIN:-}
BENCH_BITCLOUD_RELAY_PEERS=${BENCH_BITCLOUD_RELAY_PEERS:-hub}
BORINGTUN_VERSION=${BORINGTUN_VERSION:-0.7.1}
BENCH_BITCLOUD_FEE=${BENCH_BITCLOUD_FEE:-0}
BENCH_PAID_COMPARE=${BENCH_PAID_COMPARE:-0}
BENCH_UDP=${BENCH_UDP:-1}
BENCH_UDP_DURATION=${BENCH_UDP_DURATION:-3}
BENCH_UDP_RUNS=${BENCH_UDP_RUNS:-8}
BENCH_UDP_WINDOW=${BENCH_UDP_WINDOW-4M}

for v in BENCH_DURATION BENCH_RUNS BENCH_PINGS BENCH_UP_TIMEOUT BENCH_UDP_DURATION BENCH_UDP_RUNS; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "error: $v must be a positive integer (got '${!v}')" >&2
        exit 2
    fi
done
if ! [[ $BENCH_BITCLOUD_FEE =~ ^[0-9]+$ ]]; then
    echo "error: BENCH_BITCLOUD_FEE must be a non-negative integer (got '$BENCH_BITCLOUD_FEE')" >&2
    exit 2
fi
for v in BENCH_UDP BENCH_PAID_COMPARE; do
    if ! [[ ${!v} == 0 || ${!v} == 1 ]]; then
        echo "error: $v must be 0 or 1 (got '${!v}')" >&2
        exit 2
    fi
done
if ! [[ -z $BENCH_UDP_WINDOW || $BENCH_UDP_WINDOW =~ ^[1-9][0-9]*[KMG]?$ ]]; then
    echo "error: BENCH_UDP_WINDOW must be empty or a size like 4M (got '$BENCH_UDP_WINDOW')" >&2
    exit 2
fi
# Fee of the paid row when comparing paid and unpaid relays.
PAID_FEE=$BENCH_BITCLOUD_FEE
((PAID_FEE > 0)) || PAID_FEE=1000
for i in $BENCH_IMPLS; do
    case $i in veth | bitcloud | wireguard-go | boringtun) ;; *)
        echo "error: unknown implementation '$i' in BENCH_IMPLS" >&2
        exit 2
        ;;
    esac
done
for l in $BENCH_LAYOUTS; do
    case $l in direct | relay) ;; *)
        echo "error: unknown layout '$l' in BENCH_LAYOUTS" >&2
        exit 2
        ;;
    esac
done
case $BENCH_BITCLOUD_RELAY_PEERS in hub | full) ;; *)
    echo "error: BENCH_BITCLOUD_RELAY_PEERS must be hub or full" >&2
    exit 2
    ;;
esac

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH:/usr/sbin:/sbin"

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
has_impl() { [[ " $BENCH_IMPLS " == *" $1 "* ]]; }

# --------------------------------------------------------------------------
# Work dir, state and cleanup
# --------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/bench-tunnel.XXXXXX)
netns_state_init "$WORK/state"
RESULTS=$WORK/results
: >"$RESULTS"
# Short random tag: namespace names and wg interface names (whose UAPI sockets
# live in the shared /var/run/wireguard) must not collide with anything else.
TAG=$(printf '%04x' $((RANDOM ^ ($$ & 0xffff))))
SOCKS_FILE=$WORK/state/socks
: >"$SOCKS_FILE"

CASE_PID=""
main_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM HUP
    if [[ -n $CASE_PID ]] && kill -0 "$CASE_PID" 2>/dev/null; then
        kill -TERM "$CASE_PID" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$CASE_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$CASE_PID" 2>/dev/null || true
        wait "$CASE_PID" 2>/dev/null || true
    fi
    netns_cleanup
    if [[ -s $SOCKS_FILE ]]; then
        xargs -r rm -f <"$SOCKS_FILE" || true
    fi
    if [[ $BENCH_KEEP == 1 ]]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap main_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------
ensure_tools() {
    local -A need=(
        [iperf3]=iperf3 [wg]=wireguard-tools [wireguard-go]=wireguard-go
        [ip]=iproute2 [ss]=iproute2 [ping]=iputils-ping [jq]=jq [timeout]=coreutils
        [getconf]=libc-bin [awk]=mawk
    )
    local cmd pkgs=()
    for cmd in "${!need[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${need[$cmd]}")
    done
    if ((${#pkgs[@]})); then
        mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
        log "installing with apt-get: ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
}

BORINGTUN_BIN=""
BORINGTUN_UNAVAILABLE=""
ensure_boringtun() {
    BORINGTUN_BIN=$(command -v boringtun-cli || true)
    [[ -n $BORINGTUN_BIN ]] && return 0
    if ! command -v cargo >/dev/null; then
        BORINGTUN_UNAVAILABLE="boringtun-cli not found and cargo is missing"
        return 0
    fi
    log "installing boringtun-cli $BORINGTUN_VERSION with cargo (takes a few minutes)"
    if cargo install --locked boringtun-cli --version "$BORINGTUN_VERSION" >"$WORK/boringtun-install.log" 2>&1 ||
        cargo install boringtun-cli --version "$BORINGTUN_VERSION" >>"$WORK/boringtun-install.log" 2>&1; then
        BORINGTUN_BIN=$(command -v boringtun-cli || true)
    fi
    if [[ -z $BORINGTUN_BIN ]]; then
        tail -n 20 "$WORK/boringtun-install.log" >&2 || true
        BORINGTUN_UNAVAILABLE="cargo install boringtun-cli failed"
    fi
}

BITCLOUD_UNAVAILABLE=""
BITCLOUD_VERSION=""
ensure_bitcloud() {
    if [[ -n $BITCLOUD_BIN ]]; then
        BITCLOUD_VERSION="($BITCLOUD_BIN)"
        [[ -x $BITCLOUD_BIN ]] || BITCLOUD_UNAVAILABLE="BITCLOUD_BIN=$BITCLOUD_BIN is not executable"
        return 0
    fi
    if ! command -v cargo >/dev/null; then
        BITCLOUD_UNAVAILABLE="cargo not found, cannot build bitcloud"
        return 0
    fi
    log "building bitcloud (cargo build --release)"
    BITCLOUD_VERSION="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')"
    git -C "$REPO_DIR" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || BITCLOUD_VERSION+="+dirty"
    if (cd "$REPO_DIR" && cargo build --release --bin bitcloud) >"$WORK/bitcloud-build.log" 2>&1; then
        BITCLOUD_BIN="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/bitcloud"
        [[ $BITCLOUD_BIN == /* ]] || BITCLOUD_BIN="$REPO_DIR/$BITCLOUD_BIN"
        [[ -x $BITCLOUD_BIN ]] || BITCLOUD_UNAVAILABLE="build succeeded but $BITCLOUD_BIN is missing"
    else
        tail -n 20 "$WORK/bitcloud-build.log" >&2 || true
        BITCLOUD_UNAVAILABLE="cargo build --release failed"
    fi
}

# --------------------------------------------------------------------------
# Small numeric helpers (awk, no python needed)
# --------------------------------------------------------------------------
median() { # values... -> median
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# Median and p99 (nearest-rank: the ceil(0.99*n)-th smallest) of a file of numbers.
median_p99_file() {
    sort -g "$1" | awk '{a[NR]=$1} END {
        if (NR == 0) { print "nan nan"; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        r = 0.99 * NR; k = int(r); if (k < r) k++; if (k < 1) k = 1
        printf "%.3f %.3f\n", m, a[k] }'
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# --------------------------------------------------------------------------
# Per-case state (each case runs in its own subshell; see run_case)
# --------------------------------------------------------------------------
declare -A NS=() UL=() T4=() T6=()
# TUN_PID_OF[role]: the tunnel process of that role (R's is the relay's).
declare -A TUN_PID_OF=()
FAR="" TUN_PIDS=() CASE_DIR="" REASON_FILE=""

fail() { # reason -> the row becomes n/a with this reason
    echo "$*" >"$REASON_FILE"
    log "FAILED: $*"
    exit 1
}
nsx() { local r=$1; shift; ip netns exec "${NS[$r]}" "$@"; }

ping_ok() { # role addr
    nsx "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1
}
ping6_ok() { # role addr: a few tries, the first packet may wait for a route/ND
    local i
    for i in 1 2 3; do
        nsx "$1" ping -6 -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
    done
    return 1
}
V6NOTE=""

# ----- layouts -------------------------------------------------------------
layout_direct() {
    NS=([a]="bcbench-$TAG-direct-a" [b]="bcbench-$TAG-direct-b")
    UL=([a]=198.18.0.1 [b]=198.18.0.2)
    T4=([a]=100.64.0.1 [b]=100.64.0.2)
    T6=([a]=fd00:bc::1 [b]=fd00:bc::2)
    FAR=b
    netns_add "${NS[a]}"
    netns_add "${NS[b]}"
    ip link add name ul0 netns "${NS[a]}" type veth peer name ul0 netns "${NS[b]}"
    local r
    for r in a b; do
        nsx "$r" sysctl -qw net.ipv4.ip_forward=0
        ip -n "${NS[$r]}" addr add "${UL[$r]}/30" dev ul0
        ip -n "${NS[$r]}" link set ul0 mtu 1500 up
    done
    local i
    for i in $(seq 1 30); do ping_ok a "${UL[b]}" && return 0; sleep 0.1; done
    fail "underlay A->B does not answer pings"
}

layout_relay() {
    NS=([a]="bcbench-$TAG-relay-a" [r]="bcbench-$TAG-relay-r" [c]="bcbench-$TAG-relay-c")
    # UL[r] is R's address facing A; R faces C with 198.18.2.1.
    UL=([a]=198.18.1.1 [r]=198.18.1.2 [c]=198.18.2.2)
    T4=([a]=100.64.1.1 [r]=100.64.1.2 [c]=100.64.1.3)
    T6=([a]=fd00:bc:1::1 [r]=fd00:bc:1::2 [c]=fd00:bc:1::3)
    FAR=c
    local r
    for r in a r c; do
        netns_add "${NS[$r]}"
        nsx "$r" sysctl -qw net.ipv4.ip_forward=0
    done
    ip link add name ul0 netns "${NS[a]}" type veth peer name ula netns "${NS[r]}"
    ip link add name ul0 netns "${NS[c]}" type veth peer name ulc netns "${NS[r]}"
    ip -n "${NS[a]}" addr add 198.18.1.1/30 dev ul0
    ip -n "${NS[r]}" addr add 198.18.1.2/30 dev ula
    ip -n "${NS[r]}" addr add 198.18.2.1/30 dev ulc
    ip -n "${NS[c]}" addr add 198.18.2.2/30 dev ul0
    ip -n "${NS[a]}" link set ul0 mtu 1500 up
    ip -n "${NS[c]}" link set ul0 mtu 1500 up
    ip -n "${NS[r]}" link set ula mtu 1500 up
    ip -n "${NS[r]}" link set ulc mtu 1500 up
    # Routes towards the other side exist, so "A cannot reach C" below is
    # enforced by R refusing to forward underlay traffic, not by a missing route.
    ip -n "${NS[a]}" route add 198.18.2.0/30 via 198.18.1.2
    ip -n "${NS[c]}" route add 198.18.1.0/30 via 198.18.2.1
    local i ok=0
    for i in $(seq 1 30); do
        if ping_ok a 198.18.1.2 && ping_ok c 198.18.2.1; then ok=1; break; fi
        sleep 0.1
    done
    ((ok)) || fail "underlay A->R or C->R does not answer pings"
    relay_assert_isolated
}

# A must not reach C on the underlay (R does not forward underlay packets).
relay_assert_isolated() {
    if ping_ok a 198.18.2.2; then
        fail "layout broken: A reaches C's underlay address 198.18.2.2 directly"
    fi
}

# Kernel forwarding on R for tunnel traffic only: ip_forward=1 turns on
# forwarding on every interface, then it is switched off again on the underlay
# veths. For IPv4 the kernel checks the *input* interface's forwarding flag,
# so packets arriving on ula/ulc are never forwarded.
relay_forward_tunnel_only() { # tunnel ifname on R
    local ifn=$1
    nsx r sysctl -qw net.ipv4.ip_forward=1
    nsx r sysctl -qw net.ipv4.conf.ula.forwarding=0
    nsx r sysctl -qw net.ipv4.conf.ulc.forwarding=0
    nsx r sysctl -qw "net.ipv4.conf.$ifn.forwarding=1"
    # Hub traffic leaves on the interface it came in on; no ICMP redirects.
    nsx r sysctl -qw net.ipv4.conf.all.send_redirects=0
    nsx r sysctl -qw "net.ipv4.conf.$ifn.send_redirects=0"
    # IPv6: the underlay has only link-local addresses (never forwarded), so
    # turning forwarding on only affects the fd00::/8 tunnel addresses.
    nsx r sysctl -qw net.ipv6.conf.all.forwarding=1
}

# ----- implementations -----------------------------------------------------
dump_log_tail() { # file
    [[ -s $1 ]] || return 0
    echo "---- last lines of $1:" >&2
    tail -n 8 "$1" >&2 || true
}

check_alive() { # fail if any tunnel process died
    local p
    for p in "${TUN_PIDS[@]}"; do
        if ! netns_pid_alive "$p"; then
            dump_log_tail "$CASE_DIR/tunnel-$p.log"
            fail "tunnel process $p exited"
        fi
    done
}

start_wg() { # impl: wireguard-go | boringtun
    local impl=$1 roles r ifn i
    roles=("${!NS[@]}")
    declare -gA WGIF=() PRIV=() PUB=()
    for r in "${roles[@]}"; do
        WGIF[$r]="bw$TAG$r"
        umask 077
        wg genkey >"$CASE_DIR/$r.key"
        PRIV[$r]=$CASE_DIR/$r.key
        PUB[$r]=$(wg pubkey <"$CASE_DIR/$r.key")
        ifn=${WGIF[$r]}
        if [[ -e /var/run/wireguard/$ifn.sock ]]; then
            fail "/var/run/wireguard/$ifn.sock already exists (name clash)"
        fi
        echo "/var/run/wireguard/$ifn.sock" >>"$SOCKS_FILE"
        local logf=$CASE_DIR/tunnel-$r.log
        if [[ $impl == wireguard-go ]]; then
            # The PREFER_BUGGY variable only matters to very old builds.
            netns_spawn "${NS[$r]}" "$logf" env WG_PROCESS_FOREGROUND=1 \
                WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 LOG_LEVEL=error \
                wireguard-go "$ifn"
        else
            netns_spawn "${NS[$r]}" "$logf" env WG_SUDO=1 \
                "$BORINGTUN_BIN" --foreground --disable-drop-privileges \
                --verbosity error "$ifn"
        fi
        TUN_PIDS+=("$NETNS_SPAWNED_PID")
        TUN_PID_OF[$r]=$NETNS_SPAWNED_PID
        ln -sf "tunnel-$r.log" "$CASE_DIR/tunnel-$NETNS_SPAWNED_PID.log"
    done
    # Wait for each TUN device and UAPI socket.
    for r in "${roles[@]}"; do
        ifn=${WGIF[$r]}
        for i in $(seq 1 50); do
            [[ -S /var/run/wireguard/$ifn.sock ]] && ip -n "${NS[$r]}" link show "$ifn" >/dev/null 2>&1 && break
            check_alive
            sleep 0.1
        done
        [[ -S /var/run/wireguard/$ifn.sock ]] || fail "$impl did not create $ifn in ${NS[$r]} within 5 s"
    done
    # Keys, peers, addresses.
    local port=51820
    if [[ $FAR == b ]]; then
        wg_conf a peer "${PUB[b]}" endpoint "${UL[b]}:$port" allowed-ips "${T4[b]}/32,${T6[b]}/128"
        wg_conf b peer "${PUB[a]}" endpoint "${UL[a]}:$port" allowed-ips "${T4[a]}/32,${T6[a]}/128"
    else
        # Hub on R; A and C only know R, and route each other's tunnel address to it.
        wg_conf a peer "${PUB[r]}" endpoint "198.18.1.2:$port" \
            allowed-ips "${T4[r]}/32,${T4[c]}/32,${T6[r]}/128,${T6[c]}/128"
        wg_conf c peer "${PUB[r]}" endpoint "198.18.2.1:$port" \
            allowed-ips "${T4[r]}/32,${T4[a]}/32,${T6[r]}/128,${T6[a]}/128"
        wg_conf r peer "${PUB[a]}" endpoint "198.18.1.1:$port" allowed-ips "${T4[a]}/32,${T6[a]}/128" \
            peer "${PUB[c]}" endpoint "198.18.2.2:$port" allowed-ips "${T4[c]}/32,${T6[c]}/128"
        relay_forward_tunnel_only "${WGIF[r]}"
    fi
    for r in "${roles[@]}"; do
        ifn=${WGIF[$r]}
        ip -n "${NS[$r]}" addr add "${T4[$r]}/24" dev "$ifn"
        ip -n "${NS[$r]}" -6 addr add "${T6[$r]}/64" dev "$ifn" nodad
        ip -n "${NS[$r]}" link set "$ifn" mtu 1420 up
    done
}
wg_conf() { # role, then `wg set` peer arguments
    local r=$1
    shift
    nsx "$r" wg set "${WGIF[$r]}" private-key "${PRIV[$r]}" listen-port 51820 "$@"
}

start_bitcloud() {
    [[ -z $BITCLOUD_UNAVAILABLE ]] || fail "$BITCLOUD_UNAVAILABLE"
    local roles r cfg dir json listen
    roles=("${!NS[@]}")
    declare -gA BCCFG=() BCID=()
    for r in "${roles[@]}"; do
        dir=$CASE_DIR/bitcloud-$r
        mkdir -p "$dir"
        cfg=$dir/bitcloud.toml
        BCCFG[$r]=$cfg
        listen="${UL[$r]}:51820"
        # R has two underlay addresses (one towards A, one towards C).
        [[ $r == r ]] && listen="0.0.0.0:51820"
        "$BITCLOUD_BIN" init -c "$cfg" --listen "$listen" --tun bc0 --force >"$dir/init.log" 2>&1 ||
            { dump_log_tail "$dir/init.log"; fail "bitcloud init failed (role $r)"; }
        [[ -s $cfg ]] || fail "bitcloud init did not write $cfg"
        # Every node needs its own control socket and data dir (several daemons
        # run on this host at once), whatever defaults `init` wrote.
        toml_node_set "$cfg" control_socket '"bitcloud.sock"'
        toml_node_set "$cfg" data_dir '"data"'
        json=$("$BITCLOUD_BIN" id -c "$cfg" --json 2>"$dir/id.log") ||
            { dump_log_tail "$dir/id.log"; fail "bitcloud id --json failed (role $r)"; }
        BCID[$r]=$(jq -er .id <<<"$json" 2>/dev/null) || fail "bitcloud id --json: no .id in: ${json:0:200}"
        T4[$r]=$(jq -er .ipv4 <<<"$json" 2>/dev/null) || fail "bitcloud id --json: no .ipv4 in: ${json:0:200}"
        T6[$r]=$(jq -er .ipv6 <<<"$json" 2>/dev/null) || fail "bitcloud id --json: no .ipv6 in: ${json:0:200}"
        [[ ${BCID[$r]} =~ ^[0-9a-f]{64}$ ]] || fail "bitcloud id is not 64 hex: ${BCID[$r]}"
        overlay4_ok "${T4[$r]}" || fail "bitcloud ipv4 ${T4[$r]} is not in 100.64.0.0/10"
        [[ ${T6[$r],,} == fd* ]] || fail "bitcloud ipv6 ${T6[$r]} is not in fd00::/8"
    done
    # Appended to every node, in both layouts (a direct run used to ignore it).
    if [[ -n ${BENCH_BITCLOUD_CONFIG:-} ]]; then
        for r in "${roles[@]}"; do printf '\n%s\n' "$BENCH_BITCLOUD_CONFIG" >>"${BCCFG[$r]}"; done
    fi
    if [[ $FAR == b ]]; then
        bc_peer a "${BCID[b]}" "${UL[b]}:51820"
        bc_peer b "${BCID[a]}" "${UL[a]}:51820"
    else
        bc_peer a "${BCID[r]}" "198.18.1.2:51820"
        bc_peer c "${BCID[r]}" "198.18.2.1:51820"
        bc_peer r "${BCID[a]}" "198.18.1.1:51820"
        bc_peer r "${BCID[c]}" "198.18.2.2:51820"
        if ((${BENCH_BITCLOUD_FEE:-0} > 0)); then
            printf '\n[pricing]\nfee_per_mib = %d\n' "$BENCH_BITCLOUD_FEE" >>"${BCCFG[r]}"
        fi
        if [[ $BENCH_BITCLOUD_RELAY_PEERS == full ]]; then
            bc_peer a "${BCID[c]}" ""
            bc_peer c "${BCID[a]}" ""
        fi
    fi
    for r in "${roles[@]}"; do
        netns_spawn "${NS[$r]}" "$CASE_DIR/tunnel-$r.log" env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
            "$BITCLOUD_BIN" up -c "${BCCFG[$r]}"
        TUN_PIDS+=("$NETNS_SPAWNED_PID")
        TUN_PID_OF[$r]=$NETNS_SPAWNED_PID
        ln -sf "tunnel-$r.log" "$CASE_DIR/tunnel-$NETNS_SPAWNED_PID.log"
    done
}
# toml_node_set FILE KEY VALUE: set KEY = VALUE (VALUE already TOML-quoted) in
# the [node] table: replace an existing line there, or add one right after [node].
toml_node_set() {
    local f=$1 k=$2 v=$3
    awk -v k="$k" -v v="$v" '
        /^[[:space:]]*\[/ { if (innode && !done) { print k " = " v; done = 1 }
                            innode = ($0 ~ /^[[:space:]]*\[node\][[:space:]]*(#.*)?$/) }
        innode && !done && $0 ~ "^[[:space:]]*" k "[[:space:]]*=" { print k " = " v; done = 1; next }
        { print }
        END { if (innode && !done) print k " = " v; if (!seen_node && !done) exit 3 }
        /^[[:space:]]*\[node\]/ { seen_node = 1 }
    ' "$f" >"$f.tmp" || fail "$f has no [node] table"
    mv "$f.tmp" "$f"
}
bc_peer() { # role id endpoint("" = none)
    {
        printf '\n[[peer]]\nid = "%s"\n' "$2"
        [[ -n $3 ]] && printf 'endpoint = "%s"\n' "$3"
        true
    } >>"${BCCFG[$1]}"
}
overlay4_ok() { # a.b.c.d in 100.64.0.0/10
    local IFS=.
    # shellcheck disable=SC2086
    set -- $1
    [[ $# -eq 4 && $1 == 100 && $2 =~ ^[0-9]+$ ]] && (($2 >= 64 && $2 <= 127))
}

# Ping the far tunnel address until it answers; the deadline counts from the
# moment the tunnel software was started.
wait_tunnel() { # start_epoch
    local start=$1
    while :; do
        check_alive
        if ping_ok a "${T4[$FAR]}"; then
            log "tunnel up after $(($(date +%s) - start)) s"
            return 0
        fi
        if (($(date +%s) - start >= BENCH_UP_TIMEOUT)); then
            local r
            for r in "${!NS[@]}"; do dump_log_tail "$CASE_DIR/tunnel-$r.log"; done
            fail "no ping through the tunnel to ${T4[$FAR]} within ${BENCH_UP_TIMEOUT} s"
        fi
        sleep 0.2
    done
}

# ----- measurement ---------------------------------------------------------
measure() { # layout impl
    local layout=$1 impl=$2 far_ip=${T4[$FAR]} i p json
    netns_spawn "${NS[$FAR]}" "$CASE_DIR/iperf3-server.log" iperf3 -s -p 5201
    local srv=$NETNS_SPAWNED_PID
    for i in $(seq 1 50); do
        [[ -n $(nsx "$FAR" ss -Hltn 'sport = :5201') ]] && break
        netns_pid_alive "$srv" || fail "iperf3 server exited: $(tail -n 3 "$CASE_DIR/iperf3-server.log")"
        sleep 0.1
    done
    local -a g1=() g4=()
    local ticks_total=0 bytes_total=0 c0 c1 bps bytes err
    # Relay layout: R's process is also sampled on its own (relay vs endpoint CPU).
    local relay_pid=${TUN_PID_OF[r]:-} relay_ticks=0 r0=0 r1=0
    for i in $(seq 1 "$BENCH_RUNS"); do
        for p in 1 4; do
            json=$CASE_DIR/iperf3-run$i-P$p.json
            c0=0
            ((${#TUN_PIDS[@]})) && { c0=$(procs_cpu_ticks "${TUN_PIDS[@]}") || check_alive; }
            [[ -n $relay_pid ]] && { r0=$(proc_cpu_ticks "$relay_pid") || check_alive; }
            if ! timeout $((BENCH_DURATION + 30)) ip netns exec "${NS[a]}" \
                iperf3 -c "$far_ip" -p 5201 -t "$BENCH_DURATION" -P "$p" -J --connect-timeout 5000 \
                >"$json" 2>"$json.err"; then
                err=$(jq -r '.error // empty' "$json" 2>/dev/null || true)
                fail "iperf3 -P $p run $i failed: ${err:-$(tail -n 2 "$json.err")}"
            fi
            c1=0
            ((${#TUN_PIDS[@]})) && { c1=$(procs_cpu_ticks "${TUN_PIDS[@]}") || check_alive; }
            [[ -n $relay_pid ]] && { r1=$(proc_cpu_ticks "$relay_pid") || check_alive; }
            bps=$(jq -er '.end.sum_received.bits_per_second' "$json") || fail "iperf3 JSON without sum_received"
            bytes=$(jq -er '.end.sum_received.bytes' "$json")
            ticks_total=$((ticks_total + c1 - c0))
            relay_ticks=$((relay_ticks + r1 - r0))
            bytes_total=$(awk -v a="$bytes_total" -v b="$bytes" 'BEGIN { printf "%.0f", a + b }')
            if ((p == 1)); then g1+=("$bps"); else g4+=("$bps"); fi
            log "$layout/$impl run $i -P $p: $(awk -v b="$bps" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s, tunnel CPU $(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }') s"
            sleep 1
        done
    done
    # RTT: individual replies, median and nearest-rank p99.
    local pinglog=$CASE_DIR/ping.log
    nsx a ping -n -c "$BENCH_PINGS" -i "$BENCH_PING_INTERVAL" -W 2 "$far_ip" >"$pinglog" 2>&1 || true
    grep -o 'time=[0-9.]*' "$pinglog" | cut -d= -f2 >"$CASE_DIR/rtts" || true
    local n
    n=$(wc -l <"$CASE_DIR/rtts")
    ((n > 0)) || fail "no ping replies during RTT measurement"
    local rtt note=""
    rtt=$(median_p99_file "$CASE_DIR/rtts")
    ((n < BENCH_PINGS)) && note="$((BENCH_PINGS - n))/$BENCH_PINGS pings lost"
    [[ -n $V6NOTE ]] && note="${note:+$note; }$V6NOTE"
    local m1 m4 cpu="-"
    m1=$(awk -v b="$(median "${g1[@]}")" 'BEGIN { printf "%.2f", b / 1e9 }')
    m4=$(awk -v b="$(median "${g4[@]}")" 'BEGIN { printf "%.2f", b / 1e9 }')
    if ((${#TUN_PIDS[@]})); then
        cpu=$(awk -v t="$ticks_total" -v h="$CLK_TCK" -v b="$bytes_total" \
            'BEGIN { if (b > 0) printf "%.2f", (t / h) / (b / 1e9); else print "n/a" }')
    fi
    if [[ -n $relay_pid ]]; then
        # relay CPU-s/GB | CPU-s/GB of each endpoint process (A and C, averaged)
        awk -v l="$layout" -v m="$impl" -v t="$ticks_total" -v r="$relay_ticks" -v h="$CLK_TCK" \
            -v b="$bytes_total" -v n=$((${#TUN_PIDS[@]} - 1)) \
            'BEGIN { if (b > 0 && n > 0) printf "%s|%s|%.3f|%.3f\n", l, m, (r / h) / (b / 1e9), ((t - r) / h / n) / (b / 1e9) }' \
            >>"$WORK/relay-cpu"
    fi
    local udp="-"
    if [[ $BENCH_UDP == 1 ]]; then
        measure_udp "$layout" "$impl"
        udp=$UDP_GBPS
        [[ -n $UDP_NOTE ]] && note="${note:+$note; }$UDP_NOTE"
    fi
    echo "$layout|$impl|$m1|$m4|${rtt% *}|${rtt#* }|$cpu|$udp|$note" >>"$RESULTS"
}

# One UDP probe: iperf3 -u -l 1380 at RATE Mbit/s for BENCH_UDP_DURATION s.
# Sets UDP_TX (sender bit/s), UDP_RX (receiver bit/s) and UDP_LOSS (receiver's
# lost_percent). iperf3's .end.sum mixes the sender's bytes with the receiver's
# loss, so the receiver's figures are read from .end.sum_received.
udp_probe() { # rate_mbit
    local rate=$1 json vals win=()
    json=$CASE_DIR/iperf3-udp-${rate}M.json
    [[ -n $BENCH_UDP_WINDOW ]] && win=(-w "$BENCH_UDP_WINDOW")
    timeout $((BENCH_UDP_DURATION + 30)) ip netns exec "${NS[a]}" \
        iperf3 -c "${T4[$FAR]}" -p 5201 -u -l 1380 -b "${rate}M" -t "$BENCH_UDP_DURATION" -J \
        "${win[@]}" --connect-timeout 5000 >"$json" 2>"$json.err" || return 1
    vals=$(jq -er '[.end.sum_sent.bits_per_second, .end.sum_received.bits_per_second,
        .end.sum_received.lost_percent] | @tsv' "$json" 2>/dev/null) || return 1
    read -r UDP_TX UDP_RX UDP_LOSS <<<"$vals"
}

# Highest UDP rate with receiver-side loss under 1 %: offered rates go up or
# down by 4x from 1 Gbit/s until one probe passes and one fails, then bisect
# (geometrically) until they are within 10 %, at most BENCH_UDP_RUNS probes.
# Sets UDP_GBPS (receiver's rate at the best passing probe, or n/a) and UDP_NOTE.
measure_udp() { # layout impl
    local layout=$1 impl=$2 rate=1000 good=0 bad=0 n=0 best=0 ok
    UDP_GBPS="n/a" UDP_NOTE=""
    while ((n < BENCH_UDP_RUNS)); do
        if ((good > 0 && bad > 0)); then
            ((bad * 100 <= good * 110)) && break
            rate=$(awk -v g="$good" -v b="$bad" 'BEGIN { printf "%d", sqrt(g * b) }')
        fi
        check_alive
        if ! udp_probe "$rate"; then
            UDP_NOTE="UDP probe at $rate Mbit/s failed"
            log "$layout/$impl: $UDP_NOTE"
            break
        fi
        n=$((n + 1))
        ok=$(awk -v l="$UDP_LOSS" 'BEGIN { print (l < 1) ? 1 : 0 }')
        log "$layout/$impl UDP at $rate Mbit/s: sent $(awk -v b="$UDP_TX" 'BEGIN { printf "%.2f", b / 1e9 }'), received $(awk -v b="$UDP_RX" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s, loss $(awk -v l="$UDP_LOSS" 'BEGIN { printf "%.2f", l }') %"
        sleep 0.5
        if ((ok)); then
            good=$rate
            best=$(awk -v a="$best" -v b="$UDP_RX" 'BEGIN { printf "%.0f", (b > a) ? b : a }')
            # The sender could not offer the rate: more would not show more.
            if awk -v t="$UDP_TX" -v r="$rate" 'BEGIN { exit !(t < 0.9 * r * 1e6) }'; then
                UDP_NOTE="UDP limited by the iperf3 sender at $(awk -v b="$UDP_TX" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s"
                break
            fi
        else
            bad=$rate
        fi
        if ((good == 0)); then
            ((rate >= 40)) || break
            rate=$((rate / 4))
        elif ((bad == 0)); then
            ((rate <= 16000)) || break
            rate=$((rate * 4))
        fi
    done
    if ((good > 0)); then
        UDP_GBPS=$(awk -v b="$best" 'BEGIN { printf "%.2f", b / 1e9 }')
    elif ((bad > 0)) && [[ -z $UDP_NOTE ]]; then
        UDP_NOTE="UDP loss >= 1 % even at $bad Mbit/s"
    fi
}

# One (layout, implementation) pair. Runs in a subshell with errexit on; its
# own EXIT trap tears down its namespaces and processes.
run_case() { # layout impl [row label, default impl]
    local layout=$1 impl=$2 label=${3:-$2}
    CASE_DIR=$WORK/$layout-${label// /-}
    mkdir -p "$CASE_DIR"
    REASON_FILE=$CASE_DIR/reason
    trap 'netns_cleanup' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    trap 'echo "unexpected error (exit $?) at line $LINENO: $BASH_COMMAND" >"$REASON_FILE"' ERR
    set -E
    log "== $layout / $label"
    "layout_$layout"
    local t0
    t0=$(date +%s)
    case $impl in
    veth) T4=([a]=198.18.0.1 [b]=198.18.0.2) ;; # baseline: no tunnel, underlay addresses
    wireguard-go | boringtun)
        [[ $impl == boringtun && -n $BORINGTUN_UNAVAILABLE ]] && fail "$BORINGTUN_UNAVAILABLE"
        start_wg "$impl"
        ;;
    bitcloud) start_bitcloud ;;
    esac
    wait_tunnel "$t0"
    [[ $layout == relay ]] && relay_assert_isolated
    V6NOTE=""
    if [[ $impl != veth ]] && ! ping6_ok a "${T6[$FAR]}"; then
        V6NOTE="IPv6 overlay ${T6[$FAR]} did not answer pings"
        log "warning: $V6NOTE"
    fi
    measure "$layout" "$label"
    check_alive
    if [[ $impl == bitcloud ]]; then # for the record; never fatal
        local r
        for r in "${!NS[@]}"; do
            timeout 5 "$BITCLOUD_BIN" status -c "${BCCFG[$r]}" --json >"$CASE_DIR/status-$r.json" 2>&1 || true
        done
        if [[ $layout == relay ]] && ((${BENCH_BITCLOUD_FEE:-0} > 0)); then
            local carried pay earned
            timeout 5 "$BITCLOUD_BIN" wallet channels -c "${BCCFG[r]}" --json >"$CASE_DIR/channels-r.json" 2>&1 || true
            carried=$(jq '[.channels[] | select(.direction == "incoming") | .metered_bytes] | add // 0' "$CASE_DIR/channels-r.json" 2>/dev/null || echo 0)
            pay=$(jq '.payments.bytes_sent + .payments.bytes_received' "$CASE_DIR/status-r.json" 2>/dev/null || echo 0)
            earned=$(jq -r '[.channels[] | select(.direction == "incoming") | .cumulative_paid] | join(" + ")' "$CASE_DIR/channels-r.json" 2>/dev/null || echo "?")
            if ((carried > 0)); then
                echo "- relay/bitcloud paid (fee ${BENCH_BITCLOUD_FEE}/MiB): R carried $carried B, payment traffic $pay B = $((pay * 1000000000 / carried)) B per GB carried; R earned $earned CC" >>"$WORK/extra-notes"
            fi
        fi
    fi
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
ensure_tools
has_impl boringtun && ensure_boringtun
has_impl bitcloud && ensure_bitcloud

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
HEADER="# Bitcloud tunnel benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')
# host: $(uname -r), $(nproc) CPU(s)${CPU_MODEL:+ ($CPU_MODEL)}
# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the host skews every figure)
# iperf3 TCP ${BENCH_DURATION}s x ${BENCH_RUNS} run(s); ping ${BENCH_PINGS} x ${BENCH_PING_INTERVAL}s; tunnel MTU 1420, veth MTU 1500$(
    [[ $BENCH_UDP == 1 ]] && printf '\n# iperf3 UDP -l 1380%s: highest rate with < 1 %% receiver loss, at most %s probes of %ss (net.core.rmem_max %s)' \
        "${BENCH_UDP_WINDOW:+ -w $BENCH_UDP_WINDOW}" "$BENCH_UDP_RUNS" "$BENCH_UDP_DURATION" "$(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo '?')"
    [[ $BENCH_PAID_COMPARE == 1 ]] && printf '\n# relay/bitcloud run twice: unpaid (fee 0) and paid (fee %s per MiB)' "$PAID_FEE"
    true
)
# versions: $(wireguard-go --version 2>/dev/null | awk 'NR == 1 { print $1, $2 }')${BORINGTUN_BIN:+, $("$BORINGTUN_BIN" --version 2>/dev/null)}, $(iperf3 --version 2>/dev/null | awk 'NR == 1 { print $1, $2 }')${BITCLOUD_BIN:+, bitcloud $BITCLOUD_VERSION}"
echo "$HEADER" >&2

NOTES=()
BAD=0
for layout in $BENCH_LAYOUTS; do
    for impl in $BENCH_IMPLS; do
        if [[ $impl == veth && $layout != direct ]]; then
            continue # plain-veth baseline only makes sense for the direct layout
        fi
        # label:fee pairs; "-" keeps BENCH_BITCLOUD_FEE as it is.
        variants=("$impl:-")
        if [[ $BENCH_PAID_COMPARE == 1 && $layout == relay && $impl == bitcloud ]]; then
            variants=("bitcloud:0" "bitcloud paid:$PAID_FEE")
        fi
        for variant in "${variants[@]}"; do
            label=${variant%:*} fee=${variant##*:}
            # Run the case in a background subshell and wait for it: `wait` is
            # interrupted by signals, so Ctrl-C/TERM reach main_cleanup at once.
            set +e
            (
                set -e
                [[ $fee == - ]] || BENCH_BITCLOUD_FEE=$fee
                run_case "$layout" "$impl" "$label"
            ) &
            CASE_PID=$!
            wait "$CASE_PID"
            rc=$?
            CASE_PID=""
            set -e
            if ((rc != 0)) || ! grep -q "^$layout|$label|" "$RESULTS"; then
                reason=$(cat "$WORK/$layout-${label// /-}/reason" 2>/dev/null || echo "exit status $rc")
                echo "$layout|$label|n/a|n/a|n/a|n/a|n/a|n/a|$reason" >>"$RESULTS"
                [[ $impl != bitcloud ]] && BAD=1
            fi
            ((rc == 130 || rc == 143 || rc == 129)) && exit "$rc"
        done
    done
done

# --------------------------------------------------------------------------
# Goals of issue 11, computed from the rows of this run
# --------------------------------------------------------------------------
declare -A G1=() GCPU=() GRTT=() GUDP=() GRELAY=() GEND=()
while IFS='|' read -r layout impl m1 m4 rmed rp99 cpu udp note; do
    G1[$layout/$impl]=$m1 GCPU[$layout/$impl]=$cpu GRTT[$layout/$impl]=$rmed GUDP[$layout/$impl]=$udp
done <"$RESULTS"
if [[ -s $WORK/relay-cpu ]]; then
    while IFS='|' read -r layout impl rcpu ecpu; do
        GRELAY[$layout/$impl]=$rcpu GEND[$layout/$impl]=$ecpu
    done <"$WORK/relay-cpu"
fi
is_num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
# quotient A B SCALE DIGITS: SCALE*A/B, or n/a if either is missing or B is 0
quotient() {
    if is_num "$1" && is_num "$2"; then
        awk -v a="$1" -v b="$2" -v s="$3" -v d="$4" 'BEGIN { if (b > 0) printf "%.*f", d, s * a / b; else print "n/a" }'
    else
        echo "n/a"
    fi
}
# goal TEXT VALUE OP GOAL UNIT [DETAIL]: one line, "met" / "not met" (on the value as shown)
goal() {
    local text=$1 v=$2 op=$3 g=$4 unit=$5 detail=${6:-} shown=n/a verdict=""
    is_num "$v" && shown=$v$unit
    if is_num "$v" && is_num "$g"; then
        verdict=": $(awk -v v="$v" -v g="$g" -v op="$op" 'BEGIN { m = (op == ">=") ? (v >= g) : (v <= g); print m ? "met" : "not met" }')"
    fi
    echo "- $text: $shown${detail:+ ($detail)}; goal $op $g$unit$verdict"
}
print_goals() {
    local d=direct/bitcloud r=relay/bitcloud i l line sep
    echo "Goals (issue 11), from the rows above (n/a: a row is missing or failed):"
    goal "direct 1-stream, bitcloud / veth" "$(quotient "${G1[$d]:-}" "${G1[direct/veth]:-}" 100 1)" ">=" 40 " %" \
        "${G1[$d]:-n/a} / ${G1[direct/veth]:-n/a} Gbit/s"
    goal "direct 1-stream, bitcloud / boringtun" "$(quotient "${G1[$d]:-}" "${G1[direct/boringtun]:-}" 1 1)" ">=" 8 "x" \
        "${G1[$d]:-n/a} / ${G1[direct/boringtun]:-n/a} Gbit/s"
    goal "direct, bitcloud tunnel CPU-s/GB" "${GCPU[$d]:-n/a}" "<=" 2.5 ""
    goal "1-stream, bitcloud relay / direct" "$(quotient "${G1[$r]:-}" "${G1[$d]:-}" 100 1)" ">=" 60 " %" \
        "${G1[$r]:-n/a} / ${G1[$d]:-n/a} Gbit/s"
    goal "relay/bitcloud, relay process / endpoint process CPU-s/GB" \
        "$(quotient "${GRELAY[$r]:-}" "${GEND[$r]:-}" 1 2)" "<=" 0.5 "" \
        "relay ${GRELAY[$r]:-n/a}, each endpoint ${GEND[$r]:-n/a} CPU-s/GB"
    if [[ $BENCH_PAID_COMPARE == 1 ]]; then
        goal "relay/bitcloud 1-stream, paid / unpaid" "$(quotient "${G1[$r paid]:-}" "${G1[$r]:-}" 100 1)" ">=" 99 " %" \
            "fee $PAID_FEE per MiB: ${G1[$r paid]:-n/a} / ${G1[$r]:-n/a} Gbit/s"
    else
        goal "relay/bitcloud 1-stream, paid / unpaid" "n/a" ">=" 99 " %" "run with BENCH_PAID_COMPARE=1"
    fi
    goal "direct RTT median ms, bitcloud (goal: boringtun's)" "${GRTT[$d]:-n/a}" "<=" "${GRTT[direct/boringtun]:-n/a}" ""
    if [[ $BENCH_UDP == 1 ]]; then
        line="- UDP Gbit/s @<1% loss, beside the anchors (no fixed goal):"
        for l in $BENCH_LAYOUTS; do
            sep=" $l:"
            for i in $BENCH_IMPLS; do
                [[ $i == veth && $l != direct ]] && continue
                line+="$sep $i ${GUDP[$l/$i]:-n/a}"
                sep=","
                [[ $l == relay && $i == bitcloud && $BENCH_PAID_COMPARE == 1 ]] && line+=", bitcloud paid ${GUDP[$r paid]:-n/a}"
            done
            line+=";"
        done
        echo "${line%;}"
    else
        echo "- UDP Gbit/s @<1% loss: n/a (BENCH_UDP=0)"
    fi
}

# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------
UDP_COL=""
[[ $BENCH_UDP == 1 ]] && UDP_COL="UDP Gbit/s @<1% loss"
row() { # the columns of one table line; the UDP one only with BENCH_UDP=1
    printf '| %-6s | %-14s | %15s | %15s | %13s | %10s | %8s |' "${@:1:7}"
    [[ -n $UDP_COL ]] && printf ' %20s |' "$8"
    printf '\n'
}
{
    echo "$HEADER"
    echo
    row layout implementation "1-stream Gbit/s" "4-stream Gbit/s" "RTT median ms" "RTT p99 ms" "CPU-s/GB" "$UDP_COL"
    printf '|%s|%s|%s|%s|%s|%s|%s|' "--------" "----------------" "----------------:" "----------------:" "--------------:" "-----------:" "---------:"
    [[ -n $UDP_COL ]] && printf '%s|' "---------------------:"
    printf '\n'
    while IFS='|' read -r layout impl m1 m4 rmed rp99 cpu udp note; do
        row "$layout" "$impl" "$m1" "$m4" "$rmed" "$rp99" "$cpu" "$udp"
        if [[ -n $note ]]; then
            NOTES+=("$layout/$impl: $note")
        fi
    done <"$RESULTS"
    echo
    for note in "${NOTES[@]}"; do echo "- $note"; done
    if [[ -s $WORK/relay-cpu ]]; then
        while IFS='|' read -r layout impl rcpu ecpu; do
            echo "- $layout/$impl: relay process $rcpu CPU-s/GB, endpoint processes $ecpu CPU-s/GB each (ratio $(quotient "$rcpu" "$ecpu" 1 2))"
        done <"$WORK/relay-cpu"
    fi
    cat "$WORK/extra-notes" 2>/dev/null || true
    echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    print_goals
} >"$WORK/table.md"

echo
cat "$WORK/table.md"
if [[ -n $BENCH_OUT ]]; then
    cp "$WORK/table.md" "$BENCH_OUT"
    log "table written to $BENCH_OUT"
fi
if [[ $BENCH_STRICT == 1 && $BAD == 1 ]]; then
    exit 1
fi
exit 0
