#!/usr/bin/env bash
# A VM that floods its shared NSM with operations does not starve another.
#
# vm1 streams with iperf3; vm2 runs two flooders at the same time: a
# connect/close storm and a stream of 1-byte sends (tests/prog/nk_flood).
# Both VMs share one NSM with isolation on (equal weights, capacity 300
# Mbit/s). vm1 must keep at least 45 % of what it had alone (its weighted
# share is 50 %). The same run with isolation off is printed for comparison.
# timeout: 200
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require iperf3 python3

DUR=${ISO_DUR:-4}
FLOOD=$TB_BUILD/tests/prog/nk_flood
[ -x "$FLOOD" ] || tb_fail "missing $FLOOD (run make)"
NK_RATE=400mbit tb_netkernel_up "if$(($$ % 100000))" --vm name=vm2,ip=10.77.0.12,nsm=tcp
D=$TB_DIR
tb_bg remote "$D/s1.log" iperf3 -s -p 5301 >/dev/null
tb_bg remote "$D/sink.log" "$FLOOD" sink 5400 >/dev/null
tb_wait_listen remote 5301 && tb_wait_listen remote 5400 || tb_fail "servers did not start"


# victim TAG FLOOD(0|1): vm1's iperf3 for DUR s, flooders alongside if asked;
# sets V (bit/s) and OPS (flood operations completed)
victim() {
	local tag=$1 flood=$2 pv pc=0 pt=0 rc=0
	OPS=0
	if [ "$flood" = 1 ]; then
		TB_VM=vm2 tb_guest_bg "$D/$tag-conn.log" "$FLOOD" connect 10.77.0.2 5400 $((DUR + 1))
		pc=$TB_LAST_PID
		TB_VM=vm2 tb_guest_bg "$D/$tag-tiny.log" "$FLOOD" tiny 10.77.0.2 5400 $((DUR + 1))
		pt=$TB_LAST_PID
		sleep 0.5
	fi
	TB_VM=vm1 tb_guest_bg "$D/$tag.json" iperf3 -c 10.77.0.2 -p 5301 -t "$DUR" -J
	pv=$TB_LAST_PID
	wait "$pv" || tb_fail "$tag: iperf3 failed: $(tail -n 3 "$D/$tag.json" | tr '\n' ' ')"
	V=$(tb_iperf3_bps "$D/$tag.json") || tb_fail "$tag: unusable iperf3 output"
	if [ "$flood" = 1 ]; then
		wait "$pc" || rc=$?
		wait "$pt" || rc=$?
		[ "$rc" = 0 ] || tb_fail "$tag: a flooder failed: $(cat "$D/$tag-conn.log" "$D/$tag-tiny.log" | tr '\n' ' ')"
		OPS="$(awk '/^ops/ {print $2}' "$D/$tag-conn.log") connects, $(awk '/^ops/ {print $2}' "$D/$tag-tiny.log") tiny sends"
	fi
}

tb_nkctl set-nsm tcp iso=on rate=300m >/dev/null || tb_fail "nkctl set-nsm refused"
victim alone 0
alone=$V
victim on 1
on=$V
echo "isolation on:  vm1 alone $((alone / 1000000)) Mbit/s, beside the flood $((on / 1000000)) Mbit/s (flood: $OPS)"
tb_nkctl set-nsm tcp iso=off >/dev/null || tb_fail "nkctl set-nsm refused"
victim off 1
echo "isolation off: vm1 beside the flood $((V / 1000000)) Mbit/s (flood: $OPS)"
python3 -c "import sys; sys.exit(0 if $on >= 0.45 * $alone else 1)" ||
	tb_fail "with isolation on, vm1 kept only $on of $alone bit/s beside the flood (want >= 45 %)"
echo "PASS"
