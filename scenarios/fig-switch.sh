#!/usr/bin/env bash
# scenarios/fig-switch.sh - live TCP -> MPTCP switching on a two-path testbed
# (NetKernel, HotNets'17, Figure 2). Normally run as `./reproduce.sh fig-switch`.
#
#   scenarios/fig-switch.sh [--guests process|vm] [--phase S] [--out DIR]
#
# Claim: a VM streaming over two 1 Gbit/s links through a TCP (cubic) NSM is
# switched to an MPTCP NSM after PHASE s (`nkctl switch vs mptcp`); its
# throughput rises from ~0.94 to ~1.7 Gbit/s, close to native MPTCP, and the
# application never restarts.
#
# Testbed: scenarios/lib/twohost.sh (hosts snd, rcv; links 10.78.1.0/24 and
# 10.78.2.0/24, tbf 1 Gbit/s; VMs vs = 10.78.1.11, vr = 10.78.1.12). One
# program, tests/prog/nk_stream, in every case; each run lasts 2*PHASE s
# (default PHASE 5):
#   native_tcp      nk_stream in snd/rcv directly, 10.78.1.11 -> 10.78.1.12, -C cubic
#   native_mptcp    the same under `mptcpize run` on both ends (2 subflows)
#   netkernel       recv as a guest of vr, send as a guest of vs; the mptcp NSM
#                   is started first (`nkctl start mptcp`), and at t = PHASE
#                   the scenario runs `nkctl switch vs mptcp` (warm switch)
#   netkernel_cold  both CoreEngines restarted (mptcp NSM down), a run of
#                   2*COLD s switched at COLD s (cold switch; COLD = min(2, PHASE),
#                   NK_COLD_PHASE overrides)
# Time 0 of every series is the receiver's first byte; the switch is issued at
# t = PHASE on that clock (its exact instant and the command's wall time are
# recorded). The switch gap is the CoreEngine's `switch_gap_us` (from the
# switch command to the first byte carried by the new NSM), read from
# `nkctl --json list vms` after each run.
#
# Writes DIR (default results/fig-switch): data.csv (case,t_s,mbps),
# summary.json, fig-switch.png, and the logs of the runs in DIR/logs.
# Exit status: 0 when every run verified its stream and both switches worked;
# 1 otherwise (the outputs are still written); 2 usage.
#
# --guests vm: the two NetKernel cases run their nk_stream inside QEMU VMs
# (scenarios/vm/nkvm.sh: no NIC, only the NK device; KVM if it works, TCG
# otherwise); the CoreEngines declare vs and vr with mode=vm. Time 0 is when
# the host sees the receiver VM report its first byte on its console; the
# receiver's series comes out of the VM on its console after the run.
#
# Environment: BUILD, NK_LINK_RATE, NK_CC (default cubic), NK_COLD_PHASE,
# NK_KEEP=1 (keep the testbed's temporary directory).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PHASE=5
GUESTS=process
OUT=$ROOT/results/fig-switch

usage() {
	echo "usage: $0 [--guests process|vm] [--phase S] [--out DIR]"
	echo "  live TCP -> MPTCP switching (HotNets'17 Fig. 2): runs of 2*S s (default S=5), switch at S s"
}

while [ $# -gt 0 ]; do
	case $1 in
	--guests) GUESTS=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--guests=*) GUESTS=${1#*=}; shift ;;
	--phase) PHASE=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--phase=*) PHASE=${1#*=}; shift ;;
	--out) OUT=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--out=*) OUT=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "fig-switch: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
case $GUESTS in
process | vm) ;;
*) echo "fig-switch: --guests must be process or vm, not '$GUESTS'" >&2; exit 2 ;;
esac
export TB2_GUESTS=$GUESTS
if ! [[ $PHASE =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! awk -v p="$PHASE" 'BEGIN { exit !(p >= 1 && p <= 300) }'; then
	echo "fig-switch: --phase wants seconds between 1 and 300, not '$PHASE'" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "fig-switch: must run as root (network namespaces, veth, tc)" >&2
	exit 1
fi

COLD=${NK_COLD_PHASE:-$(awk -v p="$PHASE" 'BEGIN { print (p < 2 ? p : 2) }')}
DUR=$(awk -v p="$PHASE" 'BEGIN { print 2 * p }')
COLD_DUR=$(awk -v p="$COLD" 'BEGIN { print 2 * p }')
CC=${NK_CC:-cubic}
IV_MS=100

# shellcheck source=scenarios/lib/twohost.sh
. "$ROOT/scenarios/lib/twohost.sh"
tb2_stream_tools fig-switch || exit 1
for p in mptcpize python3 ss gnuplot; do
	command -v "$p" >/dev/null 2>&1 || { echo "fig-switch: $p is not installed (./reproduce.sh installs it)" >&2; exit 1; }
done

mkdir -p "$OUT" || exit 1
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"
rm -f "$OUT/data.csv" "$OUT/summary.json" "$OUT/fig-switch.png"

now() { date +%s.%N; }
fcalc() { awk "BEGIN { printf \"%.6f\", $* }"; }
fge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
say() { echo "$*"; }

# mptcpize replaces LD_PRELOAD; under NK_ASAN the ASan runtime must stay first.
MPTCP_RUN=(mptcpize run)
if [ -n "${NK_PRELOAD_EXTRA:-}" ]; then
	# shellcheck disable=SC2016 # expanded by that sh
	MPTCP_RUN+=(sh -c 'LD_PRELOAD="$0${LD_PRELOAD:+:$LD_PRELOAD}"; export LD_PRELOAD; exec "$@"' "$NK_PRELOAD_EXTRA")
fi

# res CASE KEY VALUE: one result of a run, collected by the summary step.
res() { printf '%s=%s\n' "$2" "$3" >>"$TB_DIR/$1.res"; }

# Mbit/s received in (A, B] from a series CSV (empty when no row yet).
csv_rate() {
	awk -F, -v a="$2" -v b="$3" 'NR > 1 && $1 > a + 1e-6 && $1 <= b + 1e-6 { s += $2; n++ }
		END { if (n) printf "%.0f", s * 8 / (b - a) / 1e6 }' "$1" 2>/dev/null
}

do_switch() { # CASE FIRST_BYTE_EPOCH
	local c=$1 fb=$2 t0 t1 out rc=0
	t0=$(now)
	out=$(timeout 20 "$NKCTL" --ctl "$NK_CTL_SND" switch vs mptcp 2>&1) || rc=$?
	t1=$(now)
	out=$(printf '%s' "$out" | tr '\n' ' ' | sed 's/ *$//')
	res "$c" switch_rc "$rc"
	res "$c" switch_at_s "$(fcalc "$t0 - $fb")"
	res "$c" switch_cmd_ms "$(fcalc "($t1 - $t0) * 1000")"
	res "$c" switch_output "$out"
	if [ "$rc" = 0 ]; then
		say "   >> t=$(printf '%.2f' "$(fcalc "$t0 - $fb")") s: nkctl switch vs mptcp: $out ($(printf '%.1f' "$(fcalc "($t1 - $t0) * 1000")") ms)"
	else
		say "   >> t=$(printf '%.2f' "$(fcalc "$t0 - $fb")") s: SWITCH FAILED: nkctl switch vs mptcp exited $rc: $out"
	fi
}

# run_case CASE MODE PORT SECONDS [SWITCH_AT]; MODE native_tcp|native_mptcp|nk
run_case() {
	local c=$1 mode=$2 port=$3 secs=$4 sw=${5:-}
	local csv=$TB_DIR/$c.csv rlog=$OUT/logs/$c-recv.log slog=$OUT/logs/$c-send.log
	local pr ps fb k next deadline t rate sw_done=0 probed=0 probe_at
	: >"$TB_DIR/$c.res"
	res "$c" duration_s "$secs"
	case $mode in
	native_tcp)
		tb_bg rcv "$rlog" "$STREAM" recv -C "$CC" -i "$IV_MS" -o "$csv" "$port" >/dev/null ;;
	native_mptcp)
		tb_bg rcv "$rlog" "${MPTCP_RUN[@]}" "$STREAM" recv -C "$CC" -i "$IV_MS" -o "$csv" "$port" >/dev/null ;;
	nk)
		if [ "$GUESTS" = vm ]; then
			# The receiver's CSV is inside the VM: it is printed on the
			# console after the run and cut out of the output (vm_csv).
			tb2_vm_bg vr "$OUT/logs/$c-vr.console" "$rlog" -- "/nk/bin/nk_stream recv -i $IV_MS -o /tmp/r.csv $port; rc=\$?; echo NK-CSV-BEGIN; cat /tmp/r.csv; echo NK-CSV-END; exit \$rc" >/dev/null
		else
			tb2_guest_bg vr "$rlog" "$STREAM" recv -i "$IV_MS" -o "$csv" "$port" >/dev/null
		fi ;;
	esac
	pr=$TB_LAST_PID
	# a VM's processes have the VM's pids: only their own start/end pids count
	[ "$mode" = nk ] && [ "$GUESTS" = vm ] || res "$c" recv_launched_pid "$pr"
	# live output: a process's log, or a VM's serial console (which first
	# has to boot: TCG on a busy host takes tens of seconds)
	local rlive=$rlog slive=$slog wait_s=10
	if [ "$mode" = nk ] && [ "$GUESTS" = vm ]; then
		rlive=$OUT/logs/$c-vr.console slive=$OUT/logs/$c-vs.console wait_s=300
	fi
	if ! tb_wait_for "$wait_s" grep -q 'listening on' "$rlive"; then
		say "   the receiver did not start listening: $(tail -n 3 "$rlog" | tr '\n' ' ')"
		res "$c" error "receiver did not start"
		kill -TERM "$pr" 2>/dev/null
		tb_wait_pid "$pr" 5 >/dev/null 2>&1
		return 1
	fi
	case $mode in
	native_tcp)
		tb_bg snd "$slog" "$STREAM" send -C "$CC" -b "$TB2_VS_IP" "$TB2_VR_IP" "$port" "$secs" >/dev/null ;;
	native_mptcp)
		tb_bg snd "$slog" "${MPTCP_RUN[@]}" "$STREAM" send -C "$CC" -b "$TB2_VS_IP" "$TB2_VR_IP" "$port" "$secs" >/dev/null ;;
	nk)
		if [ "$GUESTS" = vm ]; then
			tb2_vm_bg vs "$slive" "$slog" -- "/nk/bin/nk_stream send $TB2_VR_IP $port $secs" >/dev/null
		else
			tb2_guest_bg vs "$slog" "$STREAM" send "$TB2_VR_IP" "$port" "$secs" >/dev/null
		fi ;;
	esac
	ps=$TB_LAST_PID
	[ "$mode" = nk ] && [ "$GUESTS" = vm ] || res "$c" send_launched_pid "$ps"
	if ! tb_wait_for $((wait_s + 5)) grep -q 'first byte at' "$rlive"; then
		say "   no data arrived within 15 s; sender: $(tail -n 3 "$slog" | tr '\n' ' ')"
		res "$c" error "no data arrived"
		kill -TERM "$ps" "$pr" 2>/dev/null
		tb_wait_pid "$ps" 5 >/dev/null 2>&1
		tb_wait_pid "$pr" 5 >/dev/null 2>&1
		return 1
	fi
	if [ "$rlive" = "$rlog" ]; then
		fb=$(awk '/^first byte at/ { print $4; exit }' "$rlog")
	else
		# A VM's clock is its own (set from the RTC at boot, to the
		# second): time 0 is when the host saw the first byte reported.
		fb=$(now)
		res "$c" vm_boot_s "$(sed -nE 's/.*booted in ([0-9.]+) s.*/\1/p' "$rlog" | head -n 1)"
	fi
	res "$c" first_byte_epoch "$fb"
	k=1
	probe_at=$(fcalc "$fb + ${sw:-$secs} / 2")
	deadline=$(fcalc "$fb + $secs + 60")
	while [ -d "/proc/$ps" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$ps/status" 2>/dev/null; do
		t=$(now)
		fge "$t" "$deadline" && { say "   the sender is still running 30 s after its end: stopping it"; res "$c" error "sender hung"; kill -TERM "$ps"; break; }
		if [ -n "$sw" ] && [ $sw_done = 0 ] && fge "$t" "$(fcalc "$fb + $sw")"; then
			do_switch "$c" "$fb"
			sw_done=1
			probe_at=$(fcalc "$fb + $sw + ($secs - $sw) / 2")
			probed=0
			continue
		fi
		if [ $probed = 0 ] && fge "$t" "$probe_at"; then
			# what carries the stream right now, seen in the sender's host
			local tag=${sw_done/1/after}
			tag=${tag/0/before}
			[ -z "$sw" ] && tag=mid
			res "$c" "subflows_$tag" "$(tb2_subflows snd)"
			res "$c" "cc_$tag" "$(ip netns exec "$(tb_ns snd)" ss -tniH state established "dst $TB2_VR_IP" 2>/dev/null |
				grep -oE '\b(cubic|reno|bbr)\b' | sort -u | tr '\n' ' ' | sed 's/ $//')"
			probed=1
		fi
		if [ "$rlive" != "$rlog" ]; then
			: # VM: the series is inside the VM until the end
		elif fge "$t" "$(fcalc "$fb + $k + 0.05")"; then
			rate=$(csv_rate "$csv" $((k - 1)) "$k")
			say "   t=$(printf '%3d' "$k") s  $(printf '%6s' "${rate:-?}") Mbit/s"
			k=$((k + 1))
			continue
		fi
		next=$(fcalc "$fb + $k + 0.05")
		[ "$rlive" != "$rlog" ] && next=$(fcalc "$(now) + 0.5")
		[ -n "$sw" ] && [ $sw_done = 0 ] && next=$(awk -v a="$next" -v b="$(fcalc "$fb + $sw")" 'BEGIN { print (a < b ? a : b) }')
		[ $probed = 0 ] && next=$(awk -v a="$next" -v b="$probe_at" 'BEGIN { print (a < b ? a : b) }')
		sleep "$(awk -v n="$next" -v t="$(now)" 'BEGIN { d = n - t; if (d < 0.005) d = 0.005; if (d > 1) d = 1; printf "%.3f", d }')"
	done
	local rs=0 rr=0
	tb_wait_pid "$ps" 60 >/dev/null 2>&1 || rs=$?
	tb_wait_pid "$pr" 60 >/dev/null 2>&1 || rr=$?
	if [ "$rlive" != "$rlog" ]; then
		awk '/^NK-CSV-BEGIN/ { on = 1; next } /^NK-CSV-END/ { on = 0 } on' "$rlog" >"$csv"
		[ -s "$csv" ] || rm -f "$csv"
	fi
	# the seconds the loop did not get to print
	while fge "$secs" "$k"; do
		rate=$(csv_rate "$csv" $((k - 1)) "$k")
		say "   t=$(printf '%3d' "$k") s  $(printf '%6s' "${rate:-?}") Mbit/s"
		k=$((k + 1))
	done
	res "$c" send_rc "$rs"
	res "$c" recv_rc "$rr"
	[ -f "$csv" ] && cp "$csv" "$OUT/logs/$c.csv"
	say "   sender:   $(grep '^sent ' "$slog" || echo "no result line (exit $rs): $(tail -n 2 "$slog" | tr '\n' ' ')")"
	say "   receiver: $(grep '^received ' "$rlog" || echo "no result line (exit $rr): $(tail -n 2 "$rlog" | tr '\n' ' ')")"
	return 0
}

# nk_vm_json CASE: the sender CoreEngine's view of vs after a run
nk_vm_json() {
	local j
	j=$(timeout 20 "$NKCTL" --ctl "$NK_CTL_SND" --json list vms 2>/dev/null) || j=
	printf '%s' "$j" | tr -d '\n' >"$TB_DIR/$1.vms.json"
}

# shellcheck disable=SC2317 # called through tb_wait_for
nsm_up() { [ "$(nsm_state "$1" "$2")" = up ]; }

nsm_state() { # HOST NSM
	timeout 20 "$NKCTL" --ctl "$(tb2_ctl "$1")" --json list nsms 2>/dev/null | python3 -c '
import json, sys
try:
    print([n["state"] for n in json.load(sys.stdin) if n.get("name") == sys.argv[1]][0])
except Exception:
    print("unknown")' "$2"
}

# ---------------------------------------------------------------------------

T_START=$(date +%s)
ID="fs$(($$ % 100000))"
say "fig-switch: live TCP -> MPTCP switching (NetKernel HotNets'17 Fig. 2)"
say "  runs of $DUR s, switch at t=$PHASE s (t=0: the receiver's first byte); cold run $COLD_DUR s, switch at $COLD s"
say "  results in $OUT"
VM_ACCEL=
if [ "$GUESTS" = vm ]; then
	say "== guests are QEMU VMs (only device: the NK device); building the image, choosing the accelerator"
	BUILD=$TB_VM_BUILD "$ROOT/scenarios/vm/mkimage.sh" || { echo "fig-switch: cannot build the VM image" >&2; exit 1; }
	VM_ACCEL=$(BUILD=$TB_VM_BUILD "$ROOT/scenarios/vm/nkvm.sh" --accel-probe) || exit 1
	say "   accelerator: $VM_ACCEL (TCG is much slower than KVM: NetKernel throughput is bounded by the guests' CPU)"
fi
say "== testbed: snd <-> rcv over two ${NK_LINK_RATE:-1gbit} links (tbf), MPTCP endpoints, guest namespaces"
tb2_net_up "$ID" || { echo "fig-switch: testbed setup failed" >&2; exit 1; }

say "== (a) native TCP ($CC): nk_stream in snd -> rcv, $TB2_VS_IP -> $TB2_VR_IP, $DUR s"
run_case native_tcp native_tcp 5501 "$DUR"
say "== (b) native MPTCP: the same under mptcpize run, $DUR s"
run_case native_mptcp native_mptcp 5502 "$DUR"

say "== (c) NetKernel: vs on NSM tcp ($CC), vr on NSM mptcp; switch vs -> mptcp at t=$PHASE s (warm)"
NK_UP=1
if ! tb2_ce_up 2>"$TB_DIR/ce-up.err"; then
	NK_UP=0
	say "   the CoreEngines did not start: $(tr '\n' ' ' <"$TB_DIR/ce-up.err")"
	: >"$TB_DIR/netkernel.res"
	res netkernel error "CoreEngines did not start: $(tr '\n' ' ' <"$TB_DIR/ce-up.err")"
fi
if [ $NK_UP = 1 ]; then
	res_pre=$TB_DIR/pre.res
	: >"$res_pre"
	[ "$TB2_NK_PEERS_USED" = 1 ] || say "   NOTE: nk-coreengine has no --nk-peers: the connection would drain on the old NSM instead of moving"
	echo "nk_peers=$TB2_NK_PEERS_USED" >>"$res_pre"
	# warm: the mptcp NSM runs before the switch
	out=$(timeout 20 "$NKCTL" --ctl "$NK_CTL_SND" start mptcp 2>&1) || say "   nkctl start mptcp failed: $out"
	if tb_wait_for 10 nsm_up snd mptcp; then
		echo "warm_ready=1" >>"$res_pre"
	else
		echo "warm_ready=0" >>"$res_pre"
		say "   WARNING: the mptcp NSM is not up before the switch (state $(nsm_state snd mptcp)): the switch will not be warm"
	fi
	run_case netkernel nk 5500 "$DUR" "$PHASE"
	nk_vm_json netkernel
	cat "$res_pre" >>"$TB_DIR/netkernel.res"

	say "== (d) NetKernel, cold switch: CoreEngines restarted, mptcp NSM not running; $COLD_DUR s, switch at t=$COLD s"
	tb2_ce_down
	if tb2_ce_up 2>"$TB_DIR/ce-up.err"; then
		st=$(nsm_state snd mptcp)
		: >"$TB_DIR/netkernel_cold.res"
		[ "$st" = up ] && say "   WARNING: the mptcp NSM is already up: this switch is not cold"
		run_case netkernel_cold nk 5503 "$COLD_DUR" "$COLD"
		res netkernel_cold nsm_state_before "$st"
		nk_vm_json netkernel_cold
	else
		say "   the CoreEngines did not restart: $(tr '\n' ' ' <"$TB_DIR/ce-up.err")"
		: >"$TB_DIR/netkernel_cold.res"
		res netkernel_cold error "CoreEngines did not restart"
	fi
fi

say "== summary"
python3 "$ROOT/scenarios/lib/fig_switch.py" --dir "$TB_DIR" --out "$OUT" --phase "$PHASE" --cold "$COLD" \
	--interval-ms "$IV_MS" --cc "$CC" --rate "${NK_LINK_RATE:-1gbit}" --elapsed "$(($(date +%s) - T_START))" \
	--guests "$GUESTS" --accel "${VM_ACCEL:-}"
rc=$?
if [ -f "$TB_DIR/plot.gp" ]; then
	if gnuplot "$TB_DIR/plot.gp" 2>"$TB_DIR/gnuplot.err"; then
		say "   figure: $OUT/fig-switch.png"
	else
		say "   gnuplot failed: $(tr '\n' ' ' <"$TB_DIR/gnuplot.err")"
		rc=1
	fi
fi
exit $rc
