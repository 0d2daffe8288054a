#!/usr/bin/env bash
# POSIX socket semantics of GuestLib (tests/prog/nk_posix): I/O, events,
# errors, descriptors, signals, UDP, AF_INET6, loopback and exec, run as a
# guest; the same program first runs natively in the remote namespace, so a
# check that Linux itself does not pass is a bug of the test, not of GuestLib.
# Then loopback isolation: a listener a guest bound to 127.0.0.1 is reached
# by another process of the same VM through 127.0.0.1, but neither from the
# remote host nor from a second VM (vm2), through 127.0.0.1 or the address.
# Last, a connect whose SYNs are dropped fails ETIMEDOUT.
# timeout: 240
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3
P=$TB_BUILD/tests/prog/nk_posix
[ -x "$P" ] || { echo "FAIL: $P is not built" >&2; exit 1; }
H=$(dirname "$0")/../compat/helpers.py
tb_netkernel_up "px$(($$ % 100000))" --vm name=vm2,ip=10.77.0.12,nsm=tcp
D=$TB_DIR
tb_bg remote "$D/uecho.log" python3 "$H" udp-echo 10.77.0.2 5310 >/dev/null
udp_up() { [ -n "$(ip netns exec "$(tb_ns remote)" ss -Hlun "sport = :$1")" ]; }
tb_wait_for 10 udp_up 5310 || tb_fail "UDP echo server did not start"
NATIVE_GROUPS=${NK_POSIX_GROUPS:-io events errors desc sig udp inet6 loop opts}
echo "== natively in the remote namespace (reference; exec differs by design)"
TB_EXEC_TIMEOUT=90 tb_exec remote "$P" 10.77.0.2 10.77.0.2 5310 $NATIVE_GROUPS >"$D/native.out" 2>&1 || true
grep -v '^ok' "$D/native.out" || true
echo "== as a NetKernel guest"
rc=0
TB_GUEST_TIMEOUT=120 tb_guest "$P" 10.77.0.11 10.77.0.2 5310 ${NK_POSIX_GROUPS:-} | tee "$D/guest.out" || rc=$?
[ $rc -eq 0 ] || tb_fail "nk_posix as a guest: exit $rc ($(grep -c '^FAIL' "$D/guest.out") checks failed)"
# The asynchronous setsockopts (group opts) must not have overrun a down ring.
! grep -E 'down ring full|dropped NQE' "$D/ce.log" || tb_fail "the CoreEngine dropped NQEs (above)"

echo "== loopback isolation"
tb_guest_bg "$D/loop.log" "$P" loopserve 7700 15 >/dev/null
tb_wait_for 10 grep -q '^listening' "$D/loop.log" || tb_fail "loopserve did not start: $(cat "$D/loop.log")"
# python3 -c CODE ADDR: prints what a connection to ADDR:7700 reads
probe='import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 7700), timeout=3)
    b = s.recv(100)
    print("read %r" % b)
except Exception as e:
    print("error %s" % type(e).__name__)'
out=$(TB_GUEST_TIMEOUT=20 tb_guest python3 -c "$probe" 127.0.0.1)
echo "vm1 -> 127.0.0.1: $out"
[ "$out" = "read b'hello\n'" ] || tb_fail "the same VM does not reach its 127.0.0.1 listener: $out"
out=$(TB_EXEC_TIMEOUT=20 tb_exec remote python3 -c "$probe" 10.77.0.11)
echo "remote -> 10.77.0.11: $out"
[[ $out != *hello* ]] || tb_fail "the remote host reached the guest's 127.0.0.1 listener"
for a in 127.0.0.1 10.77.0.11; do
	out=$(TB_VM=vm2 TB_GUEST_TIMEOUT=20 tb_guest python3 -c "$probe" $a)
	echo "vm2 -> $a: $out"
	[[ $out != *hello* ]] || tb_fail "vm2 reached vm1's 127.0.0.1 listener through $a"
done

echo "== ETIMEDOUT: 10.78.99.1 is routed to the remote, which does not forward"
ip -n "$(tb_ns nsm)" route add 10.78.99.0/24 via 10.77.0.2
ip netns exec "$(tb_ns remote)" sysctl -qw net.ipv4.ip_forward=0
out=$(TB_GUEST_TIMEOUT=30 tb_guest python3 -c '
import errno, socket, time
s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
t = time.time()
try:
    s.connect(("10.78.99.1", 9))
    print("connected?")
except OSError as e:
    print("%s after %.1f s" % (errno.errorcode.get(e.errno, e.errno), time.time() - t))')
echo "connect: $out"
[[ $out == ETIMEDOUT* ]] || tb_fail "connect to a black hole: $out, want ETIMEDOUT"
echo PASS
