#!/usr/bin/env bash
# Isolation between two VMs that share one NSM (dataplane/ce_iso.c).
#
# vm1 and vm2 each run one iperf3 stream to the remote host through the same
# NSM, whose path is shaped to 400 Mbit/s. The CoreEngine admits towards the
# NSM at 300 Mbit/s with isolation on, so its queue is the bottleneck.
#   1. weights 1:3  -> vm2's share of the bytes is 75 % (+-7 pp)
#   2. weights 1:1, vm1 capped at 60 Mbit/s -> vm1 within 12 % of 60 Mbit/s
#      and vm2 gets the rest of the capacity (> 2/3 of it)
# Shares and ratios only: absolute speeds depend on the machine.
# timeout: 200
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require iperf3 python3

DUR=${ISO_DUR:-5}
NK_RATE=400mbit tb_netkernel_up "is$(($$ % 100000))" --vm name=vm2,ip=10.77.0.12,nsm=tcp
D=$TB_DIR
tb_bg remote "$D/s1.log" iperf3 -s -p 5301 >/dev/null
tb_bg remote "$D/s2.log" iperf3 -s -p 5302 >/dev/null
tb_wait_listen remote 5301 && tb_wait_listen remote 5302 || tb_fail "iperf3 servers did not start"
tb_nkctl set-nsm tcp iso=on rate=300m >/dev/null || tb_fail "nkctl set-nsm refused"

# bits/s the receiver got, from an iperf3 -J file

# run_pair TAG: both VMs send for DUR s at once; sets A and B (bit/s)
run_pair() {
	local tag=$1 p1 p2 rc=0
	TB_VM=vm1 tb_guest_bg "$D/$tag-1.json" iperf3 -c 10.77.0.2 -p 5301 -t "$DUR" -J
	p1=$TB_LAST_PID
	TB_VM=vm2 tb_guest_bg "$D/$tag-2.json" iperf3 -c 10.77.0.2 -p 5302 -t "$DUR" -J
	p2=$TB_LAST_PID
	wait "$p1" || rc=$?
	wait "$p2" || rc=$?
	[ "$rc" = 0 ] || tb_fail "$tag: an iperf3 client failed: $(tail -n 3 "$D/$tag-1.json" "$D/$tag-2.json" | tr '\n' ' ')"
	A=$(tb_iperf3_bps "$D/$tag-1.json") && B=$(tb_iperf3_bps "$D/$tag-2.json") || tb_fail "$tag: unusable iperf3 output"
}

tb_nkctl set vm1 weight=1 >/dev/null && tb_nkctl set vm2 weight=3 >/dev/null || tb_fail "nkctl set refused"
run_pair weights
a=$A b=$B
share=$(python3 -c "print('%.1f' % (100.0 * $b / ($a + $b)))")
echo "weights 1:3: vm1 $((a / 1000000)) Mbit/s, vm2 $((b / 1000000)) Mbit/s, vm2 share $share % (want 75)"
python3 -c "import sys; sys.exit(0 if abs($share - 75) <= 7 else 1)" || tb_fail "vm2's share $share % is not 75 +- 7 %"

tb_nkctl set vm2 weight=1 >/dev/null && tb_nkctl set vm1 rate=60m >/dev/null || tb_fail "nkctl set refused"
run_pair cap
a=$A b=$B
echo "vm1 capped at 60 Mbit/s: vm1 $((a / 1000000)) Mbit/s, vm2 $((b / 1000000)) Mbit/s"
python3 -c "import sys; sys.exit(0 if abs($a / 60e6 - 1) <= 0.12 else 1)" || tb_fail "vm1 ran at $a bit/s, not 60 Mbit/s +- 12 %"
python3 -c "import sys; sys.exit(0 if $b >= 2.0 / 3.0 * ($a + $b) else 1)" || tb_fail "vm2 did not get the capacity vm1 left ($b of $((a + b)) bit/s)"
echo "PASS"
