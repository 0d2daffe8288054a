#!/usr/bin/env bash
# scenarios/stress-switch.sh - many short switched streams on the fig-switch
# testbed, to catch what one fig-switch run is unlikely to hit (e.g. the
# corrupt stream of docs/incidents/2026-11-22-cold-switch-corrupt.md, about
# one run in a hundred).
#
#   scenarios/stress-switch.sh [--runs N] [--secs S] [--at T] [--warm]
#                              [--mptcp-csum 0|1] [--keep DIR]
#
# Each run: nk_stream recv as a guest of vr, nk_stream send as a guest of vs
# for S s (default 2), `nkctl switch vs mptcp` T s (default 0.7) after the
# receiver's first byte, then both ends verify every byte. Cold (default):
# both CoreEngines are restarted before every run, so the mptcp NSM starts at
# the switch; --warm starts it first. --mptcp-csum sets
# net.mptcp.checksum_enabled in both hosts (default: the testbed's, 1; 0
# reproduces the incident). A failed run's logs (receiver,
# sender, both CoreEngines with their NSMs) are copied to DIR/runN (default
# results/stress-switch).
#
# Prints one line per run (bytes, receiver's longest pause, switch gap) and
# "failed F of N". Exit status: 0 all runs verified, 1 some failed, 2 usage.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=100 SECS=2 AT=0.7 WARM=0 CSUM=1 KEEP=$ROOT/results/stress-switch

usage() { echo "usage: $0 [--runs N] [--secs S] [--at T] [--warm] [--mptcp-csum 0|1] [--keep DIR]"; }
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--secs) SECS=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--at) AT=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--keep) KEEP=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	--warm) WARM=1; shift ;;
	--mptcp-csum) CSUM=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
	-h | --help) usage; exit 0 ;;
	*) echo "stress-switch: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
[[ $CSUM =~ ^[01]$ ]] || { echo "stress-switch: --mptcp-csum wants 0 or 1, not '$CSUM'" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]{0,4}$ ]] || { echo "stress-switch: --runs wants 1..99999, not '$RUNS'" >&2; exit 2; }
num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
if ! num "$SECS" || ! awk -v s="$SECS" 'BEGIN { exit !(s >= 0.5 && s <= 600) }'; then
	echo "stress-switch: --secs wants 0.5..600, not '$SECS'" >&2
	exit 2
fi
if ! num "$AT" || ! awk -v a="$AT" -v s="$SECS" 'BEGIN { exit !(a > 0 && a < s) }'; then
	echo "stress-switch: --at wants a time inside the run (0 < T < $SECS), not '$AT'" >&2
	exit 2
fi
[ "$(id -u)" = 0 ] || { echo "stress-switch: must run as root (network namespaces)" >&2; exit 1; }

# shellcheck source=scenarios/lib/twohost.sh
. "$ROOT/scenarios/lib/twohost.sh"
tb2_stream_tools stress-switch || exit 1
mkdir -p "$KEEP" || exit 1

export TB2_MPTCP_CSUM=$CSUM
tb2_net_up "ss$(($$ % 100000))" || { echo "stress-switch: testbed setup failed" >&2; exit 1; }

failed=0
for ((i = 1; i <= RUNS; i++)); do
	tb2_ce_down
	tb2_ce_up || { echo "stress-switch: the CoreEngines did not start" >&2; exit 1; }
	if [ $WARM = 1 ]; then
		"$NKCTL" --ctl "$NK_CTL_SND" start mptcp >/dev/null || { echo "stress-switch: nkctl start mptcp failed" >&2; exit 1; }
	fi
	port=$((20000 + i % 20000))
	rl=$TB_DIR/r$i.log sl=$TB_DIR/s$i.log
	tb2_guest_bg vr "$rl" "$STREAM" recv "$port" >/dev/null
	pr=$TB_LAST_PID
	tb_wait_for 10 grep -q 'listening on' "$rl"
	tb2_guest_bg vs "$sl" "$STREAM" send "$TB2_VR_IP" "$port" "$SECS" >/dev/null
	ps=$TB_LAST_PID
	tb_wait_for 15 grep -q 'first byte at' "$rl"
	sleep "$AT"
	sw=$("$NKCTL" --ctl "$NK_CTL_SND" switch vs mptcp 2>&1) || echo "run $i: switch failed: $sw"
	tb_wait_pid "$ps" 60 >/dev/null 2>&1
	tb_wait_pid "$pr" 60 >/dev/null 2>&1
	gap=$("$NKCTL" --ctl "$NK_CTL_SND" --json list vms 2>/dev/null | grep -o '"switch_gap_us":[0-9.null]*' | cut -d: -f2)
	r=$(grep '^received' "$rl")
	if grep -q ' ok ' <<<"$r" && grep -q 'peer ok' "$sl"; then
		echo "run $i ok: $(awk '{ print $2, "bytes, pause", $(NF - 2), "ms" }' <<<"$r"), gap ${gap:-?} us"
	else
		failed=$((failed + 1))
		echo "run $i FAILED: ${r:-no result}"
		mkdir -p "$KEEP/run$i"
		cp "$rl" "$sl" "$TB_DIR"/ce-*.log "$KEEP/run$i/" 2>/dev/null
	fi
done
echo "failed $failed of $RUNS"
[ $failed = 0 ]
