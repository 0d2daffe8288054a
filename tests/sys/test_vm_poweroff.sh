#!/usr/bin/env bash
# VM mode: a VM is powered off hard (its QEMU process SIGKILLed) in the middle
# of a transfer. The CoreEngine, watching the QEMU pid the launcher
# registered (nkctl vm-pid), drops the VM's channels and resets its
# connections: the remote receiver sees a reset (not a clean end), the VM's
# sockets, TX chunks and RX chunks come back, and a process-mode guest
# streaming through the same NSM at the same time is not disturbed.
# timeout: 400
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_vm_require
ST=$TB_BUILD/tests/prog/nk_stream
tb_netkernel_up "vp$(($$ % 100000))" --vm name=qv1,ip=10.77.0.21,nsm=tcp,mode=vm
D=$TB_DIR

cat >"$D/sink.py" <<'PY'
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("10.77.0.2", 7700)); l.listen(1)
print("listening", flush=True)
c, _ = l.accept(); n = 0; mark = 1 << 20
try:
    while True:
        d = c.recv(65536)
        if not d:
            print("EOF after %d bytes" % n, flush=True); break
        n += len(d)
        if n >= mark:
            print("bytes %d" % n, flush=True); mark *= 2
except ConnectionResetError:
    print("RESET after %d bytes" % n, flush=True)
PY
tb_bg remote "$D/sink.log" python3 "$D/sink.py" >/dev/null
sink=$TB_LAST_PID
tb_wait_for 10 grep -q listening "$D/sink.log" || tb_fail "sink did not start"
tb_bg remote "$D/recv.log" "$ST" recv 7701 >/dev/null
tb_wait_for 10 grep -q '^listening' "$D/recv.log" || tb_fail "receiver did not start"

tb_vm_guest_bg qv1 "$D/qv1.console" "$D/qv1.out" -- "/nk/bin/nk_stream send 10.77.0.2 7700 300" >/dev/null
launcher=$TB_LAST_PID
tb_wait_for 300 grep -q '^bytes' "$D/sink.log" || { cat "$D/qv1.out"; tail -n 20 "$D/qv1.console"; tb_fail "the VM's stream did not start"; }
qpid=$(tb_vm_qemu_pid "$D/qv1.out")
[ -n "$qpid" ] || tb_fail "no QEMU pid in the launcher's output"
# the process-mode guest streams meanwhile (8 s), and must verify
tb_guest_bg "$D/proc.out" "$ST" send 10.77.0.2 7701 8 >/dev/null
proc=$TB_LAST_PID
tb_wait_for 10 grep -q '^connected' "$D/proc.out" || tb_fail "the process-mode guest did not connect"
sleep 2
echo "== power off: SIGKILL to QEMU pid $qpid (started by our launcher)"
tb_nkctl list vms
kill -KILL "$qpid"
tb_wait_pid "$sink" 20 || true
cat "$D/sink.log"
grep -q '^RESET' "$D/sink.log" || tb_fail "the remote did not see a reset: $(tail -n 1 "$D/sink.log")"
grep -q 'vm qv1: down (its QEMU process exited)' "$D/ce.log" || tb_fail "the CoreEngine did not notice the power-off"
reclaimed() {
	"$TB_BUILD/bin/nkctl" --ctl "$NK_CTL" --json list vms | python3 -c '
import json, sys
v = [x for x in json.load(sys.stdin) if x["name"] == "qv1"][0]
sys.exit(0 if v["sockets"] == 0 and v["tx_inflight"] == 0 and v["procs"] == 0 and v["rx_used"] <= 512 else 1)'
}
tb_wait_for 15 reclaimed || { tb_nkctl list vms; tb_fail "qv1's sockets or chunks were not reclaimed"; }
tb_nkctl list vms
rc=0
tb_wait_pid "$proc" 30 || rc=$?
[ $rc -eq 0 ] || { cat "$D/proc.out"; tb_fail "the process-mode guest's stream failed ($rc)"; }
tb_wait_for 10 grep -q '^received' "$D/recv.log" || tb_fail "no result from the process-mode stream's receiver"
grep -q '^received .* ok ' "$D/recv.log" || tb_fail "the process-mode stream did not verify: $(cat "$D/recv.log")"
grep -q 'peer ok' "$D/proc.out" || tb_fail "the process-mode sender's result does not match"
grep '^received' "$D/recv.log"
tb_wait_pid "$launcher" 20 || true # it reports that the VM gave no exit status
echo PASS
