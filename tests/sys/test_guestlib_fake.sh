#!/usr/bin/env bash
# test_guestlib_fake.sh - GuestLib against a fake CoreEngine (no CE, no NSM).
#
# Runs build/tests/prog/gl_fake_ce, which serves NQEs itself and runs
# gl_client under LD_PRELOAD=libnkguest.so (TCP path, poll/epoll/select,
# accept, dup, failure modes without a CoreEngine).
# Exit: 0 pass, 1 fail, 77 skip (binaries not built).
# timeout: 300
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

CE=$BUILD/tests/prog/gl_fake_ce
CLIENT=$BUILD/tests/prog/gl_client
LIB=$BUILD/lib/libnkguest.so
for f in "$CE" "$CLIENT" "$LIB"; do
	if [ ! -e "$f" ]; then
		echo "skip: $f not built (make $CE $CLIENT $LIB)"
		exit 77
	fi
done
if [ ! -d /dev/shm ] || [ ! -w /dev/shm ]; then
	echo "skip: /dev/shm is not writable"
	exit 77
fi

# Under make test-asan, run.sh puts libasan in NK_PRELOAD_EXTRA; an
# ASan-built libnkguest.so needs it first in LD_PRELOAD.
if [ "${NK_ASAN:-0}" = 1 ] && [ -z "${NK_PRELOAD_EXTRA:-}" ]; then
	NK_PRELOAD_EXTRA=$(${CC:-gcc} -print-file-name=libasan.so)
fi
export NK_PRELOAD_EXTRA=${NK_PRELOAD_EXTRA:-}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

if timeout 240 "$CE" "$CLIENT" "$LIB"; then
	exit 0
fi
echo "FAIL: gl_fake_ce"
exit 1
