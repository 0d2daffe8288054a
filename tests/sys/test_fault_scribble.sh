#!/usr/bin/env bash
# A hostile guest of vm2 (nk_scribble) writes garbage over its own region:
# up ring entries and prod_tail, down ring consumer words, socket slots'
# guest lines, chunks. Meanwhile a guest of vm1 moves 256 MiB, which must
# arrive intact. Afterwards the CoreEngine and the NSM are still the same live
# processes, vm2's bad NQEs were counted (nkctl stats: bad_nqes > 0) and vm1
# has none.
# timeout: 300
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3

BULK=$TB_BUILD/tests/prog/nk_bulk
SCRIBBLE=$TB_BUILD/tests/prog/nk_scribble
for p in "$BULK" "$SCRIBBLE"; do
	[ -x "$p" ] || { echo "FAIL: $p is not built" >&2; exit 1; }
done
SIZE=$((256 * 1024 * 1024))
tb_netkernel_up "sc$(($$ % 100000))" --vm name=vm2,ip=10.77.0.12,nsm=tcp
D=$TB_DIR

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

echo "== warm-up transfer on vm1 (starts the NSM)"
tb_bg remote "$D/warm.log" "$BULK" -q recv 7601 >/dev/null
wpid=$TB_LAST_PID
tb_wait_listen remote 7601 || tb_fail "receiver did not start"
TB_GUEST_TIMEOUT=60 tb_guest "$BULK" -q send 10.77.0.2 7601 4M 1 || tb_fail "warm-up transfer failed"
tb_wait_pid "$wpid" 20 || tb_fail "warm-up receiver failed"
nsm=$(tb_nsm_pid)
[ -n "$nsm" ] || tb_fail "no nk-nsm process in $(tb_ns nsm)"
echo "CoreEngine pid $TB_CE_PID, NSM pid $nsm"

echo "== start the scribbler as a guest of vm2"
tb_bg guest "$D/scribble.log" "$SCRIBBLE" --ctl "$NK_CTL" --vm vm2 --seconds 120 >/dev/null
spid=$TB_LAST_PID
tb_wait_for 10 grep -q 'scribbling for' "$D/scribble.log" || { cat "$D/scribble.log"; tb_fail "the scribbler did not attach"; }
cat "$D/scribble.log"
sleep 1

echo "== vm1 moves 256 MiB while vm2 scribbles"
tb_bg remote "$D/recv.log" "$BULK" -q recv 7600 >/dev/null
rpid=$TB_LAST_PID
tb_wait_listen remote 7600 || tb_fail "receiver did not start"
rc=0
TB_GUEST_TIMEOUT=200 tb_guest "$BULK" -q send 10.77.0.2 7600 $SIZE 4242 >"$D/send.log" 2>&1 || rc=$?
cat "$D/send.log"
scribbling=0
alive "$spid" && scribbling=1
[ $rc -eq 0 ] || tb_fail "vm1's transfer failed (status $rc) while vm2 scribbled"
rc=0
tb_wait_pid "$rpid" 30 || rc=$?
cat "$D/recv.log"
[ $rc -eq 0 ] || tb_fail "receiver failed (status $rc)"
grep -q "received $SIZE bytes .*stream ok" "$D/recv.log" || tb_fail "the stream did not arrive intact"
s=$(sed -nE 's/.*sent ([0-9]+) bytes checksum (0x[0-9a-f]+).*/\1 \2/p' "$D/send.log")
r=$(sed -nE 's/.*received ([0-9]+) bytes checksum (0x[0-9a-f]+).*/\1 \2/p' "$D/recv.log")
[ -n "$s" ] && [ "$s" = "$r" ] || tb_fail "checksums differ: sender [$s] receiver [$r]"
[ $scribbling = 1 ] || echo "warning: the scribbler had stopped before the transfer ended"

echo "== stop the scribbler"
kill -TERM "$spid" 2>/dev/null || true
tb_wait_pid "$spid" 10 || true
tail -n 1 "$D/scribble.log"

alive "$TB_CE_PID" || tb_fail "the CoreEngine died"
alive "$nsm" || tb_fail "the NSM (pid $nsm) died"
[ "$(tb_nsm_pid)" = "$nsm" ] || tb_fail "the NSM was replaced (was $nsm, now $(tb_nsm_pid))"
stats=$(tb_nkctl stats) || tb_fail "nkctl stats failed"
echo "nkctl stats: $stats"
bad2=$(TB_STATS_TEXT=$stats tb_stat bad_nqes vm2) || tb_fail "nkctl stats shows no bad_nqes for vm2"
bad1=$(TB_STATS_TEXT=$stats tb_stat bad_nqes vm1 || echo "?")
echo "bad_nqes: vm2 $bad2, vm1 $bad1"
[ "$bad2" -gt 0 ] || tb_fail "bad_nqes of vm2 is $bad2: the garbage was not counted"
[ "$bad1" = 0 ] || [ "$bad1" = "?" ] || tb_fail "vm1 has $bad1 bad NQEs: vm2's garbage leaked into vm1's accounting"
echo "PASS"
