#!/usr/bin/env bash
# scenarios/fig-mux.sh - NSM multiplexing: one NSM serving N VMs vs one NSM
# per VM (NetKernel's "multiplexing saves cores" claim). Normally run as
# `./reproduce.sh fig-mux`.
#
#   scenarios/fig-mux.sh [--quick] [--vms "1 2 4 8"] [--secs S] [--rate R]
#                        [--rr-rate N] [--reps K] [--nsm-spin-us US]
#                        [--poll-spin-us US|off] [--no-native] [--out DIR]
#
# Claim: N VMs with the same load, served by one shared NSM, get the same
# aggregate throughput as N separate NSMs (one per VM) while the NSMs use
# fewer cores; at N = 8 the shared NSM delivers >= 90 % of the separate NSMs'
# throughput with <= 50 % of their CPU time.
#
# Testbed (all in one host, like tb_netkernel_up): namespaces guest (only lo),
# nsm and remote; nsm 10.79.0.1/24 <-> remote 10.79.0.2/24, tbf $NK_LINK_RATE
# (default 1gbit, burst 256 KiB) on both ends; VM vI has 10.79.0.(10+I) on
# nsm's to-remote. Every NSM (shared or not) runs in the same nsm namespace,
# so both configurations use the same network path and the same kernel.
# One CoreEngine per run, started with
#   separate: --nsm name=nI,netns=nk-ID-nsm,stack=kernel,cc=cubic (I = 1..N)
#             --vm name=vI,ip=10.79.0.(10+I),nsm=nI
#   shared:   --nsm name=shared,netns=nk-ID-nsm,stack=kernel,cc=cubic
#             --vm name=vI,ip=...,nsm=shared
# and the same NSM flags in both: every --nsm gets spin=US (default 0: an NSM
# sleeps on its doorbell as soon as it has nothing to do, the event-driven
# floor; nk-nsm's own default is a 20 us spin; --nsm-spin-us US changes it
# for every NSM).
# The paper's NSMs poll on cores of their own; so after the sweep one more
# pair runs at the largest N with every NSM spinning --poll-spin-us (default
# 200) before it sleeps, holding the core while it spins (hold=on: nk-nsm
# --spin-hold, no sched_yield) ("poll point"; off skips it).
# The native run also records its iperf3 clients' system time: the kernel TCP
# work of the bulk load, which any NSM does too, so that work divided by the
# separate NSMs' CPU estimates the floor under the shared/separate CPU ratio
# (cpu_floor_ratio_8; tick-sampled, so noisy).
#
# Load, per VM, for S s (default 15; --quick 8): one iperf3 client at a fixed
# rate (-b R, default 100M, so 8 VMs fit the link) to its own iperf3 server on
# remote, and one request/response client (scenarios/lib/rr_echo.py: 64-byte
# request, 64-byte answer, N/s on a fixed schedule, default 500/s) to an echo
# server on remote. Guests run under nkrun in the guest namespace.
#
# Measured per run: aggregate bulk throughput (sum of the iperf3 receivers'
# rates), request/response rate and latency, and the CPU time (utime + stime
# from /proc/PID/stat) of the NSM processes (pids from `nkctl --json list
# nsms`) and of the CoreEngine, over the window [WARM, S - 1] s after the
# clients start (WARM = 2 s). Cores = CPU seconds / window seconds.
# Native baseline (unless --no-native): the same clients at the largest N run
# directly in the nsm namespace, without NetKernel.
#
# Writes DIR (default results/fig-mux): data.csv (one row per run),
# summary.json (throughput_ratio_8, cpu_ratio_8, ...), fig-mux.png, logs/.
# Exit status: 0 when every run completed; 1 otherwise (outputs still
# written); 2 usage.
#
# Environment: BUILD, NK_LINK_RATE (default 1gbit), NK_CC (default cubic),
# NK_KEEP=1 (keep the testbed's temporary directory).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/results/fig-mux
VMS="1 2 4 8"
SECS=15
RATE=100M
RR_RATE=500
REPS=1
NATIVE=1
WARM=2
NSM_SPIN=0 # sleep as soon as there is nothing to do (nk-nsm's default spins 20 us)
POLL_SPIN=200
QUICK=0

usage() {
	echo "usage: $0 [--quick] [--vms \"1 2 4 8\"] [--secs S] [--rate R] [--rr-rate N] [--reps K] [--nsm-spin-us US] [--poll-spin-us US|off] [--no-native] [--out DIR]"
	echo "  one shared NSM vs one NSM per VM for N VMs (default 1 2 4 8), S s per run (default 15, --quick 8)"
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1; shift ;;
	--vms) VMS=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--vms=*) VMS=${1#*=}; shift ;;
	--secs) SECS=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--secs=*) SECS=${1#*=}; shift ;;
	--rate) RATE=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--rate=*) RATE=${1#*=}; shift ;;
	--rr-rate) RR_RATE=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--rr-rate=*) RR_RATE=${1#*=}; shift ;;
	--reps) REPS=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--reps=*) REPS=${1#*=}; shift ;;
	--no-native) NATIVE=0; shift ;;
	--nsm-spin-us) NSM_SPIN=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--nsm-spin-us=*) NSM_SPIN=${1#*=}; shift ;;
	--poll-spin-us) POLL_SPIN=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--poll-spin-us=*) POLL_SPIN=${1#*=}; shift ;;
	--out) OUT=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--out=*) OUT=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "fig-mux: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
[ $QUICK = 1 ] && SECS=8
MAXN=0
for n in $VMS; do
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 16 ]; then
		echo "fig-mux: --vms wants numbers 1..16, not '$n'" >&2
		exit 2
	fi
	[ "$n" -gt $MAXN ] && MAXN=$n
done
[ $MAXN -gt 0 ] || { echo "fig-mux: --vms is empty" >&2; exit 2; }
if ! [[ $SECS =~ ^[0-9]+$ ]] || [ "$SECS" -lt 5 ] || [ "$SECS" -gt 300 ]; then
	echo "fig-mux: --secs wants 5..300, not '$SECS'" >&2
	exit 2
fi
if ! [[ $RATE =~ ^[0-9]+[KMGkmg]?$ ]]; then
	echo "fig-mux: --rate wants an iperf3 rate like 100M, not '$RATE'" >&2
	exit 2
fi
if ! [[ $RR_RATE =~ ^[0-9]+$ ]] || [ "$RR_RATE" -lt 1 ] || [ "$RR_RATE" -gt 20000 ]; then
	echo "fig-mux: --rr-rate wants 1..20000 requests/s, not '$RR_RATE'" >&2
	exit 2
fi
if ! [[ $REPS =~ ^[0-9]+$ ]] || [ "$REPS" -lt 1 ] || [ "$REPS" -gt 10 ]; then
	echo "fig-mux: --reps wants 1..10, not '$REPS'" >&2
	exit 2
fi
if ! [[ $NSM_SPIN =~ ^[0-9]+$ ]] || [ "$NSM_SPIN" -gt 1000000 ]; then
	echo "fig-mux: --nsm-spin-us wants 0..1000000, not '$NSM_SPIN'" >&2
	exit 2
fi
if [ "$POLL_SPIN" != off ] && { ! [[ $POLL_SPIN =~ ^[0-9]+$ ]] || [ "$POLL_SPIN" -gt 1000000 ]; }; then
	echo "fig-mux: --poll-spin-us wants 0..1000000 or off, not '$POLL_SPIN'" >&2
	exit 2
fi
# shellcheck source=scenarios/lib/testbed.sh
. "$ROOT/scenarios/lib/testbed.sh"
tb_preflight fig-mux iperf3 python3 gnuplot tc ss
# the interpreter itself (python3 may be a shell shim), for the guests
PY=$(python3 -c 'import sys; print(sys.executable)') || exit 1
RR=$ROOT/scenarios/lib/rr_echo.py
NKCTL=$TB_BUILD/bin/nkctl
CC=${NK_CC:-cubic}
LINK_RATE=${NK_LINK_RATE:-1gbit}
SRV=10.79.0.2
RR_PORT=7000

mkdir -p "$OUT" || exit 1
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"
rm -f "$OUT/data.csv" "$OUT/summary.json" "$OUT/fig-mux.png"

say() { echo "$*"; }
now() { date +%s.%N; }
vm_ip() { echo "10.79.0.$((10 + $1))"; }
sleep_until() { # EPOCH
	local d
	d=$(awk -v n="$1" -v t="$(now)" 'BEGIN { d = n - t; printf "%.3f", (d > 0 ? d : 0) }')
	[ "$d" != 0.000 ] && sleep "$d"
	return 0
}

# cpu_ticks PID [system]: utime + stime (clock ticks), or stime alone with
# "system"; empty if the pid is gone
cpu_ticks() {
	awk -v sys="${2:-}" '{ s = $0; sub(/.*\) /, "", s); split(s, f, " ");
		print (sys == "system" ? 0 : f[12]) + f[13] }' "/proc/$1/stat" 2>/dev/null
}

# nsm_pids CTL: "name pid" of every NSM that is up
nsm_pids() {
	timeout 20 "$NKCTL" --ctl "$1" --json list nsms 2>/dev/null | python3 -c '
import json, sys
try:
    for n in json.load(sys.stdin):
        if n.get("state") == "up" and int(n.get("pid", -1)) > 0:
            print(n["name"], n["pid"])
except Exception:
    pass'
}

CE_PID=
CE_SOCK=
ce_start() { # INSTANCE NSM_ARGS... -- VM_ARGS...
	local inst=$1
	shift
	CE_SOCK=$TB_DIR/ce-$inst.sock
	if ! tb_ce_bg "$OUT/logs/ce-$inst.log" "$CE_SOCK" --instance "$TB_ID-$inst" "$@" 2>"$TB_DIR/ce-start.err"; then
		say "   the CoreEngine did not start: $(tr '\n' ' ' <"$TB_DIR/ce-start.err")"
		return 1
	fi
	CE_PID=$TB_LAST_PID
}

ce_stop() { # the CoreEngine, and NSMs a hard death left in the nsm namespace
	tb_ce_stop "$CE_PID" "$CE_SOCK" nsm
	CE_PID=
}

# run_case CASE CFG N [SPIN HOLD]  (CFG separate|shared|native; SPIN default
# --nsm-spin-us; HOLD on|off, default off: NSMs yield the core as they spin)
run_case() {
	local c=$1 cfg=$2 n=$3 spin=${4:-$NSM_SPIN} hold=${5:-off} i res=$TB_DIR/$1.res pids=() ipids=() args=() t_start t0 t1 k
	: >"$res"
	echo "cfg=$cfg" >>"$res"
	echo "n=$n" >>"$res"
	echo "secs=$SECS" >>"$res"
	echo "spin_us=$spin" >>"$res"
	echo "hold=$hold" >>"$res"
	echo "point=$([ "$spin" != "$NSM_SPIN" ] || [ "$hold" = on ] && echo poll || echo main)" >>"$res"
	# every NSM of both configurations gets the same spin, explicitly
	local key=",spin=$spin,hold=$hold"
	if [ "$cfg" != native ]; then
		if [ "$cfg" = shared ]; then
			args+=(--nsm "name=shared,netns=$(tb_ns nsm),stack=kernel,cc=$CC$key")
			for ((i = 1; i <= n; i++)); do args+=(--vm "name=v$i,ip=$(vm_ip $i),nsm=shared"); done
		else
			for ((i = 1; i <= n; i++)); do args+=(--nsm "name=n$i,netns=$(tb_ns nsm),stack=kernel,cc=$CC$key"); done
			for ((i = 1; i <= n; i++)); do args+=(--vm "name=v$i,ip=$(vm_ip $i),nsm=n$i"); done
		fi
		ce_start "$c" "${args[@]}" || { echo "error=CoreEngine did not start" >>"$res"; return 1; }
		local want=$n got=0
		[ "$cfg" = shared ] && want=1
		for ((k = 0; k < 100; k++)); do
			got=$(nsm_pids "$CE_SOCK" | wc -l)
			[ "$got" -ge "$want" ] && break
			sleep 0.1
		done
		if [ "$got" -lt "$want" ]; then
			say "   only $got of $want NSMs came up"
			echo "error=only $got of $want NSMs up" >>"$res"
			ce_stop
			return 1
		fi
	fi
	t_start=$(now)
	for ((i = 1; i <= n; i++)); do
		local ilog=$OUT/logs/$c-v$i-iperf3.json rlog=$OUT/logs/$c-v$i-rr.log
		if [ "$cfg" = native ]; then
			tb_bg nsm "$ilog" iperf3 -c "$SRV" -B "$(vm_ip $i)" -p $((5200 + i)) -b "$RATE" -t "$SECS" -C "$CC" --json >/dev/null
			pids+=("$TB_LAST_PID")
			ipids+=("$TB_LAST_PID")
			tb_bg nsm "$rlog" "$PY" "$RR" client --rate "$RR_RATE" --secs "$SECS" "$SRV" "$RR_PORT" >/dev/null
			pids+=("$TB_LAST_PID")
		else
			tb_bg root "$ilog" "$TB_BUILD/bin/nkrun" --vm "v$i" --ctl "$CE_SOCK" --netns "$(tb_ns guest)" -- \
				iperf3 -c "$SRV" -p $((5200 + i)) -b "$RATE" -t "$SECS" --json >/dev/null
			pids+=("$TB_LAST_PID")
			tb_bg root "$rlog" "$TB_BUILD/bin/nkrun" --vm "v$i" --ctl "$CE_SOCK" --netns "$(tb_ns guest)" -- \
				"$PY" "$RR" client --rate "$RR_RATE" --secs "$SECS" "$SRV" "$RR_PORT" >/dev/null
			pids+=("$TB_LAST_PID")
		fi
	done
	echo "t_start=$t_start" >>"$res"
	# CPU window [WARM, SECS - 1] s after the clients started
	sleep_until "$(awk -v t="$t_start" -v w="$WARM" 'BEGIN { printf "%.3f", t + w }')"
	local snap0=$TB_DIR/$c.cpu0 snap1=$TB_DIR/$c.cpu1 name pid
	cpu_snap() { # FILE
		: >"$1"
		if [ "$cfg" != native ]; then
			echo "ce $CE_PID $(cpu_ticks "$CE_PID")" >>"$1"
			nsm_pids "$CE_SOCK" | while read -r name pid; do
				echo "nsm:$name $pid $(cpu_ticks "$pid")" >>"$1"
			done
		else
			# the native iperf3 clients' system time: the kernel TCP
			# work of the bulk load, which an NSM does for its VMs
			for i in "${!ipids[@]}"; do
				echo "stack:iperf3-$((i + 1)) ${ipids[$i]} $(cpu_ticks "${ipids[$i]}" system)" >>"$1"
			done
		fi
		now >"$1.t"
		head -n 1 /proc/stat >"$1.stat"
	}
	cpu_snap "$snap0"
	say "   clients running; CPU window $WARM-$((SECS - 1)) s"
	sleep_until "$(awk -v t="$t_start" -v s="$SECS" 'BEGIN { printf "%.3f", t + s - 1 }')"
	cpu_snap "$snap1"
	t0=$(cat "$snap0.t")
	t1=$(cat "$snap1.t")
	echo "cpu_t0=$t0" >>"$res"
	echo "cpu_t1=$t1" >>"$res"
	# the whole machine over the window (others share these cores)
	echo "host_stat0=$(cat "$snap0.stat")" >>"$res"
	echo "host_stat1=$(cat "$snap1.stat")" >>"$res"
	# per process: ticks at both ends (same pid both times, or it restarted)
	local line
	while read -r name pid k; do
		line=$(awk -v n="$name" '$1 == n { print $2, $3 }' "$snap1")
		echo "cpu_${name}=$pid $k $line" >>"$res"
	done <"$snap0"
	local rc bad=0
	for pid in "${pids[@]}"; do
		rc=0
		tb_wait_pid "$pid" $((SECS + 30)) || rc=$?
		[ "$rc" = 0 ] || bad=$((bad + 1))
	done
	echo "clients_failed=$bad" >>"$res"
	if [ "$cfg" != native ]; then
		timeout 20 "$NKCTL" --ctl "$CE_SOCK" --json list vms >"$TB_DIR/$c.vms.json" 2>/dev/null
		timeout 20 "$NKCTL" --ctl "$CE_SOCK" --json list nsms >"$TB_DIR/$c.nsms.json" 2>/dev/null
		ce_stop
	fi
	python3 "$ROOT/scenarios/lib/fig_mux.py" line --dir "$TB_DIR" --out "$OUT" --case "$c"
	return 0
}

# ---------------------------------------------------------------------------

T_START=$(date +%s)
ID="fm$(($$ % 100000))"
say "fig-mux: one shared NSM vs one NSM per VM (NetKernel: multiplexing NSMs saves cores)"
say "  N = $VMS VMs; per VM iperf3 -b $RATE + $RR_RATE req/s of 64-byte request/response; $SECS s per run, $REPS rep(s)"
say "  results in $OUT"
say "== testbed: guest (lo only), nsm <-> remote over $LINK_RATE (tbf), $MAXN VM addresses"
tb_init "$ID" || exit 1
for h in guest nsm remote; do tb_add_host "$h" || tb_fail "cannot create namespace $h"; done
links=$(ip -n "$(tb_ns guest)" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | tr '\n' ' ')
[ "$links" = "lo " ] || tb_fail "guest namespace must have only lo, has: $links"
TB_TBF_BURST=${NK_TBF_BURST:-256k} tb_link nsm remote 10.79.0.1/24 "$SRV/24" "$LINK_RATE" || tb_fail "link setup failed"
for ((i = 1; i <= MAXN; i++)); do tb_add_addr nsm "$(vm_ip $i)/24" "$(tb_dev nsm remote)" || tb_fail "address $(vm_ip $i)"; done
ip netns exec "$(tb_ns nsm)" sysctl -qw net.ipv4.tcp_congestion_control="$CC" 2>/dev/null || true
tb_track_file "/dev/shm/nk-$TB_ID-*"
for ((i = 1; i <= MAXN; i++)); do
	tb_bg remote "$OUT/logs/iperf3-server-$i.log" iperf3 -s -p $((5200 + i)) >/dev/null
done
tb_bg remote "$OUT/logs/rr-server.log" "$PY" "$RR" server "$RR_PORT" >/dev/null
tb_wait_listen remote "$RR_PORT" 10 || tb_fail "echo server did not start: $(tail -n 3 "$OUT/logs/rr-server.log")"
for ((i = 1; i <= MAXN; i++)); do
	tb_wait_listen remote $((5200 + i)) 10 || tb_fail "iperf3 server $i did not start"
done

FAILED=0
for ((r = 1; r <= REPS; r++)); do
	for n in $VMS; do
		# alternate the order between reps so that drift in the machine's
		# load does not always favour the same configuration
		if [ $((r % 2)) = 1 ]; then order="separate shared"; else order="shared separate"; fi
		for cfg in $order; do
			c="${cfg}-n$n-r$r"
			say "== [$c] $n VM(s), $([ "$cfg" = shared ] && echo "one shared NSM" || echo "$n NSM(s), one per VM")"
			run_case "$c" "$cfg" "$n" || FAILED=1
		done
	done
done
# The paper's NSMs poll; ours sleep after --spin-us. One more pair at the
# largest N with NSMs that spin longer, holding their core (closer to polling).
if [ "$POLL_SPIN" != off ]; then
	for cfg in separate shared; do
		c="${cfg}-n$MAXN-s$POLL_SPIN-r1"
		say "== [$c] $MAXN VM(s), $([ "$cfg" = shared ] && echo "one shared NSM" || echo "$MAXN NSMs, one per VM"), every NSM with --spin-us $POLL_SPIN --spin-hold"
		run_case "$c" "$cfg" "$MAXN" "$POLL_SPIN" on || FAILED=1
	done
fi
if [ $NATIVE = 1 ]; then
	c="native-n$MAXN-r1"
	say "== [$c] native baseline: $MAXN clients in the nsm namespace, no NetKernel"
	run_case "$c" native "$MAXN" || FAILED=1
fi

say "== summary"
python3 "$ROOT/scenarios/lib/fig_mux.py" summary --dir "$TB_DIR" --out "$OUT" --vms "$VMS" --reps "$REPS" \
	--secs "$SECS" --warm "$WARM" --rate "$RATE" --rr-rate "$RR_RATE" --link-rate "$LINK_RATE" --cc "$CC" \
	--nsm-spin-us "$NSM_SPIN" --poll-spin-us "$POLL_SPIN" --elapsed "$(($(date +%s) - T_START))"
rc=$?
if [ -f "$TB_DIR/plot.gp" ]; then
	if gnuplot "$TB_DIR/plot.gp" 2>"$TB_DIR/gnuplot.err"; then
		say "   figure: $OUT/fig-mux.png"
	else
		say "   gnuplot failed: $(tr '\n' ' ' <"$TB_DIR/gnuplot.err")"
		rc=1
	fi
fi
[ $FAILED = 1 ] && rc=1
exit $rc
