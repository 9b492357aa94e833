#!/bin/sh
# Mixture policies in emdpo generate and score, and emdpo regret, on a tiny
# fit of two groups with opposite preferences (as cli_aggregate_lm.sh).
# generate: samples name their member, follow the weights, and depend on
# the seed alone; score: a mixture's logp is the log-sum-exp of its
# members', and weights (1, 0) score exactly like the first member; regret:
# a type's own regret is 0, the uniform mixture's regrets are the average
# of the types', aggregate's MMRA-AE mixture gets aggregate's regrets, and
# bad input exits 2. Skips when the LM commands are missing.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" regret --help >/dev/null 2>&1 || ! "$E" fit --policy llama --help >/dev/null 2>&1; then
    echo "cli_mixture: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"

two_group_prefs "$T/prefs.jsonl" 4 ab cd

"$E" sft --data "$T/prefs.jsonl" --config "dim=16,layers=1,heads=2,vocab=259,seq_len=64" $COMMON --out "$T/sft" \
    --steps 2 --lr 1e-2 >/dev/null 2>&1
"$E" sft --data "$T/prefs.jsonl" --config "dim=16,layers=1,heads=2,vocab=259,seq_len=32" $COMMON --out "$T/short" \
    --steps 1 >/dev/null 2>&1
"$E" fit --policy llama --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --k 2 --beta 0.5 --lr 1e-2 --steps 6 \
    --batch 4 --max-iter 2 --out "$T/fit" >/dev/null 2>&1
"$E" aggregate --fit "$T/fit" --threads 1 >/dev/null 2>&1
check "a fit" test -s "$T/fit/fit.json"
check "aggregate writes mixture.json" test -s "$T/fit/mixture.json"
F=$T/fit

mix() { # FILE W1 W2 [MEMBER1 MEMBER2]: a mixture file
    printf '{"kind": "mixture", "weights": [%s, %s], "members": ["%s", "%s"], "beta": 0.5}\n' \
        "$2" "$3" "${4:-type_1}" "${5:-type_2}" >"$1"
}
# Without aggregate's, the rest runs on a mixture of our own.
[ -s "$F/mixture.json" ] || mix "$F/mixture.json" 0.4 0.6
mix "$F/m10.json" 1 0
mix "$F/m01.json" 0 1
mix "$F/m37.json" 0.3 0.7

# --- generate
G="$E generate --tokenizer $T/tok.bin --max-tokens 5 --prompt ab"
expect_exit 0 "generate from a Hugging Face directory" "" $G --model "$F/type_1" --n 2 --seed 3
check "a checkpoint's samples name no member" grep -aq '^--- sample 2 ---$' "$T/stdout"
expect_exit 0 "generate from a mixture" "" $G --model "$F/m37.json" --n 40 --seed 3
cp "$T/stdout" "$T/g1"
check "every sample names its member" \
    test "$(grep -ac '^--- sample [0-9]* (member type_[12]) ---$' "$T/g1")" -eq 40
n1=$(grep -ac '(member type_1)' "$T/g1")
check "both members sampled (type_1 drew $n1 of 40 at weight 0.3)" test "$n1" -ge 3 -a "$n1" -le 24
expect_exit 0 "same seed, two threads" "" $G --model "$F/m37.json" --n 40 --seed 3 --threads 2
check "same samples and members for any thread count" cmp -s "$T/g1" "$T/stdout"
expect_exit 0 "fewer samples" "" $G --model "$F/m37.json" --n 7 --seed 3
grep -a '^--- sample' "$T/g1" | head -7 >"$T/m40"
grep -a '^--- sample' "$T/stdout" >"$T/m7"
check "sample i's member depends on the seed and i alone" cmp -s "$T/m40" "$T/m7"
expect_exit 0 "another seed" "" $G --model "$F/m37.json" --n 40 --seed 4
check "another seed, other samples" sh -c "! cmp -s '$T/g1' '$T/stdout'"
expect_exit 0 "all weight on member 2" "" $G --model "$F/m01.json" --n 5 --seed 3
check "weight 0 is never drawn" test "$(grep -ac '(member type_2)' "$T/stdout")" -eq 5
expect_exit 0 "one sample of a mixture" "" $G --model "$F/mixture.json" --temperature 0
check "one sample still names its member" grep -aq '^--- sample 1 (member type_[12]) ---$' "$T/stdout"

# A llama2.c member (stories260K from ../shared, when present): greedy
# decoding draws nothing, so a mixture of one decodes like its member.
M=../shared/data/models
if [ -f "$M/stories260K.bin" ] && [ -f "$M/tok512.bin" ]; then
    printf '{"kind": "mixture", "weights": [1], "members": ["%s/stories260K.bin"]}\n' "$(cd "$M" && pwd)" \
        >"$T/stories.json"
    "$E" generate --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --temperature 0 --max-tokens 24 \
        >"$T/gs" 2>/dev/null
    expect_exit 0 "a mixture of a llama2.c checkpoint" "" "$E" generate --model "$T/stories.json" \
        --tokenizer "$M/tok512.bin" --temperature 0 --max-tokens 24
    check "it decodes like its member" sh -c "tail -n +2 '$T/stdout' | cmp -s - '$T/gs'"
fi

# --- score
S="$E score --tokenizer $T/tok.bin --data $T/prefs.jsonl --threads 1"
$S --model "$F/type_1" >"$T/s1.csv" 2>/dev/null
$S --model "$F/type_2" >"$T/s2.csv" 2>/dev/null
expect_exit 0 "score a (1, 0) mixture" "" $S --model "$F/m10.json"
check "weights (1, 0) score exactly like member 1" cmp -s "$T/stdout" "$T/s1.csv"
expect_exit 0 "score a mixture" "" $S --model "$F/m37.json" --out "$T/s37.csv"
check "mixture logp is log(0.3 p1 + 0.7 p2)" awk -F, '
    FNR == 1 { next }
    FILENAME == ARGV[1] { a[FNR] = $5; next }
    FILENAME == ARGV[2] { b[FNR] = $5; next }
    { m = a[FNR] > b[FNR] ? a[FNR] : b[FNR]; want = m + log(0.3 * exp(a[FNR] - m) + 0.7 * exp(b[FNR] - m))
      d = $5 - want; if (d < 0) d = -d; if (d > 1e-9 * (1 - want)) bad = 1; n++ }
    END { exit bad || n != 32 }' "$T/s1.csv" "$T/s2.csv" "$T/s37.csv"
expect_exit 0 "score a mixture against a reference" "" $S --model "$F/m10.json" --ref "$T/sft"
check "log-ratio columns" grep -q '^example,item,annotator,response_tokens,logp,ref_logp,logratio$' "$T/stdout"

# --- regret
R="$E regret --fit $F --threads 1"
P="t1=$F/type_1,t2=$F/type_2,mmra=$F/mixture.json,sft=$T/sft"
expect_exit 0 "regret, exact" "" $R --policies "$P" --uniform --estimator exact --out "$T/r.json"
check "table header" grep -q '^policy  *R_1  *R_2  *max regret$' "$T/stdout"
for r in t1 t2 mmra sft uniform; do check "table row $r" grep -q "^$r " "$T/stdout"; done
for key in '{"beta": 0.5, "estimator": "exact", "types": ["type_1", "type_2"],' '"se": null' \
    '"name": "uniform", "path": null'; do
    check "regret JSON has $key" grep -qF -- "$key" "$T/r.json"
done
# The regret array of policy $2 in file $1, space-separated.
regret() { sed -n "s/.*\"name\": \"$2\".*\"regret\": \[\([^]]*\)\].*/\1/p" "$1" | tr -d ,; }
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-9) }'; }
set -- $(regret "$T/r.json" t1)
check "a type's own regret is 0" test "$1" = 0
t1a=$1 t1b=$2
set -- $(regret "$T/r.json" t2)
check "a type's own regret is 0 (2)" test "$2" = 0
t2a=$1 t2b=$2
check "the types disagree" awk -v a="$t1b" -v b="$t2a" 'BEGIN { exit !(a > 0 && b > 0) }'
set -- $(regret "$T/r.json" uniform)
check "uniform's R_1 is the average of the types'" close "$1" "$(awk -v a="$t1a" -v b="$t2a" 'BEGIN { printf "%.17g", (a + b) / 2 }')"
check "uniform's R_2 is the average of the types'" close "$2" "$(awk -v a="$t1b" -v b="$t2b" 'BEGIN { printf "%.17g", (a + b) / 2 }')"
check "max_regret is the max over types" grep -qF "\"regret\": [$1, $2], \"se\": null, \"max_regret\": $(
    awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }')" "$T/r.json"
set -- $(regret "$T/r.json" mmra)
m1=$1 m2=$2
if [ -s "$F/aggregate.json" ]; then
    set -- $(sed -n 's/.*"name": "MMRA-AE".*"regret": \[\([^]]*\)\].*/\1/p' "$F/aggregate.json" | tr -d ,)
    check "MMRA-AE's mixture has aggregate's R_1" close "$m1" "$1"
    check "MMRA-AE's mixture has aggregate's R_2" close "$m2" "$2"
fi

SAMPLE="--estimator sample --samples 2 --max-tokens 4 --seed 5 --max-prompts 4"
expect_exit 0 "regret, sampled" "" $R --policies "$P" --uniform $SAMPLE --out "$T/rs1.json"
check "standard errors in the table" grep -q '^t1 *0\.00000 (0\.00000)' "$T/stdout"
check "sampled JSON has standard errors" grep -qF '"name": "t1", "path": "'"$F"'/type_1", "regret": [0, ' "$T/rs1.json"
check "draws per policy" grep -qF '"draws_per_policy": 8' "$T/rs1.json"
set -- $(regret "$T/rs1.json" t1)
s1a=$1 s1b=$2
set -- $(regret "$T/rs1.json" t2)
s2a=$1 s2b=$2
set -- $(regret "$T/rs1.json" uniform)
check "sampled: uniform is the average of the types" close "$1" "$(awk -v a="$s1a" -v b="$s2a" 'BEGIN { printf "%.17g", (a + b) / 2 }')"
expect_exit 0 "regret, sampled again" "" $R --policies "$P" --uniform $SAMPLE --json
check "the same bits on a rerun" cmp -s "$T/rs1.json" "$T/stdout"

# --- bad input: exit 2, the file named, nothing written
mix "$F/bad_sum.json" 0.5 0.6
mix "$F/nested.json" 0.5 0.5 type_1 m10.json
mix "$F/short.json" 0.5 0.5 type_1 "$T/short"
mix "$F/missing.json" 0.5 0.5 type_1 type_9
expect_exit 2 "generate: weights not summing to 1" "bad_sum.json: the weights sum to 1.1" \
    $G --model "$F/bad_sum.json"
expect_exit 2 "score: weights not summing to 1" "bad_sum.json" $S --model "$F/bad_sum.json"
expect_exit 2 "generate: a mixture as a member" "m10.json: a mixture cannot be a member" $G --model "$F/nested.json"
expect_exit 2 "score: members of different contexts" "context" $S --model "$F/short.json"
expect_exit 2 "score: a missing member" "type_9" $S --model "$F/missing.json"
expect_exit 2 "regret: unknown estimator" "--estimator" $R --uniform --estimator mc
expect_exit 2 "regret: nothing to evaluate" "nothing to evaluate" $R
expect_exit 2 "regret: no NAME=PATH" "NAME=PATH" $R --policies "$F/type_1"
expect_exit 2 "regret: a name twice" "twice" $R --policies "a=$F/type_1,a=$F/type_2"
expect_exit 2 "regret: uniform named twice" "twice" $R --policies "uniform=$F/type_1" --uniform
expect_exit 2 "regret: bad mixture" "bad_sum.json" $R --policies "b=$F/bad_sum.json" --out "$T/b1.json"
expect_exit 2 "regret: nested mixture" "nested.json" $R --policies "n=$F/nested.json" --out "$T/b2.json"
expect_exit 2 "regret: missing checkpoint" "none" $R --policies "n=$T/none" --out "$T/b3.json"
expect_exit 2 "regret: members of different contexts" "context" $R --policies "s=$F/short.json" --estimator exact \
    --out "$T/b4.json"
expect_exit 2 "regret: not a fit" "fit.json" "$E" regret --fit "$T/sft" --uniform --out "$T/b5.json"
for b in b1 b2 b3 b4 b5; do check "nothing written: $b" test ! -e "$T/$b.json"; done
check "no temporary files left" test -z "$(find "$T" -name '*.tmp*')"

finish cli_mixture
