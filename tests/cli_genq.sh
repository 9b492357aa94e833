#!/bin/sh
# Generation quality catches a degenerate policy on a small closed-set task:
# 400 simulated annotators choose among 3 of 10 phrases; a 1-layer Llama is
# trained from scratch by SFT, then True-Label DPO runs twice from it for
# 150 steps at lr 3e-4: once with the demos' remedies (20 warmup steps,
# RPO alpha 10), once without. With them every policy's samples must stay
# valid phrases at least 80 % as often as the SFT model's, with almost no
# repeated 4-grams; without them some policy must fall below half of the
# SFT model's validity, so a metric that could not see degeneration fails.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" eval --help >/dev/null 2>&1; then
    echo "cli_genq: 0 passed, 0 failed"
    exit 0
fi

SIM="--preset personalities --phrases 10 --items 3"
check_run "simulate train" "$E" simulate $SIM --annotators 400 --seed 1 --out "$T/train.jsonl"
check_run "simulate test" "$E" simulate $SIM --annotators 20 --decisions 2 --seed 2 --out "$T/test.jsonl"
check_run "tokenizer" "$E" tokenizer --data "$T/train.jsonl" --vocab 700 --up-to --out "$T/tok.bin"
LM="--tokenizer $T/tok.bin --threads 2 --quiet"
check_run "sft" "$E" sft --data "$T/train.jsonl" --config dim=32,layers=1,heads=2,vocab=700,seq_len=64 $LM \
    --batch 16 --lr 3e-3 --steps 400 --seed 1 --out "$T/sft"
DPO="--method truelabel --model $T/sft $LM --beta 1 --lr 3e-4 --batch 8 --steps 150 --data $T/train.jsonl --seed 1"
check_run "dpo with warmup and RPO" "$E" baseline $DPO --warmup 20 --rpo-alpha 10 --out "$T/remedied"
check_run "dpo without" "$E" baseline $DPO --out "$T/plain"
expect_exit 0 "eval --generate" "" "$E" eval --ref "$T/sft" --tokenizer "$T/tok.bin" --data "$T/test.jsonl" --beta 1 \
    --threads 2 --policies "$T/remedied,$T/plain" --generate --closed-set --samples 5 --prompts 20 --json \
    --out "$T/eval.json"

# name valid repetition, one line per generation row
sed -n 's/.*{"name": "\([^"]*\)", "n": [0-9]*, "valid": \([^,]*\), .*"repetition": \([^,]*\),.*/\1 \2 \3/p' \
    "$T/eval.json" >"$T/rows"
check "seven generation rows" test "$(wc -l <"$T/rows")" -eq 7
ref=$(awk '$1 == "reference" { print $2 }' "$T/rows")
check "the SFT model generates phrases" awk -v r="$ref" 'BEGIN { exit !(r >= 0.7) }'
check "remedied policies stay valid" awk -v r="$ref" \
    '/^remedied\// { n++; if ($2 < 0.8 * r || $3 > 0.05) bad = 1 } END { exit !(n == 3 && !bad) }' "$T/rows"
check "plain DPO degenerates" awk -v r="$ref" \
    '/^plain\// { if ($2 < 0.5 * r) seen = 1 } END { exit !seen }' "$T/rows"

finish cli_genq
