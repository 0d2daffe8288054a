/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "nk_vmdev.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read a sysfs hex id ("0x1af4\n"); 0 on error. */
static unsigned long read_id(const char *dir, const char *name)
{
	char path[512], buf[32];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtoul(buf, NULL, 16);
}

static int map_path(const char *path, struct nk_region *r, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open NK device %s: %s", path, strerror(e));
		return -e;
	}
	char why[256];
	int rc = nk_region_map_fd(r, fd, NK_REGION_VM, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		close(fd);
		return rc;
	}
	close(fd); /* the mapping outlives the fd */
	r->fd = -1;
	return 0;
}

int nk_vmdev_map(const char *spec, struct nk_region *r, char *err, size_t errlen)
{
	if (strcmp(spec, "pci") != 0)
		return map_path(spec, r, err, errlen);
	const char *base = "/sys/bus/pci/devices";
	DIR *d = opendir(base);
	if (!d) {
		snprintf(err, errlen, "no PCI bus (%s: %s)", base, strerror(errno));
		return -ENODEV;
	}
	int rc = -ENODEV;
	snprintf(err, errlen, "no NK device (PCI %04x:%04x) on this machine", NK_VMDEV_VENDOR, NK_VMDEV_DEVICE);
	struct dirent *e;
	while ((e = readdir(d))) {
		char dir[512], res[600];
		if (e->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name);
		if (read_id(dir, "vendor") != NK_VMDEV_VENDOR || read_id(dir, "device") != NK_VMDEV_DEVICE)
			continue;
		snprintf(res, sizeof(res), "%s/resource%d", dir, NK_VMDEV_BAR);
		rc = map_path(res, r, err, errlen);
		if (rc == 0)
			break;
	}
	closedir(d);
	return rc;
}
