/* SPDX-License-Identifier: MIT */
/*
 * nk_vmdev.h - find and map the NK device inside a VM (VM mode).
 *
 * In a QEMU VM the VM region is an ivshmem-plain PCI device (vendor 0x1af4,
 * device 0x1110); its BAR 2 is the region file. Linux exposes the BAR as
 * /sys/bus/pci/devices/<addr>/resource2, which root can mmap.
 */
#ifndef NK_VMDEV_H
#define NK_VMDEV_H

#include <stddef.h>

#include "nk_region.h"

/** Map the NK device named by spec: "pci" scans the PCI bus for the first
 *  ivshmem device holding a valid VM region; anything else is a path (a
 *  resource file, or a region file under /dev/shm for tests without QEMU).
 *  0 or -errno with a reason in err. The fd is closed (the mapping stays). */
int nk_vmdev_map(const char *spec, struct nk_region *r, char *err, size_t errlen);

#endif /* NK_VMDEV_H */
