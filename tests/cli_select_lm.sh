#!/bin/sh
# emdpo select --policy llama: a tiny SFT model, two groups of annotators
# with opposite preferences, K = 1..3. Checks the table and select.json,
# that the K = 2 fit is bit for bit emdpo fit --policy llama --k 2 with the
# same flags, the criterion for K = 2 against a recomputation from emdpo
# score's log-ratios, the group margins against emdpo eval, and that bad
# input exits 2 without select.json.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" select --policy llama --help >/dev/null 2>&1; then
    echo "cli_select_lm: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"

# Group A prefers "yes" to "no", group B the reverse: 6 training and 3
# validation annotators each. Validation annotators also rank "maybe" last
# in a third decision (two rejected responses), and one has no group.
line() { # ANNOTATOR GROUP PROMPT CHOSEN REJECTED
    printf '{"annotator": "%s", "group": "%s", "prompt": "%s", "chosen": "%s", "rejected": %s}\n' "$@"
}
for g in A B; do
    if [ $g = A ]; then c=yes r=no; else c=no r=yes; fi
    for i in 1 2 3 4 5 6; do
        for p in ab cd ef; do line $g$i $g $p $c "\"$r\""; done
    done >>"$T/train.jsonl"
    for i in 7 8 9; do
        for p in ab cd; do line $g$i $g $p $c "\"$r\""; done
        line $g$i $g gh $c "[\"$r\", \"maybe\"]"
    done >>"$T/val.jsonl"
done
printf '{"annotator": "solo", "prompt": "ab", "chosen": "yes", "rejected": "no"}\n' >>"$T/val.jsonl"

"$E" sft --data "$T/train.jsonl" --config "$CFG" $COMMON --out "$T/sft" --steps 2 --lr 1e-2 >/dev/null 2>&1
check "sft model" test -s "$T/sft/model.safetensors"

TRAIN="--data $T/train.jsonl --model $T/sft $COMMON --beta 0.5 --lr 1e-2 --steps 6 --batch 4 --max-iter 3"
SEL="--policy llama $TRAIN --validation $T/val.jsonl"
expect_exit 0 "select K = 1..3" "" "$E" select $SEL --k 1..3 --out "$T/sel"
cp "$T/stdout" "$T/table"
J="$T/sel/select.json"
check "table header" grep -q 'train loglik.*val loglik/annot.*val margin' "$T/table"
check "table has the cross-fitted and group columns" grep -q 'val margin *val crossfit *A *B' "$T/table"
check "table marks one best K" test "$(grep -c '<- best' "$T/table")" -eq 1
check "wrote select.json" test -s "$J"
check "select.json names the criterion" grep -q '^  "criterion": "validation max-mean reward margin",$' "$J"
for k in 1 2 3; do
    check "row for K = $k" grep -q "{\"k\": $k, \"value\": [-0-9]" "$J"
    for f in fit.json posterior.csv type_$k/model.safetensors; do check "wrote k_$k/$f" test -s "$T/sel/k_$k/$f"; done
done
check "rows carry the other scores" grep -q '"crossfit": -\?[0-9].*"train_loglik": -[0-9].*"val_loglik_per_annotator": -[0-9].*"group_margin": {"A": .*, "B": ' "$J"

# row_field K FIELD: the number printed for FIELD in row K of select.json.
row_field() { grep "{\"k\": $1," "$J" | sed "s/.*\"$2\": \([^,}]*\).*/\1/"; }
# The best K is the largest value, the smaller K on a tie, and the table
# marks it.
best=$(grep -o '"best_k": [0-9]*' "$J" | cut -d' ' -f2)
argmax=$(for k in 1 2 3; do echo "$k $(row_field $k value)"; done |
    awk '{ if (NR == 1 || $2 + 0 > v) { v = $2 + 0; k = $1 } } END { print k }')
check "best_k is the argmax of the criterion" test "$best" = "$argmax"
check "table marks the best K" grep -Eq "^ +$best .*<- best" "$T/table"

# The K = 2 fit is emdpo fit --policy llama --k 2 with the same flags.
expect_exit 0 "fit K = 2" "" "$E" fit --policy llama $TRAIN --k 2 --out "$T/fit2"
check "same posterior as emdpo fit" cmp -s "$T/fit2/posterior.csv" "$T/sel/k_2/posterior.csv"
for t in 1 2; do
    check "same type_$t as emdpo fit" cmp -s "$T/fit2/type_$t/model.safetensors" "$T/sel/k_2/type_$t/model.safetensors"
done
fit_ll=$(grep '"loglik":' "$T/fit2/fit.json" | sed 's/.*"loglik": \([^,]*\),.*/\1/')
check "train_loglik is emdpo fit's loglik, bit for bit" test "$(row_field 2 train_loglik)" = "$fit_ll"
grep -v elapsed_s "$T/sel/k_2/fit.json" >"$T/a.json"
grep -v elapsed_s "$T/fit2/fit.json" >"$T/b.json"
check "k_2/fit.json is emdpo fit's (elapsed_s aside)" cmp -s "$T/a.json" "$T/b.json"

# The criterion for K = 2 from emdpo score's log-ratios: per validation
# annotator, the larger over the two types of the mean over decisions of
# 0.5 * (chosen log-ratio - mean rejected log-ratio); then the mean.
for t in 1 2; do
    "$E" score --data "$T/val.jsonl" --model "$T/fit2/type_$t" --ref "$T/sft" --tokenizer "$T/tok.bin" \
        --batch 16 --threads 1 >"$T/score$t.csv"
done
crit=$(awk -F, -v beta=0.5 '
    FNR == 1 { t++; next }
    { d = t SUBSEP $1; ann[$1] = $3
      if ($2 == 1) c[d] = $7; else { s[d] += $7; n[d]++ } }
    END {
        for (d in c) {
            split(d, p, SUBSEP); a = ann[p[2]]
            sum[p[1] SUBSEP a] += beta * (c[d] - s[d] / n[d]); cnt[p[1] SUBSEP a]++; seen[a] = 1
        }
        for (a in seen) {
            for (k = 1; k <= t; k++) {
                v = sum[k SUBSEP a] / cnt[k SUBSEP a]
                if (k == 1 || v > best) best = v
            }
            tot += best; na++
        }
        printf "%.17g", tot / na
    }' "$T/score1.csv" "$T/score2.csv")
close() { # A B TOL: |A - B| <= TOL * max(1, |A|)
    awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; s = a < 0 ? -a : a; if (s < 1) s = 1
        exit !((d < 0 ? -d : d) <= t * s) }'
}
check "criterion for K = 2 recomputed from emdpo score ($crit)" close "$(row_field 2 value)" "$crit" 1e-9
# Group margins as emdpo eval computes them (it batches distinct sequences
# differently, hence float32-level differences).
"$E" eval --ref "$T/sft" --tokenizer "$T/tok.bin" --data "$T/val.jsonl" --policies "$T/fit2" --beta 0.5 --json \
    --threads 1 >"$T/eval.json"
ev=$(tr -d '\n' <"$T/eval.json" | sed 's/.*"max_mean_margin": \[\([^]]*\)\].*/\1/')
gm=$(grep '{"k": 2,' "$J" | sed 's/.*"group_margin": {"A": \([^,]*\), "B": \([^}]*\)}.*/\1 \2/')
check "group A margin as emdpo eval" close "$(echo "$gm" | cut -d' ' -f1)" "$(echo "$ev" | cut -d, -f1)" 1e-6
check "group B margin as emdpo eval" close "$(echo "$gm" | cut -d' ' -f2)" "$(echo "$ev" | tr -d ' ' | cut -d, -f2)" 1e-6

# --json prints the same layout; without --out nothing is written.
expect_exit 0 "select --json" "" "$E" select $SEL --k 2 --json
check "--json prints the rows" grep -q '"k": 2, "value":' "$T/stdout"
check "--json prints best_k" grep -q '"best_k": 2,' "$T/stdout"
check "--json criterion for K = 2 as with --out" grep -qF "\"value\": $(row_field 2 value)," "$T/stdout"

# --criterion crossfit: the same fits and scores, the best K by the
# cross-fitted margin.
expect_exit 0 "select --criterion crossfit" "" "$E" select $SEL --k 1..3 --json --criterion crossfit
check "crossfit: names its criterion" grep -q '^  "criterion": "cross-fitted validation reward margin",$' "$T/stdout"
check "crossfit: same rows as the margin run" grep -qF "\"crossfit\": $(row_field 2 crossfit)," "$T/stdout"
best_cf=$(grep -o '"best_k": [0-9]*' "$T/stdout" | cut -d' ' -f2)
argmax_cf=$(for k in 1 2 3; do echo "$k $(row_field $k crossfit)"; done |
    awk '{ if (NR == 1 || $2 + 0 > v) { v = $2 + 0; k = $1 } } END { print k }')
check "crossfit: best_k is the argmax of the cross-fitted margin" test "$best_cf" = "$argmax_cf"

# Bad input: exit 2 and no select.json.
printf '{"annotator": "u", "prompt": "p", "chosen": {"features": [1]}, "rejected": {"features": [0]}}\n' >"$T/feat.jsonl"
expect_exit 2 "missing --validation" "--validation" "$E" select --policy llama $TRAIN --k 1..2 --out "$T/b1"
expect_exit 2 "K range from 0" "--k" "$E" select $SEL --k 0..2 --out "$T/b2"
expect_exit 2 "K range beyond the cap" "--k" "$E" select $SEL --k 1..65 --out "$T/b3"
expect_exit 2 "K beyond the training annotators" "12 training annotators" "$E" select $SEL --k 1..13 --out "$T/b4"
expect_exit 2 "validation without text" "feat.jsonl" "$E" select --policy llama $TRAIN --validation "$T/feat.jsonl" \
    --k 1..2 --out "$T/b5"
expect_exit 2 "unknown policy family" "--policy" "$E" select --policy gpt $TRAIN --k 1..2 --out "$T/b6"
expect_exit 2 "bad training flag" "--lr" "$E" select $SEL --k 1..2 --lr -1 --out "$T/b7"
expect_exit 2 "unknown criterion" "--criterion" "$E" select $SEL --k 1..2 --criterion bic --out "$T/b8"
head -n 1 "$T/val.jsonl" >"$T/val1.jsonl"
expect_exit 2 "crossfit without two-decision annotators" "two decisions" "$E" select --policy llama $TRAIN \
    --validation "$T/val1.jsonl" --k 1..2 --criterion crossfit --out "$T/b9"
for d in b1 b2 b3 b4 b5 b6 b7 b8 b9; do
    check "no select.json in $d" test ! -e "$T/$d/select.json"
done
check "no temporary files left" test -z "$(find "$T" -name '*.tmp*')"

finish cli_select_lm
