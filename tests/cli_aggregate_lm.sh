#!/bin/sh
# emdpo aggregate on a fit of Llama policies (MMRA-AE, lm_mmra.h): a tiny
# fit of two groups with opposite preferences, then aggregate with the
# exact and the sampled estimator. Checks the table, aggregate.json and
# mixture.json, that MMRA's max regret is at most the uniform mixture's,
# determinism, and that bad input exits 2. Skips when aggregate does not
# dispatch Llama fits.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" fit --policy llama --help >/dev/null 2>&1; then
    echo "cli_aggregate_lm: 0 passed, 0 failed"
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

"$E" aggregate --fit "$T/fit" --out "$T/agg" >"$T/stdout" 2>"$T/stderr"
rc=$?
if [ $rc -ne 0 ] && grep -qF 'family' "$T/stderr"; then
    echo "cli_aggregate_lm: 0 passed, 0 failed"
    exit 0
fi
check "aggregate runs" test $rc -eq 0
check "table header" grep -q '^policy  *w1  *w2  *regret1  *regret2  *max regret$' "$T/stdout"
for r in MMRA-AE uniform 'type 1 only' 'type 2 only'; do
    check "table row $r" grep -q "^$r " "$T/stdout"
done
for key in '"kind": "mixture"' '"weights": [' '"members": ["/' 'fit/type_2"]' '"beta": 0.5' '"reference": "/'; do
    check "mixture.json has $key" grep -qF -- "$key" "$T/agg/mixture.json"
done
for key in '"family": "llama"' '"estimator": "exact"' '"L": [' '"duality_gap": ' '"lp_value": '; do
    check "aggregate.json has $key" grep -qF -- "$key" "$T/agg/aggregate.json"
done
# The last column of a table row is its max regret.
maxreg() { awk -v n="$2" '$1 == n && $2 ~ /^[0-9.]+$/ { print $NF }' "$1"; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b + 1e-9) }'; }
check "MMRA max regret <= uniform's" le "$(maxreg "$T/stdout" MMRA-AE)" "$(maxreg "$T/stdout" uniform)"
check "weights sum to 1" awk '/"weights"/ { sub(/.*\[/, ""); sub(/\].*/, ""); n = split($0, w, ","); s = 0;
    for (i = 1; i <= n; i++) s += w[i]; exit !(s > 0.999999 && s < 1.000001) }' "$T/agg/mixture.json"

# Default output: the fit's directory, members relative to it.
expect_exit 0 "aggregate into the fit" "" "$E" aggregate --fit "$T/fit" --solver lp --json
check "json on stdout" grep -qF '"policies": [' "$T/stdout"
check "mixture.json in the fit" test -s "$T/fit/mixture.json"
check "members relative to the fit" grep -qF '"members": ["type_1", "type_2"]' "$T/fit/mixture.json"

# Sampled estimator with a pooled policy (here the SFT model): standard
# errors, and the same bits on a rerun.
SAMPLE="--estimator sample --samples 3 --max-tokens 6 --seed 7 --pooled $T/sft"
expect_exit 0 "sampled estimator" "" "$E" aggregate --fit "$T/fit" $SAMPLE --out "$T/s1"
check "pooled row" grep -q '^pooled ' "$T/stdout"
check "standard errors" grep -qF '"L_se": [[' "$T/s1/aggregate.json"
check "columns name the pooled policy" grep -qF '"columns": ["type_1", "type_2", "pooled"]' "$T/s1/aggregate.json"
expect_exit 0 "sampled rerun" "" "$E" aggregate --fit "$T/fit" $SAMPLE --out "$T/s2"
check "sampled rerun gives the same bits" cmp -s "$T/s1/aggregate.json" "$T/s2/aggregate.json"

# Bad input: exit 2 and nothing written.
expect_exit 2 "unknown estimator" "--estimator" "$E" aggregate --fit "$T/fit" --estimator mc --out "$T/b1"
expect_exit 2 "unknown solver" "--solver" "$E" aggregate --fit "$T/fit" --solver simplex --out "$T/b2"
expect_exit 2 "zero samples" "--samples" "$E" aggregate --fit "$T/fit" --estimator sample --samples 0 --out "$T/b3"
expect_exit 2 "missing pooled model" "none" "$E" aggregate --fit "$T/fit" --pooled "$T/none" --out "$T/b4"
expect_exit 2 "missing data" "none.jsonl" "$E" aggregate --fit "$T/fit" --data "$T/none.jsonl" --out "$T/b5"
expect_exit 2 "unknown method" "--method" "$E" aggregate --fit "$T/fit" --method ew --out "$T/b6"
for d in b1 b2 b3 b4 b5 b6; do
    check "nothing written in $d" test ! -e "$T/$d/mixture.json"
done
check "no temporary files left" test -z "$(find "$T" -name '*.tmp*')"

finish cli_aggregate_lm
