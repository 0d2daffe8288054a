#!/usr/bin/env bash
# scenarios/fig-isolation.sh - performance isolation of VMs that share one NSM
# (NetKernel: the CoreEngine's weighted-fair scheduling and rate caps).
# Normally run as `./reproduce.sh fig-isolation`.
#
#   scenarios/fig-isolation.sh [--quick] [--nsm-rate R] [--cap R] [--no-native] [--out DIR]
#
# Claim: three VMs with equal weights share one NSM whose egress is a 1 Gbit/s
# link. VM1 and VM2 stream steadily; at t = 10 s VM3 opens 16 streams. Without
# isolation VM3 takes most of the link (TCP is fair per flow, not per VM);
# with the CoreEngine's isolation on, each VM keeps 1/3 (Jain's index >= 0.98,
# every share within 5 percentage points of 1/3). A rate cap (VM1 at
# 300 Mbit/s) holds within 5 %.
#
# Testbed (one host, like tb_netkernel_up): namespaces guest (only lo), nsm and
# remote; nsm 10.80.0.1/24 <-> remote 10.80.0.2/24 with tbf 1gbit (burst
# 256 KiB, $NK_LINK_RATE overrides) on both ends; VMs v1, v2, v3 =
# 10.80.0.11-13 on nsm's to-remote. One CoreEngine per run:
#   --nsm name=shared,netns=nk-ID-nsm,stack=kernel,cc=cubic,iso=off|on,rate=R
#   --vm name=vI,ip=10.80.0.1I,nsm=shared,weight=1      (I = 1, 2, 3)
# R (--nsm-rate, default 900m) is the egress the CoreEngine admits; it sits a
# little below what the tbf link carries as TCP payload (~940 Mbit/s), so the
# CoreEngine, not the link, is the bottleneck where fairness is decided.
#
# Timeline of a run (seconds from the start of VM1's and VM2's clients; --quick
# in brackets): VM1, VM2: iperf3 -c remote (one stream each) from 0 to END;
# VM3: iperf3 -P 16 from T3 = 10 [4] to T3END = 25 [10]. Contended period:
# [T3 + 1, T3END]. The isolation-on run goes on to END = 35 [14]: at T3END
# (VM3 has stopped) the scenario runs `nkctl set v1 rate=CAP` (--cap, default
# 300m), so VM1 would otherwise take about half the link; the cap is judged
# over [T3END + 1, END]. The other runs end at T3END.
#   native     the same iperf3 clients in the nsm namespace bound to the VM
#              addresses, no NetKernel (the kernel's own per-flow sharing)
#   iso_off    NetKernel, iso=off
#   iso_on     NetKernel, iso=on, then the cap
# Throughput is measured at the receivers: a sampler in the remote namespace
# (scenarios/lib/fig_isolation.py sample) reads bytes_received of every TCP
# connection to the iperf3 servers (`ss -tinHO`) every 100 ms and adds them up
# per source address (= per VM). The CoreEngine's per-VM tx_bytes (`nkctl
# --json list vms`) are read at the phase boundaries as a cross-check.
#
# Writes DIR (default results/fig-isolation): data.csv (run,t_s,vm,mbps),
# summary.json (jain_on, jain_off, max_share_dev_pp_on, cap_error_pct, ...),
# fig-isolation.png, logs/. Exit status 0 when every run completed, 1
# otherwise (outputs still written), 2 usage.
#
# Environment: BUILD, NK_LINK_RATE (default 1gbit), NK_CC (default cubic),
# NK_KEEP=1.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/results/fig-isolation
NSM_RATE=900m
CAP=300m
NATIVE=1
QUICK=0

usage() {
	echo "usage: $0 [--quick] [--nsm-rate R] [--cap R] [--no-native] [--out DIR]"
	echo "  three VMs on one NSM, VM3 opens 16 streams at t=10 s; isolation off, then on, then a cap on VM1"
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1; shift ;;
	--nsm-rate) NSM_RATE=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--nsm-rate=*) NSM_RATE=${1#*=}; shift ;;
	--cap) CAP=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--cap=*) CAP=${1#*=}; shift ;;
	--no-native) NATIVE=0; shift ;;
	--out) OUT=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--out=*) OUT=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "fig-isolation: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
for r in "$NSM_RATE" "$CAP"; do
	if ! [[ $r =~ ^[0-9]+[kmgKMG]?$ ]]; then
		echo "fig-isolation: a rate looks like 900m or 300m (bit/s, k/m/g), not '$r'" >&2
		exit 2
	fi
done
if [ $QUICK = 1 ]; then
	T3=4 T3END=10 END=14
else
	T3=10 T3END=25 END=35
fi
# shellcheck source=scenarios/lib/testbed.sh
. "$ROOT/scenarios/lib/testbed.sh"
tb_preflight fig-isolation iperf3 python3 gnuplot tc ss
PY=$(python3 -c 'import sys; print(sys.executable)') || exit 1
LIB=$ROOT/scenarios/lib/fig_isolation.py
NKCTL=$TB_BUILD/bin/nkctl
CC=${NK_CC:-cubic}
LINK_RATE=${NK_LINK_RATE:-1gbit}
SRV=10.80.0.2
PORTS="5301,5302,5303"

mkdir -p "$OUT" || exit 1
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"
rm -f "$OUT/data.csv" "$OUT/summary.json" "$OUT/fig-isolation.png"

say() { echo "$*"; }
now() { date +%s.%N; }
vm_ip() { echo "10.80.0.$((10 + $1))"; }
at() { awk -v t="$1" -v d="$2" 'BEGIN { printf "%.3f", t + d }'; }
sleep_until() { # EPOCH
	local d
	d=$(awk -v n="$1" -v t="$(now)" 'BEGIN { d = n - t; printf "%.3f", (d > 0 ? d : 0) }')
	[ "$d" != 0.000 ] && sleep "$d"
	return 0
}

# Does this CoreEngine know the isolation options (iso=, rate=, weight=)? An
# unknown --nsm key makes it list the keys it knows (and exit at once).
ISO_OK=0
probe=$("$TB_BUILD/bin/nk-coreengine" --nsm name=probe,nokey=1 --vm name=p,ip=10.0.0.1,nsm=probe 2>&1)
case $probe in *"iso=on"*) ISO_OK=1 ;; esac

CE_PID=
CE_SOCK=
ce_start() { # INSTANCE ARGS...
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

nsm_up() {
	timeout 20 "$NKCTL" --ctl "$CE_SOCK" --json list nsms 2>/dev/null |
		python3 -c 'import json, sys; sys.exit(0 if any(n.get("state") == "up" for n in json.load(sys.stdin)) else 1)' 2>/dev/null
}

# vms_snap RUN TAG: the CoreEngine's per-VM counters (tx_bytes...) now
vms_snap() {
	{
		printf '%s ' "$(now)"
		timeout 20 "$NKCTL" --ctl "$CE_SOCK" --json list vms 2>/dev/null | tr -d '\n'
		echo
	} >"$TB_DIR/$1.vms-$2.json"
}

# client VM RUN LOG IPERF3-ARGS...: an iperf3 client of VM (native: in nsm)
client() {
	local i=$1 run=$2 log=$3
	shift 3
	if [ "$run" = native ]; then
		tb_bg nsm "$log" iperf3 -c "$SRV" -B "$(vm_ip "$i")" -p $((5300 + i)) -C "$CC" --json "$@" >/dev/null
	else
		tb_bg root "$log" "$TB_BUILD/bin/nkrun" --vm "v$i" --ctl "$CE_SOCK" --netns "$(tb_ns guest)" -- \
			iperf3 -c "$SRV" -p $((5300 + i)) --json "$@" >/dev/null
	fi
}

# run_case RUN   (native | iso_off | iso_on)
run_case() {
	local run=$1 res=$TB_DIR/$1.res end=$T3END t0 pids=() pid rc bad=0 i spec
	[ "$run" = iso_on ] && end=$END
	: >"$res"
	{ echo "run=$run"; echo "t3=$T3"; echo "t3end=$T3END"; echo "end=$end"; } >>"$res"
	if [ "$run" != native ]; then
		spec="name=shared,netns=$(tb_ns nsm),stack=kernel,cc=$CC"
		local vmx=""
		if [ $ISO_OK = 1 ]; then
			spec+=",iso=$([ "$run" = iso_on ] && echo on || echo off),rate=$NSM_RATE"
			vmx=",weight=1"
		fi
		ce_start "$run" --nsm "$spec" \
			--vm "name=v1,ip=$(vm_ip 1),nsm=shared$vmx" \
			--vm "name=v2,ip=$(vm_ip 2),nsm=shared$vmx" \
			--vm "name=v3,ip=$(vm_ip 3),nsm=shared$vmx" || { echo "error=CoreEngine did not start" >>"$res"; return 1; }
		if ! tb_wait_for 10 nsm_up; then
			echo "error=the NSM did not come up" >>"$res"
			ce_stop
			return 1
		fi
		echo "nsm_spec=$spec" >>"$res"
	fi
	tb_bg remote "$OUT/logs/$run-sampler.log" "$PY" "$LIB" sample --ports "$PORTS" --interval 0.1 \
		--out "$TB_DIR/$run.samples.csv" >/dev/null
	local sampler=$TB_LAST_PID
	tb_wait_for 5 test -s "$TB_DIR/$run.samples.csv" || say "   the sampler did not start: $(tail -n 2 "$OUT/logs/$run-sampler.log")"
	t0=$(now)
	echo "t0=$t0" >>"$res"
	client 1 "$run" "$OUT/logs/$run-v1-iperf3.json" -t "$end"
	pids+=("$TB_LAST_PID")
	client 2 "$run" "$OUT/logs/$run-v2-iperf3.json" -t "$end"
	pids+=("$TB_LAST_PID")
	say "   t=0: v1, v2 stream (one iperf3 flow each) for $end s"
	sleep_until "$(at "$t0" "$T3")"
	client 3 "$run" "$OUT/logs/$run-v3-iperf3.json" -P 16 -t $((T3END - T3))
	pids+=("$TB_LAST_PID")
	echo "t3_actual=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')" >>"$res"
	say "   t=$T3: v3 opens 16 streams for $((T3END - T3)) s"
	[ "$run" != native ] && { sleep 1; vms_snap "$run" a; }
	sleep_until "$(at "$t0" "$T3END")"
	if [ "$run" != native ]; then
		vms_snap "$run" b
	fi
	if [ "$run" = iso_on ]; then
		local out rc2=0
		out=$(timeout 20 "$NKCTL" --ctl "$CE_SOCK" set v1 "rate=$CAP" 2>&1) || rc2=$?
		{ echo "cap_rc=$rc2"; echo "cap_output=$(printf '%s' "$out" | tr '\n' ' ')";
		  echo "cap_at=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')"; } >>"$res"
		if [ $rc2 = 0 ]; then
			say "   t=$T3END: v3 done; nkctl set v1 rate=$CAP: $out"
		else
			say "   t=$T3END: nkctl set v1 rate=$CAP FAILED (exit $rc2): $out"
		fi
		sleep 1
		vms_snap "$run" c
		sleep_until "$(at "$t0" "$END")"
		vms_snap "$run" d
	fi
	for pid in "${pids[@]}"; do
		rc=0
		tb_wait_pid "$pid" 30 || rc=$?
		[ "$rc" = 0 ] || bad=$((bad + 1))
	done
	echo "clients_failed=$bad" >>"$res"
	kill -TERM "$sampler" 2>/dev/null
	tb_wait_pid "$sampler" 5 >/dev/null 2>&1
	[ "$run" != native ] && ce_stop
	python3 "$LIB" line --dir "$TB_DIR" --out "$OUT" --run "$run"
	return 0
}

# ---------------------------------------------------------------------------

T_START=$(date +%s)
ID="fi$(($$ % 100000))"
say "fig-isolation: three VMs share one NSM; v3 opens 16 streams at t=$T3 s (NetKernel: performance isolation)"
say "  isolation off, then on (CoreEngine admits $NSM_RATE toward the NSM), then v1 capped at $CAP"
say "  results in $OUT"
if [ $ISO_OK = 0 ]; then
	say "  WARNING: this nk-coreengine does not know iso=/rate=/weight= (--nsm lists no iso= key):"
	say "           every NetKernel run is a run without isolation; the isolation numbers will be missing"
fi
say "== testbed: guest (lo only), nsm <-> remote over $LINK_RATE (tbf), VMs $(vm_ip 1)-$(vm_ip 3)"
tb_init "$ID" || exit 1
for h in guest nsm remote; do tb_add_host "$h" || tb_fail "cannot create namespace $h"; done
links=$(ip -n "$(tb_ns guest)" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | tr '\n' ' ')
[ "$links" = "lo " ] || tb_fail "guest namespace must have only lo, has: $links"
TB_TBF_BURST=${NK_TBF_BURST:-256k} tb_link nsm remote 10.80.0.1/24 "$SRV/24" "$LINK_RATE" || tb_fail "link setup failed"
for i in 1 2 3; do tb_add_addr nsm "$(vm_ip $i)/24" "$(tb_dev nsm remote)" || tb_fail "address $(vm_ip $i)"; done
ip netns exec "$(tb_ns nsm)" sysctl -qw net.ipv4.tcp_congestion_control="$CC" 2>/dev/null || true
tb_track_file "/dev/shm/nk-$TB_ID-*"
for i in 1 2 3; do
	tb_bg remote "$OUT/logs/iperf3-server-$i.log" iperf3 -s -p $((5300 + i)) >/dev/null
done
for i in 1 2 3; do
	tb_wait_listen remote $((5300 + i)) 10 || tb_fail "iperf3 server $i did not start"
done

FAILED=0
RUNS="iso_off iso_on"
[ $NATIVE = 1 ] && RUNS="native $RUNS"
for run in $RUNS; do
	case $run in
	native) say "== [native] the same clients in the nsm namespace, no NetKernel, 0-$T3END s" ;;
	iso_off) say "== [iso_off] NetKernel, one shared NSM, isolation off, 0-$T3END s" ;;
	iso_on) say "== [iso_on] NetKernel, one shared NSM, isolation on (rate=$NSM_RATE, equal weights), 0-$END s, cap at $T3END s" ;;
	esac
	run_case "$run" || FAILED=1
done

say "== summary"
python3 "$LIB" summary --dir "$TB_DIR" --out "$OUT" --t3 "$T3" --t3end "$T3END" --end "$END" \
	--nsm-rate "$NSM_RATE" --cap "$CAP" --link-rate "$LINK_RATE" --cc "$CC" --iso-supported "$ISO_OK" \
	--elapsed "$(($(date +%s) - T_START))"
rc=$?
if [ -f "$TB_DIR/plot.gp" ]; then
	if gnuplot "$TB_DIR/plot.gp" 2>"$TB_DIR/gnuplot.err"; then
		say "   figure: $OUT/fig-isolation.png"
	else
		say "   gnuplot failed: $(tr '\n' ' ' <"$TB_DIR/gnuplot.err")"
		rc=1
	fi
fi
[ $FAILED = 1 ] && rc=1
exit $rc
