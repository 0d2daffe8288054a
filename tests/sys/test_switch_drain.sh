#!/usr/bin/env bash
# Live switch with a peer that is not NetKernel-managed: `nkctl switch` sends
# the VM's new connections to the new NSM at once, while an existing transfer
# keeps draining on the old NSM, intact; the old NSM exits once its last
# connection closes.
# timeout: 180
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3
BULK=$TB_BUILD/tests/prog/nk_bulk
[ -x "$BULK" ] || { echo "FAIL: $BULK is not built" >&2; exit 1; }
NK_RATE=${NK_RATE:-400mbit} tb_netkernel_up "sd$(($$ % 100000))" \
	--nsm "name=tcp2,netns=nk-sd$(($$ % 100000))-nsm,stack=kernel,cc=reno"
D=$TB_DIR
json() { tb_nkctl --json list "$1"; }
nsm_state() { json nsms | python3 -c "import json,sys; print([n['state'] for n in json.load(sys.stdin) if n['name']==sys.argv[1]][0])" "$1"; }
conn_nsms() { json conns | python3 -c "import json,sys; print(' '.join(sorted(c['nsm'] for c in json.load(sys.stdin) if c['state']=='established')))"; }

echo "== a 200 MB transfer from the guest through NSM tcp (cubic), 400 Mbit/s link"
tb_bg remote "$D/recv1.log" "$BULK" recv 7700 >/dev/null
prcv1=$TB_LAST_PID
tb_wait_listen remote 7700 || tb_fail "receiver did not start"
tb_guest_bg "$D/send1.log" "$BULK" send 10.77.0.2 7700 200000000 11 >/dev/null
psnd1=$TB_LAST_PID
on_tcp() { [ "$(conn_nsms)" = "tcp" ]; }
tb_wait_for 10 on_tcp || tb_fail "expected one connection on tcp, got '$(conn_nsms)'"

echo "== nkctl switch vm1 tcp2 (cold: tcp2 is not running)"
tb_nkctl switch vm1 tcp2
echo "== a new connection goes to tcp2 while the first still runs on tcp"
tb_bg remote "$D/recv2.log" "$BULK" recv 7701 >/dev/null
prcv2=$TB_LAST_PID
tb_wait_listen remote 7701 || tb_fail "second receiver did not start"
tb_guest_bg "$D/send2.log" "$BULK" send 10.77.0.2 7701 20000000 12 >/dev/null
psnd2=$TB_LAST_PID
tb_wait_for 10 bash -c '[ -n "$(ip netns exec '"$(tb_ns nsm)"' ss -tin dst 10.77.0.2:7701 | grep reno)" ]' ||
	tb_fail "no reno (tcp2) connection to port 7701 in the NSM namespace"
ip netns exec "$(tb_ns nsm)" ss -tin dst 10.77.0.2:7700 | grep -q cubic ||
	tb_fail "the first transfer is no longer on the cubic NSM"
echo "   port 7700 on cubic (old NSM), port 7701 on reno (new NSM)"

for p in "$psnd1" "$prcv1" "$psnd2" "$prcv2"; do
	rc=0
	tb_wait_pid "$p" 60 || rc=$?
	[ $rc -eq 0 ] || { cat "$D"/send*.log "$D"/recv*.log; tb_fail "a transfer process exited with status $rc"; }
done
grep -h "stream ok" "$D/recv1.log" "$D/recv2.log" | sed 's/^/   /'
[ "$(grep -c 'stream ok' "$D/recv1.log" "$D/recv2.log" | awk -F: '{s+=$2} END {print s}')" = 2 ] ||
	tb_fail "a receiver did not verify its stream"

echo "== the old NSM exits once its last connection is closed"
tcp_down() { [ "$(nsm_state tcp)" = down ]; }
tb_wait_for 10 tcp_down ||
	{ json nsms; tb_fail "NSM tcp still running after its last connection closed"; }
[ "$(nsm_state tcp2)" = up ] || tb_fail "NSM tcp2 is not up"
echo PASS
