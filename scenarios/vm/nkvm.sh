#!/usr/bin/env bash
# scenarios/vm/nkvm.sh - run a command inside a QEMU VM whose only device is
# the NK device (VM mode of NetKernel).
#
#   nkvm.sh --region FILE [--ctl SOCK --name VM] [--log FILE] [--mem MB]
#           [--smp N] [--accel auto|kvm|tcg] [--timeout S]
#           [--file HOSTPATH:GUESTPATH]... -- CMD [ARGS...]
#   nkvm.sh --accel-probe          print the accelerator that would be used
#
# FILE is the VM's region, created by a CoreEngine started with
# `--vm name=VM,...,mode=vm` (/dev/shm/nk-<instance>-vm-<VM>). The VM gets:
#   -nic none -nodefaults: no network device at all (`ls /sys/class/net`
#       inside shows only lo);
#   the region as ivshmem-plain (memory-backend-file share=on): GuestLib finds
#       it on the PCI bus (1af4:1110) and maps its BAR 2;
#   the serial console written to LOG (default: a file next to the run dir);
#   the image of scenarios/vm/mkimage.sh (rebuilt first if an input changed)
#       plus a small cpio with /nk/run/cmd (the command; a single argument is
#       taken as a shell script) and the --file copies.
# With --ctl and --name the QEMU pid is registered with the CoreEngine
# (`nkctl vm-pid VM PID`): however QEMU ends, the CoreEngine then drops the
# VM's channels and resets its connections.
#
# The guest's /init runs the command with GuestLib preloaded, prints
# "NK-EXIT <status>" and powers off; nkvm.sh prints the command's output and
# exits with its status (125: the VM did not report one, e.g. it crashed or
# hit --timeout, default 600 s). SIGTERM/SIGINT stop the VM.
#
# Accelerator: KVM when /dev/kvm works, TCG otherwise. "Works" is decided once
# per host boot by a self-test (a KVM boot of the image that must print its
# exit marker within NK_VM_KVM_PROBE_S, default 15 s; nested KVM can hang);
# the verdict is cached in /run/netkernel/vm-accel with the boot id.
# Environment: BUILD, NK_VM_ACCEL (overrides --accel auto), NK_VM_KEEP=1.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
IMG=$BUILD/vm
CACHE=/run/netkernel/vm-accel
APPEND="console=ttyS0 panic=-1 quiet cryptomgr.notests mitigations=off edd=off tsc=reliable no_timer_check i8042.noaux i8042.nokbd i8042.noprobe"

REGION='' CTL='' NAME='' LOG='' MEM=512 SMP=1 ACCEL=${NK_VM_ACCEL:-auto} TIMEOUT=600
FILES=()
PROBE=0

die() { echo "nkvm: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
	case $1 in
	--region) REGION=${2:-}; shift 2 ;;
	--ctl) CTL=${2:-}; shift 2 ;;
	--name) NAME=${2:-}; shift 2 ;;
	--log) LOG=${2:-}; shift 2 ;;
	--mem) MEM=${2:-}; shift 2 ;;
	--smp) SMP=${2:-}; shift 2 ;;
	--accel) ACCEL=${2:-}; shift 2 ;;
	--timeout) TIMEOUT=${2:-}; shift 2 ;;
	--file) FILES+=("${2:-}"); shift 2 ;;
	--accel-probe) PROBE=1; shift ;;
	--) shift; break ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
done

"$ROOT/scenarios/vm/mkimage.sh" >/dev/null || die "cannot build the guest image (scenarios/vm/mkimage.sh)"
KERNEL=$IMG/vmlinux
[ -f "$KERNEL" ] || KERNEL=$IMG/vmlinuz

RUN=$(mktemp -d "${TMPDIR:-/tmp}/nkvm.XXXXXX") || exit 1
QPID=
cleanup() {
	if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
		kill -TERM "$QPID" 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$QPID" 2>/dev/null
		wait "$QPID" 2>/dev/null
	fi
	[ "${NK_VM_KEEP:-0}" = 1 ] || rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# mkcpio DIR OUT: a newc archive of DIR
mkcpio() { (cd "$1" && find . -print0 | cpio --null -o -H newc --quiet) >"$2"; }

# boot ACCEL INITRD LOG [DEVICE ARGS...]: start QEMU in the background (QPID)
boot() {
	local acc=$1 initrd=$2 log=$3 cpu=qemu64
	shift 3
	[ "$acc" = kvm ] && cpu=host
	# QEMU dies with this script even if the script is SIGKILLed (no
	# orphaned VM keeps a core busy): parent-death signal via setpriv.
	local pds=()
	command -v setpriv >/dev/null 2>&1 && pds=(setpriv --pdeathsig KILL)
	"${pds[@]+"${pds[@]}"}" qemu-system-x86_64 -machine pc -accel "$acc" -cpu "$cpu" -m "$MEM" -smp "$SMP" \
		-nodefaults -nographic -display none -monitor none -no-reboot -nic none \
		-serial "file:$log" -kernel "$KERNEL" -initrd "$initrd" -append "$APPEND" \
		"$@" </dev/null >"$log.qemu" 2>&1 &
	QPID=$!
}

# The accelerator, decided once per host boot.
accel() {
	local bootid verdict=tcg d
	bootid=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
	mkdir -p "$(dirname "$CACHE")"
	exec 9>>"$CACHE.lock"
	flock 9
	if [ -f "$CACHE" ] && [ "$(awk '{ print $1 }' "$CACHE")" = "$bootid" ]; then
		awk '{ print $2 }' "$CACHE"
		flock -u 9
		return
	fi
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		d=$RUN/probe
		mkdir -p "$d/nk/run"
		echo 'echo NK-KVM-OK' >"$d/nk/run/cmd"
		mkcpio "$d" "$RUN/probe.cpio"
		cat "$IMG/initramfs.cpio" "$RUN/probe.cpio" >"$RUN/probe-initrd.cpio"
		local t0 limit=${NK_VM_KVM_PROBE_S:-15}
		t0=$(date +%s)
		boot kvm "$RUN/probe-initrd.cpio" "$RUN/probe.log"
		while kill -0 "$QPID" 2>/dev/null && [ $(($(date +%s) - t0)) -lt "$limit" ]; do
			grep -q NK-KVM-OK "$RUN/probe.log" 2>/dev/null && break
			sleep 0.2
		done
		grep -q NK-KVM-OK "$RUN/probe.log" 2>/dev/null && verdict=kvm
		cleanup_probe
		echo "nkvm: KVM self-test: $([ $verdict = kvm ] && echo "booted in $(($(date +%s) - t0)) s" || echo "no boot within ${limit} s ($(tail -c 200 "$RUN/probe.log.qemu" 2>/dev/null | tr '\n' ' '))"): using $verdict" >&2
	else
		echo "nkvm: /dev/kvm is not usable: using tcg" >&2
	fi
	echo "$bootid $verdict" >"$CACHE"
	flock -u 9
	echo "$verdict"
}
cleanup_probe() {
	kill -KILL "$QPID" 2>/dev/null
	wait "$QPID" 2>/dev/null
	QPID=
}

case $ACCEL in
auto) ACCEL=$(accel) ;;
kvm | tcg) ;;
*) die "--accel wants auto, kvm or tcg" ;;
esac
if [ $PROBE = 1 ]; then
	echo "$ACCEL"
	exit 0
fi
[ -n "$REGION" ] || die "--region FILE is required (the VM's region, from a CoreEngine with --vm ...,mode=vm)"
[ -f "$REGION" ] || die "region $REGION does not exist (is the CoreEngine running with --vm ...,mode=vm?)"
[ $# -gt 0 ] || die "no command given after --"
SIZE=$(stat -c %s "$REGION")
(( SIZE > 0 && (SIZE & (SIZE - 1)) == 0 )) || die "region $REGION is $SIZE bytes, not a power of two (ivshmem needs one: start the VM with mode=vm)"
[ -n "$LOG" ] || LOG=$RUN/console.log

# The per-run archive: the command and the extra files.
mkdir -p "$RUN/run/nk/run"
if [ $# -eq 1 ]; then
	printf '%s\n' "$1" >"$RUN/run/nk/run/cmd"
else
	for a in "$@"; do printf "'%s' " "${a//\'/\'\\\'\'}"; done >"$RUN/run/nk/run/cmd"
	echo >>"$RUN/run/nk/run/cmd"
fi
for f in "${FILES[@]+"${FILES[@]}"}"; do
	src=${f%%:*} dst=${f#*:}
	[ -f "$src" ] && [ -n "$dst" ] && [ "$dst" != "$f" ] || die "--file wants HOSTPATH:GUESTPATH, got '$f'"
	mkdir -p "$RUN/run$(dirname "$dst")"
	cp "$src" "$RUN/run$dst"
done
mkcpio "$RUN/run" "$RUN/run.cpio"
cat "$IMG/initramfs.cpio" "$RUN/run.cpio" >"$RUN/initrd.cpio"

: >"$LOG"
T0=$(date +%s.%N)
boot "$ACCEL" "$RUN/initrd.cpio" "$LOG" \
	-object "memory-backend-file,id=nkmem,share=on,mem-path=$REGION,size=$SIZE" \
	-device ivshmem-plain,memdev=nkmem
echo "nkvm: VM ${NAME:-?} is QEMU pid $QPID ($ACCEL, ${MEM} MiB, console $LOG)" >&2
if [ -n "$CTL" ] && [ -n "$NAME" ]; then
	out=$("$BUILD/bin/nkctl" --ctl "$CTL" vm-pid "$NAME" "$QPID" 2>&1) ||
		echo "nkvm: warning: could not register the VM with the CoreEngine: $out" >&2
fi
booted=0
while kill -0 "$QPID" 2>/dev/null; do
	if [ $booted = 0 ] && grep -q 'NK-BOOT' "$LOG" 2>/dev/null; then
		booted=1
		echo "nkvm: VM ${NAME:-?} booted in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2
	fi
	if awk -v a="$T0" -v b="$(date +%s.%N)" -v t="$TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
		echo "nkvm: VM ${NAME:-?} still running after $TIMEOUT s: stopping it" >&2
		break
	fi
	sleep 0.1
done
if kill -0 "$QPID" 2>/dev/null; then
	cleanup_probe
fi
wait "$QPID" 2>/dev/null
QPID=
# The command's output: what the console shows between the markers.
tr -d '\r' <"$LOG" | awk '/NK-BOOT/ { on = 1; next } /^NK-EXIT/ { on = 0 } on && !/^\[ *[0-9]+\.[0-9]+\]/'
rc=$(tr -d '\r' <"$LOG" | awk '/^NK-EXIT/ { print $2 }' | tail -n 1)
if [ -z "$rc" ]; then
	echo "nkvm: VM ${NAME:-?} did not report an exit status (console: $LOG; qemu: $(tail -c 300 "$LOG.qemu" 2>/dev/null | tr '\n' ' '))" >&2
	exit 125
fi
echo "nkvm: VM ${NAME:-?} exited with status $rc after $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2
exit "$rc"
