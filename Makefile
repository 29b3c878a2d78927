# veil build. `make` builds build/veil, libveil (build/libveil.a and
# build/libveil.so: base, crypto, attest, client; hidden visibility, exports
# listed in src/libveil.map) and build/libveil-serve.a (server and engine);
# `make test` runs every test; `make test-san` runs them again under
# ASan+UBSan; `make fuzz` builds the libFuzzer targets with clang; `make bench`
# builds the benchmarks; `make compile_commands.json` writes the compilation
# database for clangd and clang-tidy; `make format-check` checks the C files
# changed since origin/main (or $(FORMAT_BASE)) against .clang-format.

BUILD ?= build
CC ?= cc
SAN ?= 0

PKGS := libsecp256k1 openssl libevent libevent_pthreads libevent_openssl jansson sqlite3 libcurl hiredis
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(PKG_LIBS),)
$(error missing libraries: run scripts/install-deps (pkg-config could not find $(PKGS)))
endif
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wvla
CFLAGS ?= -O2 -g
ifeq ($(SAN),1)
CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif
ALL_CFLAGS := -std=c17 -D_GNU_SOURCE $(WARN) -Iinclude -Isrc $(PKG_CFLAGS) -fvisibility=hidden $(CFLAGS) -MMD -MP
LIBS := $(PKG_LIBS) -lpthread -lm

LIB_SRCS := $(wildcard src/base/*.c src/crypto/*.c src/attest/*.c src/client/*.c)
SERVE_SRCS := $(wildcard src/engine/*.c src/server/*.c src/proxy/*.c)
CLI_SRCS := $(wildcard src/cli/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
BENCH_SRCS := $(wildcard bench/*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SERVE_OBJS := $(SERVE_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

# what a program that uses all of veil links: the server and engine, then libveil
VEIL_LIBS := $(BUILD)/libveil-serve.a $(BUILD)/libveil.a

.PHONY: all tests test test-san check fuzz bench clean devbundle format-check
all: $(BUILD)/veil $(BUILD)/libveil.a $(BUILD)/libveil.so $(BUILD)/libveil.so.0 $(BUILD)/libveil-serve.a

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# libveil's objects are position-independent: they make libveil.so as well
$(LIB_OBJS): $(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(BUILD)/libveil.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libveil.so: $(LIB_OBJS) src/libveil.map
	$(CC) $(LDFLAGS) -shared -o $@ -Wl,-soname,libveil.so.0 -Wl,--version-script=src/libveil.map -Wl,--no-undefined \
		$(LIB_OBJS) $(LIBS)

$(BUILD)/libveil.so.0: $(BUILD)/libveil.so
	ln -sf libveil.so $@

$(BUILD)/libveil-serve.a: $(SERVE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/veil: $(CLI_OBJS) $(VEIL_LIBS)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(VEIL_LIBS) $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(VEIL_LIBS) tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(VEIL_LIBS) $(LIBS) $(CMOCKA_LIBS)

$(BUILD)/bench/%: bench/%.c $(VEIL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(VEIL_LIBS) $(LIBS)

# the C mock upstream is a test tool too (fast enough to show races a Python mock hides)
tests: all $(UNIT_BINS) $(BUILD)/bench/mock_upstream

test: tests fuzz
	BUILD=$(BUILD) tests/run

test-san:
	$(MAKE) BUILD=build-san SAN=1 tests
	BUILD=build-san tests/run

check: tests fuzz
	$(MAKE) BUILD=build-san SAN=1 tests
	BUILD=$(BUILD) SAN_BUILD=build-san VALGRIND=1 tests/run

bench: $(BENCH_BINS)

# libFuzzer targets need clang; the library is built once more with the
# fuzzer's instrumentation into build/fuzz/libveil.a, which every target links.
FUZZ_CC ?= clang
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Isrc $(PKG_CFLAGS) -g -O1 \
	-fno-sanitize-recover=undefined
FUZZ_OBJS := $(LIB_SRCS:%.c=$(BUILD)/fuzz/obj/%.o) $(SERVE_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)
fuzz: $(FUZZ_BINS)
$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c $< -o $@
$(BUILD)/fuzz/libveil.a: $(FUZZ_OBJS)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/fuzz/libveil.a $(wildcard include/veil/*.h src/*/*.h tests/fuzz/*.h)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(BUILD)/fuzz/libveil.a $(LIBS)

# build/veil, the engine's unit tests, the kernel and sampler benchmarks, the mock upstream and curl
# with their shared libraries and loader, to run where veil's dependencies are not
# installed (scripts/gpu-check and scripts/bench-check on a lent machine).
DEVBUNDLE_BINS := $(BUILD)/veil $(BUILD)/tests/test_engine $(BUILD)/bench/mock_upstream $(BUILD)/bench/kernels \
	$(BUILD)/bench/sampler
devbundle: $(DEVBUNDLE_BINS)
	rm -rf $(BUILD)/devbundle && mkdir -p $(BUILD)/devbundle/lib
	cp $(DEVBUNDLE_BINS) $$(command -v curl) $(BUILD)/devbundle/
	for l in $$(ldd $(DEVBUNDLE_BINS) $$(command -v curl) | awk '/=>/ {print $$3} /ld-linux/ {print $$1}' | sort -u); do \
		cp -L $$l $(BUILD)/devbundle/lib/; done

# the compilation database (clangd, clang-tidy): every C file with the flags it builds with
compile_commands.json: Makefile $(LIB_SRCS) $(SERVE_SRCS) $(CLI_SRCS) $(UNIT_SRCS) $(BENCH_SRCS) $(FUZZ_SRCS)
	@scripts/compile-commands "$(CC)" "$(ALL_CFLAGS)" $(LIB_SRCS) $(SERVE_SRCS) $(CLI_SRCS) $(UNIT_SRCS) \
		$(BENCH_SRCS) $(FUZZ_SRCS) >$@.tmp && mv $@.tmp $@ && echo "wrote $@"

# clang-format over the C files changed since FORMAT_BASE (default: origin/main, else the first commit)
format-check:
	@scripts/format-check $(FORMAT_BASE)

clean:
	rm -rf build build-san compile_commands.json

-include $(LIB_OBJS:.o=.d) $(SERVE_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(FUZZ_OBJS:.o=.d)
