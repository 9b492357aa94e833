#!/bin/sh
# Files checked against the files they refer to, before any work: a fit's
# posterior.csv against the fit's K and the data's annotators, a weights
# file against the data's annotators and decision counts, a model's
# vocabulary against its tokenizer's ids (a larger, padded embedding is
# valid). Each refusal exits 2 naming the file (and line); each valid edge
# case runs.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" fit --policy llama --help >/dev/null 2>&1; then
    echo "cli_consistency: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"
for g in A B; do
    for i in 1 2; do
        for p in "ab" "cd"; do
            if [ $g = A ]; then c=yes r=no; else c=no r=yes; fi
            printf '{"annotator": "%s%d", "prompt": "%s", "chosen": "%s", "rejected": "%s"}\n' $g $i $p $c $r
        done
    done
done >"$T/prefs.jsonl"
"$E" sft --data "$T/prefs.jsonl" --config "$CFG" $COMMON --out "$T/sft" --steps 2 --lr 1e-2 >/dev/null 2>&1
"$E" fit --policy llama --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --k 2 --beta 0.5 --lr 1e-2 --steps 2 \
    --batch 4 --max-iter 1 --out "$T/fit" >/dev/null 2>&1
check "a fit to aggregate" test -s "$T/fit/posterior.csv"
LW="--method lw --rounds 1 --steps 1 --threads 1"

# posterior.csv: K columns, every annotator of the data, no other.
variant() { # NAME: a copy of the fit whose posterior.csv comes from stdin
    mkdir -p "$T/$1"
    cp -r "$T/fit/fit.json" "$T/fit/type_1" "$T/fit/type_2" "$T/$1/"
    cat >"$T/$1/posterior.csv"
}
awk -F, 'NR == 1 { print $0 ",gamma_3"; next } { print $0 ",0" }' "$T/fit/posterior.csv" | variant k3
expect_exit 2 "posterior with K + 1 columns" "posterior.csv:1: 3 gamma columns, but fit.json has k = 2" \
    "$E" aggregate --fit "$T/k3" $LW --out "$T/k3/lw"
grep -v '^B2,' "$T/fit/posterior.csv" | variant missing
expect_exit 2 "posterior without an annotator" "B2" "$E" aggregate --fit "$T/missing" $LW --out "$T/missing/lw"
{ cat "$T/fit/posterior.csv"; echo "Z9,0.5,0.5"; } | variant extra
expect_exit 2 "posterior with an annotator not in the data" "posterior.csv:6: annotator 'Z9' is not in the data" \
    "$E" aggregate --fit "$T/extra" $LW --out "$T/extra/lw"
{ head -1 "$T/fit/posterior.csv"; tail -n +2 "$T/fit/posterior.csv" | sort -r; } | variant reordered
expect_exit 0 "posterior rows in another order" "" "$E" aggregate --fit "$T/reordered" $LW --out "$T/reordered/lw"
for d in k3 missing extra; do
    check "nothing written for $d" test ! -e "$T/$d/lw/aggregate.json"
done

# Weights, one row per decision (estep's weights.csv): each annotator's
# rows in its decisions' order, annotators interleaved or not.
{ echo "annotator,weight_1"; for a in A1 A2 B1 B2; do echo "$a,1"; echo "$a,0.5"; done; } >"$T/w.csv"
{ echo "annotator,weight_1"; for a in A1 A2 B1 B2; do echo "$a,1"; done; for a in A1 A2 B1 B2; do echo "$a,0.5"; done; } \
    >"$T/w_interleaved.csv"
DPO="--data $T/prefs.jsonl --model $T/sft $COMMON --steps 1 --batch 2"
expect_exit 0 "weights per decision" "" "$E" dpo $DPO --weights "$T/w.csv" --out "$T/d1"
expect_exit 0 "weights per decision, interleaved" "" "$E" dpo $DPO --weights "$T/w_interleaved.csv" --out "$T/d2"
check "interleaved weights: the same training" cmp -s "$T/d1/model.safetensors" "$T/d2/model.safetensors"
grep -v '^B2,0.5' "$T/w.csv" >"$T/w_short.csv"
expect_exit 2 "weights: an annotator's decision missing" "annotator 'B2' has 1 rows for its 2 decisions" \
    "$E" dpo $DPO --weights "$T/w_short.csv" --out "$T/d3"
{ cat "$T/w.csv"; echo "A1,1"; } >"$T/w_long.csv"
expect_exit 2 "weights: more rows than decisions" "w_long.csv:10:" "$E" dpo $DPO --weights "$T/w_long.csv" --out "$T/d4"
sed 's/^B1,/Q1,/' "$T/w.csv" >"$T/w_other.csv"
expect_exit 2 "weights: an annotator not in the data" "w_other.csv:6: annotator 'Q1' is not in the data" \
    "$E" dpo $DPO --weights "$T/w_other.csv" --out "$T/d5"
for d in d3 d4 d5; do
    check "nothing written for $d" test ! -e "$T/$d/model.safetensors"
done

# A model's vocabulary against a tokenizer.json's ids (0..3).
mkdir -p "$T/tk"
printf '%s' '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"</s>":3},"merges":["a b"]},
  "added_tokens":[{"id":3,"content":"</s>","special":true}]}' >"$T/tk/tokenizer.json"
printf '{"eos_token": "</s>"}' >"$T/tk/tokenizer_config.json"
printf '{"prompt": "ab", "response": "ba"}\n' >"$T/s.jsonl"
expect_exit 2 "a model's vocabulary short of the tokenizer's ids" \
    "tokenizer.json: the tokenizer has ids up to 3; the model's vocabulary has 3" \
    "$E" sft --data "$T/s.jsonl" --config "dim=16,layers=1,heads=2,vocab=3,seq_len=16" --tokenizer "$T/tk" \
    --out "$T/v3" --steps 1 --quiet
expect_exit 0 "a padded embedding (vocabulary 8 for ids 0..3)" "" \
    "$E" sft --data "$T/s.jsonl" --config "dim=16,layers=1,heads=2,vocab=8,seq_len=16" --tokenizer "$T/tk" \
    --out "$T/v8" --steps 1 --quiet
expect_exit 2 "a tokenizer.bin of another size than the model's vocabulary" "" \
    "$E" sft --data "$T/s.jsonl" --config "dim=16,layers=1,heads=2,vocab=300,seq_len=16" --tokenizer "$T/tok.bin" \
    --out "$T/v300" --steps 1 --quiet

finish cli_consistency
