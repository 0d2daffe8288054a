#!/usr/bin/env bash
# NSM killed with SIGKILL while guests are blocked in recv() and send():
#   - both calls return ECONNRESET or EPIPE within 1 s of the kill;
#   - the CoreEngine stays up;
#   - the next connection starts a new NSM, which carries a verified transfer.
# timeout: 180
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"

PROBE=$TB_BUILD/tests/prog/nk_errprobe
BULK=$TB_BUILD/tests/prog/nk_bulk
for p in "$PROBE" "$BULK"; do
	[ -x "$p" ] || { echo "FAIL: $p is not built" >&2; exit 1; }
done
tb_netkernel_up "nk$(($$ % 100000))"
D=$TB_DIR

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

echo "== remote: a peer that accepts and never reads or writes"
tb_bg remote "$D/hold.log" "$PROBE" hold 7400 >/dev/null
tb_wait_listen remote 7400 || tb_fail "hold server did not start"

echo "== guest: one probe blocked in recv, one in send"
tb_guest_bg "$D/probe-recv.log" "$PROBE" -t 20 recv 10.77.0.2 7400 >/dev/null
precv=$TB_LAST_PID
tb_guest_bg "$D/probe-send.log" "$PROBE" -t 20 send 10.77.0.2 7400 >/dev/null
psend=$TB_LAST_PID
tb_wait_for 15 grep -q '^connected' "$D/probe-recv.log" || { cat "$D/probe-recv.log"; tb_fail "recv probe did not connect"; }
tb_wait_for 15 grep -q '^connected' "$D/probe-send.log" || { cat "$D/probe-send.log"; tb_fail "send probe did not connect"; }
sleep 1.5 # the send probe fills every buffer on the path and blocks
alive "$precv" || { cat "$D/probe-recv.log"; tb_fail "recv probe returned before the fault"; }
alive "$psend" || { cat "$D/probe-send.log"; tb_fail "send probe returned before the fault"; }

nsm=$(tb_nsm_pid)
[ -n "$nsm" ] || tb_fail "no nk-nsm process in $(tb_ns nsm)"
echo "== SIGKILL NSM pid $nsm"
kill_ms=$(date +%s%3N)
kill -KILL "$nsm"

for p in recv send; do
	pid=$precv log=$D/probe-recv.log
	[ $p = send ] && pid=$psend log=$D/probe-send.log
	rc=0
	tb_wait_pid "$pid" 10 || rc=$?
	cat "$log"
	line=$(grep '^result' "$log" | tail -n 1 || true)
	[ -n "$line" ] || tb_fail "$p probe printed no result (exit $rc)"
	err=$(sed -nE 's/.* errno=([A-Z0-9]+).*/\1/p' <<<"$line")
	at=$(sed -nE 's/.* at_ms=([0-9]+).*/\1/p' <<<"$line")
	delay=$((at - kill_ms))
	echo "$p: errno $err, returned ${delay} ms after the kill"
	case $err in
	ECONNRESET | EPIPE) ;;
	*) tb_fail "$p returned errno '$err', want ECONNRESET or EPIPE" ;;
	esac
	[ "$delay" -lt 1000 ] || tb_fail "$p returned ${delay} ms after the kill (limit 1000 ms)"
done

alive "$TB_CE_PID" || tb_fail "the CoreEngine died with the NSM"

echo "== a new connection gets a new NSM"
tb_bg remote "$D/recv.log" "$BULK" -q recv 7401 >/dev/null
rpid=$TB_LAST_PID
tb_wait_listen remote 7401 || tb_fail "receiver did not start"
rc=0
TB_GUEST_TIMEOUT=60 tb_guest "$BULK" -q send 10.77.0.2 7401 64M 99 >"$D/send.log" 2>&1 || rc=$?
cat "$D/send.log"
[ $rc -eq 0 ] || tb_fail "transfer after the NSM restart failed (status $rc)"
rc=0
tb_wait_pid "$rpid" 20 || rc=$?
cat "$D/recv.log"
[ $rc -eq 0 ] || tb_fail "receiver after the NSM restart failed (status $rc)"
nsm2=$(tb_nsm_pid)
[ -n "$nsm2" ] && [ "$nsm2" != "$nsm" ] || tb_fail "no new NSM process (old $nsm, now '${nsm2}')"
echo "new NSM pid $nsm2"
alive "$TB_CE_PID" || tb_fail "the CoreEngine died"
echo "PASS"
