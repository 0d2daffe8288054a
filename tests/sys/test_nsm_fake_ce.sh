#!/usr/bin/env bash
# test_nsm_fake_ce.sh - run nk-nsm against the fake CoreEngine harness
# (tests/prog/nsm_fake_ce.c): TCP with every available cc, MPTCP, the
# VM-address source binding, and both exits (control socket EOF, SIGTERM).
# Exit 0 pass, 1 fail, 77 skip. Uses $BUILD (default: build).
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
NSM=$BUILD/bin/nk-nsm
CE=$BUILD/tests/prog/nsm_fake_ce
for f in "$NSM" "$CE"; do
	[ -x "$f" ] || { echo "FAIL: $f not built (make $NSM $CE)"; exit 1; }
done
[ -w /dev/shm ] || { echo "SKIP: /dev/shm not writable"; exit 77; }

avail=$(cat /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null)
rc=0
ran=0
run() {
	echo "== nsm_fake_ce $*"
	ran=$((ran + 1))
	if ! timeout 120 "$CE" --nsm "$NSM" "$@"; then
		echo "FAIL: nsm_fake_ce $*"
		rc=1
	fi
}
for cc in cubic bbr reno; do
	case " $avail " in
	*" $cc "*) run --cc "$cc" ;;
	*) echo "SKIP: congestion control $cc not available" ;;
	esac
done
run --vm-ip 127.0.0.1 --sigterm
if [ "$(cat /proc/sys/net/mptcp/enabled 2>/dev/null)" = 1 ]; then
	run --stack mptcp --cc cubic
else
	echo "SKIP: MPTCP disabled (net.mptcp.enabled)"
fi

# Command-line validation: one-line errors, non-zero exit.
for bad in "--name x" "--ctl /nonexistent" "--ctl /x --name x --cc vegas" \
	   "--ctl /x --name x --stack dpdk" "--ctl /x --name x --spin-us -3"; do
	# shellcheck disable=SC2086
	out=$("$NSM" $bad 2>&1); st=$?
	if [ $st -eq 0 ] || [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ]; then
		echo "FAIL: nk-nsm $bad: exit $st, output: $out"; rc=1
	else
		echo "PASS: nk-nsm $bad -> $out"
	fi
done
out=$("$NSM" --ctl /nonexistent/ce.sock --name x 2>&1); st=$?
if [ $st -eq 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then
	echo "PASS: unreachable CE -> $out"
else
	echo "FAIL: unreachable CE: exit $st, output: $out"; rc=1
fi

[ $ran -gt 0 ] || exit 77
exit $rc
