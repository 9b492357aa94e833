#!/bin/sh
# emdpo aggregate --method lw and onpolicy (lm_mmra_lw.h, lm_mmra_onpolicy.h)
# on a tiny fit of two groups with opposite preferences: the round table,
# aggregate.json (every round's weights follow w_k ~ w_k exp(eta R_k)),
# the saved policy (MMRA-AE's --pooled row gives it the regrets LW
# reported), determinism, the default output directory, and bad input
# exiting 2 with nothing written. Skips when aggregate does not dispatch
# Llama fits.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" fit --policy llama --help >/dev/null 2>&1; then
    echo "cli_aggregate_lw: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"

two_group_prefs "$T/prefs.jsonl" 4 ab cd

"$E" sft --data "$T/prefs.jsonl" --config "$CFG" $COMMON --out "$T/sft" --steps 2 --lr 1e-2 >/dev/null 2>&1
"$E" fit --policy llama --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --k 2 --beta 0.5 --lr 1e-2 --steps 6 \
    --batch 4 --max-iter 2 --out "$T/fit" >/dev/null 2>&1
check "a fit to aggregate" test -s "$T/fit/fit.json"

LW="--method lw --rounds 3 --steps 2 --eta 0.05 --threads 1"
"$E" aggregate --fit "$T/fit" $LW --out "$T/lw" >"$T/stdout" 2>"$T/stderr"
rc=$?
if [ $rc -ne 0 ] && grep -qF 'family' "$T/stderr"; then
    echo "cli_aggregate_lw: 0 passed, 0 failed"
    exit 0
fi
check "lw runs" test $rc -eq 0
check "table header" grep -q '^round  *w1  *w2  *regret1  *regret2  *max regret  *DPO loss  *time(s)$' "$T/stdout"
for r in start 1 2 3; do
    check "table row $r" grep -q "^$r  *0\.[0-9]* " "$T/stdout"
done
check "returned round named" grep -q '^returned: round [123] (smallest max regret)' "$T/stdout"
for key in '"method": "lw"' '"estimator": "exact"' '"start": "warm"' '"select": "best"' '"rounds": [' \
    '"returned_round": ' '"final": {"round": ' '"policy": "policy"'; do
    check "aggregate.json has $key" grep -qF -- "$key" "$T/lw/aggregate.json"
done
check "policy config" test -s "$T/lw/policy/config.json"
check "policy weights" test -s "$T/lw/policy/model.safetensors"

# Every round's w and regrets, one line each: round w1 w2 R1 R2 (the final
# line carries the weights after the last update).
rounds() {
    awk '/"round": [1-9]/ {
        r = $0; sub(/.*"round": /, "", r); sub(/,.*/, "", r)
        w = $0; sub(/.*"w": \[/, "", w); sub(/\].*/, "", w)
        g = $0; sub(/.*"regret": \[/, "", g); sub(/\].*/, "", g)
        gsub(/,/, " ", w); gsub(/,/, " ", g)
        print r, w, g }' "$1"
}
rounds "$T/lw/aggregate.json" >"$T/rounds"
check "three rounds and the final" test "$(wc -l <"$T/rounds")" -eq 4
check "weights on the simplex" awk '{ if ($2 < 0 || $3 < 0 || $2 + $3 < 1 - 1e-12 || $2 + $3 > 1 + 1e-12) exit 1 }' \
    "$T/rounds"
# w of line n+1 = MW(w of line n, eta 0.05, regrets of line n).
check "weights follow multiplicative weights" awk -v eta=0.05 '
    NR > 1 { a = pw1 * exp(eta * pr1); b = pw2 * exp(eta * pr2)
             if ((a / (a + b) - $2) ^ 2 > 1e-20) exit 1 }
    { pw1 = $2; pw2 = $3; pr1 = $4; pr2 = $5 }' "$T/rounds"
check "first round trains with uniform weights" awk 'NR == 1 { exit !($2 == 0.5 && $3 == 0.5) }' "$T/rounds"

# The saved policy, compared by MMRA-AE as a pooled policy, has the regrets
# LW reported for the returned round.
expect_exit 0 "ae with the LW policy pooled" "" "$E" aggregate --fit "$T/fit" --pooled "$T/lw/policy" --out "$T/ae"
final=$(awk '/"final": / { g = $0; sub(/.*"regret": \[/, "", g); sub(/\].*/, "", g); gsub(/,/, " ", g); print g }' \
    "$T/lw/aggregate.json")
pooled=$(awk '$1 == "pooled" { print $4, $5 }' "$T/stdout")
check "pooled regrets = LW's final regrets" awk -v f="$final" -v p="$pooled" 'BEGIN {
    split(f, a, " "); split(p, b, " "); exit !((a[1] - b[1]) ^ 2 < 1e-9 && (a[2] - b[2]) ^ 2 < 1e-9) }'

expect_exit 0 "lw rerun" "" "$E" aggregate --fit "$T/fit" $LW --out "$T/lw2"
check "lw rerun gives the same aggregate.json" cmp -s "$T/lw/aggregate.json" "$T/lw2/aggregate.json"
check "lw rerun gives the same policy" cmp -s "$T/lw/policy/model.safetensors" "$T/lw2/policy/model.safetensors"

expect_exit 0 "lw --select last --json" "" "$E" aggregate --fit "$T/fit" $LW --select last --json --out "$T/lw3"
check "json on stdout" grep -qF '"returned_round": 3' "$T/stdout"
check "no table with --json" sh -c "! grep -q '^round ' '$T/stdout'"

expect_exit 0 "lw sampled regrets" "" "$E" aggregate --fit "$T/fit" $LW --estimator sample --samples 2 \
    --max-tokens 4 --out "$T/lws"
check "sampled rounds have standard errors" grep -qF '"regret_se": [' "$T/lws/aggregate.json"

# Default output: FIT/mmra_lw, leaving the fit's own files alone.
expect_exit 0 "lw into the fit" "" "$E" aggregate --fit "$T/fit" --method lw --rounds 1 --steps 1 --threads 1
check "default output directory" test -s "$T/fit/mmra_lw/aggregate.json"
check "default policy directory" test -s "$T/fit/mmra_lw/policy/model.safetensors"
check "no aggregate.json in the fit" test ! -e "$T/fit/aggregate.json"

OP="--method onpolicy --rounds 2 --steps 2 --batch 2 --samples 3 --max-tokens 4 --lr 1e-2 --eta 0.1 --threads 1"
expect_exit 0 "onpolicy runs" "" "$E" aggregate --fit "$T/fit" $OP --out "$T/op"
check "onpolicy table header" grep -q '^round  *w1  *w2  *regret1  *regret2  *max regret  *objective  *kl  *time(s)$' \
    "$T/stdout"
check "onpolicy returns the last round" grep -q '^returned: round 2 (the last' "$T/stdout"
for key in '"method": "onpolicy"' '"estimator": "sample"' '"value": [' '"objective": ' '"kl": ' \
    '"eval_samples": 3' '"returned_round": 2'; do
    check "onpolicy aggregate.json has $key" grep -qF -- "$key" "$T/op/aggregate.json"
done
check "onpolicy policy" test -s "$T/op/policy/model.safetensors"
rounds "$T/op/aggregate.json" >"$T/oprounds"
check "onpolicy weights follow MW on [R]^+" awk -v eta=0.1 '
    function pos(x) { return x > 0 ? x : 0 }
    NR > 1 { a = pw1 * exp(eta * pos(pr1)); b = pw2 * exp(eta * pos(pr2))
             if ((a / (a + b) - $2) ^ 2 > 1e-20) exit 1 }
    { pw1 = $2; pw2 = $3; pr1 = $4; pr2 = $5 }' "$T/oprounds"
expect_exit 0 "onpolicy rerun" "" "$E" aggregate --fit "$T/fit" $OP --out "$T/op2"
check "onpolicy rerun gives the same bits" cmp -s "$T/op/policy/model.safetensors" "$T/op2/policy/model.safetensors"

# Bad input: exit 2 and nothing written.
expect_exit 2 "ae with --rounds" "--rounds" "$E" aggregate --fit "$T/fit" --rounds 3 --out "$T/b1"
expect_exit 2 "lw with --pooled" "--pooled" "$E" aggregate --fit "$T/fit" --method lw --pooled "$T/sft" --out "$T/b2"
expect_exit 2 "zero rounds" "--rounds" "$E" aggregate --fit "$T/fit" --method lw --rounds 0 --out "$T/b3"
expect_exit 2 "zero eta" "--eta" "$E" aggregate --fit "$T/fit" --method lw --eta 0 --out "$T/b4"
expect_exit 2 "unknown optimizer" "--optimizer" "$E" aggregate --fit "$T/fit" --method lw --optimizer sgd --out "$T/b5"
expect_exit 2 "unknown selection" "--select" "$E" aggregate --fit "$T/fit" --method lw --select worst --out "$T/b6"
expect_exit 2 "onpolicy exact" "--estimator" "$E" aggregate --fit "$T/fit" --method onpolicy --estimator exact \
    --out "$T/b7"
expect_exit 2 "onpolicy one sample" "--samples" "$E" aggregate --fit "$T/fit" --method onpolicy --samples 1 \
    --out "$T/b8"
expect_exit 2 "onpolicy --select" "--select" "$E" aggregate --fit "$T/fit" --method onpolicy --select last \
    --out "$T/b9"
mkdir -p "$T/nopost"
cp -r "$T/fit/fit.json" "$T/fit/type_1" "$T/fit/type_2" "$T/nopost/"
expect_exit 2 "lw without posterior.csv" "posterior.csv" "$E" aggregate --fit "$T/nopost" --method lw --out "$T/b10"
for d in b1 b2 b3 b4 b5 b6 b7 b8 b9 b10; do
    check "nothing written in $d" test ! -e "$T/$d/aggregate.json"
done
check "no temporary files left" test -z "$(find "$T" -name '*.tmp*')"

finish cli_aggregate_lw
