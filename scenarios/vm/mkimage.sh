#!/usr/bin/env bash
# scenarios/vm/mkimage.sh - the VM-mode guest image (`make vm-image`).
#
#   scenarios/vm/mkimage.sh [--force]
#
# Assembles, from what is installed on this host (nothing is downloaded):
#   $BUILD/vm/vmlinuz        Debian's linux-image-amd64 kernel (bzImage);
#                            $NK_VM_KERNEL overrides
#   $BUILD/vm/vmlinux        the same, decompressed on the host: an ELF with a
#                            PVH entry, which qemu -kernel boots directly
#   $BUILD/vm/initramfs.cpio busybox-static, /init (scenarios/vm/init.sh),
#                            GuestLib, nkrun, nk-vmagent, the test programs and
#                            the host's own iperf3, curl, nginx, sockperf with
#                            their shared libraries (ld.so + ldd closure)
# The image is rebuilt only when an input changed: $BUILD/vm/inputs holds the
# path, size and mtime of every input, and is compared first. The per-run
# command and files are a second, small cpio appended by the launcher
# (scenarios/vm/nkvm.sh): the kernel unpacks concatenated archives in order.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OUT=$BUILD/vm
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

KERNEL=${NK_VM_KERNEL:-}
if [ -z "$KERNEL" ]; then
	# the newest Debian kernel installed
	KERNEL=$(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$KERNEL" ] && [ -r "$KERNEL" ] || { echo "mkimage: no kernel (install linux-image-amd64 or set NK_VM_KERNEL)" >&2; exit 1; }
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' ||
	{ [ -x /bin/busybox ] && BUSYBOX=/bin/busybox; }
ldd "$BUSYBOX" >/dev/null 2>&1 && { echo "mkimage: $BUSYBOX is not static (install busybox-static)" >&2; exit 1; }
command -v cpio >/dev/null || { echo "mkimage: cpio is not installed" >&2; exit 1; }

# Guest applications: the host's binaries (missing ones are left out, with a note).
APPS=()
for a in iperf3 curl nginx sockperf; do
	p=$(PATH=$PATH:/usr/sbin:/sbin command -v "$a" || true)
	if [ -n "$p" ]; then APPS+=("$(readlink -f "$p")"); else echo "mkimage: note: $a is not installed; not in the image" >&2; fi
done
# Ours: GuestLib, launcher, agent, test programs.
NK_BINS=("$BUILD/bin/nkrun" "$BUILD/bin/nk-vmagent")
NK_LIB=$BUILD/lib/libnkguest.so
for f in "${NK_BINS[@]}" "$NK_LIB"; do
	[ -e "$f" ] || { echo "mkimage: $f is not built (run make)" >&2; exit 1; }
done
PROGS=()
for f in "$BUILD"/tests/prog/*; do
	[ -f "$f" ] && [ -x "$f" ] && PROGS+=("$f")
done

INPUTS=("$KERNEL" "$BUSYBOX" "$ROOT/scenarios/vm/init.sh" "$ROOT/scenarios/vm/mkimage.sh" "$NK_LIB"
	"${NK_BINS[@]}" "${PROGS[@]}" "${APPS[@]}")
mkdir -p "$OUT"
stamp() {
	local f
	for f in "$@"; do stat -L -c '%n %s %Y' "$f"; done
}
# One builder at a time (two VMs started together both ask for the image).
exec 8>"$OUT/.lock"
flock 8
NEW=$(stamp "${INPUTS[@]}")
if [ $FORCE = 0 ] && [ -f "$OUT/initramfs.cpio" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/inputs" ] &&
	[ "$NEW" = "$(cat "$OUT/inputs")" ]; then
	echo "mkimage: $OUT is up to date"
	exit 0
fi

t0=$(date +%s.%N)
STAGE=$(mktemp -d "$OUT/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,var/log/nginx,var/lib/nginx,nk/bin,nk/lib,nk/run,usr/bin,usr/sbin}
cp "$BUSYBOX" "$STAGE/bin/busybox"
ln -s busybox "$STAGE/bin/sh"
cp "$ROOT/scenarios/vm/init.sh" "$STAGE/init"
chmod 755 "$STAGE/init"
cp "${NK_BINS[@]}" "$STAGE/nk/bin/"
cp "$NK_LIB" "$STAGE/nk/lib/"
[ ${#PROGS[@]} -gt 0 ] && cp "${PROGS[@]}" "$STAGE/nk/bin/"
for a in "${APPS[@]}"; do
	cp "$a" "$STAGE/usr/bin/"
done
# Shared libraries: the ldd closure of everything dynamic, at the same paths.
libs=$(for f in "${APPS[@]}" "${NK_BINS[@]}" "$NK_LIB" "${PROGS[@]}"; do
	ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^[[:space:]]*\/.*ld-linux/ { print $1 }'
done | sort -u)
for l in $libs; do
	mkdir -p "$STAGE$(dirname "$l")"
	cp -L "$l" "$STAGE$l"
done
# The dynamic loader under its canonical names
for l in /lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2; do
	[ -e "$l" ] && { mkdir -p "$STAGE$(dirname "$l")"; cp -L "$l" "$STAGE$l"; }
done
cat >"$STAGE/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$STAGE/etc/group" <<'P'
root:x:0:
www-data:x:33:
nogroup:x:65534:
P
echo "hosts: files" >"$STAGE/etc/nsswitch.conf"
echo "127.0.0.1 localhost" >"$STAGE/etc/hosts"
(cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet) >"$OUT/initramfs.cpio.tmp"
mv "$OUT/initramfs.cpio.tmp" "$OUT/initramfs.cpio"
cp "$KERNEL" "$OUT/vmlinuz"
# The uncompressed ELF kernel boots through PVH (qemu -kernel vmlinux), which
# skips the real-mode setup and the in-guest decompression: under TCG the
# latter alone costs seconds. Debian's bzImage carries it xz/zstd/gzip
# compressed; any failure just leaves vmlinuz as the kernel to boot.
rm -f "$OUT/vmlinux"
python3 - "$KERNEL" "$OUT/vmlinux" <<'PY' || echo "mkimage: note: cannot extract vmlinux; booting the bzImage" >&2
import subprocess, sys
data = open(sys.argv[1], "rb").read()
for magic, cmd in ((b"\xfd7zXZ\x00", ["xz", "-dc", "--single-stream"]),
                   (b"\x28\xb5\x2f\xfd", ["zstd", "-dcq"]),
                   (b"\x1f\x8b\x08", ["gzip", "-dc"])):
    i = data.find(magic)
    if i < 0:
        continue
    p = subprocess.run(cmd, input=data[i:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if p.stdout[:4] == b"\x7fELF":
        open(sys.argv[2], "wb").write(p.stdout)
        sys.exit(0)
sys.exit(1)
PY
printf '%s\n' "$NEW" >"$OUT/inputs"
t1=$(date +%s.%N)
echo "mkimage: $OUT/initramfs.cpio ($(($(stat -c %s "$OUT/initramfs.cpio") / 1048576)) MiB, $(echo "$libs" | wc -w) libraries) + vmlinuz from $KERNEL in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
