#!/bin/sh
# EM-DPO around any trainer from the command line: emdpo estep against a
# brute-force E-step (tests/estep_ref.py, 50-digit decimals), a log-linear
# fit's posterior reproduced from its log-ratios, JSONL, CSV and .gz read
# alike, the same bits for any --threads, the weights; aggregate --regrets
# and select --margins; bad input exits 2 naming file:line and leaves no
# output. The reference parts need python3 and skip without it.
E=${1:-build/emdpo}
. tests/lib_cli.sh
R="python3 tests/estep_ref.py"
have_py=0
command -v python3 >/dev/null 2>&1 && have_py=1

cat >"$T/s.jsonl" <<'EOF'
{"annotator": "u1", "logratios": [[0.5, -0.2, 0.1], [-1.0, 0.3, 0.2]]}
{"annotator": "u2", "logratios": [[0.1, 0.2], [0.4, -0.4]]}
{"annotator": "u1", "logratios": [[1.0, 0.0, -1.0], [0.0, 1.0, 2.0]], "ranking": true}
EOF
expect_exit 0 "estep" "" "$E" estep --logratios "$T/s.jsonl" --beta 2 --eta 0.3,0.7 --out "$T/s" --quiet
check "posterior header" sh -c "head -1 '$T/s/posterior.csv' | grep -qx 'annotator,gamma_1,gamma_2'"
check "posterior: annotators in order of first appearance" sh -c "cut -d, -f1 '$T/s/posterior.csv' | tr '\n' ' ' | grep -qx 'annotator u1 u2 '"
check "weights: one row per decision" sh -c "cut -d, -f1 '$T/s/weights.csv' | tr '\n' ' ' | grep -qx 'annotator u1 u2 u1 '"
check "weights header" sh -c "head -1 '$T/s/weights.csv' | grep -qx 'annotator,weight_1,weight_2'"
for key in '"k": 2' '"n_annotators": 2' '"n_decisions": 3' '"beta": 2' '"eta": [' '"loglik": ' '"eta_in": [0.29999999999999999, 0.69999999999999996]'; do
    check "estep.json has $key" grep -qF "$key" "$T/s/estep.json"
done
check "weights are the annotator's gamma" sh -c "test \"\$(sed -n 2p '$T/s/weights.csv')\" = \"\$(sed -n 2p '$T/s/posterior.csv')\""
expect_exit 0 "estep --normalize" "" "$E" estep --logratios "$T/s.jsonl" --beta 2 --eta 0.3,0.7 --normalize --out "$T/sn" --quiet
check "normalized weights have mean 1" awk -F, 'NR > 1 { a += $2; b += $3; n++ } END { exit !(a / n > 0.999999999 && a / n < 1.000000001 && b / n > 0.999999999 && b / n < 1.000000001) }' "$T/sn/weights.csv"
check "the posterior does not depend on --normalize" cmp -s "$T/s/posterior.csv" "$T/sn/posterior.csv"

if [ $have_py -eq 1 ]; then
    # Brute force: products of probabilities, rankings and ragged item counts.
    $R random 300 3 7 "$T/r" || bad "estep_ref random"
    expect_exit 0 "estep random" "" "$E" estep --logratios "$T/r.jsonl" --beta 0.7 --eta 0.2,0.5,0.3 --out "$T/r" --quiet
    $R brute "$T/r.jsonl" 0.7 0.2,0.5,0.3 >"$T/rb.csv" 2>"$T/rb.ll"
    check_run "posterior = brute force" $R compare "$T/r/posterior.csv" "$T/rb.csv" 1e-13
    ll=$(sed 's/.*loglik": //; s/,$//' "$T/r/estep.json" | grep -E '^-?[0-9]' | head -1)
    bll=$(cut -d, -f2 "$T/rb.ll")
    check "loglik = brute force" python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 1e-12 * abs(b))" "$(grep '"loglik"' "$T/r/estep.json" | sed 's/[^-0-9.e]//g')" "$bll"
    # JSONL, CSV and gzip read alike.
    expect_exit 0 "estep csv" "" "$E" estep --logratios "$T/r.csv" --beta 0.7 --eta 0.2,0.5,0.3 --out "$T/rc" --quiet
    gzip -c "$T/r.csv" >"$T/rz.csv.gz"
    gzip -c "$T/r.jsonl" >"$T/rz.jsonl.gz"
    expect_exit 0 "estep csv.gz" "" "$E" estep --logratios "$T/rz.csv.gz" --beta 0.7 --eta 0.2,0.5,0.3 --out "$T/rcz" --quiet
    expect_exit 0 "estep jsonl.gz" "" "$E" estep --logratios "$T/rz.jsonl.gz" --beta 0.7 --eta 0.2,0.5,0.3 --out "$T/rjz" --quiet
    for o in rc rcz rjz; do
        check "$o: same posterior bits" cmp -s "$T/r/posterior.csv" "$T/$o/posterior.csv"
        check "$o: same weights bits" cmp -s "$T/r/weights.csv" "$T/$o/weights.csv"
        check "$o: same estep.json" sh -c "grep -v '\"data\"' '$T/r/estep.json' >'$T/a.json'; grep -v '\"data\"' '$T/$o/estep.json' >'$T/b.json'; cmp -s '$T/a.json' '$T/b.json'"
    done
    # Threads: the same bits (a file large enough for the parallel path).
    $R random 40000 2 3 "$T/big" || bad "estep_ref random big"
    expect_exit 0 "estep 1 thread" "" "$E" estep --logratios "$T/big.jsonl" --beta 1.3 --threads 1 --out "$T/t1" --quiet
    expect_exit 0 "estep 2 threads" "" "$E" estep --logratios "$T/big.jsonl" --beta 1.3 --threads 2 --out "$T/t2" --quiet
    check "threads: same posterior bits" cmp -s "$T/t1/posterior.csv" "$T/t2/posterior.csv"
    check "threads: same estep.json" cmp -s "$T/t1/estep.json" "$T/t2/estep.json"
    # A log-linear fit: its log-ratios theta_k . x / beta give back its posterior.
    for resp in top ranking; do
        "$E" simulate --out "$T/d_$resp.jsonl" --annotators 400 --decisions 3 --items 3 --design gaussian \
            --theta '2,0,-1.5;-2,1.5,1' --response $resp --seed 4 >/dev/null
        expect_exit 0 "fit ($resp)" "" "$E" fit --data "$T/d_$resp.jsonl" --k 2 --out "$T/fit_$resp" --quiet
        $R fit2lr "$T/d_$resp.jsonl" "$T/fit_$resp/fit.json" "$T/lr_$resp" || bad "estep_ref fit2lr"
        eta=$(python3 -c "import json, sys; print(','.join(repr(e) for e in json.load(open(sys.argv[1]))['eta']))" "$T/fit_$resp/fit.json")
        expect_exit 0 "estep on the fit's log-ratios ($resp)" "" "$E" estep --logratios "$T/lr_$resp.jsonl" --beta 1 --eta "$eta" --out "$T/e_$resp" --quiet
        check_run "the fit's posterior to 1e-12 ($resp)" $R compare "$T/e_$resp/posterior.csv" "$T/fit_$resp/posterior.csv" 1e-12
        check "the fit's loglik to 1e-12 ($resp)" python3 -c "
import json, sys
a = json.load(open(sys.argv[1]))['loglik']; b = json.load(open(sys.argv[2]))['loglik']
sys.exit(abs(a - b) > 1e-12 * abs(b))" "$T/e_$resp/estep.json" "$T/fit_$resp/fit.json"
    done
else
    echo "cli_estep: python3 not found; brute-force and fit checks skipped"
fi

# Bad input: exit 2, file:line, nothing written.
ok='{"annotator": "a", "logratios": [[0, 1], [1, 0]]}'
printf '%s\n{"annotator": "b", "logratios": [[0, 1, 2], [1, 0]]}\n' "$ok" >"$T/ragged.jsonl"
expect_exit 2 "ragged types" "ragged.jsonl:2:" "$E" estep --logratios "$T/ragged.jsonl" --beta 1 --out "$T/x1"
printf '%s\n%s\n{"annotator": "b", "logratios": [[0], [1]]}\n' "$ok" "$ok" >"$T/one.jsonl"
expect_exit 2 "one item" "one.jsonl:3:" "$E" estep --logratios "$T/one.jsonl" --beta 1 --out "$T/x2"
printf '%s\n{"annotator": "b", "logratios": [[0, 1e999], [1, 0]]}\n' "$ok" >"$T/inf.jsonl"
expect_exit 2 "infinite log-ratio" "inf.jsonl:2:" "$E" estep --logratios "$T/inf.jsonl" --beta 1 --out "$T/x3"
printf '%s\n{"annotator": "b", "logratios": [[0, NaN], [1, 0]]}\n' "$ok" >"$T/nan.jsonl"
expect_exit 2 "NaN log-ratio (JSONL)" "nan.jsonl:2:" "$E" estep --logratios "$T/nan.jsonl" --beta 1 --out "$T/x4"
printf 'annotator,decision,type,item,logratio\na,1,1,0,0\na,1,1,1,nan\n' >"$T/nan.csv"
expect_exit 2 "NaN log-ratio (CSV)" "nan.csv:3:" "$E" estep --logratios "$T/nan.csv" --beta 1 --out "$T/x5"
printf '%s\n' "$ok" >"$T/ok.jsonl"
expect_exit 2 "K mismatch with --eta" "ok.jsonl:1: 2 types, but 3 expected" "$E" estep --logratios "$T/ok.jsonl" --beta 1 --eta 0.2,0.3,0.5 --out "$T/x6"
expect_exit 2 "eta not summing to 1" "--eta sums to" "$E" estep --logratios "$T/ok.jsonl" --beta 1 --eta 0.2,0.3 --out "$T/x7"
expect_exit 2 "negative eta" "eta_1 = -0.5" "$E" estep --logratios "$T/ok.jsonl" --beta 1 --eta -0.5,1.5 --out "$T/x8"
expect_exit 2 "beta" "--beta" "$E" estep --logratios "$T/ok.jsonl" --beta 0 --out "$T/x9"
expect_exit 2 "missing file" "nothere.jsonl" "$E" estep --logratios "$T/nothere.jsonl" --beta 1 --out "$T/x10"
expect_exit 2 "unknown extension" "format" "$E" estep --logratios "$T/ok.txt" --beta 1 --out "$T/x11"
gzip -c "$T/nan.csv" >"$T/nanz.csv.gz"
expect_exit 2 "NaN log-ratio (.csv.gz)" "nanz.csv.gz:3:" "$E" estep --logratios "$T/nanz.csv.gz" --beta 1 --out "$T/x12"
for d in x1 x2 x3 x4 x5 x6 x7 x8 x9 x10 x11 x12; do
    check "no output left in $d" test ! -e "$T/$d/estep.json"
done

# aggregate --regrets: the K x K and (K+1) x K forms, JSON and CSV, give the same mixture.
printf '[[0, 1, 2], [1, 0, 1], [2, 2, 0]]\n' >"$T/R.json"
printf 'p1,p2,p3\n0,0,0\n0,1,2\n1,0,1\n2,2,0\n' >"$T/R.csv"
expect_exit 0 "aggregate --regrets json" "" "$E" aggregate --regrets "$T/R.json" --json --out "$T/agg"
grep -E '"(w|regret|max_regret|duality_gap|lp_value)"' "$T/stdout" >"$T/aj"
expect_exit 0 "aggregate --regrets csv" "" "$E" aggregate --regrets "$T/R.csv" --json
grep -E '"(w|regret|max_regret|duality_gap|lp_value)"' "$T/stdout" >"$T/ac"
check "both forms: the same mixture bits" cmp -s "$T/aj" "$T/ac"
check "aggregate.json written" grep -qF '"lp_value": 0.99999999999999989' "$T/agg/aggregate.json"
expect_exit 0 "aggregate --regrets lp" "" "$E" aggregate --regrets "$T/R.csv" --solver lp
check "the LP's min-max regret is 1" grep -q 'exact LP min-max regret 1.000000' "$T/stdout"
printf '[[0, 1, 0], [1, 0, 1], [2, 2, 0], [0, 1, 1]]\n' >"$T/Rbad.json"
expect_exit 2 "row 0 must be zero" "row 0" "$E" aggregate --regrets "$T/Rbad.json"
printf '0,1\n1,x\n' >"$T/Rbad.csv"
expect_exit 2 "regret not a number" "Rbad.csv:2:" "$E" aggregate --regrets "$T/Rbad.csv"

# select --margins: JSONL and CSV alike; the best K.
cat >"$T/m.jsonl" <<'EOF'
{"k": 1, "annotator": "a", "margins": [0.5]}
{"k": 1, "annotator": "b", "margins": [0.1]}
{"k": 2, "annotator": "a", "margins": [0.5, 0.9]}
{"k": 2, "annotator": "b", "margins": [0.4, 0.1]}
EOF
printf 'k,annotator,decision,type,margin\n1,a,1,1,0.5\n1,b,2,1,0.1\n2,a,1,1,0.5\n2,a,1,2,0.9\n2,b,2,1,0.4\n2,b,2,2,0.1\n' >"$T/m.csv"
expect_exit 0 "select --margins jsonl" "" "$E" select --margins "$T/m.jsonl" --json
cp "$T/stdout" "$T/mj"
expect_exit 0 "select --margins csv" "" "$E" select --margins "$T/m.csv" --json
check "jsonl and csv margins agree" cmp -s "$T/mj" "$T/stdout"
check "best K 2" grep -qF '"best_k": 2' "$T/stdout"
check "K = 2's margin: mean of 0.9 and 0.4" grep -qF '"k": 2, "n_decisions": 2, "n_annotators": 2, "margin": 0.65000000000000002' "$T/stdout"
printf '{"k": 2, "annotator": "a", "margins": [0.5]}\n' >"$T/mbad.jsonl"
expect_exit 2 "k other than the margins' count" "mbad.jsonl:1:" "$E" select --margins "$T/mbad.jsonl"

check "no temporary files left" test -z "$(find "$T" -name '*.tmp.*')"
echo "cli_estep: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
