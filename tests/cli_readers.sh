#!/bin/sh
# Readers' errors name the file and the line or field: a Llama fit.json
# whose "eta" has another length than "k"; a file that a fit.json names and
# that is missing (named with the fit.json and the field); a preference
# record whose responses have no text, refused at its line by every command
# that needs text, while a log-linear fit still reads it.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" dpo --help >/dev/null 2>&1; then
    echo "cli_readers: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"
for g in A B; do
    for i in 1 2 3; do
        if [ $g = A ]; then c=yes r=no; else c=no r=yes; fi
        printf '{"annotator": "%s%d", "prompt": "ab", "chosen": "%s", "rejected": "%s"}\n' $g $i $c $r
    done
done >"$T/prefs.jsonl"
check_run "sft" "$E" sft --data "$T/prefs.jsonl" --config "dim=16,layers=1,heads=2,vocab=259,seq_len=64" $COMMON \
    --out "$T/sft" --steps 1
check_run "fit --policy llama" "$E" fit --policy llama --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --k 2 \
    --steps 1 --max-iter 1 --out "$T/run/fit"
check_run "report of the valid fit" "$E" report "$T/run"
AGG="--method lw --rounds 1 --steps 1 --threads 1"

# eta of another length than k.
cp -r "$T/run" "$T/run3"
rm -f "$T/run3/report.html"
sed 's/"eta": \[[^]]*\]/"eta": [0.3, 0.3, 0.4]/' "$T/run/fit/fit.json" >"$T/run3/fit/fit.json"
expect_exit 2 "report: eta longer than k" 'fit/fit.json: "eta" must hold 2 numbers' "$E" report "$T/run3"
check "report: nothing written" test ! -e "$T/run3/report.html"
expect_exit 2 "aggregate: eta longer than k" 'fit.json: "eta" must hold 2 numbers' "$E" aggregate \
    --fit "$T/run3/fit" $AGG --out "$T/a1"

# A file the fit names is missing.
cp -r "$T/run/fit" "$T/fit_tok"
sed "s|\"tokenizer\": \"[^\"]*\"|\"tokenizer\": \"$T/gone.bin\"|" "$T/run/fit/fit.json" >"$T/fit_tok/fit.json"
expect_exit 2 "aggregate: missing tokenizer" "fit_tok/fit.json: \"tokenizer\" names $T/gone.bin, which does not exist" \
    "$E" aggregate --fit "$T/fit_tok" $AGG --out "$T/a2"
expect_exit 2 "regret: missing tokenizer" "fit_tok/fit.json: \"tokenizer\" names $T/gone.bin, which does not exist" \
    "$E" regret --fit "$T/fit_tok" --uniform
cp -r "$T/run/fit" "$T/fit_pol"
rm -r "$T/fit_pol/type_2"
expect_exit 2 "aggregate: missing type" "fit_pol/fit.json: \"policies\" names $T/fit_pol/type_2, which does not exist" \
    "$E" aggregate --fit "$T/fit_pol" $AGG --out "$T/a3"
cp -r "$T/run/fit" "$T/fit_data"
sed "s|\"data\": \"[^\"]*\"|\"data\": \"$T/gone.jsonl\"|" "$T/run/fit/fit.json" >"$T/fit_data/fit.json"
expect_exit 2 "aggregate: missing data" "fit_data/fit.json: \"data\" names $T/gone.jsonl, which does not exist" \
    "$E" aggregate --fit "$T/fit_data" $AGG --out "$T/a4"
expect_exit 0 "aggregate: --data replaces the missing one" "" "$E" aggregate --fit "$T/fit_data" $AGG \
    --data "$T/prefs.jsonl" --out "$T/a5"
printf '{"annotator": "a", "chosen": {"features": [1, 0]}, "rejected": {"features": [0, 1]}}\n' >"$T/ll.jsonl"
printf '{"annotator": "b", "chosen": {"features": [0, 1]}, "rejected": {"features": [1, 0]}}\n' >>"$T/ll.jsonl"
check_run "log-linear fit" "$E" fit --data "$T/ll.jsonl" --k 1 --out "$T/llfit" --quiet
sed "s|\"data\": \"[^\"]*\"|\"data\": \"$T/gone.jsonl\"|" "$T/llfit/fit.json" >"$T/llfit/fit2.json"
expect_exit 2 "log-linear aggregate: missing data" "llfit/fit2.json: \"data\" names $T/gone.jsonl, which does not exist" \
    "$E" aggregate --fit "$T/llfit/fit2.json"

# Responses without text: file:line from every command that needs text.
{
    printf '{"annotator": "a", "prompt": "p", "chosen": {"features": [1, 0], "text": "y"}, "rejected": {"features": [0, 1], "text": "n"}}\n'
    printf '\n{"annotator": "b", "chosen": {"features": [1, 0], "text": "y"}, "rejected": {"features": [0, 1]}}\n'
} >"$T/notext.jsonl"
msg="notext.jsonl:3: response 2 has no text"
expect_exit 2 "dpo: no text" "$msg" "$E" dpo --data "$T/notext.jsonl" --model "$T/sft" $COMMON --out "$T/d1"
expect_exit 2 "sft: no text" "$msg" "$E" sft --data "$T/notext.jsonl" --model "$T/sft" $COMMON --out "$T/d2"
expect_exit 2 "fit --policy llama: no text" "$msg" "$E" fit --policy llama --data "$T/notext.jsonl" --model "$T/sft" \
    $COMMON --k 2 --out "$T/d3"
expect_exit 2 "score: no text" "$msg" "$E" score --data "$T/notext.jsonl" --model "$T/sft" --tokenizer "$T/tok.bin"
expect_exit 2 "baseline: no text" "$msg" "$E" baseline --method vanilla --data "$T/notext.jsonl" --model "$T/sft" \
    $COMMON --steps 1 --out "$T/d4"
expect_exit 2 "aggregate --data: no text" "$msg" "$E" aggregate --fit "$T/run/fit" $AGG --data "$T/notext.jsonl" \
    --out "$T/d5"
expect_exit 0 "log-linear fit reads it" "" "$E" fit --data "$T/notext.jsonl" --k 1 --out "$T/d6" --quiet
for d in d1 d2 d3 d4 d5; do
    check "nothing written in $d" test ! -e "$T/$d"
done

finish cli_readers
