# NetKernel-C build. `make` builds everything; `make test` runs the suite;
# `make test-asan` runs it with AddressSanitizer + UBSan.

BUILD   ?= build
CC      ?= cc
OPT     ?= -O2
SAN     ?=
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -fPIC -pthread -Iinclude -Idataplane $(SAN)
LDFLAGS += -pthread $(SAN)

DP_SRC   := $(wildcard dataplane/nk_*.c)
CE_SRC   := $(wildcard dataplane/ce_*.c)
NSM_SRC  := $(wildcard nsm/*.c)
GL_SRC   := $(wildcard guestlib/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
PROG_SRC := $(wildcard tests/prog/*.c)
BENCH_SRC:= $(wildcard bench/*.c)

DP_OBJ   := $(DP_SRC:%.c=$(BUILD)/obj/%.o)
CE_OBJ   := $(CE_SRC:%.c=$(BUILD)/obj/%.o)
NSM_OBJ  := $(NSM_SRC:%.c=$(BUILD)/obj/%.o)
GL_OBJ   := $(GL_SRC:%.c=$(BUILD)/obj/%.o)

DPLIB    := $(BUILD)/lib/libnkdp.a
BINS     := $(BUILD)/bin/nkctl $(BUILD)/bin/nkrun $(BUILD)/bin/nk-vmagent
ifneq ($(CE_SRC),)
BINS     += $(BUILD)/bin/nk-coreengine
endif
ifneq ($(NSM_SRC),)
BINS     += $(BUILD)/bin/nk-nsm
endif
ifneq ($(GL_SRC),)
BINS     += $(BUILD)/lib/libnkguest.so
endif
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
PROGS    := $(PROG_SRC:tests/prog/%.c=$(BUILD)/tests/prog/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all clean test test-asan check-tools bench compat vm-image
all: $(DPLIB) $(BINS) $(UNITS) $(PROGS) $(BENCHES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(DPLIB): $(DP_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BUILD)/bin/nk-coreengine: $(CE_OBJ) $(DPLIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/bin/nk-nsm: $(NSM_OBJ) $(DPLIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/lib/libnkguest.so: $(GL_OBJ) $(DPLIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,--version-script=guestlib/exports.map -o $@ $(GL_OBJ) $(DPLIB) -ldl

$(BUILD)/bin/%: $(BUILD)/obj/tools/%.o $(DPLIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(DPLIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/tests/prog/%: $(BUILD)/obj/tests/prog/%.o $(DPLIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(DPLIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

test: all
	BUILD=$(BUILD) tests/run.sh

# The sanitizer build lives apart so it never mixes objects with the normal one.
# The normal build is needed too: curl cannot run with libasan preloaded, so
# it gets the plain GuestLib (tb_plain_guest).
test-asan: all
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all
	BUILD=build-asan NK_ASAN=1 tests/run.sh

# Microbenchmarks, then the application benchmarks (root; BENCH_QUICK=1: short).
bench: all
	BUILD=$(BUILD) bench/run.sh; r=$$?; BUILD=$(BUILD) bench/app.sh || r=1; exit $$r

# VM mode: the guest image (kernel + initramfs) in $(BUILD)/vm, from the
# host's own packages; rebuilt only when an input changed.
vm-image: all
	BUILD=$(BUILD) scenarios/vm/mkimage.sh

# GuestLib compatibility matrix: real programs as guests; writes
# results/compat/summary.json and always exits 0 (a report, not a gate).
compat: all
	BUILD=$(BUILD) tests/compat/run.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
