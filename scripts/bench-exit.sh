#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions called indirectly (traps, background subshells)
# Exit benchmark (issue 9): a client fetching from a test "internet" server
# through a relay and an exit, against the same fetches over the underlay with
# no tunnel (the relay forwarding in the kernel), in one run. Not a test: it
# prints a table, it does not judge it.
#
#   sudo scripts/bench-exit.sh
#   BENCH_DURATION=5 BENCH_RUNS=3 BENCH_OUT=/tmp/exit.md sudo -E scripts/bench-exit.sh
#
# Namespaces (names bcexit-<tag>-{inet,exit,relay,client}):
#   inet    HTTP server (198.19.0.1 and 2001:db8::1, port 80), iperf3 server,
#           DNS (dnsmasq: files.bitcloud.test -> 198.19.0.1)
#   exit    bitcloud, [exit] enabled, uplink to inet
#   relay   bitcloud (relays client <-> exit), its own uplink to inet and
#           ip_forward on: the "underlay" row goes client -> relay -> inet
#   client  bitcloud, [client] exit = "auto", kill_switch, dns = "resolv.conf";
#           its only link goes to the relay
# Rows: "tunnel" (the client's exit in use) and "underlay" (the same client
# after `bitcloud exit use off`). See docs/benchmarks.md.
#
# Environment knobs:
#   BENCH_DURATION   seconds per iperf3 run                        (default 10)
#   BENCH_RUNS       runs of each fetch and iperf3 measurement; medians (default 3)
#   BENCH_PINGS      pings for the RTT figures                      (default 200)
#   BENCH_PING_INTERVAL  seconds between pings                      (default 0.01)
#   BENCH_FETCH_MB   size of the HTTP file in MiB                   (default 200)
#   BENCH_UP_TIMEOUT seconds for the client to pick its exit        (default 30)
#   BENCH_EXIT_FEE   the exit's fee_per_mib                         (default 2000)
#   BENCH_OUT        also write the table (markdown) to this file
#   BENCH_KEEP=1     keep the work dir (configs, daemon logs, JSON) afterwards
#   BITCLOUD_BIN     use this bitcloud binary instead of `cargo build --release`
#   BITCLOUD_LOG     the daemons' log filter                        (default info)
#
# Addresses used (nothing else is ever contacted; no namespace has a route out
# of the host): underlay 198.18.0.0/15, test internet 198.19.0.0/16 and
# 2001:db8::/32, overlay 100.64.0.0/10 and fd00::/8 (the daemons' own).
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
    echo "error: bench-exit.sh must run as root (it creates network namespaces, veths and TUN devices)." >&2
    echo "       try: sudo -E $0" >&2
    exit 1
fi

BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_PINGS=${BENCH_PINGS:-200}
BENCH_PING_INTERVAL=${BENCH_PING_INTERVAL:-0.01}
BENCH_FETCH_MB=${BENCH_FETCH_MB:-200}
BENCH_UP_TIMEOUT=${BENCH_UP_TIMEOUT:-30}
BENCH_EXIT_FEE=${BENCH_EXIT_FEE:-2000}
BENCH_OUT=${BENCH_OUT:-}
BENCH_KEEP=${BENCH_KEEP:-0}
BITCLOUD_BIN=${BITCLOUD_BIN:-}
BITCLOUD_LOG=${BITCLOUD_LOG:-info}

for v in BENCH_DURATION BENCH_RUNS BENCH_PINGS BENCH_FETCH_MB BENCH_UP_TIMEOUT; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "error: $v must be a positive integer (got '${!v}')" >&2
        exit 2
    fi
done
if ! [[ $BENCH_EXIT_FEE =~ ^[0-9]+$ ]]; then
    echo "error: BENCH_EXIT_FEE must be a non-negative integer (got '$BENCH_EXIT_FEE')" >&2
    exit 2
fi
if ! [[ $BENCH_PING_INTERVAL =~ ^[0-9]*\.?[0-9]+$ ]]; then
    echo "error: BENCH_PING_INTERVAL must be a number of seconds (got '$BENCH_PING_INTERVAL')" >&2
    exit 2
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH:/usr/sbin:/sbin"

log() { echo "[bench-exit $(date +%H:%M:%S)] $*" >&2; }

# --------------------------------------------------------------------------
# Work dir, state and cleanup
# --------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/bench-exit.XXXXXX)
netns_state_init "$WORK/state"
RESULTS=$WORK/results
: >"$RESULTS"
: >"$WORK/notes"
TAG=$(printf '%04x' $((RANDOM ^ ($$ & 0xffff))))
declare -A NS=(
    [inet]="bcexit-$TAG-inet" [exit]="bcexit-$TAG-exit"
    [relay]="bcexit-$TAG-relay" [client]="bcexit-$TAG-client"
)

PATH_PID=""
main_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM HUP
    if [[ -n $PATH_PID ]] && kill -0 "$PATH_PID" 2>/dev/null; then
        kill -TERM "$PATH_PID" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$PATH_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$PATH_PID" 2>/dev/null || true
        wait "$PATH_PID" 2>/dev/null || true
    fi
    netns_cleanup
    netns_etc_cleanup
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

die() {
    log "error: $*"
    exit 1
}

# --------------------------------------------------------------------------
# Tools and the binary
# --------------------------------------------------------------------------
ensure_tools() {
    local -A need=(
        [iperf3]=iperf3 [ip]=iproute2 [ss]=iproute2 [ping]=iputils-ping [jq]=jq
        [timeout]=coreutils [getconf]=libc-bin [awk]=mawk [curl]=curl
        [python3]=python3 [dnsmasq]=dnsmasq-base [nft]=nftables
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

BITCLOUD_VERSION=""
ensure_bitcloud() {
    if [[ -n $BITCLOUD_BIN ]]; then
        [[ -x $BITCLOUD_BIN ]] || die "BITCLOUD_BIN=$BITCLOUD_BIN is not executable"
        BITCLOUD_VERSION="$("$BITCLOUD_BIN" --version 2>/dev/null | awk '{ print $2 }') ($BITCLOUD_BIN)"
        return 0
    fi
    command -v cargo >/dev/null || die "cargo not found (set BITCLOUD_BIN to a bitcloud binary)"
    log "building bitcloud (cargo build --release)"
    BITCLOUD_VERSION="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')"
    git -C "$REPO_DIR" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || BITCLOUD_VERSION+="+dirty"
    if ! (cd "$REPO_DIR" && cargo build --release --bin bitcloud) >"$WORK/bitcloud-build.log" 2>&1; then
        tail -n 20 "$WORK/bitcloud-build.log" >&2 || true
        die "cargo build --release failed"
    fi
    BITCLOUD_BIN="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/bitcloud"
    [[ $BITCLOUD_BIN == /* ]] || BITCLOUD_BIN="$REPO_DIR/$BITCLOUD_BIN"
    [[ -x $BITCLOUD_BIN ]] || die "build succeeded but $BITCLOUD_BIN is missing"
}

# --------------------------------------------------------------------------
# Numeric helpers (awk)
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
# CPU seconds per 1e9 bytes: ticks bytes -> figure
cpu_per_gb() {
    awk -v t="$1" -v h="$CLK_TCK" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", (t / h) / (b / 1e9); else print "n/a" }'
}
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a + b }'; }
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

nsx() { local r=$1; shift; ip netns exec "${NS[$r]}" "$@"; }

# --------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------
veth() { # roleA ifA addrA roleB ifB addrB
    ip link add name "$2" netns "${NS[$1]}" type veth peer name "$5" netns "${NS[$4]}"
    ip -n "${NS[$1]}" addr add "$3" dev "$2"
    ip -n "${NS[$4]}" addr add "$6" dev "$5"
    ip -n "${NS[$1]}" link set "$2" up
    ip -n "${NS[$4]}" link set "$5" up
}
v6() { ip -n "${NS[$1]}" -6 addr add "$2" dev "$3" nodad; }

build_topology() {
    local r
    for r in inet exit relay client; do
        netns_add "${NS[$r]}"
        nsx "$r" sysctl -qw net.ipv4.ip_forward=0
    done
    # Underlay: client - relay - exit.
    veth client ul0 198.18.1.2/24 relay ulc 198.18.1.1/24
    veth relay ulx 198.18.2.1/24 exit ul0 198.18.2.2/24
    # Uplinks to the test internet: the exit's and the relay's.
    veth inet ix 198.19.1.1/24 exit up0 198.19.1.2/24
    veth inet ir 198.19.3.1/24 relay up0 198.19.3.2/24
    v6 inet 2001:db8:1::1/64 ix
    v6 exit 2001:db8:1::2/64 up0
    v6 inet 2001:db8:3::1/64 ir
    v6 relay 2001:db8:3::2/64 up0
    ip -n "${NS[exit]}" route add default via 198.19.1.1
    ip -n "${NS[exit]}" -6 route add default via 2001:db8:1::1
    ip -n "${NS[relay]}" route add default via 198.19.3.1
    ip -n "${NS[relay]}" -6 route add default via 2001:db8:3::1
    # The server's addresses, and the way back to the client's underlay (the
    # "no tunnel" row is the relay forwarding the client's packets).
    ip -n "${NS[inet]}" addr add 198.19.0.1/32 dev lo
    v6 inet 2001:db8::1/128 lo
    ip -n "${NS[inet]}" route add 198.18.1.0/24 via 198.19.3.2
    nsx relay sysctl -qw net.ipv4.ip_forward=1
    ip -n "${NS[client]}" route add default via 198.18.1.1
    local i
    for i in $(seq 1 50); do
        nsx client ping -n -q -c 1 -W 1 198.19.0.1 >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "the client does not reach 198.19.0.1 over the underlay (relay forwarding)"
}

# The test internet: HTTP (sendfile, dual stack), iperf3, DNS.
start_internet() {
    mkdir -p "$WORK/www"
    log "writing a ${BENCH_FETCH_MB} MiB file of random bytes"
    head -c $((BENCH_FETCH_MB << 20)) /dev/urandom >"$WORK/www/big"
    echo "small file" >"$WORK/www/small"
    cat >"$WORK/httpd.py" <<'PY'
# A static file server that sends bodies with sendfile(2), so the server is not
# what limits the underlay row (http.server copies through 64 KiB reads).
import http.server, socket, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        try:
            self.connection.sendfile(source)
        except (BrokenPipeError, ConnectionResetError):
            pass

class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
    def finish_request(self, request, client_address):
        Handler(request, client_address, self, directory=sys.argv[2])

Server(("::", int(sys.argv[1])), Handler).serve_forever()
PY
    netns_spawn "${NS[inet]}" "$WORK/http.log" python3 -u "$WORK/httpd.py" 80 "$WORK/www"
    HTTP_PID=$NETNS_SPAWNED_PID
    netns_spawn "${NS[inet]}" "$WORK/iperf3-server.log" iperf3 -s -p 5201
    IPERF_PID=$NETNS_SPAWNED_PID
    netns_spawn "${NS[inet]}" "$WORK/dnsmasq.log" dnsmasq -k -C /dev/null --no-resolv --no-hosts \
        --bind-interfaces --listen-address=198.19.0.1 --port=53 --log-facility=- \
        --address=/files.bitcloud.test/198.19.0.1 --address=/files.bitcloud.test/2001:db8::1 \
        --pid-file="$WORK/dnsmasq.pid"
    DNS_PID=$NETNS_SPAWNED_PID
    local i
    for i in $(seq 1 100); do
        if [[ -n $(nsx inet ss -Hltn 'sport = :80') && -n $(nsx inet ss -Hltn 'sport = :5201') &&
            -n $(nsx inet ss -Hlun 'sport = :53') ]]; then
            return 0
        fi
        netns_pid_alive "$HTTP_PID" || die "HTTP server exited: $(tail -n 3 "$WORK/http.log")"
        netns_pid_alive "$IPERF_PID" || die "iperf3 server exited: $(tail -n 3 "$WORK/iperf3-server.log")"
        netns_pid_alive "$DNS_PID" || die "dnsmasq exited: $(tail -n 3 "$WORK/dnsmasq.log")"
        sleep 0.1
    done
    die "the internet's servers did not start listening within 10 s"
}

# --------------------------------------------------------------------------
# Daemons
# --------------------------------------------------------------------------
declare -A CFG=() ID=() PID=()
bc_init() { # role
    local r=$1 dir=$WORK/$1 json
    mkdir -p "$dir"
    CFG[$r]=$dir/bitcloud.toml
    "$BITCLOUD_BIN" init -c "${CFG[$r]}" --listen 0.0.0.0:51820 --tun bc0 \
        --control-socket bitcloud.sock --data-dir data >"$dir/init.log" 2>&1 ||
        die "bitcloud init ($r): $(tail -n 3 "$dir/init.log")"
    json=$("$BITCLOUD_BIN" id -c "${CFG[$r]}" --json) || die "bitcloud id ($r) failed"
    ID[$r]=$(jq -er .id <<<"$json") || die "bitcloud id --json: no .id: ${json:0:200}"
}
bc_peer() { # role other endpoint
    printf '\n[[peer]]\nid = "%s"\nendpoint = "%s"\n' "${ID[$2]}" "$3" >>"${CFG[$1]}"
}
bc_cli() { # role args... (in the role's namespace: `exit use off` may touch its network)
    local r=$1
    shift
    timeout 20 ip netns exec "${NS[$r]}" "$BITCLOUD_BIN" "$@" -c "${CFG[$r]}"
}
bc_status() { bc_cli "$1" status --json 2>/dev/null; }
bc_start() { # role
    local r=$1 i
    netns_spawn "${NS[$r]}" "$WORK/$r/daemon.log" env BITCLOUD_LOG="$BITCLOUD_LOG" NO_COLOR=1 \
        "$BITCLOUD_BIN" up -c "${CFG[$r]}"
    PID[$r]=$NETNS_SPAWNED_PID
    for i in $(seq 1 100); do
        bc_status "$r" >/dev/null && break
        netns_pid_alive "${PID[$r]}" || die "the $r daemon exited: $(tail -n 5 "$WORK/$r/daemon.log")"
        sleep 0.1
    done
    bc_status "$r" >/dev/null || die "the $r daemon's control socket did not answer within 10 s"
    [[ $(readlink -f "/proc/${PID[$r]}/exe" 2>/dev/null) == "$(readlink -f "$BITCLOUD_BIN")" ]] ||
        die "PID ${PID[$r]} is not the $r daemon (its CPU time would be wrong)"
}
check_daemons() {
    local r
    for r in exit relay client; do
        netns_pid_alive "${PID[$r]}" || fail "the $r daemon exited: $(tail -n 5 "$WORK/$r/daemon.log")"
    done
}

start_mesh() {
    local r
    for r in exit relay client; do bc_init "$r"; done
    bc_peer relay client 198.18.1.2:51820
    bc_peer relay exit 198.18.2.2:51820
    bc_peer client relay 198.18.1.1:51820
    bc_peer exit relay 198.18.2.1:51820
    printf '\n[exit]\nenabled = true\nuplink = "up0"\nfee_per_mib = %d\ndns = ["198.19.0.1"]\n' \
        "$BENCH_EXIT_FEE" >>"${CFG[exit]}"
    printf '\n[client]\nexit = "auto"\nkill_switch = true\nallow_lan = true\ndns = "resolv.conf"\n' \
        >>"${CFG[client]}"
    # The client's own resolver is the "ISP's", reached over the underlay: what
    # it uses with the exit off; with the exit in use the daemon points it at
    # the exit (and restores this file on `exit use off`).
    netns_etc_add "${NS[client]}"
    echo "nameserver 198.19.0.1" >"/etc/netns/${NS[client]}/resolv.conf"
    for r in relay exit client; do bc_start "$r"; done
}

# Wait until the client's status shows `.exit.current` equal to $1 ("null" or non-null).
wait_exit() { # want(set|null) limit_s
    local want=$1 limit=$2 t0 cur
    t0=$(date +%s)
    while :; do
        cur=$(bc_status client | jq -r '.exit.current // "null"' 2>/dev/null || echo "?")
        if [[ $want == null && $cur == null ]] || [[ $want == set && $cur != null && $cur != "?" ]]; then
            echo "$cur"
            return 0
        fi
        (($(date +%s) - t0 < limit)) || return 1
        sleep 0.2
    done
}

# --------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------
URL_BIG=http://files.bitcloud.test/big
URL_SMALL=http://files.bitcloud.test/small
REASON_FILE=""
fail() { # reason -> the row becomes n/a with this reason
    echo "$*" >"$REASON_FILE"
    log "FAILED: $*"
    exit 1
}

# Source address the HTTP server logged for the latest GET of PATH.
last_source() { # url-path
    awk -v p="GET $1 " 'index($0, p) { s = $1 } END { print s }' "$WORK/http.log"
}

cpu_now() { # -> "exit relay client" ticks
    local r t out=()
    for r in exit relay client; do
        t=$(proc_cpu_ticks "${PID[$r]}") || fail "the $r daemon exited: $(tail -n 5 "$WORK/$r/daemon.log")"
        out+=("$t")
    done
    echo "${out[*]}"
}

# Every `drops` counter in a status JSON (per-peer maps and any other), summed
# by reason; then what grew between two of them.
drops_delta() { # before.json after.json -> "reason=+n ..." (grown ones only)
    jq -rn --slurpfile a "$1" --slurpfile b "$2" '
        def sums: [.. | objects | select(has("drops")) | .drops | objects | to_entries[]]
            | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)}) | from_entries;
        ($a[0] | sums) as $x | ($b[0] | sums) as $y
        | [$y | to_entries[] | select(.value > ($x[.key] // 0)) | "\(.key)=+\(.value - ($x[.key] // 0))"]
        | join(" ")' 2>/dev/null || echo "?"
}

# One row. Runs in a background subshell (errexit on); `fail` makes it n/a.
measure_path() { # name expected-http-source
    local name=$1 want_src=$2 dir=$WORK/$1
    mkdir -p "$dir"
    REASON_FILE=$dir/reason
    trap 'echo "unexpected error (exit $?) at line $LINENO: $BASH_COMMAND" >"$REASON_FILE"' ERR
    set -E
    log "== $name"
    local r
    for r in exit relay client; do bc_status "$r" >"$dir/status-$r-before.json" || true; done

    # The path is the one we mean: the server sees the exit's uplink address
    # (tunnel) or the client's underlay address (underlay).
    local src
    nsx client curl -4 -sS -f --max-time 10 --connect-timeout 5 -o /dev/null "$URL_SMALL" 2>"$dir/check.err" ||
        fail "fetch of $URL_SMALL failed: $(cat "$dir/check.err")"
    src=$(last_source /small)
    [[ $src == "$want_src" ]] || fail "the server saw the fetch from '$src', not $want_src: wrong path"

    local -a fetch=() up=() down=()
    local -A tx=() tr=() tc=() bytes=()
    local kind i c0 c1 out speed size json bps b x0 r0 cl0 x1 r1 cl1
    local want_size=$((BENCH_FETCH_MB << 20))
    for kind in fetch up down; do tx[$kind]=0 tr[$kind]=0 tc[$kind]=0 bytes[$kind]=0; done
    for i in $(seq 1 "$BENCH_RUNS"); do
        for kind in fetch up down; do
            check_daemons
            c0=$(cpu_now)
            case $kind in
            fetch)
                out=$(timeout 330 ip netns exec "${NS[client]}" curl -4 -sS -f --max-time 300 \
                    --connect-timeout 5 -o /dev/null -w '%{speed_download} %{size_download}' \
                    "$URL_BIG" 2>"$dir/fetch$i.err") ||
                    fail "fetch $i of $URL_BIG failed: $(cat "$dir/fetch$i.err")"
                c1=$(cpu_now)
                read -r speed size <<<"$out"
                ((size == want_size)) || fail "fetch $i got $size bytes, not $want_size"
                fetch+=("$speed")
                b=$size
                log "$name fetch $i: $(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1e6 }') MB/s"
                ;;
            up | down)
                json=$dir/iperf3-$kind$i.json
                local -a rev=()
                [[ $kind == down ]] && rev=(-R)
                if ! timeout $((BENCH_DURATION + 30)) ip netns exec "${NS[client]}" \
                    iperf3 -c 198.19.0.1 -p 5201 -t "$BENCH_DURATION" "${rev[@]}" -J \
                    --connect-timeout 5000 >"$json" 2>"$json.err"; then
                    fail "iperf3 $kind run $i failed: $(jq -r '.error // empty' "$json" 2>/dev/null || tail -n 2 "$json.err")"
                fi
                c1=$(cpu_now)
                bps=$(jq -er '.end.sum_received.bits_per_second' "$json") || fail "iperf3 JSON without sum_received"
                b=$(jq -er '.end.sum_received.bytes' "$json")
                if [[ $kind == up ]]; then up+=("$bps"); else down+=("$bps"); fi
                log "$name iperf3 $kind $i: $(awk -v x="$bps" 'BEGIN { printf "%.0f", x / 1e6 }') Mbit/s"
                ;;
            esac
            read -r x0 r0 cl0 <<<"$c0"
            read -r x1 r1 cl1 <<<"$c1"
            tx[$kind]=$((tx[$kind] + x1 - x0))
            tr[$kind]=$((tr[$kind] + r1 - r0))
            tc[$kind]=$((tc[$kind] + cl1 - cl0))
            bytes[$kind]=$(add "${bytes[$kind]}" "$b")
            sleep 1
        done
    done
    src=$(last_source /big)
    [[ $src == "$want_src" ]] || fail "the last big fetch came from '$src', not $want_src"

    # RTT, with the path idle.
    nsx client ping -n -c "$BENCH_PINGS" -i "$BENCH_PING_INTERVAL" -W 2 198.19.0.1 >"$dir/ping.log" 2>&1 || true
    grep -o 'time=[0-9.]*' "$dir/ping.log" | cut -d= -f2 >"$dir/rtts" || true
    local n rtt note=""
    n=$(wc -l <"$dir/rtts")
    ((n > 0)) || fail "no ping replies from 198.19.0.1"
    rtt=$(median_p99_file "$dir/rtts")
    ((n < BENCH_PINGS)) && note="$((BENCH_PINGS - n))/$BENCH_PINGS pings lost"

    # CPU per GB over all bulk transfers of the row, and per kind for the notes.
    local sx=0 sr=0 sc=0 tb=0 a detail=""
    for kind in fetch up down; do
        sx=$((sx + tx[$kind])) sr=$((sr + tr[$kind])) sc=$((sc + tc[$kind]))
        tb=$(add "$tb" "${bytes[$kind]}")
        detail+=" $kind $(cpu_per_gb "${tx[$kind]}" "${bytes[$kind]}")/$(cpu_per_gb "${tr[$kind]}" "${bytes[$kind]}")/$(cpu_per_gb "${tc[$kind]}" "${bytes[$kind]}");"
    done
    echo "- $name: CPU-s/GB exit/relay/client by transfer:${detail%;} ($(awk -v b="$tb" 'BEGIN { printf "%.2f", b / 1e9 }') GB carried in all)" >>"$WORK/notes"

    for r in exit relay client; do bc_status "$r" >"$dir/status-$r-after.json" || true; done
    for r in exit relay client; do
        a=$(drops_delta "$dir/status-$r-before.json" "$dir/status-$r-after.json")
        [[ -n $a ]] && echo "- $name: drops counted by the $r daemon during the row: $a" >>"$WORK/notes"
    done
    if [[ $name == tunnel ]]; then
        local cur
        cur=$(jq -r '.exit.current // "null"' "$dir/status-client-after.json" 2>/dev/null || echo "?")
        [[ $cur == "${ID[exit]}" ]] || note="${note:+$note; }exit in use at the end: $cur"
        local s0 s1
        s0=$(jq -r '.exit.switches // "?"' "$dir/status-client-before.json" 2>/dev/null || echo "?")
        s1=$(jq -r '.exit.switches // "?"' "$dir/status-client-after.json" 2>/dev/null || echo "?")
        [[ $s0 == "$s1" ]] || note="${note:+$note; }exit switches during the row: $s0 -> $s1"
    fi
    local mf mu md
    mf=$(awk -v s="$(median "${fetch[@]}")" 'BEGIN { printf "%.1f", s / 1e6 }')
    mu=$(awk -v s="$(median "${up[@]}")" 'BEGIN { printf "%.0f", s / 1e6 }')
    md=$(awk -v s="$(median "${down[@]}")" 'BEGIN { printf "%.0f", s / 1e6 }')
    echo "$name|$mf|$mu|$md|${rtt% *}|${rtt#* }|$(cpu_per_gb "$sx" "$tb")|$(cpu_per_gb "$sr" "$tb")|$(cpu_per_gb "$sc" "$tb")|$note" >>"$RESULTS"
}

run_path() { # name expected-source
    local rc reason
    set +e
    (
        set -e
        trap 'exit 130' INT
        trap 'exit 143' TERM
        measure_path "$@"
    ) &
    PATH_PID=$!
    wait "$PATH_PID"
    rc=$?
    PATH_PID=""
    set -e
    ((rc == 130 || rc == 143 || rc == 129)) && exit "$rc"
    if ((rc != 0)) || ! grep -q "^$1|" "$RESULTS"; then
        reason=$(cat "$WORK/$1/reason" 2>/dev/null || echo "exit status $rc")
        echo "$1|n/a|n/a|n/a|n/a|n/a|n/a|n/a|n/a|$reason" >>"$RESULTS"
    fi
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
ensure_tools
ensure_bitcloud
UPTIME_START=$(uptime)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
log "namespaces: ${NS[*]}"
build_topology
start_internet
start_mesh
log "waiting for the client to pick its exit"
t0=$(date +%s)
CUR=$(wait_exit set "$BENCH_UP_TIMEOUT") ||
    die "no exit in use within ${BENCH_UP_TIMEOUT} s: $(bc_status client | jq -c .exit 2>/dev/null)"
[[ $CUR == "${ID[exit]}" ]] || die "the client uses exit $CUR, not ours (${ID[exit]})"
log "exit in use after $(($(date +%s) - t0)) s"
bc_cli client exit list --json >"$WORK/exit-list.json" 2>&1 || true

# The exit's uplink and the client's underlay, as the server logs them.
run_path tunnel "::ffff:198.19.1.2"
bc_cli client exit use off >"$WORK/exit-use-off.log" 2>&1 || die "exit use off: $(cat "$WORK/exit-use-off.log")"
wait_exit null 10 >/dev/null || die "exit use off: the client still shows an exit in use"
run_path underlay "::ffff:198.18.1.2"
UPTIME_END=$(uptime)

# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------
HEADER="# Bitcloud exit benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')
# host: $(uname -r), $(nproc) CPU(s)${CPU_MODEL:+ ($CPU_MODEL)}
# uptime at start: ${UPTIME_START# }
# fetch ${BENCH_FETCH_MB} MiB over HTTP x ${BENCH_RUNS}; iperf3 TCP ${BENCH_DURATION}s x ${BENCH_RUNS} each way; ping ${BENCH_PINGS} x ${BENCH_PING_INTERVAL}s to 198.19.0.1
# versions: bitcloud $BITCLOUD_VERSION, $(iperf3 --version 2>/dev/null | awk 'NR == 1 { print $1, $2 }'), $(curl --version 2>/dev/null | awk 'NR == 1 { print $1, $2 }')"
NOTES=()
{
    echo "$HEADER"
    echo
    printf '| %-8s | %10s | %17s | %19s | %13s | %10s | %13s | %14s | %15s |\n' \
        path "fetch MB/s" "iperf3 up Mbit/s" "iperf3 down Mbit/s" "RTT median ms" "RTT p99 ms" \
        "exit CPU-s/GB" "relay CPU-s/GB" "client CPU-s/GB"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "----------" "-----------:" "------------------:" \
        "--------------------:" "--------------:" "-----------:" "--------------:" "---------------:" "----------------:"
    while IFS='|' read -r p f u d rm r99 cx cr cc note; do
        printf '| %-8s | %10s | %17s | %19s | %13s | %10s | %13s | %14s | %15s |\n' \
            "$p" "$f" "$u" "$d" "$rm" "$r99" "$cx" "$cr" "$cc"
        [[ -n $note ]] && NOTES+=("$p: $note")
    done <"$RESULTS"
    echo
    for note in "${NOTES[@]}"; do echo "- $note"; done
    cat "$WORK/notes"
    echo "- uptime at end: ${UPTIME_END# }"
} >"$WORK/table.md"

echo
cat "$WORK/table.md"
if [[ -n $BENCH_OUT ]]; then
    cp "$WORK/table.md" "$BENCH_OUT"
    log "table written to $BENCH_OUT"
fi
exit 0
