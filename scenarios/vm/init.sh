#!/bin/sh
# /init of the VM-mode guest image (scenarios/vm/mkimage.sh copies it).
#
# Mounts the basics, brings up lo (the only interface: the VM has no NIC),
# finds the NK device (ivshmem, PCI 1af4:1110), starts the channel agent
# (nk-vmagent: tells the CoreEngine when a guest process died), runs the
# command the launcher put into /nk/run/cmd with GuestLib preloaded, prints
# "NK-EXIT <status>" on the console and powers the VM off.
/bin/busybox --install -s /bin
export PATH=/usr/bin:/usr/sbin:/bin:/nk/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
ip link set lo up
exec </dev/console >/dev/console 2>&1
echo
echo "NK-BOOT up=$(cut -d' ' -f1 /proc/uptime)"
nkdev=
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor" 2>/dev/null)" = 0x1af4 ] && [ "$(cat "$d/device" 2>/dev/null)" = 0x1110 ] && nkdev=$d
done
if [ -n "$nkdev" ]; then
	# No driver binds the device: enable its memory decoding ourselves.
	echo 1 >"$nkdev/enable" 2>/dev/null
	/nk/bin/nk-vmagent ${NK_AGENT_VERBOSE:+--verbose} &
fi
[ -f /nk/run/env ] && . /nk/run/env
rc=0
if [ -f /nk/run/cmd ]; then
	cd /root
	LD_PRELOAD=/nk/lib/libnkguest.so NK_DEVICE=pci /bin/sh /nk/run/cmd
	rc=$?
fi
echo "NK-EXIT $rc"
sync
poweroff -f
