#!/usr/bin/env bash
# bench/app.sh - application benchmarks (issue 6): NetKernel vs native on the
# same testbed, alternating run by run (nk, native, nk, native, ...).
#
#   bench/app.sh [--quick] [--only LIST] [--runs N]
#
#   --quick / BENCH_QUICK=1   2 runs each, short durations (a smoke run; its
#                             numbers are marked "quick" and are noisy)
#   --only iperf3,sockperf,rpc,nginx,redis   run a subset (default: all)
#   --runs N / BENCH_RUNS=N   runs per case and mode (default 5; NK_BENCH_RUNS too)
#
# Testbed: scenarios/lib/testbed.sh tb_netkernel_up, unshaped veth
# nsm (10.77.0.1, VM address 10.77.0.11) <-> remote (10.77.0.2), guest
# namespace with only lo. "nk" = the program as a NetKernel guest of vm1;
# "native" = the same program natively in the nsm namespace (same veth, same
# remote peer). Client-side programs (iperf3, sockperf) run in the guest vs
# the nsm namespace against a server on remote; server-side programs
# (nk_rpc server, nginx, redis-server) run in the guest (10.77.0.11) vs the
# nsm namespace (10.77.0.1), with the load generator on remote.
#
# Every run records whole-machine busy CPU time (/proc/stat: user + nice +
# system + irq + softirq, i.e. everything but idle, iowait and steal) over
# the run, and the CPU time of the testbed's own processes (CoreEngine, every
# process in the three namespaces, the finished client; task time only).
#
# Writes results/bench/app_FAMILY.csv (every run, long format), merges its
# rows into results/bench/summary.json (entries with "suite": "app"; the
# microbenchmarks' entries are kept), draws results/bench/app_*.png and
# prints a table. Reports, never fails on speed: the exit status is non-zero
# only if the testbed could not be built or a whole family produced nothing.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUICK=${BENCH_QUICK:-${NK_BENCH_QUICK:-0}}
RUNS=${BENCH_RUNS:-${NK_BENCH_RUNS:-}}
ONLY=iperf3,sockperf,rpc,nginx,redis
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--only) ONLY=${2:?--only LIST}; shift ;;
	--only=*) ONLY=${1#--only=} ;;
	--runs) RUNS=${2:?--runs N}; shift ;;
	--runs=*) RUNS=${1#--runs=} ;;
	-h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/app.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$RUNS" ] || { if [ "$QUICK" = 1 ]; then RUNS=2; else RUNS=5; fi; }
if [ "$(id -u)" != 0 ]; then
	echo "bench/app.sh: the application benchmarks need root (network namespaces); skipped" >&2
	exit 0
fi
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
APY=$HERE/app.py
OUT=${NK_BENCH_OUT:-$ROOT/results/bench}
BUILD=${BUILD:-build}
export BUILD
. "$ROOT/scenarios/lib/testbed.sh"
missing=()
for p in iperf3 sockperf wrk nginx redis-server redis-benchmark gnuplot; do
	command -v $p >/dev/null 2>&1 || missing+=("$p")
done
[ -x "$TB_BUILD/bench/nk_rpc" ] || missing+=("$TB_BUILD/bench/nk_rpc (make)")
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench/app.sh: missing: ${missing[*]}" >&2
	exit 1
fi

# ---- durations ----
if [ "$QUICK" = 1 ]; then
	IPERF_T=2 SP_T=2 RPC_T=1 RPC_W=0.3 WRK_T=1 REDIS_N=10000
else
	IPERF_T=5 SP_T=4 RPC_T=2 RPC_W=0.5 WRK_T=3 REDIS_N=50000
fi
RPC_SIZES="16 64 256 1024 4096"
export TB_EXEC_TIMEOUT=120 TB_GUEST_TIMEOUT=120

mkdir -p "$OUT"
# the source tree the binaries were built from (BUILD may be another worktree's)
TREE=$(git -C "$(dirname "$TB_BUILD")" describe --always --dirty 2>/dev/null || echo unknown)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== application benchmarks: $RUNS runs per case and mode$([ "$QUICK" = 1 ] && echo ' (QUICK: short runs, noisy)'), families: $ONLY"
echo "== machine: $(nproc) CPUs, load average before: $LOAD_BEFORE; binaries: $TB_BUILD (tree $TREE)"

tb_netkernel_up "bp$(($$ % 100000))" || { echo "bench/app.sh: testbed did not come up" >&2; exit 1; }
D=$TB_DIR
FAILLOG=$OUT/app_failures.log
rm -f "$FAILLOG"
RAW=$D/raw.jsonl
: >"$RAW"
GUEST_IP=10.77.0.11 NATIVE_IP=10.77.0.1 REMOTE_IP=10.77.0.2

# ---- CPU accounting ----
# whole machine: busy jiffies from the first line of /proc/stat
machine_busy() {
	local _c u n s i w q sq st
	read -r _c u n s i w q sq st _ </proc/stat
	echo "$((u + n + s + q + sq))"
}
# our processes: utime + stime of the CoreEngine and of every process in the
# testbed's namespaces (listed before the run: the servers), plus the
# children this shell reaped during the run (the finished client, through
# `times`). Builtins only inside the window (no fork adds to the count);
# sets TT="ticks children_user children_sys ce=T nsm=T guest=T nsmapp=T
# remote=T" (children as `times` prints them, app.py converts; then the
# ticks by role: the CoreEngine, the NSM processes, the guest namespace,
# the rest of the nsm namespace (native servers), the remote namespace).
# our_pids prints ROLE:PID.
our_pids() {
	local ns p comm
	echo "ce:$TB_CE_PID"
	for p in $(ip netns pids "$(tb_ns nsm)" 2>/dev/null); do
		read -r comm <"/proc/$p/comm" 2>/dev/null || continue
		if [ "$comm" = nk-nsm ]; then echo "nsm:$p"; else echo "nsmapp:$p"; fi
	done
	for ns in guest remote; do
		for p in $(ip netns pids "$(tb_ns $ns)" 2>/dev/null); do echo "$ns:$p"; done
	done
}
task_snap() {
	local rp p st sum=0 cu cs
	local -A by=([ce]=0 [nsm]=0 [guest]=0 [nsmapp]=0 [remote]=0)
	for rp in "$@"; do
		p=${rp#*:}
		read -r st <"/proc/$p/stat" 2>/dev/null || continue
		st=${st##*) }
		# shellcheck disable=SC2086
		set -- $st
		sum=$((sum + ${12} + ${13}))
		by[${rp%%:*}]=$((by[${rp%%:*}] + ${12} + ${13}))
	done
	times >"$D/times"
	{ read -r _ _; read -r cu cs; } <"$D/times"
	TT="$sum $cu $cs ce=${by[ce]} nsm=${by[nsm]} guest=${by[guest]} nsmapp=${by[nsmapp]} remote=${by[remote]}"
}
HZ=$(getconf CLK_TCK)

# measure FAMILY CASE MODE RUN PARSER FN ARGS...: run FN MODE OUTFILE ARGS...
# once, with CPU snapshots around it, and record the parsed result.
measure() {
	local fam=$1 case=$2 mode=$3 run=$4 parser=$5 fn=$6 rc=0 mb0 mb1 tt0 tt1 w0 w1 f pids
	shift 6
	f=$D/out-$fam-$case-$mode-$run.txt
	pids=$(our_pids)
	# shellcheck disable=SC2086
	task_snap $pids
	tt0=$TT
	mb0=$(machine_busy)
	w0=${EPOCHREALTIME/./}
	"$fn" "$mode" "$f" "$@" || rc=$?
	w1=${EPOCHREALTIME/./}
	mb1=$(machine_busy)
	# shellcheck disable=SC2086
	task_snap $pids
	tt1=$TT
	$PY "$APY" record "$RAW" "$fam" "$case" "$mode" "$run" "$parser" "$f" $((w1 - w0)) \
		"$mb0" "$mb1" "$tt0" "$tt1" "$rc" "$HZ" && return 0
	# A failed run: keep what the system looked like for whoever debugs it.
	{
		echo "=== $(date -u +%H:%M:%S) $fam $case $mode run $run (exit $rc)"
		tail -n 5 "$f"
		echo "--- nkctl stats"
		tb_nkctl stats
		echo "--- ss -tn in nsm (ports 5201 7001 7002 8080 8081 6379 6380 11111)"
		ip netns exec "$(tb_ns nsm)" ss -tn | awk 'NR > 1 { print $1, $2, $3 }' | sort | uniq -c
	} >>"$FAILLOG" 2>&1
	return 1
}

# alternate FAMILY CASE PARSER FN ARGS...: RUNS x (nk, native). After a
# failed run of a server family, that side's server is restarted (a fresh
# process: one stuck server must not fail every later run); the failure
# stays recorded.
alternate() {
	local fam=$1 case=$2 parser=$3 fn=$4 r mode
	shift 4
	for ((r = 1; r <= RUNS; r++)); do
		for mode in nk native; do
			if ! measure "$fam" "$case" $mode "$r" "$parser" "$fn" "$@" &&
				declare -F "${fam}_start" >/dev/null; then
				echo "  $fam $case $mode run $r failed: restarting the $mode server (state saved in $(basename "$FAILLOG"))" >&2
				srv_restart "$fam" $mode
			fi
		done
	done
	$PY "$APY" brief "$RAW" "$fam" "$case"
}

# Servers: FAM_start MODE starts one (guest or nsm namespace) and sets
# SRV_PID[FAM_MODE]; srv_stop FAM MODE stops it and waits until its port is
# free; srv_restart = stop + start.
declare -A SRV_PID SRV_PORT
srv_stop() {
	local fam=$1 mode=$2 pid=${SRV_PID[${1}_$2]:-}
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	tb_wait_pid "$pid" 5 >/dev/null 2>&1
	SRV_PID[${fam}_$mode]=
	# the NSM closes a guest's listener asynchronously
	tb_wait_for 5 bash -c "! ip netns exec $(tb_ns nsm) ss -Hltn 'sport = :${SRV_PORT[${fam}_$mode]}' | grep -q ."
}
srv_restart() {
	srv_stop "$1" "$2"
	"${1}_start" "$2"
}

has() { [[ ",$ONLY," == *",$1,"* ]]; }

# What else the machine is doing: busy cores over 2 s with the testbed idle.
# Whole-machine CPU rows are only meaningful when this is near 0.
bg0=$(machine_busy)
sleep 2
bg1=$(machine_busy)
BG_BUSY=$(awk -v a="$bg0" -v b="$bg1" -v hz="$HZ" 'BEGIN { printf "%.2f\n", (b - a) / hz / 2 }')
echo "== background: $BG_BUSY busy cores with the testbed idle (whole-machine CPU rows need ~0)"

# ------------------------------------------------------------------ iperf3
# guest (or nsm ns) is always the iperf3 client; remote -> guest is -R.
iperf_run() { # MODE OUT ARGS...
	local mode=$1 out=$2
	shift 2
	if [ "$mode" = nk ]; then
		tb_guest iperf3 -c $REMOTE_IP -p 5201 -t $IPERF_T -J "$@" >"$out" 2>&1
	else
		tb_exec nsm iperf3 -c $REMOTE_IP -p 5201 -t $IPERF_T -J "$@" >"$out" 2>&1
	fi
}
if has iperf3; then
	echo "== iperf3 (${IPERF_T} s per run; server on remote)"
	tb_bg remote "$D/iperf3-srv.log" iperf3 -s -B $REMOTE_IP -p 5201 >/dev/null
	tb_wait_listen remote 5201 || echo "iperf3 -s did not start in remote" >&2
	alternate iperf3 g2r_p1 iperf3 iperf_run
	alternate iperf3 g2r_p4 iperf3 iperf_run -P 4
	alternate iperf3 r2g_p1 iperf3 iperf_run -R
	alternate iperf3 r2g_p4 iperf3 iperf_run -R -P 4
fi

# ------------------------------------------------------------------ sockperf
sp_run() { # MODE OUT SIZE
	local mode=$1 out=$2 size=$3
	if [ "$mode" = nk ]; then
		tb_guest sockperf ping-pong --tcp -i $REMOTE_IP -p 11111 -m "$size" -t $SP_T >"$out" 2>&1
	else
		tb_exec nsm sockperf ping-pong --tcp -i $REMOTE_IP -p 11111 -m "$size" -t $SP_T >"$out" 2>&1
	fi
}
if has sockperf; then
	echo "== sockperf ping-pong TCP (${SP_T} s per run; server on remote)"
	tb_bg remote "$D/sockperf-srv.log" sockperf server --tcp -i $REMOTE_IP -p 11111 >/dev/null
	tb_wait_listen remote 11111 || echo "sockperf server did not start in remote" >&2
	alternate sockperf tcp_64 sockperf sp_run 64
	alternate sockperf tcp_1024 sockperf sp_run 1024
fi

# ------------------------------------------------------------------ micro-RPC
rpc_run() { # MODE OUT SIZE
	local mode=$1 out=$2 size=$3 host=$GUEST_IP port=7001
	[ "$mode" = native ] && host=$NATIVE_IP port=7002
	tb_exec remote "$TB_BUILD/bench/nk_rpc" client -H $host -p $port -s "$size" -c 4 -w 8 \
		-t $RPC_T -W $RPC_W >"$out" 2>&1
}
SRV_PORT[rpc_nk]=7001 SRV_PORT[rpc_native]=7002
rpc_start() {
	if [ "$1" = nk ]; then
		tb_guest_bg "$D/rpc-nk.log" "$TB_BUILD/bench/nk_rpc" server -b $GUEST_IP -p 7001 >/dev/null
		SRV_PID[rpc_nk]=$TB_LAST_PID
		tb_wait_listen nsm 7001 15 || echo "guest nk_rpc server is not listening: $(tail -n 2 "$D/rpc-nk.log")" >&2
	else
		tb_bg nsm "$D/rpc-native.log" "$TB_BUILD/bench/nk_rpc" server -b $NATIVE_IP -p 7002 >/dev/null
		SRV_PID[rpc_native]=$TB_LAST_PID
		tb_wait_listen nsm 7002 || echo "native nk_rpc server is not listening" >&2
	fi
}
if has rpc; then
	echo "== micro-RPC nk_rpc (4 connections x 8 outstanding, ${RPC_T} s + ${RPC_W} s warm-up per run; server in guest / nsm, client on remote)"
	rpc_start nk
	rpc_start native
	for s in $RPC_SIZES; do
		alternate rpc "$s" rpc rpc_run "$s"
	done
	srv_stop rpc nk
	srv_stop rpc native
fi

# ------------------------------------------------------------------ nginx + wrk
# The same generated config for both; only the listen address differs.
nginx_conf() { # DIR LISTEN
	local w=$1
	mkdir -p "$w/www" "$w/tmp"
	head -c 1024 /dev/urandom >"$w/www/1k"
	head -c 65536 /dev/urandom >"$w/www/64k"
	cat >"$w/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 4;
user root;
pid $w/nginx.pid;
error_log $w/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	keepalive_timeout 65;
	client_body_temp_path $w/tmp/body;
	proxy_temp_path $w/tmp/proxy;
	fastcgi_temp_path $w/tmp/fastcgi;
	uwsgi_temp_path $w/tmp/uwsgi;
	scgi_temp_path $w/tmp/scgi;
	default_type application/octet-stream;
	server { listen $2; root $w/www; location / { } }
}
EOF
}
wrk_run() { # MODE OUT FILE [wrk args]
	local mode=$1 out=$2 file=$3 url
	shift 3
	if [ "$mode" = nk ]; then url=http://$GUEST_IP:8080/$file; else url=http://$NATIVE_IP:8081/$file; fi
	tb_exec remote wrk -t 2 -c 32 -d "$WRK_T" "$@" "$url" >"$out" 2>&1
}
SRV_PORT[nginx_nk]=8080 SRV_PORT[nginx_native]=8081
nginx_start() {
	local host=nsm port=8081 addr=$NATIVE_IP
	[ "$1" = nk ] && port=8080 addr=$GUEST_IP
	nginx_conf "$D/ng-$1" $addr:$port
	if [ "$1" = nk ]; then
		tb_guest_bg "$D/ng-nk.log" nginx -e "$D/ng-nk/error.log" -p "$D/ng-nk" -c "$D/ng-nk/nginx.conf" >/dev/null
	else
		tb_bg nsm "$D/ng-native.log" nginx -e "$D/ng-native/error.log" -p "$D/ng-native" -c "$D/ng-native/nginx.conf" >/dev/null
	fi
	SRV_PID[nginx_$1]=$TB_LAST_PID
	tb_wait_listen $host $port 15 || echo "$1 nginx is not listening: $(tail -n 2 "$D/ng-$1/error.log")" >&2
	if [ "$1" = nk ]; then
		sleep 0.5
		local nw
		nw=$(ip netns pids "$(tb_ns guest)" | xargs -r ps -o comm= -p | grep -c nginx || true)
		[ "$nw" = 5 ] || echo "bench/app.sh: guest nginx runs $nw processes, want 1 master + 4 workers" >&2
	fi
	# one unrecorded warm-up (workers fault in their pages)
	tb_exec remote wrk -t 2 -c 32 -d 1 http://$addr:$port/1k >/dev/null 2>&1
}
if has nginx; then
	echo "== nginx (4 workers) + wrk from remote (2 threads, 32 connections, ${WRK_T} s per run)"
	nginx_start nk
	nginx_start native
	alternate nginx ka_1k wrk wrk_run 1k
	alternate nginx ka_64k wrk wrk_run 64k
	alternate nginx close_1k wrk wrk_run 1k -H "Connection: close"
	alternate nginx close_64k wrk wrk_run 64k -H "Connection: close"
	srv_stop nginx nk
	srv_stop nginx native
fi

# ------------------------------------------------------------------ redis
redis_run() { # MODE OUT TEST
	local mode=$1 out=$2 t=$3 host=$GUEST_IP port=6379
	[ "$mode" = native ] && host=$NATIVE_IP port=6380
	tb_exec remote redis-benchmark -h $host -p $port -c 50 -n "$REDIS_N" -t "$t" --csv >"$out" 2>&1
}
SRV_PORT[redis_nk]=6379 SRV_PORT[redis_native]=6380
redis_start() {
	# --protected-mode no: Redis 7 refuses non-loopback clients without a password.
	if [ "$1" = nk ]; then
		tb_guest_bg "$D/redis-nk.log" redis-server --bind $GUEST_IP --port 6379 --save '' --appendonly no --protected-mode no >/dev/null
		SRV_PID[redis_nk]=$TB_LAST_PID
		tb_wait_listen nsm 6379 15 || echo "guest redis-server is not listening: $(tail -n 2 "$D/redis-nk.log")" >&2
		tb_exec remote redis-benchmark -h $GUEST_IP -p 6379 -c 50 -n 2000 -t set,get -q >/dev/null 2>&1
	else
		tb_bg nsm "$D/redis-native.log" redis-server --bind $NATIVE_IP --port 6380 --save '' --appendonly no --protected-mode no >/dev/null
		SRV_PID[redis_native]=$TB_LAST_PID
		tb_wait_listen nsm 6380 || echo "native redis-server is not listening" >&2
		tb_exec remote redis-benchmark -h $NATIVE_IP -p 6380 -c 50 -n 2000 -t set,get -q >/dev/null 2>&1
	fi
}
if has redis; then
	echo "== redis-server + redis-benchmark from remote (50 clients, $REDIS_N requests per run)"
	redis_start nk
	redis_start native
	alternate redis set "redis:$REDIS_N" redis_run set
	alternate redis get "redis:$REDIS_N" redis_run get
	srv_stop redis nk
	srv_stop redis native
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== load average after: $LOAD_AFTER"
$PY "$APY" summarize "$RAW" "$OUT" --runs "$RUNS" --quick "$QUICK" \
	--load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" --families "$ONLY" --tree "$TREE" \
	--background-busy-cores "$BG_BUSY"
rc=$?
[ "${NK_KEEP:-0}" = 1 ] && cp "$RAW" "$OUT/app_raw.jsonl"
exit $rc
