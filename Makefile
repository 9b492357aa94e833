# emdpo build. `make` builds the library and CLI; `make test` runs the tests;
# `make sanitize` runs them under ASan+UBSan; `make bench` runs benchmarks.
CC      ?= cc
OPT     ?= -O3 -march=native
CFLAGS  ?= $(OPT) -g
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror=implicit-function-declaration
CPPFLAGS += -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc
OMP     ?= -fopenmp
LDLIBS  += -lopenblas -lm
BUILD   ?= build

LIB_SRC  := $(sort $(shell find src -name '*.c'))
LIB_HDR  := $(shell find src -name '*.h') $(wildcard include/*.h include/emdpo/*.h)
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:cli/%.c=$(BUILD)/cli/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

.PHONY: all test sanitize bench clean demo demo-loglinear demo-goqa fuzz
all: $(BUILD)/emdpo

$(BUILD)/obj/%.o: src/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(OMP) -c $< -o $@

$(BUILD)/cli/%.o: cli/%.c $(LIB_HDR) $(wildcard cli/*.h)
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(OMP) -c $< -o $@

$(BUILD)/libemdpo.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/emdpo: $(CLI_OBJ) $(BUILD)/libemdpo.a
	$(CC) $(CFLAGS) $(OMP) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) tests/check.h $(BUILD)/libemdpo.a
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $(WARN) $(OMP) $< $(TEST_SUPPORT) $(BUILD)/libemdpo.a -o $@ $(LDLIBS)

# Runs every test binary, then the CLI tests; prints one closing summary line.
test: $(TEST_BIN) $(BUILD)/emdpo
	@EMDPO=$(BUILD)/emdpo sh tests/run_all.sh $(TEST_BIN)

SAN := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
sanitize:
	$(MAKE) BUILD=build-san OPT= CFLAGS="$(SAN)" LDLIBS="-lopenblas -lm -fsanitize=address,undefined" test

bench: $(BUILD)/emdpo
	sh bench/run.sh $(BUILD)/emdpo

demo-loglinear: $(BUILD)/emdpo
	sh tools/demo_loglinear.sh $(BUILD)/emdpo

demo: $(BUILD)/emdpo
	sh tools/demo.sh $(BUILD)/emdpo

demo-goqa: $(BUILD)/emdpo
	sh tools/demo_goqa.sh $(BUILD)/emdpo

# libFuzzer targets (clang); see fuzz/README.md for running them.
FUZZ_CF := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -g -O1 \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
fuzz:
	@mkdir -p build/fuzz
	clang $(FUZZ_CF) fuzz/fuzz_safetensors.c src/lm/io/safetensors.c src/lm/io/llama_hf.c src/lm/engine/llama.c src/base/rng.c \
		src/base/json.c src/base/utf8.c src/base/diag.c src/base/alloc.c src/base/status.c src/base/afile.c -lm -o build/fuzz/fuzz_safetensors
	clang $(FUZZ_CF) fuzz/fuzz_tokenizer.c src/lm/io/tokenizer.c src/base/diag.c src/base/alloc.c src/base/status.c -lm \
		-o build/fuzz/fuzz_tokenizer

clean:
	rm -rf build build-san
