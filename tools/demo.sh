#!/bin/sh
# The main job, on built-in data only: the paper's personality experiment on
# language-model policies, end to end.
#
#   1. data: P1, P2 = -P1, P3 (.3/.3/.4) over a balanced set of phrases from
#      the built-in inventory, one decision per training annotator, ternary
#      and binary; held-out annotators with four ternary decisions each
#   2. a BPE tokenizer trained on the texts; SFT of a small Llama from scratch
#   3. Vanilla DPO, True-Label DPO, Cluster-DPO; EM-DPO on ternary and on
#      binary choices
#   4. Table 1: held-out max-mean reward margins and accuracies per true
#      personality
#   5. Table 3: MMRA-AE (from the sampled regret matrix of Algorithm 4) and
#      MMRA-LW against the uniform mixture and vanilla DPO: each type's
#      regret on the held-out decisions, under the paper's sampled estimator
#      (table3.json) and restricted to each decision's options
#      (table3_exact.json)
#   6. generation quality: every policy sampled on 40 held-out prompts
#      (share of valid phrases, length, repetition, KL to the SFT model)
#   7. report.html
#
# Environment variables scale it (defaults in brackets): ANNOTATORS [3000],
# PHRASES [10: one per trait and direction], TEST [400], STEPS per M-step
# [200], ITERS EM iterations [5], SEED [1], OUT [runs/demo], INVENTORY [the
# built-in phrases; or an MPI CSV such as ../shared/data/mpi/mpi_1k.csv].
# Two stages run at a time, one thread each.
set -eu
E=${1:-build/emdpo}
case "$E" in /*) ;; *) E="$(pwd)/$E" ;; esac
TOOLS=$(cd "$(dirname "$0")" && pwd)
case "${INVENTORY:-}" in "" | /*) ;; *) INVENTORY="$(pwd)/$INVENTORY" ;; esac
ANNOTATORS=${ANNOTATORS:-3000}
PHRASES=${PHRASES:-10}
INVENTORY=${INVENTORY:-}
TEST=${TEST:-400}
STEPS=${STEPS:-200}
ITERS=${ITERS:-5}
SEED=${SEED:-1}
out=${OUT:-runs/demo}
rm -rf "$out"
mkdir -p "$out"
cd "$out"
DEMO=demo
. "$TOOLS/lib_demo.sh"

LM="--tokenizer tok.bin --threads 1"
# DPO's settings for these small models, and why: docs/RESULTS.md §7.
DPO="--beta 1 --lr 3e-4 --batch 8 --warmup 20 --rpo-alpha 10"
FIT="--policy llama --model sft $LM $DPO --k 3 --init kmeans-tokens --steps $STEPS --max-iter $ITERS --seed $SEED"
BASE="--model sft $LM --quiet $DPO --data tern.jsonl --seed $SEED"

SIM="--preset personalities --phrases $PHRASES${INVENTORY:+ --inventory $INVENTORY}"
data() {
    "$E" simulate $SIM --annotators "$ANNOTATORS" --items 3 --seed "$SEED" --out tern.jsonl &&
        "$E" simulate $SIM --annotators "$ANNOTATORS" --items 2 --seed "$SEED" --out bin.jsonl &&
        "$E" simulate $SIM --annotators "$TEST" --decisions 4 --items 3 --seed $((SEED + 1000)) --out test.jsonl
}
em_tern() { stage em_tern "$E" fit $FIT --data tern.jsonl --out em_tern; }
em_bin() { stage em_bin "$E" fit $FIT --data bin.jsonl --out em_bin; }
vanilla() { stage vanilla "$E" baseline --method vanilla $BASE --out vanilla; }
truelabel() { stage truelabel "$E" baseline --method truelabel $BASE --out truelabel; }
cluster() { stage cluster "$E" baseline --method cluster --k 3 $BASE --out cluster; }
mmra_ae() {
    stage mmra_ae "$E" aggregate --fit em_tern --method ae --estimator sample --samples 4 --max-prompts 400 \
        --threads 1 --out mmra_ae
}
mmra_lw() {
    stage mmra_lw "$E" aggregate --fit em_tern --method lw --rounds 6 --steps 200 --eta 1 --warmup 20 --threads 1 \
        --out mmra_lw
}
table1() {
    stage table1 "$E" eval --ref sft --tokenizer tok.bin --data test.jsonl --beta 1 --threads 1 \
        --policies truelabel,em_tern,em_bin,cluster,vanilla --out table1.json \
        --generate --closed-set --samples 5 --prompts 40 \
        --generate-policies mmra_ae=mmra_ae/mixture.json,mmra_lw=mmra_lw/policy
}
T3="--fit em_tern --data test.jsonl --threads 1 --uniform"
T3="$T3 --policies mmra_ae=mmra_ae/mixture.json,mmra_lw=mmra_lw/policy,vanilla=vanilla/type_1"
table3() { stage table3 "$E" regret $T3 --estimator sample --samples 4 --out table3.json; }
table3_exact() { stage table3_exact "$E" regret $T3 --estimator exact --out table3_exact.json; }

echo "== emdpo demo: the personality experiment on language-model policies"
echo "   $ANNOTATORS training annotators with one decision each over $PHRASES phrases${INVENTORY:+ of $INVENTORY};"
echo "   $TEST held-out annotators with four decisions each"
stage data data
stage tokenizer "$E" tokenizer --data tern.jsonl,bin.jsonl --vocab 700 --up-to --out tok.bin
V=$(sed -n 's/.*: \([0-9]*\) entries.*/\1/p' tokenizer.log)
stage sft "$E" sft --data tern.jsonl --config dim=64,layers=2,heads=4,vocab="$V",seq_len=64 $LM --quiet \
    --batch 16 --lr 3e-3 --steps 1000 --seed "$SEED" --out sft
echo "== EM-DPO and the baselines (two lanes)"
lanes "em_tern" "em_bin vanilla truelabel cluster"
echo "== MMRA-AE and MMRA-LW (two lanes)"
lanes "mmra_ae" "mmra_lw"
echo "== held-out evaluation: Tables 1 and 3, generation quality (two lanes)"
lanes "table1 table3_exact" "table3"

total=$(($(date +%s) - start))
cat >run.json <<JSON
{"title": "emdpo demo: the personality experiment on language-model policies",
 "command": "sh run.sh demo",
 "config": {"training annotators": $ANNOTATORS, "decisions per training annotator": 1, "phrases": $PHRASES, "inventory": "${INVENTORY:-built-in}",
            "held-out annotators": $TEST, "held-out decisions per annotator": 4, "types K": 3,
            "model": "Llama dim 64, 2 layers, 4 heads, BPE vocabulary $V, SFT from scratch (1000 steps)",
            "DPO": "beta 1, RMSprop lr 3e-4 after 20 warmup steps, RPO alpha 10, batch 8", "EM iterations": $ITERS, "steps per M-step": $STEPS,
            "EM init": "k-means on chosen-response tokens", "seed": $SEED},
 "timings": [$(paste -sd, timings.txt)],
 "total_seconds": $total}
JSON
"$E" report . --out report.html >/dev/null

echo
echo "== Table 1: held-out reward margins and accuracies by true personality"
sed '/^generation quality/,$d' table1.log
echo
echo "== Posterior by true personality: EM-DPO on ternary vs binary choices"
echo "ternary:"
sed -n '/mean posterior/,/^wrote/p' em_tern.log | sed '1d;$d'
echo "binary:"
sed -n '/mean posterior/,/^wrote/p' em_bin.log | sed '1d;$d'
echo
echo "== Table 3: each type's regret on the held-out decisions (reward units)"
echo "the paper's estimator: expectations over responses sampled from each policy"
cat table3.log
echo "restricted to each decision's options (no sampling noise; not the paper's estimator)"
cat table3_exact.log
echo
echo "== Generation quality on 40 held-out prompts (the SFT model is the reference)"
sed -n '/^generation quality/,$p' table1.log
echo
echo "demo finished in $total s; report: $(pwd)/report.html"
