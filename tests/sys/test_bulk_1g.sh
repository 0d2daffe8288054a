#!/usr/bin/env bash
# 1 GiB each way through NetKernel with end-to-end verification (nk_bulk):
#   guest sends 1 GiB to a native receiver in remote;
#   remote sends 1 GiB to a receiver in the guest.
# nk_bulk compares every byte with the regenerated stream; both ends print
# their byte count and checksum and the test compares the two lines.
# timeout: 600
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"

BULK=$TB_BUILD/tests/prog/nk_bulk
[ -x "$BULK" ] || { echo "FAIL: $BULK is not built" >&2; exit 1; }
SIZE=$((1024 * 1024 * 1024))
tb_netkernel_up "bk$(($$ % 100000))"
D=$TB_DIR

# "<bytes> <checksum>" from an nk_bulk result line
result() {
	sed -nE 's/^nk_bulk: (sent|received) ([0-9]+) bytes checksum (0x[0-9a-f]+).*/\2 \3/p' "$1" | tail -n 1
}

check_pair() { # what sender_log receiver_log
	local what=$1 s r
	s=$(result "$2")
	r=$(result "$3")
	echo "$what: sender [$s] receiver [$r]"
	[ -n "$s" ] && [ -n "$r" ] || tb_fail "$what: missing result line"
	[ "$s" = "$r" ] || tb_fail "$what: sender and receiver disagree"
	[ "${s%% *}" = "$SIZE" ] || tb_fail "$what: moved ${s%% *} bytes, want $SIZE"
	grep -q 'stream ok' "$3" || tb_fail "$what: receiver did not verify the stream"
	grep -q 'peer ok' "$2" || tb_fail "$what: sender did not get the receiver's confirmation"
}

echo "== guest -> remote, 1 GiB"
tb_bg remote "$D/recv-remote.log" "$BULK" -q recv 7301 >/dev/null
rpid=$TB_LAST_PID
tb_wait_listen remote 7301 || tb_fail "receiver in remote did not start"
rc=0
TB_GUEST_TIMEOUT=240 tb_guest "$BULK" -q send 10.77.0.2 7301 $SIZE 1234 >"$D/send-guest.log" 2>&1 || rc=$?
cat "$D/send-guest.log"
[ $rc -eq 0 ] || tb_fail "guest sender exited with status $rc"
rc=0
tb_wait_pid "$rpid" 30 || rc=$?
cat "$D/recv-remote.log"
[ $rc -eq 0 ] || tb_fail "remote receiver exited with status $rc"
check_pair "guest -> remote" "$D/send-guest.log" "$D/recv-remote.log"

echo "== remote -> guest, 1 GiB"
tb_guest_bg "$D/recv-guest.log" "$BULK" -q recv 7302 >/dev/null
gpid=$TB_LAST_PID
tb_wait_listen nsm 7302 15 || { cat "$D/recv-guest.log"; tb_fail "receiver in the guest is not listening (nothing on :7302 in the NSM namespace)"; }
rc=0
TB_EXEC_TIMEOUT=240 tb_exec remote "$BULK" -q send 10.77.0.11 7302 $SIZE 5678 >"$D/send-remote.log" 2>&1 || rc=$?
cat "$D/send-remote.log"
[ $rc -eq 0 ] || tb_fail "remote sender exited with status $rc"
rc=0
tb_wait_pid "$gpid" 30 || rc=$?
cat "$D/recv-guest.log"
[ $rc -eq 0 ] || tb_fail "guest receiver exited with status $rc"
check_pair "remote -> guest" "$D/send-remote.log" "$D/recv-guest.log"
echo "PASS"
