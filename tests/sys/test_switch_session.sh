#!/usr/bin/env bash
# Live switching of an existing connection between two NetKernel hosts:
# a guest on host A streams 2 GB to a guest on host B (both through
# NetKernel, sessions on: --nk-peers); meanwhile the operator switches A's VM
# between two NSMs (cubic and reno) up to 20 times, as long as the transfer
# runs (at least 10). 2 GB last about 8 s here, so the 20 switches (2-3 s)
# end well before the connection does: with 600 MB an ASan run once made
# its 20th switch after the connection had closed (moved 19 of 20). The
# receiver verifies every byte, the sender gets the receiver's byte count
# and checksum back over the last leg, one process ran on each side
# throughout, and `nkctl` counts every switch made and the connection moved
# each time.
# timeout: 300
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3
BULK=$TB_BUILD/tests/prog/nk_bulk
[ -x "$BULK" ] || { echo "FAIL: $BULK is not built" >&2; exit 1; }
for b in bin/nk-coreengine bin/nk-nsm bin/nkrun bin/nkctl lib/libnkguest.so; do
	[ -e "$TB_BUILD/$b" ] || tb_fail "$TB_BUILD/$b is not built (run make)"
done
ID="ss$(($$ % 100000))"
tb_init "$ID"
D=$TB_DIR
for h in ga ha gb hb; do tb_add_host "$h"; done
tb_link ha hb 10.79.0.1/24 10.79.0.2/24 "${NK_RATE:-2gbit}"
tb_add_addr ha 10.79.0.11/24 "$(tb_dev ha hb)"
tb_add_addr hb 10.79.0.12/24 "$(tb_dev hb ha)"
tb_track_file "/dev/shm/nk-$ID-*"

ce() { # HOST VMNAME VMIP NSMSPEC...
	local host=$1 vm=$2 ip=$3 first=${4#name=}
	first=${first%%,*}
	shift 3
	local args=()
	for n in "$@"; do args+=(--nsm "$n,netns=$(tb_ns "$host")"); done
	tb_bg root "$D/ce-$host.log" "$TB_BUILD/bin/nk-coreengine" --ctl "$D/$host.sock" \
		--instance "$ID$host" --nk-peers 10.79.0.0/24 "${args[@]}" \
		--vm "name=$vm,ip=$ip,nsm=$first" >/dev/null
	tb_track_file "/dev/shm/nk-$ID$host-*"
}
ce ha va 10.79.0.11 name=tcp,stack=kernel,cc=cubic name=tcp2,stack=kernel,cc=reno
ce hb vb 10.79.0.12 name=tcp,stack=kernel,cc=cubic
tb_wait_for 5 test -S "$D/ha.sock" || tb_fail "CoreEngine A did not start"
tb_wait_for 5 test -S "$D/hb.sock" || tb_fail "CoreEngine B did not start"
nkctl_a() { "$TB_BUILD/bin/nkctl" --ctl "$D/ha.sock" "$@"; }
nkctl_a start tcp2

echo "== guest B listens, guest A streams 2 GB to it"
tb_bg root "$D/recv.log" "$TB_BUILD/bin/nkrun" --vm vb --ctl "$D/hb.sock" --netns "$(tb_ns gb)" -- \
	"$BULK" recv 7800 >/dev/null
prcv=$TB_LAST_PID
tb_wait_listen hb 7800 || tb_fail "guest B's listener did not appear"
tb_bg root "$D/send.log" "$TB_BUILD/bin/nkrun" --vm va --ctl "$D/ha.sock" --netns "$(tb_ns ga)" -- \
	"$BULK" send 10.79.0.12 7800 2000000000 21 >/dev/null
psnd=$TB_LAST_PID
sleep 0.3

echo "== 20 switches between NSM tcp (cubic) and tcp2 (reno) during the transfer"
# The transfer may end before the 20th switch (slow builds such as ASan
# switch more slowly): count the switches made while it ran.
nsw=0
for i in $(seq 1 20); do
	to=tcp2
	[ $((i % 2)) = 0 ] && to=tcp
	nkctl_a switch va "$to" >/dev/null || tb_fail "switch $i to $to failed"
	nsw=$i
	sleep ${NK_SWITCH_EVERY:-0.1}
	kill -0 "$psnd" 2>/dev/null || break
done
vms=$(nkctl_a --json list vms)
echo "   $vms"
for p in "$psnd" "$prcv"; do
	rc=0
	tb_wait_pid "$p" 120 || rc=$?
	[ $rc -eq 0 ] || { cat "$D/send.log" "$D/recv.log"; tail -20 "$D/ce-ha.log"; tb_fail "a transfer process exited with status $rc"; }
done
cat "$D/send.log" "$D/recv.log" | sed 's/^/   /'
grep -q 'stream ok' "$D/recv.log" || tb_fail "the receiver did not verify the stream"
grep -q 'peer ok' "$D/send.log" || tb_fail "the sender did not get the receiver's count back"
python3 - "$vms" "$nsw" <<'PY' || tb_fail "the connection was not moved on every switch (or fewer than 10 switches during the transfer)"
import json, sys
vm, nsw = json.loads(sys.argv[1])[0], int(sys.argv[2])
print("   switches made %d, counted %d, connections moved %d" % (nsw, vm["switches"], vm["migrations"]))
sys.exit(0 if nsw >= 10 and vm["switches"] == nsw and vm["migrations"] == nsw else 1)
PY
echo PASS
