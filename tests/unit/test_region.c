/* SPDX-License-Identifier: MIT */
/*
 * test_region - region geometry and files (dataplane/nk_region.h):
 * nk_geom_layout rejects bad geometry; nk_region_create makes a 0600 file
 * with O_EXCL; nk_region_map_fd accepts a good region and rejects truncated
 * files, wrong magic, wrong version, wrong kind and inconsistent layouts with
 * a clear error; offsets of channels, slots and chunks are in range and
 * aligned.
 *
 * Files go to /dev/shm with unique names and are unlinked even when a check
 * fails or the program is killed by a fatal signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nk_region.h"

#include "nk_test.h"

/* ---- temp files, removed at exit and on fatal signals ---- */

#define MAX_PATHS 16
static char paths[MAX_PATHS][96];
static int npaths;

static void unlink_all(void)
{
	for (int i = 0; i < npaths; i++)
		if (paths[i][0])
			unlink(paths[i]); /* async-signal-safe */
}

static void on_signal(int sig)
{
	unlink_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static const char *tmp_path(const char *tag)
{
	if (npaths == MAX_PATHS) {
		fprintf(stderr, "too many temp paths\n");
		exit(1);
	}
	char *p = paths[npaths++];
	snprintf(p, sizeof(paths[0]), "/dev/shm/nk-utest-%ld-%s", (long)getpid(), tag);
	unlink(p); /* a leftover of a recycled pid */
	return p;
}

static void small_vm(struct nk_geom *g)
{
	nk_geom_default(g, NK_REGION_VM);
	g->nchan = 4;
	g->ring_entries = 64;
	g->nsocks = 16;
	g->chunk_size = 4096;
	g->tx_per_chan = 4;
	g->nrx = 16;
}

/* ---- geometry ---- */

static void expect_reject(const struct nk_geom *base, const char *what, void (*mut)(struct nk_geom *))
{
	struct nk_geom g = *base;
	mut(&g);
	int rc = nk_geom_layout(&g);
	CHECK(rc == -EINVAL, "%s: layout returned %d, want -EINVAL", what, rc);
}

#define MUT(name, body) static void name(struct nk_geom *g) { body; }
MUT(m_kind0, g->kind = 0)
MUT(m_kind3, g->kind = 3)
MUT(m_ring0, g->ring_entries = 0)
MUT(m_ring3, g->ring_entries = 3)
MUT(m_ring100, g->ring_entries = 100)
MUT(m_ring4, g->ring_entries = 4)
MUT(m_ringbig, g->ring_entries = 1u << 21)
MUT(m_ringtop, g->ring_entries = 0x80000000u)
MUT(m_nchan0, g->nchan = 0)
MUT(m_nchanbig, g->nchan = 1025)
MUT(m_nsocks0, g->nsocks = 0)
MUT(m_nsocksbig, g->nsocks = (1u << 20) + 1)
MUT(m_chunk0, g->chunk_size = 0)
MUT(m_chunk3000, g->chunk_size = 3000)
MUT(m_chunk512, g->chunk_size = 512)
MUT(m_chunkbig, g->chunk_size = 1u << 23)
MUT(m_tx0, g->tx_per_chan = 0)
MUT(m_rx0, g->nrx = 0)
MUT(m_chunks_overflow, { g->nchan = 1024; g->tx_per_chan = 1u << 22; g->nrx = 1; })
MUT(m_chunks_noc, { g->nchan = 1; g->tx_per_chan = 1; g->nrx = NK_NO_CHUNK - 1; })
MUT(m_chunks_wrap, { g->nchan = 2; g->tx_per_chan = 0x80000000u; g->nrx = 1; })

static void check_layout(const struct nk_geom *g, const char *what)
{
	CHECK(g->chan_off >= NK_REGION_HDR_SIZE, "%s: channels overlap the header", what);
	CHECK(g->chan_off % NK_CACHELINE == 0, "%s: chan_off %" PRIu64 " unaligned", what, g->chan_off);
	CHECK(g->chan_stride % NK_CACHELINE == 0, "%s: chan_stride unaligned", what);
	CHECK(g->chan_stride >= nk_chan_stride(g->ring_entries), "%s: chan_stride too small", what);
	CHECK(g->sock_off % NK_CACHELINE == 0, "%s: sock_off unaligned", what);
	CHECK(g->sock_off >= g->chan_off + g->chan_stride * g->nchan, "%s: slots overlap channels", what);
	CHECK(g->chunk_off % 4096 == 0, "%s: chunk_off %" PRIu64 " not page aligned", what, g->chunk_off);
	CHECK(g->chunk_off >= g->sock_off + (uint64_t)g->nsocks * sizeof(struct nk_sock_slot),
	      "%s: chunks overlap slots", what);
	CHECK(g->size % 4096 == 0, "%s: size not page aligned", what);
	CHECK(g->size >= g->chunk_off + (uint64_t)nk_geom_nchunks(g) * g->chunk_size,
	      "%s: size %" PRIu64 " does not hold every chunk", what, g->size);
}

static void test_geometry(void)
{
	section("nk_geom_layout: defaults accepted, bad geometry rejected");
	struct nk_geom g;
	nk_geom_default(&g, NK_REGION_VM);
	CHECK(nk_geom_layout(&g) == 0, "default VM geometry rejected");
	check_layout(&g, "default VM");
	printf("   default VM region: %" PRIu64 " bytes (%u chunks)\n", g.size, nk_geom_nchunks(&g));
	nk_geom_default(&g, NK_REGION_NSM);
	CHECK(nk_geom_layout(&g) == 0, "default NSM geometry rejected");
	CHECK(g.nsocks == 0 && g.nrx == 0 && g.tx_per_chan == 0, "NSM region has sockets/chunks");
	CHECK(g.chan_off == NK_REGION_HDR_SIZE && g.size % 4096 == 0, "NSM layout");
	CHECK(g.size >= g.chan_off + g.chan_stride * g.nchan, "NSM size too small");

	struct nk_geom base;
	small_vm(&base);
	CHECK(nk_geom_layout(&base) == 0, "small VM geometry rejected");
	check_layout(&base, "small VM");
	struct { const char *what; void (*mut)(struct nk_geom *); } bad[] = {
		{ "kind 0", m_kind0 }, { "kind 3", m_kind3 },
		{ "ring_entries 0", m_ring0 }, { "ring_entries 3", m_ring3 },
		{ "ring_entries 100 (not a power of two)", m_ring100 },
		{ "ring_entries 4 (too small)", m_ring4 }, { "ring_entries 2^21", m_ringbig },
		{ "ring_entries 2^31", m_ringtop },
		{ "nchan 0", m_nchan0 }, { "nchan 1025", m_nchanbig },
		{ "nsocks 0", m_nsocks0 }, { "nsocks 2^20+1", m_nsocksbig },
		{ "chunk_size 0", m_chunk0 }, { "chunk_size 3000", m_chunk3000 },
		{ "chunk_size 512", m_chunk512 }, { "chunk_size 2^23", m_chunkbig },
		{ "tx_per_chan 0", m_tx0 }, { "nrx 0", m_rx0 },
		{ "chunk count overflows 32 bits", m_chunks_overflow },
		{ "chunk count reaches NK_NO_CHUNK", m_chunks_noc },
		{ "nchan * tx_per_chan wraps", m_chunks_wrap },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_reject(&base, bad[i].what, bad[i].mut);
	printf("   %zu bad geometries rejected\n", sizeof(bad) / sizeof(bad[0]));
	/* NSM: socket/chunk fields are ignored (zeroed), ring rules still apply. */
	nk_geom_default(&g, NK_REGION_NSM);
	g.nsocks = 5;
	g.chunk_size = 3;
	CHECK(nk_geom_layout(&g) == 0 && g.nsocks == 0 && g.chunk_size == 0, "NSM extras not cleared");
	nk_geom_default(&g, NK_REGION_NSM);
	g.ring_entries = 1000;
	CHECK(nk_geom_layout(&g) == -EINVAL, "NSM ring 1000 accepted");
}

/* ---- files ---- */

static int write_file(const char *path, const void *buf, size_t len, off_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if ((len && pwrite(fd, buf, len, 0) != (ssize_t)len) || ftruncate(fd, size) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Map a file built from hdr; expect rc and an error mentioning word. */
static void expect_map_fail(const char *tag, const struct nk_region_hdr *hdr, size_t hdrlen,
			    off_t size, uint32_t kind, int want_rc, const char *word)
{
	const char *p = tmp_path(tag);
	int fd = write_file(p, hdr, hdrlen, size);
	CHECK(fd >= 0, "%s: cannot write %s: %s", tag, p, strerror(errno));
	if (fd < 0)
		return;
	unlink(p);
	struct nk_region r;
	char err[256] = "";
	int rc = nk_region_map_fd(&r, fd, kind, err, sizeof(err));
	CHECK(rc == want_rc, "%s: map_fd returned %d, want %d (%s)", tag, rc, want_rc, err);
	CHECK(err[0] != '\0', "%s: no error text", tag);
	CHECK(!word || strstr(err, word), "%s: error \"%s\" does not mention \"%s\"", tag, err, word);
	CHECK(r.base == NULL, "%s: failed map left a mapping", tag);
	printf("   %s: rejected: %s\n", tag, err);
	if (rc == 0)
		nk_region_unmap(&r);
	else
		close(fd);
}

static void test_files(void)
{
	section("nk_region_create: 0600 file, O_EXCL, header");
	struct nk_geom g;
	small_vm(&g);
	const char *path = tmp_path("vm");
	struct nk_region r, m;
	char err[256] = "";
	const uint8_t ip[4] = { 10, 77, 0, 11 };
	umask(022);
	int rc = nk_region_create(&r, path, &g, 3, "vm1", ip, err, sizeof(err));
	CHECK(rc == 0, "create failed: %d %s", rc, err);
	if (rc != 0)
		return;
	struct stat st;
	CHECK(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
	CHECK(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600, "mode %o, want 0600",
	      st.st_mode & 07777);
	CHECK(st.st_uid == geteuid(), "file owner %u", st.st_uid);
	CHECK((uint64_t)st.st_size == r.g.size, "file size %lld, geometry %" PRIu64,
	      (long long)st.st_size, r.g.size);
	struct nk_region_hdr *h = nk_region_hdr(&r);
	CHECK(h->magic == NK_ABI_MAGIC && h->version == NK_ABI_VERSION && h->kind == NK_REGION_VM,
	      "header identity");
	CHECK(h->id == 3 && strcmp(h->name, "vm1") == 0 && memcmp(h->ipv4, ip, 4) == 0,
	      "header id/name/ip");
	CHECK(h->region_size == r.g.size && h->chan_off == r.g.chan_off && h->sock_off == r.g.sock_off &&
	      h->chunk_off == r.g.chunk_off && h->sock_stride == sizeof(struct nk_sock_slot),
	      "header layout differs from the geometry");

	struct nk_region r2;
	err[0] = '\0';
	rc = nk_region_create(&r2, path, &g, 4, "vm2", ip, err, sizeof(err));
	CHECK(rc == -EEXIST, "create over an existing path returned %d, want -EEXIST", rc);
	CHECK(strstr(err, path) != NULL, "O_EXCL error \"%s\" does not name the path", err);
	printf("   existing path refused: %s\n", err);
	if (rc == 0)
		nk_region_unmap(&r2);
	err[0] = '\0';
	struct nk_geom badg = g;
	badg.ring_entries = 100;
	rc = nk_region_create(&r2, tmp_path("bad"), &badg, 0, "x", NULL, err, sizeof(err));
	CHECK(rc == -EINVAL && err[0], "create with bad geometry returned %d (%s)", rc, err);
	CHECK(access(paths[npaths - 1], F_OK) != 0, "bad geometry left a file behind");

	section("nk_region_map_fd: accepts the region, sees the same memory");
	int fd2 = open(path, O_RDWR | O_CLOEXEC);
	CHECK(fd2 >= 0, "reopen: %s", strerror(errno));
	unlink(path); /* the fds keep it alive */
	if (fd2 < 0) {
		nk_region_unmap(&r);
		return;
	}
	err[0] = '\0';
	rc = nk_region_map_fd(&m, fd2, NK_REGION_VM, err, sizeof(err));
	CHECK(rc == 0, "map_fd failed: %d %s", rc, err);
	if (rc == 0) {
		CHECK(memcmp(&m.g, &r.g, sizeof(g)) == 0, "guest geometry differs from the host's");
		CHECK(m.fd == fd2, "map_fd did not keep the fd");
		/* Offsets in range and aligned, through the guest mapping. */
		for (uint32_t c = 0; c < m.g.nchan; c++) {
			struct nk_ring up, down;
			uint8_t *ch = (uint8_t *)nk_region_chan(&m, c);
			CHECK((uintptr_t)ch % NK_CACHELINE == 0, "channel %u unaligned", c);
			CHECK(ch >= m.base + m.g.chan_off && ch + m.g.chan_stride <= m.base + m.g.sock_off,
			      "channel %u out of the channel area", c);
			nk_region_up_ring(&m, c, &up);
			nk_region_down_ring(&m, c, &down);
			CHECK((uint8_t *)up.ents >= ch + sizeof(struct nk_chan_hdr) &&
			      (uint8_t *)(up.ents + up.size) <= (uint8_t *)down.ents &&
			      (uint8_t *)(down.ents + down.size) <= ch + m.g.chan_stride,
			      "channel %u rings overlap", c);
			CHECK(up.size == 64 && down.size == 64, "ring size");
			CHECK(nk_ring_count(&up) == 0 && nk_ring_free(&down) == 64, "rings not reset");
		}
		for (uint32_t s = 0; s < m.g.nsocks; s++) {
			uint8_t *sl = (uint8_t *)nk_region_slot(&m, s);
			CHECK((uintptr_t)sl % NK_CACHELINE == 0, "slot %u unaligned", s);
			CHECK(sl >= m.base + m.g.sock_off &&
			      sl + sizeof(struct nk_sock_slot) <= m.base + m.g.chunk_off,
			      "slot %u out of the slot area", s);
		}
		for (uint32_t k = 0; k < nk_geom_nchunks(&m.g); k++) {
			uint8_t *ck = nk_region_chunk(&m, k);
			CHECK((uintptr_t)ck % 4096 == 0, "chunk %u unaligned", k);
			CHECK(ck >= m.base + m.g.chunk_off && ck + m.g.chunk_size <= m.base + m.g.size,
			      "chunk %u out of the region", k);
		}
		CHECK(nk_geom_tx_first(&m.g, 1) == 4 && nk_geom_rx_first(&m.g) == 16,
		      "partition: tx_first(1)=%u rx_first=%u", nk_geom_tx_first(&m.g, 1),
		      nk_geom_rx_first(&m.g));
		/* Shared: a write through the host mapping shows in the guest's. */
		uint32_t last = nk_geom_nchunks(&r.g) - 1;
		memcpy(nk_region_chunk(&r, last) + r.g.chunk_size - 4, "NKok", 4);
		CHECK(memcmp(nk_region_chunk(&m, last) + m.g.chunk_size - 4, "NKok", 4) == 0,
		      "last chunk not shared");
		nk_region_slot(&r, 15)->rx_tail = 42;
		CHECK(nk_region_slot(&m, 15)->rx_tail == 42, "slot 15 not shared");
		struct nk_region mm;
		err[0] = '\0';
		rc = nk_region_map_fd(&mm, fd2, NK_REGION_NSM, err, sizeof(err));
		CHECK(rc == -EPROTO && strstr(err, "kind"), "VM region mapped as NSM: %d (%s)", rc, err);
		printf("   wrong kind rejected: %s\n", err);
		nk_region_unmap(&m);
	} else {
		close(fd2);
	}

	section("nk_region_map_fd: truncated, wrong magic/version, bad layout");
	struct nk_region_hdr good = *nk_region_hdr(&r);
	off_t size = (off_t)r.g.size;
	struct nk_region_hdr bad;
	expect_map_fail("empty", &good, 0, 0, NK_REGION_VM, -EINVAL, "header");
	expect_map_fail("short-hdr", &good, 100, 100, NK_REGION_VM, -EINVAL, "header");
	expect_map_fail("truncated", &good, sizeof(good), size - 4096, NK_REGION_VM, -EPROTO, "size");
	expect_map_fail("hdr-only", &good, sizeof(good), sizeof(good), NK_REGION_VM, -EPROTO, "size");
	bad = good;
	bad.magic = 0x12345678;
	expect_map_fail("magic", &bad, sizeof(bad), size, NK_REGION_VM, -EPROTO, "magic");
	bad = good;
	bad.version = NK_ABI_VERSION + 1;
	expect_map_fail("version", &bad, sizeof(bad), size, NK_REGION_VM, -EPROTO, "version");
	expect_map_fail("kind", &good, sizeof(good), size, NK_REGION_NSM, -EPROTO, "kind");
	bad = good;
	bad.ring_entries = 100;
	expect_map_fail("ring-entries", &bad, sizeof(bad), size, NK_REGION_VM, -EPROTO, NULL);
	bad = good;
	bad.chunk_off += 4096;
	expect_map_fail("chunk-off", &bad, sizeof(bad), size, NK_REGION_VM, -EPROTO, NULL);
	bad = good;
	{
		/* A self-consistent header that claims more chunks than the file holds. */
		struct nk_geom big = r.g;
		big.nrx *= 2;
		nk_geom_layout(&big);
		bad.nrx = big.nrx;
		bad.region_size = big.size;
		bad.chunk_off = big.chunk_off;
	}
	expect_map_fail("nrx", &bad, sizeof(bad), size, NK_REGION_VM, -EPROTO, "size");
	/* A good copy of the header in a full-size file maps fine. */
	const char *p = tmp_path("copy");
	int fd = write_file(p, &good, sizeof(good), size);
	CHECK(fd >= 0, "write copy: %s", strerror(errno));
	if (fd >= 0) {
		unlink(p);
		err[0] = '\0';
		rc = nk_region_map_fd(&m, fd, NK_REGION_VM, err, sizeof(err));
		CHECK(rc == 0, "good copy rejected: %s", err);
		if (rc == 0)
			nk_region_unmap(&m);
		else
			close(fd);
	}
	nk_region_unmap(&r);

	section("default-size VM region and an NSM region");
	nk_geom_default(&g, NK_REGION_VM);
	path = tmp_path("defvm");
	rc = nk_region_create(&r, path, &g, 0, "big", ip, err, sizeof(err));
	unlink(path);
	CHECK(rc == 0, "default VM region: %s", err);
	if (rc == 0) {
		check_layout(&r.g, "created default VM");
		nk_region_unmap(&r);
	}
	nk_geom_default(&g, NK_REGION_NSM);
	path = tmp_path("nsm");
	rc = nk_region_create(&r, path, &g, 1, "tcp", NULL, err, sizeof(err));
	CHECK(rc == 0, "NSM region: %s", err);
	if (rc == 0) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		unlink(path);
		rc = nk_region_map_fd(&m, fd, NK_REGION_NSM, err, sizeof(err));
		CHECK(rc == 0 && m.g.ring_entries == 4096 && m.g.nchan == 1, "NSM map: %d %s", rc, err);
		if (rc == 0)
			nk_region_unmap(&m);
		else if (fd >= 0)
			close(fd);
		nk_region_unmap(&r);
	}
	unlink(path);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	atexit(unlink_all);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGABRT, on_signal);
	signal(SIGSEGV, on_signal);
	signal(SIGBUS, on_signal);
	test_geometry();
	test_files();
	unlink_all();
	for (int i = 0; i < npaths; i++)
		CHECK(access(paths[i], F_OK) != 0, "%s left behind", paths[i]);
	if (failures) {
		printf("test_region: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_region: all checks passed\n");
	return 0;
}
