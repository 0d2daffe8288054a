#!/usr/bin/env bash
# VM mode: two QEMU VMs and one process-mode guest share one NSM at the same
# time. Each VM streams to its own native receiver in the remote namespace
# (nk_stream, verified byte by byte); while both VMs are streaming (the
# CoreEngine lists a live socket in each), the process-mode guest runs its
# own verified stream. All three must complete and verify.
# timeout: 500
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_vm_require
ST=$TB_BUILD/tests/prog/nk_stream
tb_netkernel_up "vs$(($$ % 100000))" --vm name=qa,ip=10.77.0.21,nsm=tcp,mode=vm \
	--vm name=qb,ip=10.77.0.22,nsm=tcp,mode=vm
D=$TB_DIR
SECS=${NK_VM_SHARED_SECS:-40}

for p in 5601 5602 5603; do
	tb_bg remote "$D/recv-$p.log" "$ST" recv "$p" >/dev/null
	tb_wait_for 10 grep -q '^listening' "$D/recv-$p.log" || tb_fail "receiver $p did not start"
done
# Each VM streams for SECS s once it is up: long enough to overlap the other
# VM's boot under TCG on a busy host.
tb_vm_guest_bg qa "$D/qa.console" "$D/qa.out" -- "/nk/bin/nk_stream send 10.77.0.2 5601 $SECS" >/dev/null
qa=$TB_LAST_PID
tb_vm_guest_bg qb "$D/qb.console" "$D/qb.out" -- "/nk/bin/nk_stream send 10.77.0.2 5602 $SECS" >/dev/null
qb=$TB_LAST_PID

# both VMs hold a socket at once
both() {
	"$TB_BUILD/bin/nkctl" --ctl "$NK_CTL" --json list vms | python3 -c '
import json, sys
v = {x["name"]: x for x in json.load(sys.stdin)}
sys.exit(0 if v["qa"]["sockets"] > 0 and v["qb"]["sockets"] > 0 else 1)'
}
tb_wait_for 300 both || { cat "$D/qa.out" "$D/qb.out"; tb_nkctl list vms; tb_fail "the two VMs never streamed at the same time"; }
echo "== both VMs are streaming through NSM tcp; now a process-mode guest too"
tb_nkctl list vms
tb_guest "$ST" send 10.77.0.2 5603 3 >"$D/proc.out" || { cat "$D/proc.out"; tb_fail "the process-mode guest's stream failed"; }
both || tb_fail "a VM stopped streaming while the process-mode guest ran"
tb_nkctl list vms
rc=0
tb_wait_pid "$qa" 200 || rc=$?
[ $rc -eq 0 ] || { cat "$D/qa.out"; tb_fail "VM qa exited with $rc"; }
tb_wait_pid "$qb" 200 || rc=$?
[ $rc -eq 0 ] || { cat "$D/qb.out"; tb_fail "VM qb exited with $rc"; }
for p in 5601 5602 5603; do
	tb_wait_for 20 grep -q '^received' "$D/recv-$p.log" || tb_fail "receiver $p has no result"
	grep '^received' "$D/recv-$p.log"
	grep -q '^received .* ok ' "$D/recv-$p.log" || tb_fail "stream $p did not verify"
done
grep -h '^sent' "$D/qa.out" "$D/qb.out" "$D/proc.out"
grep -q 'peer ok' "$D/qa.out" && grep -q 'peer ok' "$D/qb.out" && grep -q 'peer ok' "$D/proc.out" ||
	tb_fail "a sender's result does not match its receiver's"
echo PASS
