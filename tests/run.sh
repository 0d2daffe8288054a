#!/usr/bin/env bash
# tests/run.sh - the NetKernel-C test suite runner (`make test`, `make test-asan`).
#
#   tests/run.sh [PATTERN]
#
# Runs every unit binary $BUILD/tests/test_* and every system test script
# tests/sys/test_*.sh whose name contains PATTERN (all of them without one).
# Each test exits 0 (pass), 1 (fail) or 77 (skip; its last output line is the
# reason) and runs under a timeout: 120 s for unit tests, 600 s for system
# tests, or N seconds from a `# timeout: N` line in the script.
#
# Environment:
#   BUILD      build directory (default: build)
#   NK_ASAN=1  the binaries are built with ASan/UBSan (make test-asan): unit
#              tests run with leak detection and abort on error; system tests
#              get libasan in NK_PRELOAD_EXTRA, which the scripts (through
#              nkrun) put in front of LD_PRELOAD.
#   NK_TEST_TAIL  lines of a failed test's output to show (default 40)
#
# Prints one line per test, then `N passed, N failed, N skipped`; exits 1 if
# any test failed (or nothing matched).
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
export BUILD
PATTERN=${1:-}
TAIL=${NK_TEST_TAIL:-40}
UNIT_TIMEOUT=120
SYS_TIMEOUT=600

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/nk-tests.XXXXXX") || exit 1
# Keep the logs of failed tests; remove the directory when all passed.
KEEP_LOGS=0
cleanup() {
	if [ "$KEEP_LOGS" = 0 ]; then rm -rf "$LOGDIR"; fi
}
trap cleanup EXIT
CURRENT=
interrupted() {
	echo "interrupted"
	if [ -n "$CURRENT" ]; then
		kill -TERM "$CURRENT" 2>/dev/null
		wait "$CURRENT" 2>/dev/null
	fi
	exit 130
}
trap interrupted INT TERM

passed=0 failed=0 skipped=0 ran=0
failed_names=()

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

matches() {
	[ -z "$PATTERN" ] && return 0
	[[ $1 == *$PATTERN* ]]
}

# The netns list before a system test, to notice leaked namespaces.
nk_netns() { ip netns list 2>/dev/null | awk '$1 ~ /^nk-/ { print $1 }' | sort; }

# run_one NAME TIMEOUT CMD...
run_one() {
	local name=$1 limit=$2
	shift 2
	local log=$LOGDIR/$name.log t0 t1 rc
	ran=$((ran + 1))
	t0=$(now)
	# timeout signals the test's whole process group (TERM, then KILL 15 s later),
	# so system tests get to run their cleanup trap.
	# It runs in the background so that an interrupt of the runner reaches it.
	timeout --kill-after=15 "$limit" "$@" </dev/null >"$log" 2>&1 &
	CURRENT=$!
	wait "$CURRENT"
	rc=$?
	CURRENT=
	t1=$(now)
	local secs
	secs=$(elapsed "$t0" "$t1")
	case $rc in
	0)
		passed=$((passed + 1))
		echo "PASS $name (${secs}s)"
		;;
	77)
		skipped=$((skipped + 1))
		local reason
		reason=$(awk 'NF { last = $0 } END { print last }' "$log" | sed -E 's/^[[:space:]]*(SKIP:?[[:space:]]*)?//')
		echo "SKIP $name: ${reason:-no reason given}"
		;;
	*)
		failed=$((failed + 1))
		failed_names+=("$name")
		KEEP_LOGS=1
		local why="exit $rc"
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			why="timed out after ${limit}s"
		elif [ $rc -gt 128 ]; then
			why="killed by signal $((rc - 128))"
		fi
		echo "FAIL $name ($why, ${secs}s)"
		echo "---- last $TAIL lines of $name output ($log) ----"
		tail -n "$TAIL" "$log" | sed 's/^/    /'
		echo "----"
		;;
	esac
}

# --- sanitizer environment -------------------------------------------------
UNIT_ENV=()
SYS_ENV=()
if [ "${NK_ASAN:-0}" = 1 ]; then
	UNIT_ENV=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
	asan_lib=$(gcc -print-file-name=libasan.so 2>/dev/null)
	case $asan_lib in
	/*) ;;
	*)
		echo "NK_ASAN=1 but gcc does not know libasan.so (got '$asan_lib')" >&2
		exit 1
		;;
	esac
	SYS_ENV=(NK_PRELOAD_EXTRA="$asan_lib" ASAN_OPTIONS=detect_leaks=0
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
	echo "sanitizer run: BUILD=$BUILD, system tests preload $asan_lib"
fi

# --- unit tests -------------------------------------------------------------
if [ -d "$BUILD/tests" ]; then
	for bin in "$BUILD"/tests/test_*; do
		[ -f "$bin" ] && [ -x "$bin" ] || continue
		name=$(basename "$bin")
		matches "$name" || continue
		run_one "$name" "$UNIT_TIMEOUT" env "${UNIT_ENV[@]}" "$bin"
	done
else
	echo "warning: $BUILD/tests does not exist (run make first); no unit tests" >&2
fi

# --- system tests -------------------------------------------------------------
for script in "$ROOT"/tests/sys/test_*.sh; do
	[ -f "$script" ] || continue
	name=$(basename "$script" .sh)
	matches "$name" || continue
	limit=$(sed -nE 's/^#[[:space:]]*timeout:[[:space:]]*([0-9]+)[[:space:]]*$/\1/p' "$script" | head -n 1)
	limit=${limit:-$SYS_TIMEOUT}
	before=$(nk_netns)
	run_one "$name" "$limit" env "${SYS_ENV[@]}" bash "$script"
	after=$(nk_netns)
	leaked=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
	if [ -n "${leaked// /}" ]; then
		echo "warning: $name left network namespaces behind: $leaked" >&2
	fi
done

if [ $ran -eq 0 ]; then
	echo "no tests matched${PATTERN:+ '$PATTERN'}"
fi
if [ $failed -gt 0 ]; then
	echo "failed: ${failed_names[*]} (logs in $LOGDIR)"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ] && [ $ran -gt 0 ]
