# shellcheck shell=bash
# Helpers for scripts that build throw-away network namespaces.
#
# Source this file, then call `netns_state_init DIR` once. Every namespace
# created with `netns_add` and every process started with `netns_spawn` is
# recorded under DIR, so `netns_cleanup` (call it from an EXIT trap) can
# remove exactly what this script created:
#   - processes are stopped by PID, and only if their start time still matches
#     the one recorded when we started them (no PID-reuse accidents);
#   - namespaces are deleted by the exact names we created.
# Nothing is ever killed by name pattern.

NETNS_STATE_DIR=""
NETNS_SPAWNED_PID=""

netns_state_init() {
    NETNS_STATE_DIR=$1
    mkdir -p "$NETNS_STATE_DIR"
    : >"$NETNS_STATE_DIR/pids"
    : >"$NETNS_STATE_DIR/netns"
}

# proc_stat_fields PID -> sets global array PROC_STAT (fields 3.. of /proc/PID/stat,
# i.e. PROC_STAT[0] is field 3 "state"). Returns 1 if the process is gone.
# The comm field (2) may contain spaces/parens, so split after the last ')'.
proc_stat_fields() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $stat ]] || return 1
    read -r -a PROC_STAT <<<"${stat##*) }"
}

# Start time (field 22, clock ticks since boot) of PID, or empty.
proc_starttime() {
    proc_stat_fields "$1" || return 1
    echo "${PROC_STAT[19]}"
}

# utime+stime (fields 14+15, clock ticks, all threads) of PID.
proc_cpu_ticks() {
    proc_stat_fields "$1" || return 1
    echo $((PROC_STAT[11] + PROC_STAT[12]))
}

# Sum of utime+stime over several PIDs; fails if any of them has exited
# (its CPU time would be lost, making the figure wrong).
procs_cpu_ticks() {
    local pid total=0 t
    for pid in "$@"; do
        t=$(proc_cpu_ticks "$pid") || return 1
        total=$((total + t))
    done
    echo "$total"
}

netns_add() {
    local ns=$1
    if [[ -e /run/netns/$ns ]]; then
        echo "error: namespace $ns already exists; refusing to reuse it" >&2
        return 1
    fi
    ip netns add "$ns"
    echo "$ns" >>"$NETNS_STATE_DIR/netns"
    ip -n "$ns" link set lo up
}

# netns_spawn NS LOGFILE CMD...  -- start CMD in the background inside NS.
# The PID is left in NETNS_SPAWNED_PID (not echoed: a $(...) would fork).
# `ip netns exec` and `env` both exec(), so the PID is the real process.
netns_spawn() {
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
    NETNS_SPAWNED_PID=$!
    local st=""
    st=$(proc_starttime "$NETNS_SPAWNED_PID") || true
    echo "$NETNS_SPAWNED_PID ${st:-?}" >>"$NETNS_STATE_DIR/pids"
}

# True if PID is alive and is still the process we started.
netns_pid_alive() {
    local pid=$1 want st
    want=$(awk -v p="$pid" '$1 == p { s = $2 } END { print s }' "$NETNS_STATE_DIR/pids")
    st=$(proc_starttime "$pid") || return 1
    [[ -z $want || $want == "?" || $want == "$st" ]] || return 1
    proc_stat_fields "$pid" || return 1
    [[ ${PROC_STAT[0]} != Z ]]
}

_netns_stop_pid() {
    local pid=$1 want=$2 st
    st=$(proc_starttime "$pid") || return 0
    if [[ $want != "?" && $st != "$want" ]]; then
        return 0 # PID reused by someone else: not ours, leave it alone
    fi
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 30); do
        proc_stat_fields "$pid" || return 0
        [[ ${PROC_STAT[0]} == Z ]] && return 0
        sleep 0.1
    done
    st=$(proc_starttime "$pid") || return 0
    [[ $want == "?" || $st == "$want" ]] && kill -KILL "$pid" 2>/dev/null
    return 0
}

# Stop recorded processes, then delete recorded namespaces. Idempotent.
netns_cleanup() {
    [[ -n $NETNS_STATE_DIR && -d $NETNS_STATE_DIR ]] || return 0
    local pid st ns p
    if [[ -s $NETNS_STATE_DIR/pids ]]; then
        while read -r pid st; do
            [[ -n $pid ]] && _netns_stop_pid "$pid" "$st"
        done <"$NETNS_STATE_DIR/pids"
        : >"$NETNS_STATE_DIR/pids"
    fi
    if [[ -s $NETNS_STATE_DIR/netns ]]; then
        while read -r ns; do
            [[ -n $ns && -e /run/netns/$ns ]] || continue
            # Anything still inside a namespace we created was started by us
            # (e.g. a child of a recorded process); stop it by PID.
            for p in $(ip netns pids "$ns" 2>/dev/null); do
                _netns_stop_pid "$p" "?"
            done
            ip netns del "$ns" 2>/dev/null || echo "warning: could not delete netns $ns" >&2
        done <"$NETNS_STATE_DIR/netns"
        : >"$NETNS_STATE_DIR/netns"
    fi
}

# netns_etc_add NS -- create /etc/netns/NS (what `ip netns exec NS` bind-mounts
# over /etc, file by file) and record it, so netns_etc_cleanup removes exactly
# that directory. Refuses a directory that already exists (not ours to touch).
netns_etc_add() {
    local ns=$1
    if [[ -e /etc/netns/$ns ]]; then
        echo "error: /etc/netns/$ns already exists; refusing to reuse it" >&2
        return 1
    fi
    mkdir -p "/etc/netns/$ns"
    echo "$ns" >>"$NETNS_STATE_DIR/etc"
}

# Remove the /etc/netns/NS directories recorded by netns_etc_add, by name.
# Call it after netns_cleanup (a process in the namespace may still use them).
# Idempotent.
netns_etc_cleanup() {
    [[ -n $NETNS_STATE_DIR && -s $NETNS_STATE_DIR/etc ]] || return 0
    local ns
    while read -r ns; do
        [[ -n $ns && $ns != */* && $ns != . && $ns != .. ]] || continue
        rm -rf -- "/etc/netns/$ns"
    done <"$NETNS_STATE_DIR/etc"
    : >"$NETNS_STATE_DIR/etc"
}
