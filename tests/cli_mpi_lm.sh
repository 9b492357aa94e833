#!/bin/sh
# Data-parallel language models (an MPI build, `make MPI=1`, run by .ci/run
# as `sh tests/cli_mpi_lm.sh build-mpi/emdpo`): sft and dpo (full and
# LoRA with activation checkpointing) under mpirun -np 1, 2 and 3 end
# with the loss of one plain process to 1e-5 relative after 20 steps
# (each step's examples are split by rank and the gradients added: only
# the order of additions differs), np 1 with its bits, and a fixed np
# with the same bits twice; every run also checks at its end that all
# processes hold the same parameters (it fails otherwise). A run stopped
# at a checkpoint and resumed under mpirun ends with the bits of an
# uninterrupted one; fit --policy llama agrees with one process and a fit
# killed and resumed under mpirun equals one never stopped; baseline,
# regret and aggregate (ae, lw) agree with one process; text generation
# (the sampled regret, on-policy MMRA) and the annotator embeddings
# (Cluster-DPO, k-means) split over the processes give one process's
# bytes; rank 0 alone writes. Bad input on one process ends the job with exit 2 and its
# message. Skipped where mpirun is missing or
# the binary was built without MPI (as in `make test`).
E=${1:-build-mpi/emdpo}
. tests/lib_cli.sh

mpi_or_skip cli_mpi_lm

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"
two_group_prefs "$T/prefs.jsonl" 6 ab cd ef

last_loss() { sed -n '$s/.*"loss": \([^,]*\),.*/\1/p' "$1"; }
# close A B: the last logged losses agree to 1e-5 relative
close() {
    awk -v a="$(last_loss "$1")" -v b="$(last_loss "$2")" \
        'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; exit !(a != "" && d <= 1e-5 * m) }'
}
# 20 steps of NAME (one plain process) and of mNAME_1..3 (mpirun -np N).
np_runs() { # NAME CMD-ARGS... (run, not name: check sets name)
    run=$1
    shift
    expect_exit 0 "$run: one process" "" "$E" "$@" --out "$T/$run" --log "$T/$run.log"
    for n in 1 2 3; do
        expect_exit 0 "$run: np $n" "" $MPIRUN -np $n "$E" "$@" --out "$T/m${run}_$n" --log "$T/m${run}_$n.log"
        check "$run: np $n loss after 20 steps equals one process's" close "$T/$run.log" "$T/m${run}_$n.log"
    done
    check "$run: np 1 has one process's bits" cmp -s "$T/$run/trainer.bin" "$T/m${run}_1/trainer.bin"
}

# SFT: 36 examples, 8 a step in micro-batches of 4 (np 3: shares of 2, 3, 3).
np_runs sft sft --data "$T/prefs.jsonl" --config "$CFG" $COMMON --steps 20 --lr 1e-2 --batch 4 --accum 2
check "sft: 20 steps logged once" test "$(wc -l <"$T/msft_3.log")" -eq 20
# A plain RMSprop step moves every coordinate by about lr·sqrt(1/(1-alpha))
# whatever its gradient's size, so a learning rate of 1e-2 turns rounding
# differences into different runs; 1e-3 still trains.
np_runs dpo dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --steps 20 --lr 1e-3 --batch 3
# One decision a step: under np 2 and 3 some processes have no example in
# a step and take part in the gradient's sums with zeros.
np_runs dpo1 dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --steps 20 --lr 1e-3 --batch 1
np_runs lora dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --steps 20 --lr 1e-3 --batch 2 --accum 2 \
    --lora-r 4 --grad-checkpoint
check "lora: the adapter written" test -s "$T/mlora_3/adapter_model.safetensors"

# The same bits twice for a fixed np.
expect_exit 0 "dpo: np 3 again" "" $MPIRUN -np 3 "$E" dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --steps 20 \
    --lr 1e-3 --batch 3 --out "$T/again"
check "dpo: np 3 twice gives the same bits" cmp -s "$T/mdpo_3/model.safetensors" "$T/again/model.safetensors"

# Stopped after 8 steps (a checkpoint) and resumed to 20 under np 2: the bits
# of the uninterrupted np 2 run; then resumed with np 3.
DPO="dpo --data $T/prefs.jsonl --model $T/sft $COMMON --lr 1e-3 --batch 3"
expect_exit 0 "dpo: np 2 stops at 8" "" $MPIRUN -np 2 "$E" $DPO --steps 8 --out "$T/res"
expect_exit 0 "dpo: np 2 resumes to 20" "" $MPIRUN -np 2 "$E" $DPO --steps 20 --out "$T/res" --resume
check "dpo: resumed under np 2 equals uninterrupted" cmp -s "$T/mdpo_2/model.safetensors" "$T/res/model.safetensors"
check "no temporary files left" test -z "$(find "$T/res" -name '*.tmp.*')"

# fit --policy llama: the E-step's log-probabilities are gathered from the
# processes' shares (the same bits as one process's), the M-steps are
# data-parallel DPO; np 2 and 3 give one process's log-likelihood to 1e-8
# relative, and rank 0 alone writes the types and the checkpoint.
# --score-batch 5: the k-means summaries' forwards (batches of 5 of the 36
# decisions of 3) split between annotators at np 2 and 3.
FIT="--policy llama --data $T/prefs.jsonl --model $T/sft $COMMON --k 2 --beta 0.5 --lr 1e-3 --steps 20 --batch 4
     --max-iter 3 --patience 5 --starts 2 --score-batch 5"
loglik() { sed -n 's/^  "loglik": \(.*\),$/\1/p' "$1/fit.json"; }
close_fit() {
    awk -v a="$(loglik "$1")" -v b="$(loglik "$2")" \
        'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; exit !(a != "" && d <= 1e-8 * m) }'
}
untimed_fit() { grep -v '"elapsed_s"' "$1/fit.json"; }
expect_exit 0 "fit llama: one process" "" "$E" fit $FIT --out "$T/fit"
for n in 2 3; do
    expect_exit 0 "fit llama: np $n" "" $MPIRUN -np $n "$E" fit $FIT --out "$T/mfit_$n" --log "$T/mfit_$n.log"
    check "fit llama: np $n log-likelihood equals one process's" close_fit "$T/fit" "$T/mfit_$n"
done
check "fit llama: np 3 wrote the types" test -s "$T/mfit_3/type_2/model.safetensors" -a -s "$T/mfit_3/posterior.csv"
check "fit llama: 2 starts x 4 M-steps x 2 types x 20 steps logged once" test "$(wc -l <"$T/mfit_3.log")" -eq 320

# Its processes killed (kill -9; mpirun then ends) once the log holds 150
# lines, then resumed under np 2: the files of the np 2 fit never stopped.
mpirun --oversubscribe -np 2 "$E" fit $FIT --out "$T/kfit" --log "$T/kfit.log" >/dev/null 2>&1 &
kp=$!
i=0
while [ "$(cat "$T/kfit.log" 2>/dev/null | wc -l)" -lt 150 ] && [ $i -lt 5000 ] && kill -0 $kp 2>/dev/null; do
    i=$((i + 1))
done
for c in $(pgrep -P $kp -x emdpo); do kill -9 "$c"; done
wait $kp 2>/dev/null
echo "cli_mpi_lm: fit killed after $(wc -l <"$T/kfit.log") logged steps"
check "fit llama: killed before its end" test ! -e "$T/kfit/fit.json"
expect_exit 0 "fit llama: np 2 resumes" "" $MPIRUN -np 2 "$E" fit $FIT --out "$T/kfit" --log "$T/kfit.log" --resume
check "fit llama: resumed under np 2 equals the straight np 2 fit" \
    test "$(untimed_fit "$T/kfit")" = "$(untimed_fit "$T/mfit_2")"
check "fit llama: resumed types equal" cmp -s "$T/kfit/type_1/model.safetensors" "$T/mfit_2/type_1/model.safetensors"
check "fit llama: resumed log has each step once" test "$(wc -l <"$T/kfit.log")" -eq 320

# baseline (data-parallel DPO per group), then regret and aggregate of the
# fit (scoring split by batches and gathered; lw trains data-parallel):
# their tables, to 5 decimals, as one process prints them.
BL="--method truelabel --model $T/sft --data $T/prefs.jsonl $COMMON --beta 0.5 --lr 1e-3 --steps 20 --batch 4"
expect_exit 0 "baseline: one process" "" "$E" baseline $BL --out "$T/bl"
expect_exit 0 "baseline: np 3" "" $MPIRUN -np 3 "$E" baseline $BL --out "$T/mbl"
check "baseline: np 3 wrote its files" test -s "$T/mbl/baseline.json" -a -s "$T/mbl/type_2/model.safetensors"
for how in "exact" "sample --samples 2 --max-tokens 4"; do
    RG="--fit $T/fit --estimator $how --uniform --threads 1"
    expect_exit 0 "regret $how: one process" "" "$E" regret $RG --policies "a=$T/bl/type_1,b=$T/bl/type_2"
    cp "$T/stdout" "$T/rg1.txt"
    expect_exit 0 "regret $how: np 3" "" $MPIRUN -np 3 "$E" regret $RG --policies "a=$T/mbl/type_1,b=$T/mbl/type_2" \
        --out "$T/rg3.json"
    check "regret $how: np 3 (and its baseline) prints one process's table" cmp -s "$T/rg1.txt" "$T/stdout"
    check "regret $how: np 3 wrote --out" test -s "$T/rg3.json"
done
expect_exit 0 "aggregate ae: one process" "" "$E" aggregate --fit "$T/fit" --threads 1 --out "$T/ae1"
cp "$T/stdout" "$T/ae1.txt"
expect_exit 0 "aggregate ae: np 2" "" $MPIRUN -np 2 "$E" aggregate --fit "$T/fit" --threads 1 --out "$T/ae2"
check "aggregate ae: np 2 prints one process's table" cmp -s "$T/ae1.txt" "$T/stdout"
final_regret() { grep -o '"max_regret": [^,}]*' "$1" | tail -1 | sed 's/.*: //'; }
close_lw() {
    awk -v a="$(final_regret "$1")" -v b="$(final_regret "$2")" \
        'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; exit !(a != "" && d <= 1e-5 * m) }'
}
LW="--method lw --rounds 3 --steps 4 --eta 0.05 --threads 1"
expect_exit 0 "aggregate lw: one process" "" "$E" aggregate --fit "$T/fit" $LW --out "$T/lw1"
expect_exit 0 "aggregate lw: np 2" "" $MPIRUN -np 2 "$E" aggregate --fit "$T/fit" $LW --out "$T/lw2"
check "aggregate lw: np 2 wrote its policy" test -s "$T/lw2/policy/model.safetensors"
check "aggregate lw: np 2 final max regret equals one process's to 1e-5" close_lw "$T/lw1/aggregate.json" \
    "$T/lw2/aggregate.json"

# Generation and embeddings split over the processes: each draws its share
# of the responses (sequence i from stream i of the seed, whatever the
# split) and the tokens are gathered, so the sampled regret's JSON and
# on-policy MMRA's aggregate.json and policy are one process's bytes for
# np 1, 2 and 3 (on-policy MMRA's training is repeated on every process).
RS="--fit $T/fit --estimator sample --samples 3 --max-tokens 8 --uniform --threads 1
    --policies a=$T/bl/type_1,b=$T/bl/type_2"
expect_exit 0 "regret sample: one process" "" "$E" regret $RS --out "$T/rs.json"
OP="--method onpolicy --rounds 2 --steps 2 --batch 3 --samples 3 --max-tokens 6 --lr 1e-2 --eta 0.1 --threads 1"
expect_exit 0 "aggregate onpolicy: one process" "" "$E" aggregate --fit "$T/fit" $OP --out "$T/op"
for n in 1 2 3; do
    expect_exit 0 "regret sample: np $n" "" $MPIRUN -np $n "$E" regret $RS --out "$T/rs$n.json"
    check "regret sample: np $n writes one process's bytes" cmp -s "$T/rs.json" "$T/rs$n.json"
    expect_exit 0 "aggregate onpolicy: np $n" "" $MPIRUN -np $n "$E" aggregate --fit "$T/fit" $OP --out "$T/op$n"
    check "aggregate onpolicy: np $n writes one process's aggregate.json" \
        cmp -s "$T/op/aggregate.json" "$T/op$n/aggregate.json"
    check "aggregate onpolicy: np $n trains one process's policy" \
        cmp -s "$T/op/policy/model.safetensors" "$T/op$n/policy/model.safetensors"
done

# The annotator embeddings (the k-means summaries of Cluster-DPO and of fit
# --policy llama): each process runs its share of the batches of 5
# decisions, and an annotator whose 3 decisions span two shares (np 2: one
# carried decision, np 3: two) is summed in decision order, so the
# summaries are one process's bits (tests/mpi/mpi_embed.c prints their hash)
# and Cluster-DPO's clusters one process's.
# (MPI_TEST_CFLAGS: what the library was built with that the program must
# share, e.g. make sanitize-mpi's sanitizers)
check "mpi_embed builds" mpicc -std=c11 -O2 ${MPI_TEST_CFLAGS:-} -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -DEMDPO_MPI \
    -Iinclude -Isrc tests/mpi/mpi_embed.c "$(dirname "$E")/libemdpo.a" -fopenmp -lopenblas -lpcre2-8 -lutf8proc -lz -lm \
    -o "$T/mpi_embed"
expect_exit 0 "embeddings: one process" "" "$T/mpi_embed" "$T/sft" "$T/tok.bin" "$T/prefs.jsonl" 5
cp "$T/stdout" "$T/emb1.txt"
check "embeddings: one hash printed" test "$(grep -cx '[0-9a-f]\{16\}' "$T/emb1.txt")" -eq 1
CL="--method cluster --k 2 --score-batch 5 --model $T/sft --data $T/prefs.jsonl $COMMON --beta 0.5 --lr 1e-3 --steps 2
    --batch 4"
expect_exit 0 "baseline cluster: one process" "" "$E" baseline $CL --out "$T/cl"
for n in 2 3; do
    expect_exit 0 "embeddings: np $n" "" $MPIRUN -np $n "$T/mpi_embed" "$T/sft" "$T/tok.bin" "$T/prefs.jsonl" 5
    check "embeddings: np $n has one process's bits" cmp -s "$T/emb1.txt" "$T/stdout"
    expect_exit 0 "baseline cluster: np $n" "" $MPIRUN -np $n "$E" baseline $CL --out "$T/cl$n"
    check "baseline cluster: np $n writes one process's clusters.csv" cmp -s "$T/cl/clusters.csv" "$T/cl$n/clusters.csv"
done

# Bad input on one process: rank 0 has good data and waits in the first
# collective, rank 1 fails reading its file; the job ends with exit 2 and
# rank 1's message, and writes nothing.
printf '{"prompt": "a", "chosen": "b"}\n' >"$T/bad.jsonl"
expect_exit 2 "bad input on rank 1" "bad.jsonl:1:" $MPIRUN -np 1 "$E" $DPO --steps 2 --out "$T/bad" : \
    -np 1 "$E" dpo --data "$T/bad.jsonl" --model "$T/sft" $COMMON --lr 1e-3 --batch 3 --steps 2 --out "$T/bad"
check "no model after a failed job" test ! -e "$T/bad/model.safetensors"

echo "cli_mpi_lm: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
