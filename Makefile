# emdpo build. `make` builds the library (static and shared) and the CLI;
# `make test` runs the tests; `make sanitize` runs them under ASan+UBSan;
# `make bench` runs benchmarks; `make install` installs the library, its
# headers, pkg-config file, the CLI and its man page under PREFIX.
CC      ?= cc
OPT     ?= -O3 -march=native
CFLAGS  ?= $(OPT) -g
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror=implicit-function-declaration
CPPFLAGS += -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc
OMP     ?= -fopenmp
LDLIBS  += -lopenblas -lpcre2-8 -lutf8proc -lz -lm
# `make MPI=1`: the library and CLI built with mpicc and linked with MPI
# (src/base/dist.c), in build-mpi/ so that the default build stays MPI-free.
ifeq ($(MPI),1)
CC      := mpicc
CPPFLAGS += -DEMDPO_MPI
BUILD   ?= build-mpi
endif
BUILD   ?= build

# The library's version: the shared object is libemdpo.so.VERSION with the
# soname libemdpo.so.MAJOR. include/emdpo/common.h states the same numbers.
VERSION := 0.2.0
SOMAJOR := 0

PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man

LIB_SRC  := $(sort $(shell find src -name '*.c'))
LIB_HDR  := $(shell find src -name '*.h') $(wildcard include/*.h include/emdpo/*.h)
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
PIC_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/pic/%.o)
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:cli/%.c=$(BUILD)/cli/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
API_SRC  := $(sort $(wildcard tests/api/test_api_*.c))
API_BIN  := $(API_SRC:tests/api/%.c=$(BUILD)/tests/%)
SO       := $(BUILD)/libemdpo.so.$(VERSION)

.PHONY: all lib test sanitize sanitize-mpi bench clean demo demo-loglinear demo-goqa fuzz fuzz-smoke install uninstall
all: $(BUILD)/emdpo $(SO)
lib: $(BUILD)/libemdpo.a $(SO)

# Two sets of library objects, as libtool makes them: plain ones for
# libemdpo.a (and the CLI, tests and benchmarks linked with it), and
# position-independent ones for the shared object, with hidden visibility so
# that it exports the EMDPO_API functions only. Position-independent code
# measured about 5% slower on the Llama engine's large step here.
$(BUILD)/obj/%.o: src/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(OMP) -c $< -o $@

$(BUILD)/pic/%.o: src/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	@echo "CC $< (shared)"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(OMP) -fPIC -fvisibility=hidden -fno-semantic-interposition -c $< -o $@

$(BUILD)/cli/%.o: cli/%.c $(wildcard include/*.h include/emdpo/*.h) $(wildcard cli/*.h)
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) -D_POSIX_C_SOURCE=200809L -Iinclude $(CFLAGS) $(WARN) -c $< -o $@

$(BUILD)/libemdpo.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@ && ar rcs $@ $^

$(SO): $(PIC_OBJ)
	@mkdir -p $(@D)
	@echo "LD $@"
	@$(CC) $(CFLAGS) $(OMP) -shared -Wl,-soname,libemdpo.so.$(SOMAJOR) $^ -o $@ $(LDLIBS)
	@ln -sf libemdpo.so.$(VERSION) $(BUILD)/libemdpo.so.$(SOMAJOR)
	@ln -sf libemdpo.so.$(SOMAJOR) $(BUILD)/libemdpo.so

$(BUILD)/emdpo: $(CLI_OBJ) $(BUILD)/libemdpo.a
	$(CC) $(CFLAGS) $(OMP) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) tests/check.h $(BUILD)/libemdpo.a
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $(WARN) $(OMP) $< $(TEST_SUPPORT) $(BUILD)/libemdpo.a -o $@ $(LDLIBS)

# Tests of the public API: they see include/ only and link the shared
# object, so a function the library does not export cannot be called.
$(BUILD)/tests/test_api_%: tests/api/test_api_%.c tests/api/api_util.h tests/check.h tests/failalloc.c $(SO)
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) -D_POSIX_C_SOURCE=200809L -Iinclude -Itests $(CFLAGS) $(WARN) $< tests/failalloc.c -L$(BUILD) -lemdpo \
		-Wl,-rpath,$(abspath $(BUILD)) -o $@ -lm

# Runs every test binary, then the shell tests; prints one closing summary line.
test: $(TEST_BIN) $(API_BIN) $(BUILD)/emdpo $(SO)
	@EMDPO=$(BUILD)/emdpo BUILD=$(BUILD) CC="$(CC)" CFLAGS="$(CFLAGS)" \
		sh tests/run_all.sh $(TEST_BIN) $(API_BIN)

SAN := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
sanitize:
	$(MAKE) BUILD=build-san OPT= CFLAGS="$(SAN)" LDLIBS="-lopenblas -lpcre2-8 -lutf8proc -lz -lm -fsanitize=address,undefined" test

# The MPI build's distributed runs under the same sanitizers, without
# leak detection: Open MPI unloads its plugins before LeakSanitizer
# reports, so what they keep until exit cannot be told from emdpo's (the
# same library code is leak-checked by `make sanitize`).
sanitize-mpi:
	$(MAKE) MPI=1 BUILD=build-mpi-san OPT= CFLAGS="$(SAN)" \
		LDLIBS="-lopenblas -lpcre2-8 -lutf8proc -lz -lm -fsanitize=address,undefined" build-mpi-san/emdpo
	ASAN_OPTIONS=detect_leaks=0 sh tests/cli_mpi.sh build-mpi-san/emdpo
	ASAN_OPTIONS=detect_leaks=0 MPI_TEST_CFLAGS="$(SAN)" sh tests/cli_mpi_lm.sh build-mpi-san/emdpo

bench: $(BUILD)/emdpo
	sh bench/run.sh $(BUILD)/emdpo

demo-loglinear: $(BUILD)/emdpo
	sh tools/demo_loglinear.sh $(BUILD)/emdpo

demo: $(BUILD)/emdpo
	sh tools/demo.sh $(BUILD)/emdpo

demo-goqa: $(BUILD)/emdpo
	sh tools/demo_goqa.sh $(BUILD)/emdpo

# emdpo.pc names the install's directories, so it is made at install time.
install: $(BUILD)/emdpo $(BUILD)/libemdpo.a $(SO)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)/emdpo $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(BUILD)/libemdpo.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libemdpo.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libemdpo.so.$(SOMAJOR)
	ln -sf libemdpo.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libemdpo.so
	install -m 644 include/emdpo.h $(DESTDIR)$(INCDIR)/
	install -m 644 include/emdpo/*.h $(DESTDIR)$(INCDIR)/emdpo/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCDIR@|$(INCDIR)|; s|@VERSION@|$(VERSION)|' \
		emdpo.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/emdpo.pc
	install -m 755 $(BUILD)/emdpo $(DESTDIR)$(BINDIR)/
	install -m 644 docs/emdpo.1 $(DESTDIR)$(MANDIR)/man1/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libemdpo.a $(DESTDIR)$(LIBDIR)/libemdpo.so $(DESTDIR)$(LIBDIR)/libemdpo.so.$(SOMAJOR) \
		$(DESTDIR)$(LIBDIR)/libemdpo.so.$(VERSION) $(DESTDIR)$(LIBDIR)/pkgconfig/emdpo.pc \
		$(DESTDIR)$(INCDIR)/emdpo.h $(DESTDIR)$(BINDIR)/emdpo $(DESTDIR)$(MANDIR)/man1/emdpo.1
	rm -f $(addprefix $(DESTDIR)$(INCDIR)/emdpo/,$(notdir $(wildcard include/emdpo/*.h)))
	-rmdir $(DESTDIR)$(INCDIR)/emdpo 2>/dev/null

# libFuzzer targets (clang); see fuzz/README.md for running them. Each links
# the whole library (built once for the fuzzers, instrumented, without
# OpenMP), so that a harness never lists the files its parser happens to
# need. `make fuzz-smoke` runs every harness briefly over its seeds
# (tools/fuzz_smoke.sh; CI runs it).
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CF := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -g -O1 -Wno-unknown-pragmas $(FUZZ_SAN)
FUZZ_BIN := $(patsubst fuzz/%.c,build/fuzz/%,$(wildcard fuzz/fuzz_*.c))
FUZZ_OBJ := $(LIB_SRC:src/%.c=build/fuzz/obj/%.o)
fuzz: $(FUZZ_BIN)
build/fuzz/obj/%.o: src/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	@echo "CC $< (fuzz)"
	@clang $(FUZZ_CF) -fsanitize=fuzzer-no-link -c $< -o $@
build/fuzz/%: fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(@D)
	clang $(FUZZ_CF) -fsanitize=fuzzer $< $(FUZZ_OBJ) -lopenblas -lpcre2-8 -lutf8proc -lz -lm -o $@
fuzz-smoke: $(FUZZ_BIN)
	sh tools/fuzz_smoke.sh

clean:
	rm -rf build build-san
