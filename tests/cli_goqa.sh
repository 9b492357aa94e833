#!/bin/sh
# emdpo simulate --dataset goqa: the built-in bank end to end, splits,
# determinism, the question list, the real index file when ../shared is
# present, and bad input (exit 2, file:line, no output left).
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" simulate --dataset goqa --help >/dev/null 2>&1; then
    echo "skip: simulate --dataset goqa is not wired into $E"
    finish cli_goqa
    exit 0
fi

run() { "$E" simulate --dataset goqa "$@" >"$T/stdout" 2>"$T/stderr"; }

check "builtin run" run --out "$T/g.jsonl" --annotators 200 --questions 3 --seed 3 \
    --test-annotators 20 --test-out "$T/t.jsonl" --list-questions "$T/q.jsonl"
check "summary names the source" grep -q "goqa: 40 questions from the builtin bank" "$T/stdout"
check "600 training decisions" test "$(wc -l <"$T/g.jsonl")" -eq 600
check "60 test decisions" test "$(wc -l <"$T/t.jsonl")" -eq 60
for c in Arden Belmora Calvia Dastra; do
    check "group $c present" grep -q "\"group\": *\"$c\"" "$T/g.jsonl"
done
check "binary decisions" sh -c "! grep -q '\"rejected\": *\[[^]]*,' '$T/g.jsonl'"
check "test annotators continue the numbering" grep -q '"annotator": *"a201"' "$T/t.jsonl"
check "no test annotator in training" sh -c "! grep -q '\"annotator\": *\"a201\"' '$T/g.jsonl'"
check "question list" test "$(wc -l <"$T/q.jsonl")" -eq 40
check "question list has distributions" grep -q '"Dastra": {"p": \[' "$T/q.jsonl"

check "same seed" run --out "$T/g2.jsonl" --annotators 200 --questions 3 --seed 3
check "same seed, same bytes" cmp -s "$T/g.jsonl" "$T/g2.jsonl"
check "other seed" run --out "$T/g3.jsonl" --annotators 200 --questions 3 --seed 4
check "other seed, other data" sh -c "! cmp -s '$T/g.jsonl' '$T/g3.jsonl'"

check "two rejected, options listed" run --out "$T/r.jsonl" --annotators 5 --questions 2 --rejected 2 --list-options \
    --countries Calvia,Arden --weights 1,1
check "two rejected items" grep -q '"rejected": *\["[^"]*", *"[^"]*"\]' "$T/r.jsonl"
check "options in the prompt" grep -q 'Options:\\n1\. ' "$T/r.jsonl"
check "only the chosen countries" sh -c "! grep -q 'Belmora\|Dastra' '$T/r.jsonl'"
# The long CSV layout holds features only; these decisions are text.
expect_exit 2 "no CSV for text data" "feature data only" run --out "$T/g.csv" --annotators 3 --questions 2
check "no CSV left" test ! -e "$T/g.csv"

# Bad usage and bad input.
expect_exit 2 "bank file without a bank" "--bank-file" run --out "$T/x1.jsonl" --bank-file "$T/q.jsonl"
expect_exit 2 "index without a file" "needs --bank-file" run --out "$T/x2.jsonl" --bank index
expect_exit 2 "unknown bank" "--bank must be" run --out "$T/x3.jsonl" --bank web --bank-file "$T/q.jsonl"
expect_exit 2 "real country, builtin bank" "built-in bank's countries" run --out "$T/x4.jsonl" --countries Britain
expect_exit 2 "weights count" "--weights needs 4" run --out "$T/x5.jsonl" --weights .5,.5
expect_exit 2 "negative weight" "--weights needs 4" run --out "$T/x6.jsonl" --weights .5,.5,.5,-1
expect_exit 2 "too many questions" "--questions 41: only" run --out "$T/x7.jsonl" --questions 41
expect_exit 2 "bad est-methods" "--est-methods" run --out "$T/x8.jsonl" --est-methods some
expect_exit 2 "zero rejected" "--rejected" run --out "$T/x9.jsonl" --rejected 0
expect_exit 2 "test out alone" "go together" run --out "$T/x10.jsonl" --test-out "$T/tt.jsonl"
expect_exit 2 "missing out" "--out" run
expect_exit 2 "other dataset" "goqa" run --dataset mpi --out "$T/x11.jsonl"
expect_exit 2 "missing bank file" "nonexistent.jsonl" run --out "$T/x12.jsonl" --bank index --bank-file "$T/nonexistent.jsonl"
printf '{"row": 0, "question": "q", "options": ["a", "b"], "dists": {}}\n{"row": 1,\n' >"$T/bad.jsonl"
expect_exit 2 "malformed index" "bad.jsonl:2:" run --out "$T/x13.jsonl" --bank index --bank-file "$T/bad.jsonl"
printf 'question,selections,options,source\nq,"{'"'"'Britain'"'"': [1, 2}","['"'"'a'"'"', '"'"'b'"'"']",GAS\n' >"$T/bad.csv"
expect_exit 2 "malformed selections" "bad.csv:2: selections:" run --out "$T/x14.jsonl" --bank csv --bank-file "$T/bad.csv"
printf '{"question": "q", "country": "Mexico", "options": ["a"], "distribution": [-1]}\n' >"$T/bad_subset.jsonl"
expect_exit 2 "negative subset probability" "bad_subset.jsonl:1:" run --out "$T/x15.jsonl" --bank subset \
    --bank-file "$T/bad_subset.jsonl"
left=0
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do [ -e "$T/x$i.jsonl" ] && left=$((left + 1)); done
check "no output left by failed runs" test "$left" -eq 0

# The reconstructed index, when the shared data is present.
IDX=../shared/data/globalopinionqa/goqa_index2556_4country_reconstructed.jsonl
if [ -r "$IDX" ]; then
    check "index run" run --out "$T/i.jsonl" --bank index --bank-file "$IDX" --annotators 20 --list-questions "$T/iq.jsonl"
    check "index: 103 exact questions of 261" grep -q "goqa: 103 questions from the index bank .*261 with all of Britain,Indonesia,Mexico,Pakistan, 158 dropped" "$T/stdout"
    check "index: list of 103" test "$(wc -l <"$T/iq.jsonl")" -eq 103
    check "index: groups are countries" grep -q '"group": *"Pakistan"' "$T/i.jsonl"
    check "index, all methods" run --out "$T/i2.jsonl" --bank index --bank-file "$IDX" --annotators 5 --est-methods all
    check "index: 255 questions" grep -q "goqa: 255 questions" "$T/stdout"
else
    echo "skip: $IDX absent"
fi

finish cli_goqa
