#!/bin/sh
# Loading a 135M-parameter bfloat16 safetensors checkpoint (SmolLM2-135M's
# shape, random weights, tied embeddings: bench/st_model.py) for training,
# i.e. into float32 parameters, against peers measured in the same rounds:
#   cat        the file read from the page cache to /dev/null (disk speed
#              here: the file is cached after the first round)
#   touch      allocating and first writing the float32 size (513 MiB): the
#              floor of any float32 load, the kernel zeroing each fresh page
#   emdpo      emdpo_llama_load (bench/bench_load.c)
#   frozen     emdpo_llama_load_frozen, loading for scoring: the bf16
#              matrices kept in bf16 (its peak is compared with the file's
#              size, the goal being at most 1.1 times it)
#   emdpo gguf the same model as a bf16 GGUF file (emdpo convert), loaded the
#              same way; cat gguf reads that file as cat does
#   torch f32  PyTorch reading the file as the safetensors library's
#              load_file does (mmap, a copy per tensor), each tensor .float()
#   torch bf16 the same keeping bfloat16 (what scoring in bf16 would hold)
# Each program runs once unmeasured, then ROUNDS times (default 5) in a row;
# each figure is the median. (The first run of a program after another one
# can take several times longer here: the kernel's zeroing of fresh pages,
# which dominates a float32 load, varies with what ran before in this VM;
# back-to-back runs are stable.) Peak memory is the process's maxrss above
# its RSS before the load (PyTorch's import excluded).
#   sh bench/st_load.sh [build/emdpo]        (BENCH_DIR: scratch, default build/bench)
set -eu
EMDPO=${1:-build/emdpo}
BUILD=$(dirname "$EMDPO")
ROUNDS=${ROUNDS:-5}
OUT=${BENCH_DIR:-$BUILD/bench}
CC=${CC:-cc}
PY=/usr/bin/python3
mkdir -p "$OUT"
make -s "$BUILD/libemdpo.a"
$CC -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -O3 -march=native -fopenmp -Wall -Wextra bench/bench_load.c \
    "$BUILD/libemdpo.a" -lopenblas -lpcre2-8 -lutf8proc -lz -lm -fopenmp -o "$OUT/bench_load"
M="$OUT/smollm2_135m_bf16"
[ -f "$M/model.safetensors" ] && [ -f "$M/tokenizer.bin" ] || "$PY" bench/st_model.py write "$M"
F="$M/model.safetensors"
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
echo "machine: ${CPU:-unknown}, $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "file: $(($(stat -c %s "$F") / 1048576)) MiB bf16"
HAVE_TORCH=1
"$PY" -c "import torch" 2>/dev/null || { HAVE_TORCH=0; echo "note: no PyTorch at $PY: torch peers skipped"; }

field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
R="$OUT/st_load.txt"
: >"$R"
now() { date +%s.%N; }
cat "$F" >/dev/null
# runs NAME CMD...: one unmeasured run, then ROUNDS measured ones in a row.
runs() {
    "$@" >/dev/null
    r=1
    while [ $r -le "$ROUNDS" ]; do
        "$@" | sed -n 's/^RESULT //p' | tr ' ' '\n' >>"$R"
        r=$((r + 1))
    done
}
cat_once() {
    t0=$(now); cat "$F" >/dev/null; t1=$(now)
    echo "RESULT cat_s=$(echo "$t1 - $t0" | bc -l | sed 's/^\./0./')"
}
runs cat_once
runs "$OUT/bench_load" --touch 513
runs "$OUT/bench_load" "$M"
runs "$OUT/bench_load" "$M" frozen frozen
G="$OUT/smollm2_135m_bf16.gguf"
[ -f "$G" ] || "$EMDPO" convert --model "$M" --tokenizer "$M/tokenizer.bin" --out "$G" --dtype bf16
cat "$G" >/dev/null
cat_gguf_once() {
    t0=$(now); cat "$G" >/dev/null; t1=$(now)
    echo "RESULT cat_gguf_s=$(echo "$t1 - $t0" | bc -l | sed 's/^\./0./')"
}
runs cat_gguf_once
runs "$OUT/bench_load" "$G" gguf
runs "$OUT/bench_load" "$G" gguf_frozen frozen
if [ $HAVE_TORCH = 1 ]; then
    runs "$PY" bench/st_model.py load "$F" f32
    runs "$PY" bench/st_model.py load "$F" bf16
fi
median() { sed -n "s/^$1=//p" "$R" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
f32=$(median f32_mib)
printf '%-34s %10s %14s %10s\n' "median of $ROUNDS rounds" "seconds" "peak MiB" "x f32 size"
line() { printf '%-34s %10s %14s %10s\n' "$1" "$2" "$3" "$(echo "$3" | awk -v f="$f32" '$1 != "-" { printf "%.3f", $1 / f }')"; }
line "cat (page cache)" "$(median cat_s)" "-"
line "touch 513 MiB (floor)" "$(median touch_s)" "$(median touch_peak_mib)"
line "emdpo load -> f32" "$(median emdpo_s)" "$(median emdpo_peak_mib)"
fmib=$(($(stat -c %s "$F") / 1048576)); gmib=$(($(stat -c %s "$G") / 1048576))
ratio() { echo "$1" | awk -v f="$2" '$1 != "-" { printf "%.3f x file", $1 / f }'; }
printf '%-34s %10s %14s %10s\n' "emdpo load frozen (scoring)" "$(median frozen_s)" "$(median frozen_peak_mib)" \
    "$(ratio "$(median frozen_peak_mib)" "$fmib")"
line "cat gguf (page cache)" "$(median cat_gguf_s)" "-"
line "emdpo load gguf -> f32" "$(median gguf_s)" "$(median gguf_peak_mib)"
printf '%-34s %10s %14s %10s\n' "emdpo load gguf frozen (scoring)" "$(median gguf_frozen_s)" \
    "$(median gguf_frozen_peak_mib)" "$(ratio "$(median gguf_frozen_peak_mib)" "$gmib")"
[ $HAVE_TORCH = 1 ] && line "torch state dict -> f32" "$(median torch_f32_s)" "$(median torch_f32_peak_mib)"
[ $HAVE_TORCH = 1 ] && line "torch state dict, bf16" "$(median torch_bf16_s)" "$(median torch_bf16_peak_mib)"
echo "f32 size of the tensors: $f32 MiB"
