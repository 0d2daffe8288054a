/* SPDX-License-Identifier: MIT */
/*
 * ce_iso.c - isolation between VMs that share an NSM.
 *
 * The CoreEngine is where every request of every VM passes, so it is where
 * shares are enforced: when a guest NQE is about to be forwarded to an NSM,
 * it must fit
 *   - the VM's own caps (token buckets: payload bytes/s and operations/s),
 *     whatever NSM it goes to;
 *   - if the NSM runs with isolation on: the VM's deficit (weighted deficit
 *     round robin across the VMs of that NSM, in bytes) and the NSM's
 *     capacity bucket (the rate the operator says the NSM's path carries).
 * An NQE that does not fit stays in its up ring (the same back-pressure as
 * a full NSM ring), so nothing is dropped and the guest simply blocks.
 *
 * Why a capacity: DRR only decides anything where there is a queue. The
 * NSM's kernel sockets would otherwise absorb every VM's data and the link
 * would split it per TCP flow (16 flows beat 1). Admitting at most the
 * path's rate makes the CoreEngine the bottleneck, so its queue is where
 * VMs wait and their weights decide.
 *
 * Costs: a SEND costs its payload plus CE_ISO_NQE_COST, any other request
 * CE_ISO_OP_COST, so a VM flooding connects or tiny sends pays for the NSM
 * work it causes, not only for bytes. RX_DONE and CLOSE are never held:
 * they give resources back.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ce.h"

#define CE_ISO_QUANTUM   65536u  /* bytes of deficit per DRR round per weight unit */
#define CE_ISO_NQE_COST  256u    /* per SEND on top of its payload */
#define CE_ISO_OP_COST   4096u   /* a control operation */
#define CE_ISO_VM_PEND   16u     /* control ops a VM may have at an isolated NSM */
#define CE_ISO_DEPTH_NS  8000000u /* buckets hold 8 ms: the CoreEngine sleeps 1 ms+ when throttled */
#define CE_ISO_PASSES    8       /* DRR rounds per switch round */

/* ---- token buckets ---- */

void ce_tb_set(struct ce_tb *tb, uint64_t rate, uint64_t min_depth)
{
	tb->rate = rate;
	uint64_t d = rate * CE_ISO_DEPTH_NS / 1000000000ull;
	tb->depth = d > min_depth ? d : min_depth;
	tb->tokens = (int64_t)tb->depth;
	tb->last_ns = ce_now_ns();
}

static void tb_refill(struct ce_tb *tb, uint64_t now)
{
	if (!tb->rate || now <= tb->last_ns)
		return;
	uint64_t dt = now - tb->last_ns;
	if (dt > 1000000000ull) { /* idle a second: full anyway, and no overflow */
		tb->tokens = (int64_t)tb->depth;
		tb->last_ns = now;
		return;
	}
	uint64_t add = dt * tb->rate / 1000000000ull;
	if (!add)
		return;
	/* Advance the clock by the time these tokens took, not to now: the
	 * CoreEngine refills every round (every microsecond while it spins),
	 * and rounding each step down would lose most of a slow rate. */
	tb->last_ns += add * 1000000000ull / tb->rate;
	int64_t t = tb->tokens + (int64_t)add;
	if (t >= (int64_t)tb->depth) {
		t = (int64_t)tb->depth;
		tb->last_ns = now;
	}
	tb->tokens = t;
}

/* Admit while anything is left; the cost may take it below zero, so a cost
 * larger than the bucket's depth still passes, at the bucket's rate. */
static bool tb_ok(const struct ce_tb *tb) { return !tb->rate || tb->tokens > 0; }

/* Note when tb will admit again, so the CoreEngine sleeps just that long. */
static void tb_blocked(struct ce *ce, const struct ce_tb *tb)
{
	uint64_t need = (uint64_t)(1 - tb->tokens);
	uint64_t at = tb->last_ns + need * 1000000000ull / tb->rate + 1;
	if (at < ce->iso_wake_ns)
		ce->iso_wake_ns = at;
}

static void tb_take(struct ce_tb *tb, uint64_t n)
{
	if (tb->rate)
		tb->tokens -= (int64_t)n;
}

/* ---- admission ---- */

static uint32_t cost(bool ctl, uint32_t payload) { return ctl ? CE_ISO_OP_COST : payload + CE_ISO_NQE_COST; }

bool ce_iso_admit(struct ce *ce, struct ce_vm *vm, struct ce_nsm *n, bool ctl, uint32_t payload)
{
	if (!tb_ok(&vm->cap_ops) || (!ctl && !tb_ok(&vm->cap_bytes))) {
		tb_blocked(ce, tb_ok(&vm->cap_ops) ? &vm->cap_bytes : &vm->cap_ops);
		vm->iso_capped++;
		return false;
	}
	if (!n->iso)
		return true;
	if (ctl && vm->pending >= CE_ISO_VM_PEND)
		return false;
	if (!tb_ok(&n->cap)) {
		tb_blocked(ce, &n->cap);
		/* The path is full: this VM goes first when it has room again. */
		if (!ce->iso_stop) {
			ce->iso_stop = true;
			ce->iso_next = vm->idx;
		}
		return false;
	}
	if (vm->deficit < (int64_t)cost(ctl, payload)) {
		vm->iso_want = true;
		return false;
	}
	return true;
}

void ce_iso_charge(struct ce *ce, struct ce_vm *vm, struct ce_nsm *n, bool ctl, uint32_t payload)
{
	(void)ce;
	tb_take(&vm->cap_ops, 1);
	if (!ctl)
		tb_take(&vm->cap_bytes, payload);
	if (n->iso) {
		vm->deficit -= cost(ctl, payload);
		tb_take(&n->cap, cost(ctl, payload));
	}
}

/* ---- the DRR rounds ---- */

/* Refill the buckets; returns the VM the passes start with: the one the
 * path's capacity stopped last time, else the next in turn. */
uint32_t ce_iso_begin(struct ce *ce)
{
	uint64_t now = ce_now_ns();
	ce->iso_wake_ns = UINT64_MAX;
	for (uint32_t i = 0; i < ce->nnsms; i++)
		tb_refill(&ce->nsms[i].cap, now);
	for (uint32_t v = 0; v < ce->nvms; v++) {
		tb_refill(&ce->vms[v].cap_bytes, now);
		tb_refill(&ce->vms[v].cap_ops, now);
		ce->vms[v].iso_want = false;
	}
	if (!ce->nvms)
		return 0;
	if (!ce->iso_stop)
		ce->iso_next = (ce->iso_next + 1) % ce->nvms;
	ce->iso_stop = false;
	return ce->iso_next % ce->nvms;
}

static bool vm_backlogged(struct ce_vm *vm)
{
	for (uint64_t m = vm->live; m;)
		if (nk_ring_count(&vm->chan[ce_mask_pop(&m)].up))
			return true;
	return false;
}

/* End of one pass over the VMs. Another DRR round starts when a VM waited
 * only for its deficit and the path still has room: every such VM gets its
 * quantum. A VM with nothing queued loses what it had left, as in DRR, so
 * an idle VM cannot save up a burst. */
bool ce_iso_next_round(struct ce *ce)
{
	bool again = false;
	for (uint32_t v = 0; v < ce->nvms; v++) {
		struct ce_vm *vm = &ce->vms[v];
		if (vm->iso_want && !ce->iso_stop) {
			int64_t q = (int64_t)CE_ISO_QUANTUM * vm->weight;
			vm->deficit += q;
			if (vm->deficit > 2 * q)
				vm->deficit = 2 * q;
			vm->iso_want = false;
			again = true;
		} else if (!vm->iso_want && vm->deficit > 0 && !vm_backlogged(vm)) {
			vm->deficit = 0;
		}
	}
	return again;
}

int ce_iso_passes(void) { return CE_ISO_PASSES; }

/* ---- configuration ---- */

/* "950m", "1g", "300000k", "12345" (bits/s) or a plain count for ops. */
int ce_iso_parse_rate(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	double mul = 1;
	if (*end == 'k' || *end == 'K')
		mul = 1e3, end++;
	else if (*end == 'm' || *end == 'M')
		mul = 1e6, end++;
	else if (*end == 'g' || *end == 'G')
		mul = 1e9, end++;
	if (*end == 'b' || *end == 'B')
		end++; /* "bit" style suffixes are tolerated: 950mb */
	if (!strcmp(end, "it") || !strcmp(end, "its"))
		end += strlen(end);
	if (*end)
		return -EINVAL;
	v *= mul;
	if (v > 1e12)
		return -ERANGE;
	*out = (uint64_t)v;
	return 0;
}

/* One key=value of a VM: weight, rate (bits/s), ops (per second). */
int ce_iso_vm_set(struct ce_vm *vm, const char *key, const char *val, char *err, size_t errlen)
{
	uint64_t x;
	if (ce_iso_parse_rate(val, &x) < 0) {
		snprintf(err, errlen, "VM %s: bad value '%s' for %s", vm->name, val, key);
		return -EINVAL;
	}
	if (!strcmp(key, "weight")) {
		if (x < 1 || x > 1000) {
			snprintf(err, errlen, "VM %s: weight must be 1..1000, got '%s'", vm->name, val);
			return -EINVAL;
		}
		vm->weight = (uint32_t)x;
	} else if (!strcmp(key, "rate")) {
		ce_tb_set(&vm->cap_bytes, x / 8, 32768);
	} else if (!strcmp(key, "ops")) {
		ce_tb_set(&vm->cap_ops, x, 8);
	} else {
		snprintf(err, errlen, "VM %s: unknown key '%s' (weight, rate, ops)", vm->name, key);
		return -EINVAL;
	}
	return 0;
}

/* One key=value of an NSM: iso (on|off), rate (bits/s). */
int ce_iso_nsm_set(struct ce_nsm *n, const char *key, const char *val, char *err, size_t errlen)
{
	if (!strcmp(key, "iso")) {
		if (strcmp(val, "on") && strcmp(val, "off")) {
			snprintf(err, errlen, "NSM %s: iso must be on or off, got '%s'", n->name, val);
			return -EINVAL;
		}
		n->iso = !strcmp(val, "on");
		return 0;
	}
	if (!strcmp(key, "rate")) {
		uint64_t x;
		if (ce_iso_parse_rate(val, &x) < 0) {
			snprintf(err, errlen, "NSM %s: bad rate '%s' (bits/s, e.g. 950m)", n->name, val);
			return -EINVAL;
		}
		ce_tb_set(&n->cap, x / 8, 65536);
		return 0;
	}
	snprintf(err, errlen, "NSM %s: unknown key '%s' (iso, rate)", n->name, key);
	return -EINVAL;
}
