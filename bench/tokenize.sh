#!/bin/sh
# Tokenizer benchmark (docs/BENCHMARKS.md, "Tokenizers"):
#   sh bench/tokenize.sh build/emdpo
# For the llama3 and llama2 tokenizer.json of ../shared: `emdpo tokenize` as
# a whole process (load, encode every line of standard input on all cores,
# print the ids) against npm tokenizers@0.23.2 doing the same job in node
# (bench/tokenize_hf.js: load, encodeBatch, print), ROUNDS alternating runs
# each (default 5), the same ids checked; then one-thread encode throughput
# and the load time of the tokenizer.json (bench/bench_tokenize.c).
# Environment: MB (input size, default 4), ROUNDS, BENCH_DIR (scratch,
# default build/bench), TOKENIZERS_NPM (a tokenizers package to use; else it
# is installed with npm into BENCH_DIR).
set -eu
EMDPO=${1:-build/emdpo}
BUILD=$(dirname "$EMDPO")
OUT=${BENCH_DIR:-$BUILD/bench}
ROUNDS=${ROUNDS:-5}
MB=${MB:-4}
S=../shared/data/tokenizers
mkdir -p "$OUT"
[ -f "$S/llama3/tokenizer.json" ] || { echo "tokenize bench: $S absent" >&2; exit 2; }

make -s "$EMDPO" "$BUILD/libemdpo.a"
${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -O3 -march=native -fopenmp -Wall -Wextra \
    bench/bench_tokenize.c "$BUILD/libemdpo.a" -lopenblas -lpcre2-8 -lutf8proc -lz -lm -o "$OUT/bench_tokenize"
python3 bench/tokenize_input.py "$OUT/tok_in.jsonl" "$MB"

if [ -z "${TOKENIZERS_NPM:-}" ]; then
    if [ ! -d "$OUT/npm/node_modules/tokenizers" ]; then
        mkdir -p "$OUT/npm"
        (cd "$OUT/npm" && npm install --silent tokenizers@0.23.2 >/dev/null 2>&1) ||
            echo "tokenize bench: npm could not install tokenizers@0.23.2; the peer is skipped" >&2
    fi
    TOKENIZERS_NPM=$(cd "$OUT/npm" 2>/dev/null && pwd)/node_modules/tokenizers
fi
export TOKENIZERS_NPM
peer=0
[ -d "$TOKENIZERS_NPM" ] && command -v node >/dev/null 2>&1 && peer=1

CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
echo "machine: ${CPU:-unknown}, $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"

now() { date +%s.%N; }
for tk in llama3 llama2; do
    J="$S/$tk/tokenizer.json"
    e_best=999999 h_best=999999
    r=0
    while [ $r -lt "$ROUNDS" ]; do
        t0=$(now)
        "$EMDPO" tokenize --tokenizer "$J" <"$OUT/tok_in.jsonl" >"$OUT/tok_e.txt"
        t1=$(now)
        e=$(echo "$t1 - $t0" | bc -l)
        e_best=$(echo "if ($e < $e_best) $e else $e_best" | bc -l)
        if [ $peer -eq 1 ]; then
            t0=$(now)
            node bench/tokenize_hf.js "$J" <"$OUT/tok_in.jsonl" >"$OUT/tok_h.txt"
            t1=$(now)
            h=$(echo "$t1 - $t0" | bc -l)
            h_best=$(echo "if ($h < $h_best) $h else $h_best" | bc -l)
        fi
        r=$((r + 1))
    done
    if [ $peer -eq 1 ]; then
        same=differ
        cmp -s "$OUT/tok_e.txt" "$OUT/tok_h.txt" && same=identical
        printf '%s whole job (best of %d): emdpo %.3f s, HF tokenizers (node) %.3f s, ratio HF/emdpo %.2f; ids %s\n' \
            "$tk" "$ROUNDS" "$e_best" "$h_best" "$(echo "$h_best / $e_best" | bc -l)" "$same"
    else
        printf '%s whole job (best of %d): emdpo %.3f s (no peer)\n' "$tk" "$ROUNDS" "$e_best"
    fi
    printf '%s: ' "$tk"
    "$OUT/bench_tokenize" "$J" "$OUT/tok_in.jsonl" 3
done
