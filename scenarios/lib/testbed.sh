# shellcheck shell=bash
# scenarios/lib/testbed.sh - namespace testbed for NetKernel tests and scenarios.
#
# Source it from a bash script (works with `set -euo pipefail`):
#
#   . "$ROOT/scenarios/lib/testbed.sh"
#   tb_netkernel_up "t$(( $$ % 100000 ))"     # guest/nsm/remote + CoreEngine
#   tb_bg remote "$TB_DIR/srv.log" iperf3 -s >/dev/null
#   tb_guest iperf3 -c 10.77.0.2 -t 5
#
# Building blocks:
#   tb_init ID                 start a testbed; ID is [a-z0-9], at most 8 chars.
#                              Creates $TB_DIR (logs, control socket) and installs
#                              the cleanup traps (EXIT, INT, TERM).
#   tb_add_host NAME           netns nk-ID-NAME with lo up
#   tb_link A B ADDR_A/24 ADDR_B/24 [RATE]
#                              veth pair; in A the device is "to-B", in B "to-A"
#                              (see tb_dev). RATE (e.g. 1gbit) adds a tbf qdisc
#                              on both ends (TB_TBF_LATENCY, TB_TBF_BURST tune it)
#   tb_link_dev A DEV_A B DEV_B ADDR_A/24 ADDR_B/24 [RATE]
#                              the same with explicit device names (a second
#                              link between the same two hosts)
#   tb_dev A B                 prints the name of A's device towards B
#   tb_add_addr HOST ADDR/24 DEV  extra address (a VM's IP on the NSM's interface)
#   tb_exec HOST cmd...        run in HOST's namespace ("root" = root namespace),
#                              bounded by TB_EXEC_TIMEOUT (default 300 s)
#   tb_bg HOST LOGFILE cmd...  start in the background, remember the pid, echo it
#                              and set TB_LAST_PID. Call it without $(...) if you
#                              want to `wait` for the pid (tb_wait_pid).
#   tb_wait_pid PID SECS       wait (bounded) for a pid started by tb_bg; returns
#                              its exit status, 124 after killing it on timeout
#   tb_kill_all                SIGTERM our pids, up to 3 s, SIGKILL, wait
#   tb_track_file PATH|GLOB    remove it at cleanup
#   tb_cleanup                 kill our pids and whatever runs in our namespaces,
#                              delete the namespaces (with their veths), remove
#                              tracked files and $TB_DIR (kept if NK_KEEP=1)
#   tb_require PROG...         exit 77 (skip) naming the first missing program
#   tb_preflight NAME PROG...  exit 1 unless root, NetKernel built, PROGs installed
#   tb_iperf3_bps FILE         bits/s received, from an iperf3 -J file
#   tb_fail MSG                print FAIL: MSG and exit 1 (repeated after the logs)
#   tb_wait_for SECS cmd...    poll cmd every 0.1 s until it succeeds (1 on timeout)
#   tb_wait_listen HOST PORT [SECS]  until a TCP listener on PORT in HOST
#
# NetKernel testbed (tb_netkernel_up ID [--vm name=V,ip=A,nsm=tcp]...):
#   hosts guest (only lo), nsm, remote; nsm 10.77.0.1/24 <-> remote 10.77.0.2/24
#   (rate $NK_RATE if set); VM vm1 = 10.77.0.11 on the nsm side (and the ip of
#   every extra --vm); CoreEngine in the root namespace with
#   --nsm name=tcp,netns=nk-ID-nsm,stack=kernel,cc=${NK_CC:-cubic}.
#   Exports NK_CTL, TB_CE_PID. Then:
#   tb_guest CMD...            nkrun --vm ${TB_VM:-vm1} --ctl $NK_CTL --netns nk-ID-guest
#                              -- CMD... (bounded by TB_GUEST_TIMEOUT, default 300 s)
#   tb_guest_bg LOGFILE CMD... the same in the background (like tb_bg)
#   tb_nkctl ARGS...           nkctl --ctl $NK_CTL ARGS...
#   tb_nsm_pid                 pid of the nk-nsm process in nk-ID-nsm (empty if none)
#   tb_stat KEY                first number after KEY in `nkctl stats`
# Any number of CoreEngines (fig-mux, fig-isolation, twohost.sh):
#   tb_ce_bg LOG SOCK ARGS...  nk-coreengine --ctl SOCK ARGS... in the background,
#                              waits for SOCK (pid in TB_LAST_PID)
#   tb_ce_stop PID SOCK [HOST...]  stop it; SIGTERM nk-nsm left in HOST's namespace
#
# Environment: BUILD (default build, relative to the repository root),
# NK_CC, NK_RATE, NK_KEEP=1 (keep $TB_DIR), NK_PRELOAD_EXTRA (passed through to
# nkrun, which puts it in front of LD_PRELOAD), NK_CE_SPIN_US and
# NK_NSM_SPIN_US (tb_netkernel_up: spin-before-sleep, CoreEngine 20 us, NSM 20 us).

TB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TB_BUILD=${BUILD:-build}
case $TB_BUILD in /*) ;; *) TB_BUILD=$TB_ROOT/$TB_BUILD ;; esac

TB_ID=
TB_DIR=
TB_NETNS=()
TB_FILES=()
TB_LAST_PID=
TB_CE_PID=
TB_FAIL_MSG=
TB_FG_PIDS=()
TB_CLEANED=0

tb_log() { echo "[tb] $*" >&2; }

tb_fail() {
	TB_FAIL_MSG="$*"
	echo "FAIL: $*" >&2
	exit 1
}

tb_require() {
	local p
	for p in "$@"; do
		if ! command -v "$p" >/dev/null 2>&1; then
			echo "$p is not installed"
			exit 77
		fi
	done
}

# A scenario's checks before it builds anything: root, NetKernel built, the
# programs it runs installed. Exits 1 with one line naming what is missing.
tb_preflight() {
	local who=${1:?tb_preflight NAME PROG...} b p
	shift
	if [ "$(id -u)" != 0 ]; then
		echo "$who: must run as root (network namespaces, veth, tc)" >&2
		exit 1
	fi
	for b in bin/nk-coreengine bin/nk-nsm bin/nkrun bin/nkctl lib/libnkguest.so; do
		[ -e "$TB_BUILD/$b" ] || { echo "$who: $TB_BUILD/$b is not built (run make)" >&2; exit 1; }
	done
	for p in "$@"; do
		command -v "$p" >/dev/null 2>&1 ||
			{ echo "$who: $p is not installed (./reproduce.sh installs it)" >&2; exit 1; }
	done
}

# Bits/s the receiver counted, from an iperf3 -J file (fails on an error).
tb_iperf3_bps() {
	python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
if d.get("error"): sys.exit("iperf3: " + d["error"])
print("%.0f" % d["end"]["sum_received"]["bits_per_second"])' "$1"
}

tb_ns() { echo "nk-$TB_ID-$1"; }

tb_init() {
	local id=${1:?tb_init ID}
	if ! [[ $id =~ ^[a-z0-9]{1,8}$ ]]; then
		echo "tb_init: ID '$id' must be 1-8 characters of [a-z0-9]" >&2
		return 1
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "tb_init: the testbed needs root (network namespaces)" >&2
		return 1
	fi
	TB_ID=$id
	TB_CLEANED=0
	TB_DIR=$(mktemp -d "/tmp/nk-$id.XXXXXX")
	: >"$TB_DIR/pids"
	trap 'tb__on_exit' EXIT
	trap 'tb__on_signal 130' INT
	trap 'tb__on_signal 143' TERM
}

tb__on_exit() {
	local rc=$?
	tb_cleanup "$rc"
	exit "$rc"
}

tb__on_signal() {
	echo "[tb] interrupted (exit $1)" >&2
	tb_cleanup "$1"
	trap - EXIT
	exit "$1"
}

tb_add_host() {
	local name=${1:?tb_add_host NAME} ns
	[ -n "$TB_ID" ] || { echo "tb_add_host: call tb_init first" >&2; return 1; }
	if ! [[ $name =~ ^[a-z][a-z0-9]{0,11}$ ]] || [ "$name" = root ]; then
		echo "tb_add_host: bad host name '$name' ([a-z][a-z0-9]*, max 12, not 'root')" >&2
		return 1
	fi
	ns=$(tb_ns "$name")
	if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
		echo "tb_add_host: namespace $ns already exists (another run with ID $TB_ID?)" >&2
		return 1
	fi
	ip netns add "$ns" || return 1
	TB_NETNS+=("$ns")
	ip -n "$ns" link set lo up
}

tb_dev() { echo "to-${2:?tb_dev A B}"; }

# Parse a tc rate (e.g. 100mbit, 1gbit, 10Mbit, 500kbit, 1000000bit) to bit/s.
tb__rate_bits() {
	local r=${1,,}
	awk -v r="$r" 'BEGIN {
		n = r + 0; u = r; sub(/^[0-9.]+/, "", u)
		m = 1
		if (u == "kbit") m = 1e3; else if (u == "mbit") m = 1e6; else if (u == "gbit") m = 1e9
		else if (u == "tbit") m = 1e12; else if (u == "bit" || u == "") m = 1
		else if (u == "kbps") m = 8e3; else if (u == "mbps") m = 8e6; else if (u == "gbps") m = 8e9
		else if (u == "bps") m = 8; else { print 0; exit }
		printf "%.0f\n", n * m }'
}

tb__tbf() {
	local ns=$1 dev=$2 rate=$3 bits burst
	bits=$(tb__rate_bits "$rate")
	if [ "${bits:-0}" = 0 ]; then
		echo "tb_link: cannot parse rate '$rate'" >&2
		return 1
	fi
	# Burst: 4 ms worth of bytes, at least 32 KiB (TSO-sized packets fit).
	burst=${TB_TBF_BURST:-$(awk -v b="$bits" 'BEGIN { x = b / 8 * 0.004; if (x < 32768) x = 32768; printf "%d\n", x }')}
	tc -n "$ns" qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" latency "${TB_TBF_LATENCY:-20ms}"
}

tb_link() {
	local a=${1:?tb_link A B ADDR_A ADDR_B [RATE]} b=${2:?}
	shift 2
	tb_link_dev "$a" "$(tb_dev "$a" "$b")" "$b" "$(tb_dev "$b" "$a")" "$@"
}

tb_link_dev() {
	local a=${1:?tb_link_dev A DEV_A B DEV_B ADDR_A ADDR_B [RATE]} da=${2:?} b=${3:?} db=${4:?}
	local addr_a=${5:?} addr_b=${6:?} rate=${7:-}
	local nsa nsb
	nsa=$(tb_ns "$a")
	nsb=$(tb_ns "$b")
	# Both ends are created directly inside their namespaces, so the names
	# never meet in the root namespace and parallel testbeds cannot clash.
	ip link add "$da" netns "$nsa" type veth peer name "$db" netns "$nsb" || return 1
	ip -n "$nsa" addr add "$addr_a" dev "$da"
	ip -n "$nsb" addr add "$addr_b" dev "$db"
	ip -n "$nsa" link set "$da" up
	ip -n "$nsb" link set "$db" up
	if [ -n "$rate" ]; then
		tb__tbf "$nsa" "$da" "$rate" && tb__tbf "$nsb" "$db" "$rate" || return 1
	fi
}

tb_add_addr() {
	local host=${1:?tb_add_addr HOST ADDR DEV} addr=${2:?} dev=${3:?}
	ip -n "$(tb_ns "$host")" addr add "$addr" dev "$dev"
}

# Run a command in the foreground, bounded by SECS. It actually runs as a
# background child that we wait for, so that a SIGINT/SIGTERM to this script
# runs the cleanup trap at once instead of after the command ends.
tb__fg() {
	local secs=$1 pid rc=0
	shift
	timeout --foreground -k 5 "$secs" "$@" <&0 &
	pid=$!
	TB_FG_PIDS+=("$pid")
	wait "$pid" || rc=$?
	unset 'TB_FG_PIDS[-1]'
	return $rc
}

tb_exec() {
	local host=${1:?tb_exec HOST cmd...}
	shift
	if [ "$host" = root ]; then
		tb__fg "${TB_EXEC_TIMEOUT:-300}" "$@"
	else
		tb__fg "${TB_EXEC_TIMEOUT:-300}" ip netns exec "$(tb_ns "$host")" "$@"
	fi
}

# Start time of a pid (field 22 of /proc/PID/stat), to never signal a reused pid.
tb__starttime() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	# after "comm) " field 3 comes first; starttime is field 22 -> $20
	# shellcheck disable=SC2086
	set -- $stat
	echo "${20}"
}

tb__alive() {
	local pid=$1 st=$2 cur state
	cur=$(tb__starttime "$pid") || return 1
	[ "$cur" = "$st" ] || return 1
	state=$(awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[1] }' "/proc/$pid/stat" 2>/dev/null)
	[ "$state" != Z ]
}

tb_bg() {
	local host=${1:?tb_bg HOST LOGFILE cmd...} log=${2:?} pid st
	shift 2
	[ -n "$TB_DIR" ] || { echo "tb_bg: call tb_init first" >&2; return 1; }
	if [ "$host" = root ]; then
		"$@" >"$log" 2>&1 </dev/null &
	else
		# ip netns exec execs the command, so $! is the command itself.
		ip netns exec "$(tb_ns "$host")" "$@" >"$log" 2>&1 </dev/null &
	fi
	pid=$!
	st=$(tb__starttime "$pid" || echo gone)
	echo "$pid $st" >>"$TB_DIR/pids"
	TB_LAST_PID=$pid
	echo "$pid"
}

tb_wait_pid() {
	local pid=${1:?tb_wait_pid PID SECS} secs=${2:-60} i=0 max
	max=$((secs * 10))
	while [ -d "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
		if [ $i -ge $max ]; then
			tb_log "pid $pid still running after ${secs}s: killing it"
			kill -KILL "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			return 124
		fi
		sleep 0.1
		i=$((i + 1))
	done
	local rc=0
	wait "$pid" 2>/dev/null || rc=$?
	return $rc
}

tb_wait_for() {
	local secs=${1:?tb_wait_for SECS cmd...} i=0 max
	shift
	max=$((secs * 10))
	until "$@" >/dev/null 2>&1; do
		[ $i -ge $max ] && return 1
		sleep 0.1
		i=$((i + 1))
	done
}

tb__listening() {
	local out
	out=$(ip netns exec "$(tb_ns "$1")" ss -Hltn "sport = :$2" 2>/dev/null) || return 1
	[ -n "$out" ]
}

tb_wait_listen() {
	tb_wait_for "${3:-10}" tb__listening "$1" "$2"
}

tb_track_file() {
	TB_FILES+=("$1")
}

# Signal every live pid of our list; wait up to 3 s; SIGKILL the rest.
tb_kill_all() {
	[ -n "$TB_DIR" ] && [ -f "$TB_DIR/pids" ] || return 0
	local pid st live=() i
	while read -r pid st; do
		[ -n "$pid" ] || continue
		if tb__alive "$pid" "$st"; then
			kill -TERM "$pid" 2>/dev/null && live+=("$pid $st")
		fi
	done <"$TB_DIR/pids"
	for ((i = 0; i < 30 && ${#live[@]} > 0; i++)); do
		local still=()
		for pid in "${live[@]}"; do
			# shellcheck disable=SC2086
			tb__alive $pid && still+=("$pid")
		done
		live=("${still[@]+"${still[@]}"}")
		[ ${#live[@]} -gt 0 ] && sleep 0.1
	done
	for pid in "${live[@]+"${live[@]}"}"; do
		# shellcheck disable=SC2086
		set -- $pid
		tb_log "pid $1 ignored SIGTERM for 3 s: SIGKILL"
		kill -KILL "$1" 2>/dev/null
	done
	while read -r pid st; do
		[ -n "$pid" ] && wait "$pid" 2>/dev/null
	done <"$TB_DIR/pids"
	: >"$TB_DIR/pids"
	return 0
}

# Kill whatever still runs inside one of our namespaces (e.g. an NSM whose
# CoreEngine died): those processes are ours by construction.
tb__kill_ns_pids() {
	local ns=$1 pids i
	pids=$(ip netns pids "$ns" 2>/dev/null) || return 0
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null
	for ((i = 0; i < 10; i++)); do
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -n "$pids" ] || return 0
		sleep 0.1
	done
	tb_log "killing leftover processes in $ns: $pids"
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null
	for ((i = 0; i < 20; i++)); do
		[ -n "$(ip netns pids "$ns" 2>/dev/null)" ] || return 0
		sleep 0.1
	done
}

tb__logs() {
	local f
	for f in "$TB_DIR"/*.log; do
		[ -s "$f" ] && echo "$f"
	done
	return 0
}

tb__dump_logs() {
	local f
	for f in "$TB_DIR"/*.log; do
		[ -s "$f" ] || continue
		echo "---- tail of $(basename "$f") ----" >&2
		tail -n "${TB_LOG_TAIL:-12}" "$f" | sed 's/^/  /' >&2
	done
}

# tb_cleanup [EXIT_STATUS]: idempotent; never fails.
tb_cleanup() {
	local rc=${1:-0}
	[ "$TB_CLEANED" = 1 ] && return 0
	TB_CLEANED=1
	set +e
	[ -n "$TB_ID" ] || return 0
	local dumped=0
	if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -n "$TB_DIR" ] && [ -n "$(tb__logs)" ]; then
		tb__dump_logs
		dumped=1
	fi
	local p
	for p in "${TB_FG_PIDS[@]+"${TB_FG_PIDS[@]}"}"; do
		kill -TERM "$p" 2>/dev/null
	done
	TB_FG_PIDS=()
	tb_kill_all
	local ns
	for ns in "${TB_NETNS[@]+"${TB_NETNS[@]}"}"; do
		tb__kill_ns_pids "$ns"
		ip netns del "$ns" 2>/dev/null || tb_log "could not delete namespace $ns"
	done
	TB_NETNS=()
	local f g
	shopt -s nullglob
	for f in "${TB_FILES[@]+"${TB_FILES[@]}"}"; do
		# shellcheck disable=SC2206
		local matches=($f)
		for g in "${matches[@]+"${matches[@]}"}"; do
			rm -f -- "$g"
		done
	done
	shopt -u nullglob
	TB_FILES=()
	if [ -n "$TB_DIR" ] && [ -d "$TB_DIR" ]; then
		if [ "${NK_KEEP:-0}" = 1 ]; then
			tb_log "kept $TB_DIR"
		else
			rm -rf -- "$TB_DIR"
		fi
	fi
	if [ -n "$TB_FAIL_MSG" ] && [ $dumped = 1 ]; then
		echo "FAIL: $TB_FAIL_MSG" >&2
	fi
	return 0
}

# ---------------------------------------------------------------------------
# The standard NetKernel testbed

# tb_ce_bg LOG SOCK ARGS...: nk-coreengine --ctl SOCK ARGS... in the
# background (its pid in TB_LAST_PID), then wait up to 5 s for its control
# socket; if it does not come, say why on stderr and return 1.
tb_ce_bg() {
	local log=${1:?tb_ce_bg LOG SOCK ARGS...} sock=${2:?tb_ce_bg LOG SOCK ARGS...} pid i rc=0
	shift 2
	tb_track_file "$sock"
	tb_bg root "$log" "$TB_BUILD/bin/nk-coreengine" --ctl "$sock" "$@" >/dev/null
	pid=$TB_LAST_PID
	for ((i = 0; i < 50; i++)); do
		[ -S "$sock" ] && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || rc=$?
			echo "nk-coreengine exited (status $rc) before creating $sock; its log: $(tail -n 5 "$log" | tr '\n' '|')" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "nk-coreengine did not create $sock within 5 s; its log: $(tail -n 5 "$log" | tr '\n' '|')" >&2
	return 1
}

# tb_ce_stop PID SOCK [HOST...]: SIGTERM a CoreEngine started by tb_ce_bg (it
# stops the NSMs it started), SIGKILL after 5 s, then SIGTERM the nk-nsm
# processes left in the namespaces of HOST... (those of a CoreEngine that died
# hard) and remove SOCK. An empty PID only does the sweep.
tb_ce_stop() {
	local pid=$1 sock=${2:-} i h p
	shift 2
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			tb_log "CoreEngine pid $pid ignored SIGTERM for 5 s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null
	fi
	for h in "$@"; do
		for p in $(ip netns pids "$(tb_ns "$h")" 2>/dev/null); do
			[ "$(cat "/proc/$p/comm" 2>/dev/null)" = nk-nsm ] && kill -TERM "$p" 2>/dev/null
		done
	done
	[ -z "$sock" ] || rm -f "$sock"
}

tb_netkernel_up() {
	local id=${1:?tb_netkernel_up ID [--vm name=V,ip=A,nsm=tcp]...}
	shift
	local extra=("$@") b missing=() a
	for b in bin/nk-coreengine bin/nk-nsm bin/nkrun bin/nkctl lib/libnkguest.so; do
		[ -e "$TB_BUILD/$b" ] || missing+=("$TB_BUILD/$b")
	done
	if [ -z "$TB_ID" ]; then
		tb_init "$id" || return 1
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		tb_fail "tb_netkernel_up: NetKernel is not built: missing ${missing[*]} (run make)"
	fi
	tb_add_host guest || return 1
	tb_add_host nsm || return 1
	tb_add_host remote || return 1
	local links
	links=$(ip -n "$(tb_ns guest)" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | tr '\n' ' ')
	if [ "$links" != "lo " ]; then
		tb_fail "guest namespace must have only lo, has: $links"
	fi
	tb_link nsm remote 10.77.0.1/24 10.77.0.2/24 "${NK_RATE:-}" || return 1
	local dev
	dev=$(tb_dev nsm remote)
	tb_add_addr nsm 10.77.0.11/24 "$dev" || return 1
	for a in "${extra[@]+"${extra[@]}"}"; do
		if [[ $a =~ (^|,)ip=([0-9.]+)(,|$) ]]; then
			tb_add_addr nsm "${BASH_REMATCH[2]}/24" "$dev" || return 1
		fi
	done
	local sock=$TB_DIR/ce.sock
	tb_track_file "/dev/shm/nk-$TB_ID-*"
	local cc=${NK_CC:-cubic} spin=() nspin=
	# Spin-before-sleep of the CoreEngine and the NSM (defaults: CoreEngine 20 us, NSM 20 us),
	# for measuring that lever: NK_CE_SPIN_US, NK_NSM_SPIN_US.
	if [ -n "${NK_CE_SPIN_US:-}" ]; then
		[[ $NK_CE_SPIN_US =~ ^[0-9]{1,7}$ ]] || { tb_log "NK_CE_SPIN_US wants microseconds, not '$NK_CE_SPIN_US'"; return 1; }
		spin=(--spin-us "$NK_CE_SPIN_US")
	fi
	if [ -n "${NK_NSM_SPIN_US:-}" ]; then
		[[ $NK_NSM_SPIN_US =~ ^[0-9]{1,7}$ ]] || { tb_log "NK_NSM_SPIN_US wants microseconds, not '$NK_NSM_SPIN_US'"; return 1; }
		nspin=",spin=$NK_NSM_SPIN_US"
	fi
	tb_log "CoreEngine: instance $TB_ID, NSM tcp in $(tb_ns nsm) (cc=$cc), control $sock"
	tb_ce_bg "$TB_DIR/ce.log" "$sock" --instance "$TB_ID" "${spin[@]+"${spin[@]}"}" \
		--nsm "name=tcp,netns=$(tb_ns nsm),stack=kernel,cc=$cc$nspin" \
		--vm name=vm1,ip=10.77.0.11,nsm=tcp "${extra[@]+"${extra[@]}"}" || tb_fail "the CoreEngine did not start"
	TB_CE_PID=$TB_LAST_PID
	export NK_CTL=$sock
	export TB_CE_PID
}

tb_guest() {
	tb__fg "${TB_GUEST_TIMEOUT:-300}" "$TB_BUILD/bin/nkrun" --vm "${TB_VM:-vm1}" --ctl "$NK_CTL" \
		--netns "$(tb_ns guest)" ${TB_GUEST_LIB:+--lib "$TB_GUEST_LIB"} -- "$@"
}

# A third-party program that cannot run with the ASan runtime preloaded (curl
# hangs in setlocale under LD_PRELOAD=libasan.so, with or without GuestLib):
# under NK_ASAN=1 it gets the normal build's GuestLib and no ASan runtime; the
# CoreEngine and NSM it talks to stay instrumented.
tb_plain_guest() {
	if [ "${NK_ASAN:-0}" = 1 ]; then
		local lib=$TB_ROOT/build/lib/libnkguest.so
		[ -f "$lib" ] || tb_fail "NK_ASAN=1 needs the normal build's $lib (make all)"
		TB_GUEST_LIB=$lib NK_PRELOAD_EXTRA= tb_guest "$@"
	else
		tb_guest "$@"
	fi
}

tb_guest_bg() {
	local log=${1:?tb_guest_bg LOGFILE cmd...}
	shift
	tb_bg root "$log" "$TB_BUILD/bin/nkrun" --vm "${TB_VM:-vm1}" --ctl "$NK_CTL" \
		--netns "$(tb_ns guest)" ${TB_GUEST_LIB:+--lib "$TB_GUEST_LIB"} -- "$@"
}

tb_nkctl() {
	tb__fg 20 "$TB_BUILD/bin/nkctl" --ctl "$NK_CTL" "$@"
}

tb_nsm_pid() {
	local p
	for p in $(ip netns pids "$(tb_ns nsm)" 2>/dev/null); do
		if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = nk-nsm ]; then
			echo "$p"
			return 0
		fi
	done
	return 0
}

# tb_stat KEY [VM]: KEY from `nkctl stats` for VM, or summed over all VMs.
# Accepts JSON (a list of per-VM objects, or an object holding one) and falls
# back to the first "KEY=N" / "KEY: N" / "KEY N" in plain text. Prints
# nothing (status 1) when KEY is not found. TB_STATS_TEXT overrides the query.
tb_stat() {
	local key=${1:?tb_stat KEY [VM]} vm=${2:-} text
	if [ -n "${TB_STATS_TEXT+x}" ]; then text=$TB_STATS_TEXT; else text=$(tb_nkctl stats) || return 1; fi
	printf '%s' "$text" | python3 -c '
import json, re, sys
key, vm = sys.argv[1], sys.argv[2]
text = sys.stdin.read()
try:
    data = json.loads(text)
except ValueError:
    data = None
def rows(d):
    if isinstance(d, list):
        for x in d:
            if isinstance(x, dict):
                yield x
    elif isinstance(d, dict):
        if key in d and not vm:
            yield d
        for v in d.values():
            if isinstance(v, (list, dict)):
                yield from rows(v)
if data is not None:
    vals = [r[key] for r in rows(data) if key in r and (not vm or r.get("name") == vm)]
    if vals:
        print(vals[0] if vm else sum(int(v) for v in vals))
        sys.exit(0)
m = re.search(r"(?:^|[^a-z_])" + re.escape(key) + r"\"?\s*[=:]?\s*(\d+)", text)
if m:
    print(m.group(1))
    sys.exit(0)
sys.exit(1)
' "$key" "$vm"
}

# ---------------------------------------------------------------------------
# VM mode: guests as QEMU VMs (scenarios/vm/nkvm.sh). A VM-mode VM is declared
# to the CoreEngine with mode=vm (tb_netkernel_up ID --vm name=V,ip=A,nsm=tcp,mode=vm);
# its region is /dev/shm/nk-<instance>-vm-<V>.
#   tb_vm_require              exit 77 unless QEMU, busybox-static and a kernel exist
#   tb_vm CTL INSTANCE VM LOG [nkvm options] -- CMD...
#                              run CMD inside a fresh VM (foreground, bounded by
#                              TB_VM_TIMEOUT, default 600 s); LOG = its console
#   tb_vm_bg CTL INSTANCE VM LOG OUT [nkvm options] -- CMD...
#                              the same in the background (like tb_bg; OUT gets
#                              nkvm's output)
#   tb_vm_guest VM LOG ...     tb_vm on the standard testbed ($NK_CTL, $TB_ID)
#   tb_vm_guest_bg VM LOG OUT ...
#   tb_vm_qemu_pid OUT         the QEMU pid nkvm.sh reported in OUT (empty if none)
#   tb_vm_wait_boot LOG SECS   until the guest's /init printed NK-BOOT
TB_NKVM=$TB_ROOT/scenarios/vm/nkvm.sh
# The guest image's binaries: under NK_ASAN=1 the normal build's (the VM's
# /init preloads GuestLib alone, and an instrumented GuestLib needs the ASan
# runtime first); the CoreEngine and NSMs serving the VM stay instrumented.
TB_VM_BUILD=$TB_BUILD
[ "${NK_ASAN:-0}" = 1 ] && TB_VM_BUILD=$TB_ROOT/build

tb_vm_require() {
	tb_require qemu-system-x86_64 cpio python3
	ls /boot/vmlinuz-*-amd64 >/dev/null 2>&1 || [ -n "${NK_VM_KERNEL:-}" ] || { echo "no kernel in /boot (linux-image-amd64)"; exit 77; }
	[ -x /bin/busybox ] || { echo "busybox-static is not installed"; exit 77; }
	[ -e "$TB_VM_BUILD/bin/nk-vmagent" ] || { echo "FAIL: $TB_VM_BUILD/bin/nk-vmagent is not built (make all)" >&2; exit 1; }
	# The image is built once (cached in $BUILD/vm) before any timing starts.
	BUILD=$TB_VM_BUILD "$TB_ROOT/scenarios/vm/mkimage.sh" >&2 || tb_fail "cannot build the VM image"
}

tb_vm() {
	local ctl=${1:?tb_vm CTL INSTANCE VM LOG ...} inst=${2:?} vm=${3:?} log=${4:?}
	shift 4
	tb__fg "${TB_VM_TIMEOUT:-600}" env BUILD="$TB_VM_BUILD" "$TB_NKVM" --ctl "$ctl" --name "$vm" \
		--region "/dev/shm/nk-$inst-vm-$vm" --log "$log" --timeout "${TB_VM_TIMEOUT:-600}" "$@"
}

tb_vm_bg() {
	local ctl=${1:?tb_vm_bg CTL INSTANCE VM LOG OUT ...} inst=${2:?} vm=${3:?} log=${4:?} out=${5:?}
	shift 5
	tb_bg root "$out" env BUILD="$TB_VM_BUILD" "$TB_NKVM" --ctl "$ctl" --name "$vm" \
		--region "/dev/shm/nk-$inst-vm-$vm" --log "$log" --timeout "${TB_VM_TIMEOUT:-600}" "$@"
}

tb_vm_guest() {
	local vm=${1:?tb_vm_guest VM LOG ...} log=${2:?}
	shift 2
	tb_vm "$NK_CTL" "$TB_ID" "$vm" "$log" "$@"
}

tb_vm_guest_bg() {
	local vm=${1:?tb_vm_guest_bg VM LOG OUT ...} log=${2:?} out=${3:?}
	shift 3
	tb_vm_bg "$NK_CTL" "$TB_ID" "$vm" "$log" "$out" "$@"
}

tb_vm_qemu_pid() {
	sed -nE 's/^nkvm: VM .* is QEMU pid ([0-9]+) .*/\1/p' "${1:?tb_vm_qemu_pid OUT}" 2>/dev/null | tail -n 1
}

tb_vm_wait_boot() {
	tb_wait_for "${2:-300}" grep -q 'NK-BOOT' "${1:?tb_vm_wait_boot LOG SECS}"
}
