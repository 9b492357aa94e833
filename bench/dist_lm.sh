#!/bin/sh
# Data-parallel DPO step time on the same 2 cores two ways: one process
# with 2 threads and mpirun -np 2 with 1 thread each (docs/BENCHMARKS.md,
# "LM data parallel"). A fresh byte-level model (dim 256, 4 layers, 4
# heads, hidden 688: the Llama engine benchmark's small model on a
# 259-token vocabulary), 8 decisions a step of about 110 tokens per
# sequence; the step time is the median over STEPS steps (after the
# first) of examples / examples_per_second from the --log lines.
#   sh bench/dist_lm.sh [STEPS=12] [ROUNDS=2] [PEER]
# With PEER (another build's emdpo, e.g. from a worktree of an earlier
# commit) each round also runs np 2 x 1 thread with it, for a ratio
# measured in the same round. Needs Open MPI; builds build-mpi/emdpo.
set -eu
STEPS=${1:-12}
ROUNDS=${2:-2}
PEER=${3:-}
make -s MPI=1 build-mpi/emdpo
E=build-mpi/emdpo
. tests/lib_cli.sh # byte_tokenizer, and $T, a scratch directory removed at exit
. bench/lm_model.sh # $T/tok.bin, $T/prefs.jsonl, $T/sft
# float32 parameters: the safetensors file less its 8-byte length and its header
st="$T/sft/model.safetensors"
params=$((($(wc -c <"$st") - 8 - $(od -An -tu8 -N8 "$st")) / 4))
DPO="dpo --data $T/prefs.jsonl --model $T/sft --tokenizer $T/tok.bin --steps $STEPS --batch 8 --lr 1e-6 --quiet"
# median step seconds of a log, the first step left out
step_s() {
    sed -n 's/.*"examples_per_second": \([^,]*\),.*"step": \([0-9]*\),.*/\2 \1/p' "$1" |
        awk '$1 > 1 { print 8 / $2 }' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores;" \
    "$(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    mpirun -np 1 --bind-to none "$E" $DPO --threads 2 --out "$T/a" --log "$T/a.log"
    mpirun -np 2 --bind-to none "$E" $DPO --threads 1 --out "$T/b" --log "$T/b.log"
    a=$(step_s "$T/a.log") b=$(step_s "$T/b.log")
    echo "round $r: np 1 x 2 threads $a s/step, np 2 x 1 thread $b s/step, ratio $(awk -v a="$a" -v b="$b" \
        'BEGIN { printf "%.3f", b / a }'); load $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ -n "$PEER" ]; then
        mpirun -np 2 --bind-to none "$PEER" $DPO --threads 1 --out "$T/c" --log "$T/c.log"
        p=$(step_s "$T/c.log")
        echo "round $r: np 2 x 1 thread with $PEER $p s/step, this build / peer $(awk -v b="$b" -v p="$p" \
            'BEGIN { printf "%.3f", b / p }'); load $(cut -d' ' -f1-3 /proc/loadavg)"
    fi
    r=$((r + 1))
done
echo "all-reduce per step: the gradient, $params floats ($((params * 4)) bytes), and 10 doubles"
