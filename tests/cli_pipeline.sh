#!/bin/sh
# The commands end to end on simulated data: simulate, fit, aggregate,
# select, identify; the fit contract; determinism across runs and threads.
E=${1:-build/emdpo}
. tests/lib_cli.sh

expect_exit 0 "simulate jsonl" "" "$E" simulate --out "$T/d.jsonl" --annotators 1500 --decisions 4 --items 3 --seed 3
expect_exit 0 "simulate csv" "" "$E" simulate --out "$T/d.csv" --annotators 1500 --decisions 4 --items 3 --seed 3
check "csv header" sh -c "head -1 '$T/d.csv' | grep -q '^annotator,task,alt,chosen'"
check "csv rows" test "$(wc -l <"$T/d.csv")" -eq $((1500 * 4 * 3 + 1))
check "jsonl lines" test "$(wc -l <"$T/d.jsonl")" -eq 6000

expect_exit 0 "fit" "" "$E" fit --data "$T/d.jsonl" --k 3 --starts 2 --seed 5 --out "$T/fit" --quiet
for key in '"k": 3' '"loglik"' '"iterations"' '"converged"' '"eta"' '"theta"' '"aic"' '"bic"' '"icl"' \
    '"n_annotators": 1500' '"n_decisions": 6000' '"se_theta"' '"se_eta"'; do
    check "fit.json has $key" grep -qF "$key" "$T/fit/fit.json"
done
check "posterior header" sh -c "head -1 '$T/fit/posterior.csv' | grep -qx 'annotator,gamma_1,gamma_2,gamma_3'"
check "posterior rows" test "$(wc -l <"$T/fit/posterior.csv")" -eq 1501
# Each posterior row sums to one.
check "posterior rows sum to 1" awk -F, 'NR > 1 { s = $2 + $3 + $4; if (s < 0.999999 || s > 1.000001) bad = 1 } END { exit bad }' "$T/fit/posterior.csv"

# The same data in CSV gives the same fit.
expect_exit 0 "fit csv" "" "$E" fit --data "$T/d.csv" --k 3 --starts 2 --seed 5 --out "$T/fitc" --quiet
ll_json=$(grep '"loglik":' "$T/fit/fit.json")
ll_csv=$(grep '"loglik":' "$T/fitc/fit.json")
check "jsonl and csv fits agree" test "$ll_json" = "$ll_csv"

# Determinism: same seed, same bits; also with one thread.
expect_exit 0 "refit" "" "$E" fit --data "$T/d.jsonl" --k 3 --starts 2 --seed 5 --out "$T/fit2" --quiet
expect_exit 0 "refit 1 thread" "" "$E" fit --data "$T/d.jsonl" --k 3 --starts 2 --seed 5 --out "$T/fit3" --quiet --threads 1
for f in fit2 fit3; do
    check "$f identical" sh -c "grep -v elapsed_s '$T/fit/fit.json' > '$T/a' && grep -v elapsed_s '$T/$f/fit.json' > '$T/b' && cmp -s '$T/a' '$T/b'"
    check "$f posterior identical" cmp -s "$T/fit/posterior.csv" "$T/$f/posterior.csv"
done

expect_exit 0 "aggregate" "" "$E" aggregate --fit "$T/fit" --out "$T/agg"
check "aggregate table" grep -q "MMRA-AE" "$T/stdout"
check "aggregate json" grep -q '"duality_gap"' "$T/agg/aggregate.json"
# MMRA's max regret is no larger than uniform's or the pooled policy's.
check "mmra is min-max" awk '/^MMRA-AE/ { m = $NF } /^uniform/ { u = $NF } /^pooled/ { p = $NF } END { exit !(m <= u + 1e-6 && m <= p + 1e-6) }' "$T/stdout"

expect_exit 0 "select" "" "$E" select --data "$T/d.jsonl" --k 1..4 --seed 2
check "select table has every K" sh -c "for k in 1 2 3 4; do grep -Eq \"^ *\$k \" '$T/stdout' || exit 1; done"

expect_exit 0 "identify --json" "" "$E" identify --n 300,1200 --starts 1 --json
check "identify json" grep -q '"items"' "$T/stdout"

finish cli_pipeline
