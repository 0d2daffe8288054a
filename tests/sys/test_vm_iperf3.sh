#!/usr/bin/env bash
# VM mode: a QEMU VM whose only device is the NK device first idles (a guest
# blocked in accept: QEMU must stay well below a host core), then runs iperf3 -c for
# 3 s against a native iperf3 server in the remote namespace; the server must
# report the bytes, the client must see 10.77.0.21 as its address, and the VM
# must have no interface but lo. The same 3 s test as a process-mode guest
# gives the number to compare with (printed only).
# timeout: 400
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require iperf3
tb_vm_require
tb_netkernel_up "vi$(($$ % 100000))" --vm name=qv1,ip=10.77.0.21,nsm=tcp,mode=vm
D=$TB_DIR
ACC=$(BUILD=$TB_VM_BUILD "$TB_NKVM" --accel-probe)
echo "accelerator: $ACC"

bytes() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(int(d["end"]["sum_received"]["bytes"]))' "$1"; }
mbit() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f" % (d["end"]["sum_received"]["bits_per_second"] / 1e6))' "$1"; }

echo "== iperf3 -c inside VM qv1 -> remote iperf3 -s"
tb_bg remote "$D/srv-vm.json" iperf3 -s -1 -J -B 10.77.0.2 -p 5201 >/dev/null
spid=$TB_LAST_PID
tb_wait_listen remote 5201 || tb_fail "iperf3 -s did not start"
# First an idle phase (a guest blocked in accept) to check that an idle VM
# does not spin a host core (VM mode polls with back-off), then iperf3.
tb_vm_guest_bg qv1 "$D/console.log" "$D/nkvm.out" -- '
/nk/bin/nk_stream recv 5999 >/dev/null &
sleep 7
kill $!
echo "NETDEVS: $(ls /sys/class/net | tr "\n" " ")"
iperf3 -c 10.77.0.2 -p 5201 -t 3 -J >/tmp/c.json; rc=$?
grep -o "\"local_host\":[^,]*" /tmp/c.json | head -n 1
exit $rc' >/dev/null
vmpid=$TB_LAST_PID
tb_vm_wait_boot "$D/console.log" 300 || { cat "$D/nkvm.out"; tb_fail "the VM did not boot"; }
tb_wait_listen nsm 5999 60 || { cat "$D/nkvm.out"; tail -n 20 "$D/console.log"; tb_fail "the idle guest did not start listening"; }
qpid=$(tb_vm_qemu_pid "$D/nkvm.out")
sleep 2
t0=$(awk '{ print $14 + $15 }' "/proc/$qpid/stat")
sleep 3
t1=$(awk '{ print $14 + $15 }' "/proc/$qpid/stat")
idle_pct=$(( (t1 - t0) * 100 / (3 * $(getconf CLK_TCK)) ))
echo "idle VM with a guest blocked in accept: QEMU used ${idle_pct}% of a host core"
rc=0
tb_wait_pid "$vmpid" 300 || rc=$?
out=$(cat "$D/nkvm.out")
[ $rc -eq 0 ] || { echo "$out"; tail -n 30 "$D/console.log"; tb_fail "iperf3 -c in the VM failed"; }
echo "$out"
[ "$idle_pct" -lt 30 ] || tb_fail "an idle VM used ${idle_pct}% of a host core (polling back-off not working?)"
[ "$(echo "$out" | sed -n 's/^NETDEVS: //p' | xargs)" = lo ] || tb_fail "the VM has interfaces other than lo: $(echo "$out" | grep NETDEVS)"
echo "$out" | grep -q '"local_host":[[:space:]]*"10.77.0.21"' || tb_fail "iperf3 in the VM does not report local address 10.77.0.21"
tb_wait_pid "$spid" 20 || tb_fail "iperf3 -s did not finish"
b=$(bytes "$D/srv-vm.json") || tb_fail "no server report"
[ "$b" -gt 0 ] || tb_fail "the server received 0 bytes"
vm_mbit=$(mbit "$D/srv-vm.json")
boot=$(sed -nE 's/.*booted in ([0-9.]+) s.*/\1/p' "$D/nkvm.out")

echo "== the same from a process-mode guest (vm1)"
tb_bg remote "$D/srv-proc.json" iperf3 -s -1 -J -B 10.77.0.2 -p 5202 >/dev/null
spid=$TB_LAST_PID
tb_wait_listen remote 5202 || tb_fail "iperf3 -s did not start"
tb_guest iperf3 -c 10.77.0.2 -p 5202 -t 3 >/dev/null || tb_fail "process-mode iperf3 failed"
tb_wait_pid "$spid" 20 || true
proc_mbit=$(mbit "$D/srv-proc.json" || echo 0)
echo "server received $b bytes from the VM"
echo "RESULT accel=$ACC boot_s=${boot:-?} vm_mbit=$vm_mbit process_mbit=$proc_mbit idle_vm_cpu_pct=$idle_pct"
echo PASS
