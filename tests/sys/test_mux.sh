#!/usr/bin/env bash
# Multiplexing: three VMs share one NSM at once, each with its own source
# address; a fourth guest is attached to a second NSM by the launcher
# (nkrun --nsm), while a connection opened before stays where it was. The
# second NSM is given spin=0, which must reach it (0 is not "default"), and
# hold=on (nk-nsm --spin-hold); a bad hold= value is refused in one line.
# timeout: 120
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3 ss

FLOOD=$TB_BUILD/tests/prog/nk_flood
[ -x "$FLOOD" ] || tb_fail "missing $FLOOD (run make)"
ID="mx$(($$ % 100000))"
tb_netkernel_up "$ID" --vm name=vm2,ip=10.77.0.12,nsm=tcp --vm name=vm3,ip=10.77.0.13,nsm=tcp \
	--nsm "name=tcp2,netns=nk-$ID-nsm,stack=kernel,cc=cubic,spin=0,hold=on"
D=$TB_DIR
msg=$("$TB_BUILD/bin/nk-coreengine" --ctl "$D/never.sock" --nsm "name=x,hold=maybe" 2>&1) && rc=0 || rc=$?
[ "$rc" = 2 ] && [[ $msg == *"hold=on|off"* ]] && [ "$(printf '%s\n' "$msg" | wc -l)" = 1 ] ||
	tb_fail "hold=maybe: want exit 2 and one line naming hold=on|off, got $rc: $msg"
[ ! -e "$D/never.sock" ] || tb_fail "a refused command line left $D/never.sock"

tb_bg remote "$D/sink.log" "$FLOOD" sink 5400 >/dev/null
tb_wait_listen remote 5400 || tb_fail "sink did not start"

# vm3's first connection, on tcp; then vm3 is attached to tcp2 by nkrun
TB_VM=vm3 tb_guest_bg "$D/v3a.log" "$FLOOD" tiny 10.77.0.2 5400 8
pid_v3a=$TB_LAST_PID
TB_VM=vm1 tb_guest_bg "$D/vm1.log" "$FLOOD" tiny 10.77.0.2 5400 8
pid_v1=$TB_LAST_PID
TB_VM=vm2 tb_guest_bg "$D/vm2.log" "$FLOOD" tiny 10.77.0.2 5400 8
pid_v2=$TB_LAST_PID
tb_wait_for 5 sh -c "[ \$('$TB_BUILD/bin/nkctl' --ctl '$NK_CTL' list conns | grep -c established) -ge 3 ]" ||
	tb_fail "three VMs did not connect: $(tb_nkctl list conns | tr '\n' '|')"
tb_bg root "$D/v3b.log" "$TB_BUILD/bin/nkrun" --vm vm3 --ctl "$NK_CTL" --netns "$(tb_ns guest)" --nsm tcp2 \
	-- "$FLOOD" tiny 10.77.0.2 5400 4 >/dev/null
pid_v3b=$TB_LAST_PID
tb_wait_for 5 sh -c "'$TB_BUILD/bin/nkctl' --ctl '$NK_CTL' list conns | grep -q 'vm3 .* tcp2 .*established'" ||
	tb_fail "vm3's new connection is not on tcp2: $(tb_nkctl list conns | tr '\n' '|')"
# tcp2 started on that first attach
nsm_cmdline() { # NAME: the NSM process's argv, spaces between
	local pid
	pid=$(tb_nkctl --json list nsms | python3 -c '
import json, sys
print(next((n["pid"] for n in json.load(sys.stdin)
            if n["name"] == sys.argv[1] and n["state"] == "up"), -1))' "$1")
	[ "$pid" -gt 0 ] && tr '\0' ' ' <"/proc/$pid/cmdline"
}
c2=$(nsm_cmdline tcp2) c1=$(nsm_cmdline tcp)
[[ $c2 == *"--spin-us 0 "* ]] || tb_fail "spin=0 did not reach NSM tcp2: $c2"
[[ $c1 != *"--spin-us"* ]] || tb_fail "NSM tcp got a --spin-us it was not given: $c1"
[[ "$c2 " == *" --spin-hold "* ]] || tb_fail "hold=on did not reach NSM tcp2: $c2"
[[ "$c1 " != *" --spin-hold "* ]] || tb_fail "NSM tcp got --spin-hold it was not given: $c1"

conns=$(tb_nkctl --json list conns)
srcs=$(ip netns exec "$(tb_ns nsm)" ss -tnH state established '( dport = :5400 )' | awk '{print $3}' | sed 's/:[0-9]*$//' | sort | tr '\n' ' ')
echo "sources seen in the NSM namespace: $srcs"
python3 - "$conns" <<'PY' || tb_fail "connection table is wrong"
import json, sys
c = [x for x in json.loads(sys.argv[1]) if x["state"] == "established"]
by = {}
for x in c:
    by.setdefault(x["vm"], []).append((x["nsm"], x["local"].split(":")[0]))
print("connections:", by)
ok = True
for vm, ip in (("vm1", "10.77.0.11"), ("vm2", "10.77.0.12")):
    ok &= by.get(vm) == [("tcp", ip)]
v3 = sorted(by.get("vm3", []))
ok &= v3 == [("tcp", "10.77.0.13"), ("tcp2", "10.77.0.13")]
sys.exit(0 if ok else 1)
PY
for a in 10.77.0.11 10.77.0.12 10.77.0.13; do
	[[ " $srcs " == *" $a "* ]] || tb_fail "no connection from $a in the NSM namespace"
done
wait "$pid_v1" "$pid_v2" "$pid_v3a" "$pid_v3b"
for f in vm1 vm2 v3a v3b; do
	grep -q '^ops [1-9]' "$D/$f.log" || tb_fail "guest $f did not send: $(cat "$D/$f.log")"
done
echo "PASS"
