#!/bin/sh
# Text generation split over processes on the same 2 cores two ways: one
# process with 2 threads and mpirun -np 2 with 1 thread each
# (docs/BENCHMARKS.md, "LM data parallel"). The model of bench/dist_lm.sh
# (dim 256, 4 layers, 4 heads, hidden 688, a 259-token byte vocabulary)
# after one SFT step, a 2-type fit of it (1 EM iteration, 1 step per type),
# then `emdpo regret --estimator sample`: SAMPLES responses of up to TOKENS
# tokens on each of the first PROMPTS prompts from each of the 3
# checkpoints (the two types and the SFT model), scored under the types and
# the reference. The
# time of regret with TOKENS tokens less that with 1 token is the
# generation's (everything else, loading and scoring about 1 token longer
# sequences, is the same); wall and CPU (user + system of all processes)
# seconds, each the median of ROUNDS runs, alternating.
#   sh bench/dist_lm_gen.sh [TOKENS=64] [SAMPLES=4] [PROMPTS=16] [ROUNDS=3]
# Needs Open MPI; builds build-mpi/emdpo, or runs $EMDPO when set (an older
# MPI build, to compare).
set -eu
TOKENS=${1:-64}
SAMPLES=${2:-4}
PROMPTS=${3:-16}
ROUNDS=${4:-3}
E=${EMDPO:-build-mpi/emdpo}
[ -n "${EMDPO:-}" ] || make -s MPI=1 build-mpi/emdpo
. tests/lib_cli.sh # byte_tokenizer, and $T, a scratch directory removed at exit
. bench/lm_model.sh # $T/tok.bin, $T/prefs.jsonl, $T/sft
"$E" fit --policy llama --data "$T/prefs.jsonl" --model "$T/sft" --tokenizer "$T/tok.bin" --k 2 --max-iter 1 \
    --steps 1 --batch 8 --lr 1e-6 --out "$T/fit" --quiet >/dev/null
RG="regret --fit $T/fit --estimator sample --samples $SAMPLES --max-prompts $PROMPTS --policies sft=$T/sft"
# wall and CPU (user + system, all processes) seconds of one run: NP THREADS TOKENS
run_s() {
    /usr/bin/time -f "%e %U %S" -o "$T/time" mpirun -np "$1" --bind-to none "$E" $RG --threads "$2" \
        --max-tokens "$3" --out "$T/rg.json" >/dev/null
    awk '{ printf "%.2f %.2f\n", $1, $2 + $3 }' "$T/time"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores;" \
    "$(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$T/times"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for how in "1 2" "2 1"; do
        set -- $how
        echo "$1 $2 full $(run_s "$1" "$2" "$TOKENS")" >>"$T/times"
        echo "$1 $2 one $(run_s "$1" "$2" 1)" >>"$T/times"
    done
    echo "round $r done; load $(cut -d' ' -f1-3 /proc/loadavg)"
    r=$((r + 1))
done
# median of column COL (4 wall, 5 CPU) of NP's runs of KIND (full, one)
med() { awk -v n="$1" -v k="$2" -v c="$3" '$1 == n && $3 == k { print $c }' "$T/times" | median; }
for how in "1 2" "2 1"; do
    set -- $how
    fw=$(med "$1" full 4) ow=$(med "$1" one 4) fc=$(med "$1" full 5) oc=$(med "$1" one 5)
    echo "np $1 x $2 threads: wall $fw s with $TOKENS tokens, $ow s with 1, generation" \
        "$(awk -v a="$fw" -v b="$ow" 'BEGIN { printf "%.2f", a - b }') s; CPU $fc s and $oc s, generation" \
        "$(awk -v a="$fc" -v b="$oc" 'BEGIN { printf "%.2f", a - b }') s"
done
echo "runs (np threads kind wall cpu):"
cat "$T/times"
