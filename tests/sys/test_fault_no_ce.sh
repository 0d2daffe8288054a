#!/usr/bin/env bash
# No CoreEngine: socket() in a guest fails at once with a clear errno and one
# line on stderr naming the control socket it tried; nothing hangs.
#   case 1: the control socket path does not exist  -> ENOENT or ECONNREFUSED
#   case 2: a stale socket file, nobody listening   -> ECONNREFUSED
#   case 3: a real program (curl) through nkrun fails quickly and names the path
#   case 4: NK_GUEST_SPINS that is not a number 0..100000 -> EINVAL, one line
#           naming it; a valid value goes on to the control socket (ENOENT)
# timeout: 120
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3 curl

PROBE=$TB_BUILD/tests/prog/nk_errprobe
GUESTLIB=$TB_BUILD/lib/libnkguest.so
for f in "$PROBE" "$GUESTLIB" "$TB_BUILD/bin/nkrun"; do
	[ -e "$f" ] || { echo "FAIL: $f is not built" >&2; exit 1; }
done
tb_init "nc$(($$ % 100000))"
tb_add_host guest
D=$TB_DIR
PRELOAD=$GUESTLIB
[ -n "${NK_PRELOAD_EXTRA:-}" ] && PRELOAD="$NK_PRELOAD_EXTRA:$GUESTLIB"

# probe CASE CTLPATH ERRNOS...: socket() under GuestLib with NK_CTL=CTLPATH
probe() {
	local name=$1 ctl=$2 rc=0
	shift 2
	local t0 t1
	t0=$(date +%s%3N)
	TB_EXEC_TIMEOUT=10 tb_exec guest env LD_PRELOAD="$PRELOAD" NK_VM=vm1 NK_CTL="$ctl" \
		"$PROBE" -t 5 socket >"$D/$name.out" 2>"$D/$name.err" || rc=$?
	t1=$(date +%s%3N)
	echo "-- $name (NK_CTL=$ctl): exit $rc after $((t1 - t0)) ms"
	sed 's/^/   stdout: /' "$D/$name.out"
	sed 's/^/   stderr: /' "$D/$name.err"
	[ $rc -ne 124 ] && [ $rc -ne 137 ] || tb_fail "$name: socket() hung"
	[ $rc -eq 0 ] || tb_fail "$name: probe exited with status $rc"
	local err
	err=$(sed -nE 's/^socket: errno=([A-Z0-9]+).*/\1/p' "$D/$name.out")
	[ -n "$err" ] || tb_fail "$name: socket() did not fail (an AF_INET socket escaped to the guest kernel?)"
	local ok=0 e
	for e in "$@"; do [ "$err" = "$e" ] && ok=1; done
	[ $ok = 1 ] || tb_fail "$name: errno $err, want one of: $*"
	local lines
	lines=$(grep -c . "$D/$name.err" || true)
	[ "$lines" -eq 1 ] || tb_fail "$name: $lines lines on stderr, want exactly 1"
	grep -qF "$ctl" "$D/$name.err" || tb_fail "$name: the stderr line does not name $ctl"
}

probe missing "$D/no-such-ce.sock" ENOENT ECONNREFUSED

python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1])' "$D/stale.sock"
[ -S "$D/stale.sock" ] || tb_fail "could not create a stale socket file"
probe stale "$D/stale.sock" ECONNREFUSED

# spins CASE VALUE: socket() with NK_GUEST_SPINS=VALUE and no CoreEngine;
# prints the errno and leaves stderr in $D/CASE.err
spins() {
	local rc=0
	TB_EXEC_TIMEOUT=10 tb_exec guest env LD_PRELOAD="$PRELOAD" NK_VM=vm1 NK_CTL="$D/no-such-ce.sock" \
		NK_GUEST_SPINS="$2" "$PROBE" -t 5 socket >"$D/$1.out" 2>"$D/$1.err" || rc=$?
	[ $rc -eq 0 ] || tb_fail "$1: probe exited with status $rc"
	sed -nE 's/^socket: errno=([A-Z0-9]+).*/\1/p' "$D/$1.out"
}
for v in abc -1 100001 12x " 5"; do
	err=$(spins "spins-$v" "$v")
	echo "-- NK_GUEST_SPINS='$v': errno $err; stderr: $(cat "$D/spins-$v.err")"
	[ "$err" = EINVAL ] || tb_fail "NK_GUEST_SPINS='$v': errno '$err', want EINVAL"
	[ "$(grep -c . "$D/spins-$v.err")" -eq 1 ] || tb_fail "NK_GUEST_SPINS='$v': want one stderr line"
	grep -qF "NK_GUEST_SPINS '$v'" "$D/spins-$v.err" || tb_fail "NK_GUEST_SPINS='$v': the line does not name it"
done
for v in 0 32 100000; do
	err=$(spins "spins-$v" "$v")
	echo "-- NK_GUEST_SPINS=$v: errno $err"
	[ "$err" = ENOENT ] || [ "$err" = ECONNREFUSED ] || tb_fail "NK_GUEST_SPINS=$v: errno '$err', want ENOENT (accepted, then no CoreEngine)"
done

echo "-- curl through nkrun, no CoreEngine"
rc=0
t0=$(date +%s%3N)
# curl cannot run with the ASan runtime preloaded (see tb_plain_guest).
plain=()
[ "${NK_ASAN:-0}" = 1 ] && plain=(env NK_PRELOAD_EXTRA= "$TB_BUILD/bin/nkrun" --lib "$TB_ROOT/build/lib/libnkguest.so")
[ ${#plain[@]} -gt 0 ] || plain=("$TB_BUILD/bin/nkrun")
timeout 20 "${plain[@]}" --vm vm1 --ctl "$D/no-such-ce.sock" --netns "$(tb_ns guest)" -- \
	curl -sS --max-time 10 -o /dev/null http://10.77.0.2:8080/ >"$D/curl.out" 2>&1 || rc=$?
t1=$(date +%s%3N)
sed 's/^/   /' "$D/curl.out"
echo "   exit $rc after $((t1 - t0)) ms"
[ $rc -ne 124 ] || tb_fail "curl under nkrun hung without a CoreEngine"
[ $rc -ne 0 ] || tb_fail "curl succeeded without a CoreEngine"
grep -qF "$D/no-such-ce.sock" "$D/curl.out" || tb_fail "nothing names the control socket $D/no-such-ce.sock"
echo "PASS"
