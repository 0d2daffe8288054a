#!/usr/bin/env bash
# An idle system burns no CPU: with a guest blocked in recv() on an idle
# connection and another blocked in accept(), the CoreEngine, the NSM and the
# guests each use < 1% of a core over 3 s (the need-wakeup protocol: nobody
# spins or polls on a timer while there is nothing to do).
# timeout: 120
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"

PROBE=$TB_BUILD/tests/prog/nk_errprobe
BULK=$TB_BUILD/tests/prog/nk_bulk
[ -x "$PROBE" ] && [ -x "$BULK" ] || { echo "FAIL: test programs not built" >&2; exit 1; }
tb_netkernel_up "ic$(($$ % 100000))"
D=$TB_DIR

tb_bg remote "$D/hold.log" "$PROBE" hold 7500 >/dev/null
tb_wait_listen remote 7500 || tb_fail "hold server did not start"
tb_guest_bg "$D/recv.log" "$PROBE" -t 60 recv 10.77.0.2 7500 >/dev/null
precv=$TB_LAST_PID
tb_guest_bg "$D/accept.log" "$BULK" recv 7501 >/dev/null
pacc=$TB_LAST_PID
tb_wait_for 15 grep -q '^connected' "$D/recv.log" || { cat "$D/recv.log"; tb_fail "recv probe did not connect"; }
tb_wait_listen nsm 7501 || tb_fail "guest listener did not appear in the NSM namespace"
nsm=$(tb_nsm_pid)
[ -n "$nsm" ] || tb_fail "no NSM process"
sleep 0.5 # let start-up work finish

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A before
for p in "$TB_CE_PID" "$nsm" "$precv" "$pacc"; do before[$p]=$(ticks "$p"); done
sleep 3
fail=0
for name in coreengine:$TB_CE_PID nsm:$nsm guest-recv:$precv guest-accept:$pacc; do
	p=${name#*:}
	used=$(($(ticks "$p") - before[$p]))
	pct=$(awk -v t="$used" -v hz="$hz" 'BEGIN { printf "%.2f", 100 * t / hz / 3 }')
	echo "${name%%:*}: $used ticks in 3 s = $pct% of a core"
	# 1% of 3 s at CLK_TCK ticks per second
	if [ "$((used * 100))" -ge "$((3 * hz))" ]; then fail=1; fi
done
[ "$fail" = 0 ] || tb_fail "an idle component used 1% of a core or more"
echo PASS
