#!/bin/sh
# Bad input: exit code 2, a message naming file and line, no output left.
E=${1:-build/emdpo}
. tests/lib_cli.sh

good='{"annotator":"a","chosen":{"features":[1,2]},"rejected":[{"features":[0,1]}]}'
printf '%s\n{"annotator":"b","chosen":{"features":[1,2]},"rejected":[{"features":[0,1]}\n' "$good" >"$T/badjson.jsonl"
expect_exit 2 "malformed JSON" "badjson.jsonl:2:" "$E" fit --data "$T/badjson.jsonl" --k 1 --out "$T/o1"

printf '%s\n%s\n{"annotator":"c","rejected":[{"features":[0,1]}]}\n' "$good" "$good" >"$T/missing.jsonl"
expect_exit 2 "missing field" "missing.jsonl:3:" "$E" fit --data "$T/missing.jsonl" --k 1 --out "$T/o2"
check "missing field names it" grep -q chosen "$T/stderr"

printf '%s\n{"annotator":"d","chosen":{"features":[1,2]},"rejected":[]}\n' "$good" >"$T/empty.jsonl"
expect_exit 2 "empty rejected" "empty.jsonl:2:" "$E" fit --data "$T/empty.jsonl" --k 1 --out "$T/o3"

printf '%s\n{"annotator":"e","chosen":{"features":[1,2,3]},"rejected":[{"features":[0,1,2]}]}\n' "$good" >"$T/len.jsonl"
expect_exit 2 "mismatched feature lengths" "len.jsonl:2:" "$E" fit --data "$T/len.jsonl" --k 1 --out "$T/o4"

printf '%s\n{"annotator":"f","chosen":{"features":[NaN,2]},"rejected":[{"features":[0,1]}]}\n' "$good" >"$T/nan.jsonl"
expect_exit 2 "NaN feature (JSONL)" "nan.jsonl:2:" "$E" fit --data "$T/nan.jsonl" --k 1 --out "$T/o5"

printf '%s\n{"annotator":"f","chosen":{"features":[1e999,2]},"rejected":[{"features":[0,1]}]}\n' "$good" >"$T/inf.jsonl"
expect_exit 2 "infinite feature (JSONL)" "inf.jsonl:2:" "$E" fit --data "$T/inf.jsonl" --k 1 --out "$T/o6"

printf 'annotator,task,alt,chosen,x1\na,1,1,1,0.5\na,1,2,0,nan\n' >"$T/nan.csv"
expect_exit 2 "NaN feature (CSV)" "nan.csv:3:" "$E" fit --data "$T/nan.csv" --k 1 --out "$T/o7"

printf 'annotator,task,alt,chosen,x1\na,1,1,1,0.5\na,1,2,1,0.1\na,1,3,0,0.2\n' >"$T/two.csv"
expect_exit 2 "two chosen in one task" "two.csv:" "$E" fit --data "$T/two.csv" --k 1 --out "$T/o8"

printf 'annotator,task,alt,chosen,x1\na,1,1,1,0.5\na,1,2,5,0.1\n' >"$T/range.csv"
expect_exit 2 "chosen out of range" "range.csv:" "$E" fit --data "$T/range.csv" --k 1 --out "$T/o9"

printf 'annotator,task,alt,chosen,x1\na,1,1,1,0.5\na,1,2,0\n' >"$T/fields.csv"
expect_exit 2 "wrong field count" "fields.csv:3:" "$E" fit --data "$T/fields.csv" --k 1 --out "$T/o10"

expect_exit 2 "missing file" "nonexistent.jsonl" "$E" fit --data "$T/nonexistent.jsonl" --k 1 --out "$T/o11"
expect_exit 2 "unknown flag" "unknown flag" "$E" fit --data x --k 1 --out y --bogus 3
expect_exit 2 "missing required flag" "--k" "$E" fit --data x --out y
expect_exit 2 "bad number" "--k" "$E" fit --data x --k two --out y
expect_exit 2 "unknown command" "unknown command" "$E" frobnicate
expect_exit 2 "bad k range" "--k" "$E" select --data x --k 3..1
expect_exit 2 "text data for log-linear fit" "features" sh -c "printf '{\"chosen\":\"a\",\"rejected\":\"b\"}\n' >'$T/text.jsonl' && '$E' fit --data '$T/text.jsonl' --k 1 --out '$T/o12'"

for d in o1 o2 o3 o4 o5 o6 o7 o8 o9 o10 o11 o12; do
    check "no output left in $d" test ! -e "$T/$d/fit.json"
done
check "no temporary files left" test -z "$(find "$T" -name '*.tmp.*')"

expect_exit 2 "simulate: bad eta count" "--eta" "$E" simulate --out "$T/s.jsonl" --theta "1,2;3,4" --eta 1 --design gaussian
check "simulate: nothing written on error" test ! -e "$T/s.jsonl"
expect_exit 2 "aggregate: missing fit" "cannot open" "$E" aggregate --fit "$T/none"
expect_exit 0 "help exits 0" "" "$E" fit --help
check "help lists flags" grep -q -- "--starts" "$T/stdout"

finish cli_errors
