#!/bin/sh
# EM-DPO benchmarks. Invoked by `make bench` as
#   sh bench/run.sh build/emdpo [all|flexmix|det|se|scale|llama|tokenize|load|lora|lora-mem|lora-ckpt]
# Default (no second argument): flexmix comparison + determinism check.
#   flexmix  emdpo vs R flexmix on 2000 annotators x 8 decisions x 3 items, K=3, p=5
#   det      same seed, 1 vs 2 threads: log-likelihood bits
#   se       standard errors of the fit: emdpo's exact observed information vs
#            flexmix's refit() (numerical Hessian; several minutes in R)
#   scale    10^6 annotators x 8 x 3, p=5 (needs ~1.5 GB RAM, ~1-2 min)
#   llama    Llama engine: one DPO step (forward + backward, 64 x 64 tokens on
#            the 3.3M-parameter model, 32 x 128 on the 19.2M one) vs PyTorch
#            (/usr/bin/python3) in wall and CPU time, forward tokens/s, and
#            2048^3 peaks of OpenBLAS's sgemm and of emdpo's own kernel;
#            LROUNDS alternating rounds (default 3), LREPS steps each (default 5)
#   tokenize emdpo tokenize vs npm tokenizers (bench/tokenize.sh)
#   load     loading a 135M-parameter bf16 safetensors checkpoint vs PyTorch and
#            cat (bench/st_load.sh)
#   lora     LoRA DPO step (r 16, alpha 32, all seven projections) on a
#            SmolLM2-135M-shaped random model (bench/st_model.py), 4 pairs x
#            T = 256: PyTorch (bench/lora_torch.py) vs emdpo on a float32
#            base vs emdpo on a frozen bf16 base, LORA_ROUNDS alternating
#            rounds (default 2), LORA_REPS timed steps each (default 1) after
#            one warm-up step; wall and CPU time, peak RSS of each process
#   lora-mem peak RSS (GNU time) of `emdpo fit --policy llama --k LORA_K
#            --lora-r 16` (default K 4; one M-step of LORA_STEPS steps per
#            type, default 1) against `emdpo dpo --lora-r 16` (one step) on
#            the same 4 pairs, on the bf16 model (loaded frozen) and on a
#            float32 copy; LORA_BATCH decisions per micro-batch (4, the
#            default: one pass of the 4 pairs; 1: 4 micro-batches) and
#            LORA_SCORE_BATCH sequences per scoring pass (default 16);
#            LORA_CKPT=1: both with --grad-checkpoint
#   lora-ckpt the LoRA DPO step on the bf16 base without and with activation
#            checkpointing, alternating: step time, CPU time, peak RSS
#   all      everything but llama, tokenize, load, lora, lora-mem, lora-ckpt
# Environment: REPS (emdpo repeats, default 7), RREPS (flexmix repeats, 5),
# FROUNDS (alternating flexmix/emdpo rounds, 3),
# SCALE_N (annotators of the scale run, 1000000), BENCH_DIR (scratch, default build/bench).
# The first argument (the CLI path) only locates the build directory.
set -eu

EMDPO=${1:-build/emdpo}
WHAT=${2:-default}
BUILD=$(dirname "$EMDPO")
CC=${CC:-cc}
REPS=${REPS:-7}
RREPS=${RREPS:-5}
FROUNDS=${FROUNDS:-3}
SCALE_N=${SCALE_N:-1000000}
OUT=${BENCH_DIR:-$BUILD/bench}
mkdir -p "$OUT"
[ "$WHAT" = tokenize ] && exec sh bench/tokenize.sh "$EMDPO"
[ "$WHAT" = load ] && exec sh bench/st_load.sh "$EMDPO"

make -s "$BUILD/libemdpo.a"
BIN="$OUT/bench_em"
$CC -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -O3 -march=native -fopenmp -Wall -Wextra \
    bench/bench_em.c "$BUILD/libemdpo.a" -lopenblas -lpcre2-8 -lutf8proc -lz -lm -fopenmp -o "$BIN"

CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
echo "machine: ${CPU:-unknown}, $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"

# field NAME LINE: the value of NAME=... in a RESULT line
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
row() { printf '%-44s %12s %14s %10s\n' "$1" "$2" "$3" "$4" | tee -a "$SUMMARY" >/dev/null; }
row "measurement" "seconds" "loglik" "ratio"

# Rounds alternate flexmix and emdpo so that both see the same machine
# load; each figure is the median over rounds of each program's median, and
# the ratio is the median of the per-round ratios. Round r's flexmix starts
# from seeds (r - 1) * RREPS + 1 on; its log-likelihood is the best of all.
# emdpo runs on one thread, as R does.
run_flexmix() {
    CSV="$OUT/flexmix_2000x8x3.csv"
    "$BIN" flexmix-data "$CSV" 2000 1
    HAVE_R=0
    if ! command -v Rscript >/dev/null 2>&1; then
        echo "flexmix: Rscript not found, skipping the R peer"
    elif ! Rscript -e 'quit(status = !requireNamespace("flexmix", quietly = TRUE))' >/dev/null 2>&1; then
        echo "flexmix: R package flexmix not installed, skipping the R peer"
    else
        HAVE_R=1
    fi
    FLOG="$OUT/flexmix.log"
    : > "$FLOG"
    for r in $(seq "$FROUNDS"); do
        if [ "$HAVE_R" = 1 ]; then
            Rscript bench/flexmix_em.R "$CSV" 3 "$RREPS" 1e-6 $(((r - 1) * RREPS + 1)) | tee /dev/stderr | grep '^RESULT' |
                sed "s/\$/ round=$r/" >> "$FLOG"
        fi
        OMP_NUM_THREADS=1 "$BIN" fit "$CSV" "$REPS" 1e-6 1 | tee /dev/stderr | grep '^RESULT' |
            sed "s/\$/ round=$r/" >> "$FLOG"
    done
    E8=$(OMP_NUM_THREADS=1 "$BIN" fit "$CSV" "$REPS" 1e-8 1 | tee /dev/stderr | grep '^RESULT')
    E10=$(OMP_NUM_THREADS=1 "$BIN" fit "$CSV" "$REPS" 1e-6 10 | tee /dev/stderr | grep '^RESULT')
    pickf() { grep "tool=$1 " "$FLOG" | while read -r line; do field "$2" "$line"; done | med; }
    FS=$(pickf flexmix median_s)
    ES=$(pickf emdpo median_s)
    L1=$(grep "tool=emdpo " "$FLOG" | tail -1)
    R="-"
    if [ "$HAVE_R" = 1 ]; then
        R=$(for r in $(seq "$FROUNDS"); do
            a=$(field median_s "$(grep "tool=flexmix .*round=$r\$" "$FLOG")")
            b=$(field median_s "$(grep "tool=emdpo .*round=$r\$" "$FLOG")")
            awk -v a="$a" -v b="$b" 'BEGIN { print a / b }'
        done | med | awk '{ printf "%.0fx", $1 }')
        FL=$(grep 'tool=flexmix ' "$FLOG" | while read -r line; do field loglik "$line"; done | sort -g | tail -1)
        row "flexmix 2.3 EM, 1 start, tol 1e-6 (best)" "$FS" "$FL" "1"
    fi
    row "emdpo EM, 1 start, tol 1e-6" "$ES" "$(field loglik "$L1")" "$R"
    row "  (its CPU seconds, 1 thread)" "$(pickf emdpo median_cpu_s)" "-" "-"
    for L in "$E8" "$E10"; do
        S=$(field median_s "$L")
        R="-"
        [ -n "$FS" ] && [ "$FS" != "-" ] && R=$(awk -v a="$FS" -v b="$S" 'BEGIN { printf "%.0fx", a / b }')
        row "emdpo EM, $(field starts "$L") start(s), tol $(field tol "$L")" "$S" "$(field loglik "$L")" "$R"
    done
}

run_det() {
    D1=$("$BIN" det "$OUT/flexmix_2000x8x3.csv" | tee /dev/stderr | grep '^RESULT') || true
    D2=$("$BIN" det sim:100000 | tee /dev/stderr | grep '^RESULT') || true
    row "determinism 2000 annot, 1 vs 2 threads" "-" "$(field bits1 "$D1")" "same=$(field identical "$D1")"
    row "determinism 1e5 annot, 1 vs 2 threads" "-" "$(field bits1 "$D2")" "same=$(field identical "$D2")"
}

run_se() {
    CSV="$OUT/flexmix_2000x8x3.csv"
    [ -f "$CSV" ] || "$BIN" flexmix-data "$CSV" 2000 1
    ES=$("$BIN" se "$CSV" "$REPS" | tee /dev/stderr | grep '^RESULT')
    RS=""
    if command -v Rscript >/dev/null 2>&1 &&
        Rscript -e 'quit(status = !requireNamespace("flexmix", quietly = TRUE))' >/dev/null 2>&1; then
        RS=$(Rscript bench/flexmix_se.R "$CSV" 3 1 | tee /dev/stderr | grep '^RESULT')
        row "flexmix refit() standard errors" "$(field seconds "$RS")" "$(field loglik "$RS")" "1"
        row "emdpo standard errors" "$(field median_s "$ES")" "-" \
            "$(awk -v a="$(field seconds "$RS")" -v b="$(field median_s "$ES")" 'BEGIN { printf "%.0fx", a / b }')"
    else
        echo "se: R or flexmix missing, skipping the R peer"
        row "emdpo standard errors" "$(field median_s "$ES")" "-" "-"
    fi
}

run_scale() {
    SC=$("$BIN" scale "$SCALE_N" 500 1e-9 | tee /dev/stderr | grep '^RESULT')
    row "scale ${SCALE_N} annot: s per EM iteration" "$(field s_per_iter "$SC")" "$(field loglik "$SC")" "target<1"
    row "scale: CPU s per EM iteration ($(field threads "$SC") thr)" "$(field cpu_s_per_iter "$SC")" "-" "-"
    row "scale: one E-step" "$(field estep_s "$SC")" "-" "-"
    row "scale: one M-step from 0 ($(field newton_steps "$SC") Newton)" "$(field mstep_s "$SC")" "-" "-"
    row "scale: peak RSS MB / features MB" "$(field peak_rss_mb "$SC")" "$(field feature_mb "$SC")" \
        "$(field rss_ratio "$SC") <2"
}

# median of the numbers on stdin
med() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# ratio A B: A / B line by line of two files
ratio() { paste -d' ' "$1" "$2" | awk '$1 != "" && $2 != "" { printf "%.3f\n", $1 / $2 }'; }
# summ: "median (min..max)" of the numbers on stdin
summ() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.4g (%.4g..%.4g)\n", m, v[1], v[NR] }'; }

# Rounds alternate the peers so that both see the same machine load; each
# figure is the median over rounds of each program's own median, with the
# range over rounds after it; ratios are taken round by round (same load)
# and then summarised the same way. CPU seconds count all threads.
run_llama() {
    LBIN="$OUT/bench_llama"
    $CC -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -O3 -march=native -fopenmp -Wall \
        -Wextra bench/bench_llama.c "$BUILD/libemdpo.a" -lopenblas -lpcre2-8 -lutf8proc -lz -lm -fopenmp -o "$LBIN"
    LROUNDS=${LROUNDS:-3}
    LREPS=${LREPS:-5}
    PY=${PYTHON:-/usr/bin/python3}
    LOG="$OUT/llama.log"
    : > "$LOG"
    for r in $(seq "$LROUNDS"); do
        "$LBIN" sgemm 5 | sed "s/\$/ round=$r/" | tee -a "$LOG"
        "$LBIN" kernel 5 | sed "s/\$/ round=$r/" | tee -a "$LOG"
        for m in small large; do
            "$PY" bench/torch_dpo_step.py "$m" "$LREPS" 2 2>/dev/null | grep '^RESULT' | sed "s/\$/ round=$r/" | tee -a "$LOG"
            "$LBIN" step "$m" "$LREPS" | sed "s/\$/ round=$r/" | tee -a "$LOG"
        done
    done
    # vals PEER FILTER FIELD: one value per round
    vals() { grep "peer=$1" "$LOG" | grep -- "${2:-}" | while read -r line; do field "$3" "$line"; done; }
    T1="$OUT/llama.a" T2="$OUT/llama.b"
    SG=$(vals sgemm "" gflops | med)
    KG=$(vals kernel "" gflops | med)
    row "sgemm 2048^3 GFLOP/s ($(vals sgemm "" core | head -1) kernels)" "-" "$(vals sgemm "" gflops | summ)" "-"
    row "emdpo kernel 2048^3 GFLOP/s ($(vals kernel "" path | head -1))" "-" "$(vals kernel "" gflops | summ)" "-"
    for m in small large; do
        f="model=$m "
        row "llama $m step: torch s" "$(vals torch "$f" median_s | summ)" "-" "1"
        row "llama $m step: torch CPU s" "$(vals torch "$f" cpu_s | summ)" "-" "-"
        row "llama $m step: emdpo s" "$(vals emdpo "$f" median_s | summ)" "-" "-"
        row "llama $m step: emdpo CPU s" "$(vals emdpo "$f" cpu_s | summ)" "-" "-"
        vals torch "$f" median_s > "$T1"; vals emdpo "$f" median_s > "$T2"
        row "llama $m: step rate emdpo/torch" "-" "$(ratio "$T1" "$T2" | summ)" "$(ratio "$T1" "$T2" | med)x"
        vals torch "$f" cpu_s > "$T1"; vals emdpo "$f" cpu_s > "$T2"
        row "llama $m: CPU time torch/emdpo" "-" "$(ratio "$T1" "$T2" | summ)" "-"
        EG=$(vals emdpo "$f" gflops | med)
        row "llama $m: emdpo GFLOP/s, % of sgemm median" "-" "$(vals emdpo "$f" gflops | summ)" \
            "$(awk -v a="$EG" -v b="$SG" 'BEGIN { printf "%.0f%%", 100 * a / b }')"
        row "llama $m: same, % of emdpo kernel median" "-" "-" \
            "$(awk -v a="$EG" -v b="$KG" 'BEGIN { printf "%.0f%%", 100 * a / b }')"
        vals emdpo "$f" fwd_tok_per_s > "$T1"; vals emdpo "$f" tok_per_s > "$T2"
        row "llama $m: emdpo forward tok/s / step tok/s" "$(vals emdpo "$f" fwd_tok_per_s | summ)" \
            "$(ratio "$T1" "$T2" | summ)" "$(ratio "$T1" "$T2" | med)x"
        vals emdpo "$f" cpu_s > "$T1"; vals emdpo "$f" fwd_cpu_s > "$T2"
        row "llama $m: same, in CPU time" "-" "$(ratio "$T1" "$T2" | summ)" "-"
        row "llama $m: emdpo peak RSS MB" "-" "$(vals emdpo "$f" peak_rss_mb | med)" "-"
    done
    rm -f "$T1" "$T2"
}

# The LoRA benchmarks' program and model (bench/bench_lora.c, bench/st_model.py).
lora_setup() {
    LBIN="$OUT/bench_lora"
    $CC -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -O3 -march=native -fopenmp -Wall \
        -Wextra bench/bench_lora.c "$BUILD/libemdpo.a" -lopenblas -lpcre2-8 -lutf8proc -lz -lm -fopenmp -o "$LBIN"
    PY=${PYTHON:-/usr/bin/python3}
    LMODEL="$OUT/smollm2_135m_bf16"
    [ -f "$LMODEL/model.safetensors" ] && [ -f "$LMODEL/tokenizer.bin" ] || "$PY" bench/st_model.py write "$LMODEL"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# lvals FILTER FIELD: FIELD of the log lines matching FILTER, one per round
lvals() { grep -- "$1" "$LOG" | while read -r line; do field "$2" "$line"; done; }

run_lora() {
    lora_setup
    LORA_ROUNDS=${LORA_ROUNDS:-2}
    LORA_REPS=${LORA_REPS:-1}
    LOG="$OUT/lora.log"
    : > "$LOG"
    for r in $(seq "$LORA_ROUNDS"); do
        "$PY" bench/lora_torch.py "$LORA_REPS" 2 2>/dev/null | grep '^RESULT' | sed "s/\$/ round=$r/" | tee -a "$LOG"
        for b in f32 bf16; do
            "$LBIN" dpo "$LMODEL" "$b" "$LORA_REPS" | sed "s/\$/ round=$r/" | tee -a "$LOG"
        done
    done
    echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    T1="$OUT/lora.a" T2="$OUT/lora.b"
    row "LoRA DPO step: torch s" "$(lvals peer=torch median_s | summ)" "-" "1"
    row "LoRA DPO step: torch CPU s" "$(lvals peer=torch cpu_s | summ)" "-" "-"
    for b in f32 bf16; do
        f="mode=dpo base=$b "
        row "LoRA DPO step: emdpo $b base s" "$(lvals "$f" median_s | summ)" "-" "-"
        row "LoRA DPO step: emdpo $b base CPU s" "$(lvals "$f" cpu_s | summ)" "-" "-"
        lvals peer=torch median_s > "$T1"; lvals "$f" median_s > "$T2"
        row "LoRA step rate emdpo $b / torch" "-" "$(ratio "$T1" "$T2" | summ)" "$(ratio "$T1" "$T2" | med)x"
        lvals peer=torch cpu_s > "$T1"; lvals "$f" cpu_s > "$T2"
        row "LoRA CPU time torch / emdpo $b" "-" "$(ratio "$T1" "$T2" | summ)" "-"
        row "LoRA reference pass emdpo $b s" "$(lvals "$f" ref_s | summ)" "-" "-"
    done
    lvals "mode=dpo base=bf16 " median_s > "$T1"; lvals "mode=dpo base=f32 " median_s > "$T2"
    row "LoRA step time bf16 base / f32 base" "-" "$(ratio "$T1" "$T2" | summ)" "$(ratio "$T1" "$T2" | med)x"
    row "LoRA DPO peak RSS MB: torch" "-" "$(lvals peer=torch peak_rss_mb | med)" "-"
    row "LoRA DPO peak RSS MB: emdpo f32 / bf16" "-" "$(lvals "mode=dpo base=f32 " peak_rss_mb | med)" \
        "$(lvals "mode=dpo base=bf16 " peak_rss_mb | med)"
    rm -f "$T1" "$T2"
}

# Activation checkpointing: the same LoRA DPO step on the bf16 base without
# and with it, alternating in each round: step time and peak RSS.
run_lora_ckpt() {
    lora_setup
    LORA_ROUNDS=${LORA_ROUNDS:-2}
    LORA_REPS=${LORA_REPS:-1}
    LOG="$OUT/lora_ckpt.log"
    : > "$LOG"
    "$LBIN" sizes | tee -a "$LOG"
    for r in $(seq "$LORA_ROUNDS"); do
        "$LBIN" dpo "$LMODEL" bf16 "$LORA_REPS" | sed "s/\$/ round=$r/" | tee -a "$LOG"
        "$LBIN" dpo "$LMODEL" bf16 "$LORA_REPS" ckpt | sed "s/\$/ round=$r/" | tee -a "$LOG"
    done
    echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    T1="$OUT/lora.a" T2="$OUT/lora.b"
    S=$(grep 'mode=sizes' "$LOG")
    row "training acts MiB (8 seqs): all / checkpointed" "-" "$(field train_acts_mib "$S")" \
        "$(field ckpt_train_acts_mib "$S")"
    for c in 0 1; do
        row "LoRA DPO step bf16, ckpt=$c: s (CPU s)" "$(lvals "ckpt=$c " median_s | summ)" \
            "$(lvals "ckpt=$c " cpu_s | summ)" "-"
        row "  peak RSS MB" "-" "$(lvals "ckpt=$c " peak_rss_mb | summ)" "-"
    done
    lvals "ckpt=1 " median_s > "$T1"; lvals "ckpt=0 " median_s > "$T2"
    row "step time checkpointed / not" "-" "$(ratio "$T1" "$T2" | summ)" "$(ratio "$T1" "$T2" | med)x"
    lvals "ckpt=1 " cpu_s > "$T1"; lvals "ckpt=0 " cpu_s > "$T2"
    row "CPU time checkpointed / not" "-" "$(ratio "$T1" "$T2" | summ)" "$(ratio "$T1" "$T2" | med)x"
    rm -f "$T1" "$T2"
}

# Peak RSS of the CLI itself (GNU time's %M), as a user runs it: emdpo dpo
# --lora-r 16 (one step) and emdpo fit --policy llama --k K --lora-r 16 (one
# M-step of LORA_STEPS steps per type: --max-iter 0), on the bf16 file (which
# LoRA commands load frozen) and on a float32 copy of it (emdpo convert).
run_lora_mem() {
    lora_setup
    K=${LORA_K:-4}
    STEPS=${LORA_STEPS:-1}
    LB=${LORA_BATCH:-4}
    SB=${LORA_SCORE_BATCH:-16}
    CK=""
    [ "${LORA_CKPT:-0}" = 1 ] && CK="--grad-checkpoint"
    TIME=/usr/bin/time
    [ -x "$TIME" ] || { echo "lora-mem: GNU time (/usr/bin/time) not found" >&2; exit 1; }
    M32="$OUT/smollm2_135m_f32"
    [ -f "$M32/model.safetensors" ] || "$EMDPO" convert --model "$LMODEL" --out "$M32" --save-dtype f32 >/dev/null
    PAIRS="$OUT/lora_pairs.jsonl"
    "$LBIN" data "$PAIRS"
    LOG="$OUT/lora_mem.log"
    : > "$LOG"
    "$LBIN" sizes | tee -a "$LOG"
    COMMON="--data $PAIRS --tokenizer $LMODEL/tokenizer.bin --lora-r 16 --lora-alpha 32 --batch $LB \
        --accum $((4 / LB)) --max-length 256 --max-prompt-length 128 --quiet $CK"
    for b in bf16 f32; do
        MD=$LMODEL
        [ "$b" = f32 ] && MD=$M32
        rm -rf "$OUT/lora_dpo_$b" "$OUT/lora_fit_$b"
        # shellcheck disable=SC2086
        "$TIME" -o "$OUT/lora_time.txt" -f "RESULT mode=cli-dpo base=$b peak_rss_kb=%M wall_s=%e user_s=%U sys_s=%S" \
            "$EMDPO" dpo --model "$MD" $COMMON --steps 1 --out "$OUT/lora_dpo_$b"
        tee -a "$LOG" < "$OUT/lora_time.txt"
        # shellcheck disable=SC2086
        "$TIME" -o "$OUT/lora_time.txt" -f "RESULT mode=cli-fit base=$b peak_rss_kb=%M wall_s=%e user_s=%U sys_s=%S" \
            "$EMDPO" fit --policy llama --model "$MD" $COMMON --k "$K" --max-iter 0 --steps "$STEPS" \
            --score-batch "$SB" --out "$OUT/lora_fit_$b"
        tee -a "$LOG" < "$OUT/lora_time.txt"
    done
    echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    S=$(grep 'mode=sizes' "$LOG")
    row "base MiB f32 / bf16" "-" "$(field base_f32_mib "$S")" "$(field base_bf16_mib "$S")"
    row "one adapter MiB; training acts MiB (8 seqs)" "-" "$(field adapter_mib "$S")" "$(field train_acts_mib "$S")"
    mib() { field peak_rss_kb "$(grep "mode=$1 base=$2 " "$LOG")" | awk '{ printf "%.0f", $1 / 1024 }'; }
    for b in bf16 f32; do
        D=$(mib cli-dpo "$b") E=$(mib cli-fit "$b")
        row "peak RSS MiB, $b base: dpo / fit K=$K" "-" "$D" "$E"
        row "  fit / dpo (batch $LB, score batch $SB${CK:+, $CK})" "-" "-" "$(awk -v a="$E" -v b="$D" 'BEGIN { printf "%.3fx", a / b }')"
        row "  fit s (1 M-step, $STEPS step(s) per type)" "$(field wall_s "$(grep "mode=cli-fit base=$b " "$LOG")")" "-" "-"
    done
}

case "$WHAT" in
    default) run_flexmix; run_det ;;
    flexmix) run_flexmix ;;
    det) [ -f "$OUT/flexmix_2000x8x3.csv" ] || "$BIN" flexmix-data "$OUT/flexmix_2000x8x3.csv" 2000 1; run_det ;;
    se) run_se ;;
    scale) run_scale ;;
    all) run_flexmix; run_det; run_scale ;;
    llama) run_llama ;;
    lora) run_lora ;;
    lora-mem) run_lora_mem ;;
    lora-ckpt) run_lora_ckpt ;;
    *) echo "usage: sh bench/run.sh build/emdpo [all|flexmix|det|se|scale|llama|tokenize|load|lora|lora-mem]" >&2; exit 2 ;;
esac

echo
echo "== summary (medians; ratio = peer seconds / emdpo seconds, same run) =="
cat "$SUMMARY"
