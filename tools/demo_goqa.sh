#!/bin/sh
# The paper's country-opinion experiment (GlobalOpinionQA, its section 5,
# Tables 2 and 3, appendix D) on language-model policies, end to end.
#
#   1. data: four countries in proportions .15/.20/.30/.35; every annotator
#      answers QUESTIONS distinct questions, each a binary decision (the
#      chosen option against one rejected option); held-out annotators the same
#   2. a BPE tokenizer trained on the texts; SFT of a small Llama from scratch
#   3. Vanilla DPO, True-Label DPO, Cluster-DPO; EM-DPO with K = 4, initialised
#      by k-means on chosen-response tokens and by plain k-means on SFT
#      embeddings
#   4. Table 2: held-out max-mean reward margins and accuracies per country
#   5. Table 3: MMRA-AE (from the sampled regret matrix) and MMRA-LW against
#      the uniform mixture and vanilla DPO: each type's regret on the
#      held-out decisions, sampled (table3.json) and restricted to each
#      decision's options (table3_exact.json)
#   6. generation quality: every policy sampled on 40 held-out questions
#      (share of answers that are one of the data's options, length,
#      repetition, KL to the SFT model)
#   7. report.html
#
# BANK picks the questions: builtin [default: four fictional countries, no
# ../shared data needed] or index (Britain, Indonesia, Mexico, Pakistan from
# BANK_FILE [../shared/data/globalopinionqa/goqa_index2556_4country_reconstructed.jsonl],
# exact estimates only; see ../shared/data/SOURCES.md section 5).
# Environment variables scale it (defaults in brackets; the paper's sizes in
# parentheses): ANNOTATORS [300] (1500), TEST [100] (400), QUESTIONS per
# annotator [32], STEPS per M-step [300], ITERS EM iterations [5], PATIENCE
# (EM iterations in a row without a new best before stopping, less one) [2],
# SEED [1], OUT [runs/demo_goqa]. Two stages run at a time, one thread each.
set -eu
E=${1:-build/emdpo}
case "$E" in /*) ;; *) E="$(pwd)/$E" ;; esac
TOOLS=$(cd "$(dirname "$0")" && pwd)
BANK=${BANK:-builtin}
BANK_FILE=${BANK_FILE:-../shared/data/globalopinionqa/goqa_index2556_4country_reconstructed.jsonl}
case "$BANK_FILE" in /*) ;; *) BANK_FILE="$(pwd)/$BANK_FILE" ;; esac
ANNOTATORS=${ANNOTATORS:-300}
TEST=${TEST:-100}
QUESTIONS=${QUESTIONS:-32}
STEPS=${STEPS:-300}
ITERS=${ITERS:-5}
PATIENCE=${PATIENCE:-2}
SEED=${SEED:-1}
out=${OUT:-runs/demo_goqa}
case "$BANK" in
builtin) BANKARGS="--bank builtin" COUNTRIES="Arden, Belmora, Calvia, Dastra (built-in, fictional)" ;;
index)
    if [ ! -f "$BANK_FILE" ]; then
        echo "demo_goqa: BANK=index needs $BANK_FILE (see ../shared/data/SOURCES.md section 5)" >&2
        exit 2
    fi
    BANKARGS="--bank index --bank-file $BANK_FILE --est-methods exact"
    COUNTRIES="Britain, Indonesia, Mexico, Pakistan (GlobalOpinionQA index, exact estimates)"
    ;;
*)
    echo "demo_goqa: BANK must be builtin or index, not '$BANK'" >&2
    exit 2
    ;;
esac
rm -rf "$out"
mkdir -p "$out"
cd "$out"
DEMO=demo_goqa
. "$TOOLS/lib_demo.sh"

# GlobalOpinionQA questions run to a few hundred characters: prompts keep
# their last 48 tokens so that a sequence fits the model's context of 64.
LEN="--max-length 64 --max-prompt-length 48"
LM="--tokenizer tok.bin --threads 1 $LEN"
# DPO's settings for these small models, and why: docs/RESULTS.md §7.
DPO="--beta 1 --lr 3e-4 --batch 8 --warmup 20 --rpo-alpha 10"
FIT="--policy llama --model sft $LM $DPO --k 4 --steps $STEPS --max-iter $ITERS --patience $PATIENCE --seed $SEED"
BASE="--model sft $LM --quiet $DPO --data train.jsonl --seed $SEED"

data() {
    "$E" simulate --dataset goqa $BANKARGS --annotators "$ANNOTATORS" --questions "$QUESTIONS" --rejected 1 \
        --test-annotators "$TEST" --test-out test.jsonl --list-questions questions.jsonl --seed "$SEED" \
        --out train.jsonl
}
em() { stage em "$E" fit $FIT --init kmeans-tokens --data train.jsonl --out em; }
em_kmeans() { stage em_kmeans "$E" fit $FIT --init kmeans --data train.jsonl --out em_kmeans; }
vanilla() { stage vanilla "$E" baseline --method vanilla $BASE --out vanilla; }
truelabel() { stage truelabel "$E" baseline --method truelabel $BASE --out truelabel; }
cluster() { stage cluster "$E" baseline --method cluster --k 4 $BASE --out cluster; }
mmra_ae() {
    stage mmra_ae "$E" aggregate --fit em --method ae --estimator sample --samples 4 --max-prompts 400 --threads 1 \
        --out mmra_ae
}
mmra_lw() {
    stage mmra_lw "$E" aggregate --fit em --method lw --rounds 6 --steps 60 --eta 1 --warmup 20 --threads 1 \
        --out mmra_lw
}
table2() {
    stage table2 "$E" eval --ref sft --tokenizer tok.bin --data test.jsonl --beta 1 --threads 1 $LEN \
        --policies truelabel,em,em_kmeans,cluster,vanilla --out table2.json \
        --generate --closed-set --samples 5 --prompts 40 \
        --generate-policies mmra_ae=mmra_ae/mixture.json,mmra_lw=mmra_lw/policy
}
T3="--fit em --data test.jsonl --threads 1 --uniform"
T3="$T3 --policies mmra_ae=mmra_ae/mixture.json,mmra_lw=mmra_lw/policy,vanilla=vanilla/type_1"
table3() { stage table3 "$E" regret $T3 --estimator sample --samples 4 --out table3.json; }
table3_exact() { stage table3_exact "$E" regret $T3 --estimator exact --out table3_exact.json; }

echo "== emdpo demo: the country-opinion experiment (GlobalOpinionQA) on language-model policies"
echo "   countries: $COUNTRIES in proportions .15/.20/.30/.35"
echo "   $ANNOTATORS training and $TEST held-out annotators, $QUESTIONS binary decisions each"
stage data data
stage tokenizer "$E" tokenizer --data train.jsonl --vocab 700 --up-to --out tok.bin
V=$(sed -n 's/.*: \([0-9]*\) entries.*/\1/p' tokenizer.log)
stage sft "$E" sft --data train.jsonl --config dim=64,layers=2,heads=4,vocab="$V",seq_len=64 $LM --quiet \
    --batch 16 --lr 3e-3 --steps 1000 --seed "$SEED" --out sft
echo "== EM-DPO and the baselines (two lanes)"
lanes "em em_kmeans" "vanilla truelabel cluster"
echo "== MMRA-AE and MMRA-LW (two lanes)"
lanes "mmra_ae" "mmra_lw"
echo "== held-out evaluation: Tables 2 and 3, generation quality (two lanes)"
lanes "table2 table3_exact" "table3"

total=$(($(date +%s) - start))
Q=$(wc -l <questions.jsonl)
cat >run.json <<JSON
{"title": "emdpo demo: the country-opinion experiment (GlobalOpinionQA) on language-model policies",
 "command": "BANK=$BANK make demo-goqa",
 "config": {"bank": "$BANK", "countries": "$COUNTRIES", "proportions": ".15/.20/.30/.35", "questions in the bank": $Q,
            "training annotators": $ANNOTATORS, "held-out annotators": $TEST,
            "decisions per annotator": $QUESTIONS, "options per decision": "2 (chosen and one rejected)", "types K": 4,
            "model": "Llama dim 64, 2 layers, 4 heads, BPE vocabulary $V, SFT from scratch (1000 steps); prompts cut to their last 48 tokens",
            "DPO": "beta 1, RMSprop lr 3e-4 after 20 warmup steps, RPO alpha 10, batch 8", "EM iterations": $ITERS, "patience": $PATIENCE, "steps per M-step": $STEPS,
            "EM init": "em: k-means on chosen-response tokens; em_kmeans: k-means on SFT embeddings", "seed": $SEED},
 "timings": [$(paste -sd, timings.txt)],
 "total_seconds": $total}
JSON
"$E" report . --out report.html >/dev/null

echo
echo "== Table 2: held-out reward margins and accuracies by true country"
sed '/^generation quality/,$d' table2.log
echo
echo "== Posterior by true country"
echo "em (k-means on tokens):"
sed -n '/mean posterior/,/^wrote/p' em.log | sed '1d;$d'
echo "em_kmeans (k-means on SFT embeddings):"
sed -n '/mean posterior/,/^wrote/p' em_kmeans.log | sed '1d;$d'
echo
echo "== Table 3: each type's regret on the held-out decisions (reward units)"
echo "the paper's estimator: expectations over responses sampled from each policy"
cat table3.log
echo "restricted to each decision's options (no sampling noise; not the paper's estimator)"
cat table3_exact.log
echo
echo "== Generation quality on 40 held-out prompts (the SFT model is the reference)"
sed -n '/^generation quality/,$p' table2.log
echo
echo "demo finished in $total s; report: $(pwd)/report.html"
