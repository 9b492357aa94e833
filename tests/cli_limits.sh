#!/bin/sh
# Bounded memory and text checks: a 50 MB prompt (dpo, sft, fit --policy
# llama, baseline) or a record of
# 3 million types (estep) costs what a short line does, and the same data
# with a short prompt trains to the same bits; identifiers
# longer than EMDPO_MAX_ID_BYTES or not UTF-8 are refused at file:line, one
# of exactly that length is read; generate --prompt refuses invalid UTF-8;
# absurd sizes are refused before anything is allocated, sizes at the
# bounds run.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" sft --help >/dev/null 2>&1; then
    echo "cli_limits: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"

# A 50 MB line read by dpo, sft and estep costs what a small one does:
# texts keep the ends the tokenizer window reads (a few kB here), and an
# estep record stops at its 65th type. Peak memory is measured where GNU
# time is, and not under AddressSanitizer, whose shadow memory is not the
# program's.
{
    printf '{"annotator": "a", "prompt": "'
    head -c 50000000 /dev/zero | tr '\0' 'x'
    printf ' last words", "chosen": "yes", "rejected": "no"}\n'
    printf '{"annotator": "b", "prompt": "ab", "chosen": "no", "rejected": "yes"}\n'
} >"$T/big.jsonl"
{
    printf '{"prompt": "'
    head -c 50000000 /dev/zero | tr '\0' 'x'
    printf ' last words", "response": "yes"}\n'
} >"$T/big_sft.jsonl"
{
    printf '{"prompt": "'
    head -c 2000 /dev/zero | tr '\0' 'x'
    printf ' last words", "response": "yes"}\n'
} >"$T/small_sft.jsonl"
{
    printf '{"annotator": "a", "logratios": [[0.5, -0.5], [0.25, -0.25]]}\n'
    printf '{"annotator": "b", "logratios": ['
    head -c 12000000 /dev/zero | tr '\0' 'x' | sed 's/xxxx/[1,2],/g'
    printf '[1,2]]}\n'
} >"$T/big_lr.jsonl"
printf '{"annotator": "a", "logratios": [[0.5, -0.5], [0.25, -0.25]]}\n' >"$T/small_lr.jsonl"
{
    printf '{"annotator": "a", "prompt": "'
    head -c 2000 /dev/zero | tr '\0' 'x'
    printf ' last words", "chosen": "yes", "rejected": "no"}\n'
    printf '{"annotator": "b", "prompt": "ab", "chosen": "no", "rejected": "yes"}\n'
} >"$T/small.jsonl"
asan=0
nm "$E" 2>/dev/null | grep -q __asan_init && asan=1
peak() { # OUTFILE COMMAND...: runs it, prints its peak resident memory in KB
    out=$1
    shift
    if [ -x /usr/bin/time ] && [ $asan -eq 0 ]; then
        /usr/bin/time -f '%M' -o "$T/peak" "$@" >"$out" 2>&1
        tail -n 1 "$T/peak"
    else
        "$@" >"$out" 2>&1
        echo 0
    fi
}
# same_peak NAME BIG SMALL RESULT CMD...: CMD reads --data BIG (a 50 MB
# prompt) and SMALL (2 kB) into $T/NAME_big and $T/NAME_small; both write
# RESULT, alike (the prompt's end is what the model sees), and the big one
# peaks within 8 MB of the small one (the line whole would be 50 MB, three
# copies of it 150 MB).
same_peak() {
    sp_name=$1 sp_big=$2 sp_small=$3 sp_result=$4
    shift 4
    big=$(peak "$T/out" "$@" --data "$sp_big" --out "$T/${sp_name}_big")
    small=$(peak "$T/out" "$@" --data "$sp_small" --out "$T/${sp_name}_small")
    echo "$sp_name: peak resident memory $big KB with a 50 MB prompt, $small KB with a 2 kB one"
    check "$sp_name with a 50 MB prompt" test -s "$T/${sp_name}_big/$sp_result"
    check "$sp_name: 50 MB prompt: peak $big KB within 8 MB of $small KB" test "$big" -lt $((small + 8000))
    check "$sp_name: 50 MB and 2 kB prompts: same $sp_result" cmp -s "$T/${sp_name}_big/$sp_result" "$T/${sp_name}_small/$sp_result"
}
same_peak dpo "$T/big.jsonl" "$T/small.jsonl" model.safetensors "$E" dpo --config "$CFG" $COMMON --steps 1
same_peak sft "$T/big_sft.jsonl" "$T/small_sft.jsonl" model.safetensors "$E" sft --config "$CFG" $COMMON --steps 1
# fit --policy llama and baseline read the data for tokens alone too
# (emdpo_lm_data_read).
same_peak fit "$T/big.jsonl" "$T/small.jsonl" type_1/model.safetensors "$E" fit --policy llama \
    --model "$T/dpo_small" $COMMON --k 2 --steps 2 --batch 2 --max-iter 2 --seed 3
same_peak baseline "$T/big.jsonl" "$T/small.jsonl" type_1/model.safetensors "$E" baseline --method vanilla \
    --model "$T/dpo_small" $COMMON --steps 1
big=$(peak "$T/out" "$E" estep --logratios "$T/big_lr.jsonl" --beta 1 --eta 0.5,0.5 --out "$T/lr_big" --quiet)
check "estep: 3 million types refused at the 65th" grep -q 'big_lr.jsonl:2: line is too large to read: "logratios" lists more than 64 elements' "$T/out"
small=$(peak "$T/out" "$E" estep --logratios "$T/small_lr.jsonl" --beta 1 --eta 0.5,0.5 --out "$T/lr_small" --quiet)
echo "estep: peak resident memory $big KB with an 18 MB line of 3 million types, $small KB with a short one"
check "estep: 3 million types: peak $big KB within 8 MB of $small KB" test "$big" -lt $((small + 8000))

# Identifiers: at most 1024 bytes of UTF-8.
long=$(head -c 1025 /dev/zero | tr '\0' 'a')
printf '{"annotator": "ok", "chosen": {"features": [1, 0]}, "rejected": {"features": [0, 1]}}\n' >"$T/id.jsonl"
printf '{"annotator": "%s", "chosen": {"features": [1, 0]}, "rejected": {"features": [0, 1]}}\n' "$long" >>"$T/id.jsonl"
expect_exit 2 "JSONL: 1025-byte annotator" 'id.jsonl:2: "annotator" is 1025 bytes long; identifiers are at most 1024' \
    "$E" fit --data "$T/id.jsonl" --k 1 --out "$T/f1" --quiet
check "JSONL: nothing written" test ! -e "$T/f1"
printf '{"annotator": "%s", "chosen": {"features": [1, 0]}, "rejected": {"features": [0, 1]}}\n' "${long%a}" >"$T/id1024.jsonl"
expect_exit 0 "JSONL: 1024-byte annotator" "" "$E" fit --data "$T/id1024.jsonl" --k 1 --out "$T/f2" --quiet
check "1024-byte annotator written back" grep -q "^${long%a}," "$T/f2/posterior.csv"
printf 'annotator,task,alt,chosen,x\nu,1,1,1,0.5\nu,1,2,0,0.1\n%s,1,1,1,0.5\n%s,1,2,0,0.1\n' "$long" "$long" >"$T/id.csv"
expect_exit 2 "CSV: 1025-byte annotator" 'id.csv:4: column "annotator": 1025 bytes long' \
    "$E" fit --data "$T/id.csv" --k 1 --out "$T/f3" --quiet
printf 'annotator,task,alt,chosen,x\nu,1,1,1,0.5\nu,1,2,0,0.1\nv\377,1,1,1,0.5\nv\377,1,2,0,0.1\n' >"$T/utf8.csv"
expect_exit 2 "CSV: annotator not UTF-8" 'utf8.csv:4: column "annotator": invalid UTF-8 at byte 2' \
    "$E" fit --data "$T/utf8.csv" --k 1 --out "$T/f4" --quiet
printf 'annotator,task,alt,chosen,x\nu,t\377,1,1,0.5\nu,t\377,2,0,0.1\n' >"$T/task.csv"
expect_exit 2 "CSV: task not UTF-8" 'task.csv:2: column "task": invalid UTF-8' \
    "$E" fit --data "$T/task.csv" --k 1 --out "$T/f5" --quiet

# generate --prompt: invalid UTF-8 refused, valid multi-byte text continued.
expect_exit 2 "generate: prompt not UTF-8" "the prompt is not valid UTF-8 (byte 3)" "$E" generate --model "$T/dpo_small" \
    --tokenizer "$T/tok.bin" --prompt "$(printf 'ab\377cd')" --max-tokens 2 --temperature 0
check "generate: nothing printed" test ! -s "$T/stdout"
expect_exit 0 "generate: UTF-8 prompt" "" "$E" generate --model "$T/dpo_small" --tokenizer "$T/tok.bin" \
    --prompt "$(printf 'caf\303\251')" --max-tokens 2 --temperature 0
check "generate: prompt echoed" grep -q "$(printf 'caf\303\251')" "$T/stdout"

# Absurd sizes, refused up front (exit 2, no allocation: the runs stay small).
peak_ok() { # CMD...: exit 2 within 100 MB
    if [ -x /usr/bin/time ] && [ $asan -eq 0 ]; then
        /usr/bin/time -f '%M' -o "$T/peak" "$@" >"$T/stdout" 2>"$T/stderr"
        rc=$?
        [ $rc -eq 2 ] && [ "$(tail -n 1 "$T/peak")" -lt 100000 ]
    else
        "$@" >"$T/stdout" 2>"$T/stderr"
        [ $? -eq 2 ]
    fi
}
check "10^16-parameter --config refused within 100 MB" peak_ok "$E" sft --data "$T/small.jsonl" \
    --config "dim=1000000,layers=1000,heads=2,vocab=259,seq_len=64" $COMMON --out "$T/huge" --steps 1
check "10^16-parameter --config: the message says why" grep -q "parameters need .* GB of float32, more than this machine" \
    "$T/stderr"
mkdir -p "$T/hfbig"
cp tests/fixtures/hf_tiny/model.safetensors "$T/hfbig/"
sed 's/"num_hidden_layers": *[0-9]*/"num_hidden_layers": 4000/; s/"hidden_size": *[0-9]*/"hidden_size": 65536/;
     s/"intermediate_size": *[0-9]*/"intermediate_size": 262144/' tests/fixtures/hf_tiny/config.json >"$T/hfbig/config.json"
check "config.json larger than its tensors refused within 100 MB" peak_ok "$E" generate --model "$T/hfbig" \
    --tokenizer "$T/tok.bin" --prompt a --max-tokens 1
check "config.json larger than its tensors: the message" grep -q "config.json describes [0-9]* parameters; the tensors hold" \
    "$T/stderr"
check "10^11 simulated annotators refused within 100 MB" peak_ok "$E" simulate --annotators 100000000000 --out "$T/sim.jsonl"
check "no simulation written" test ! -e "$T/sim.jsonl"
printf '{"annotator": "a", "chosen": {"features": [1, 0]}, "rejected": {"features": [0, 1]}}\n{"annotator": "b", "chosen": {"features": [0, 1]}, "rejected": {"features": [1, 0]}}\n' >"$T/ff.jsonl"
expect_exit 2 "--starts above 10^6" "--starts must be in 1..1000000" "$E" fit --data "$T/ff.jsonl" --k 2 \
    --starts 1000001 --out "$T/s1" --quiet
expect_exit 2 "--max-iter above 10^7" "--max-iter must be in 0..10000000" "$E" fit --data "$T/ff.jsonl" --k 2 \
    --max-iter 10000001 --out "$T/s2" --quiet
expect_exit 0 "--max-iter 10^7 (stops by tol)" "" "$E" fit --data "$T/ff.jsonl" --k 1 --max-iter 10000000 \
    --out "$T/s3" --quiet
python3 -c "print('{\"annotator\": \"a\", \"x\": ' + '['*1000000 + ']'*1000000 + ', \"chosen\": {\"features\": [1, 0]}, \"rejected\": {\"features\": [0, 1]}}')" >"$T/deep.jsonl"
expect_exit 2 "JSON nested 10^6 deep" "deep.jsonl:1: line is not valid JSON: nesting deeper than 256 levels" \
    "$E" fit --data "$T/deep.jsonl" --k 1 --out "$T/s4" --quiet
python3 -c "print('{\"annotator\": \"a\", \"x\": ' + '['*250 + ']'*250 + ', \"chosen\": {\"features\": [1, 0]}, \"rejected\": {\"features\": [0, 1]}}')" >"$T/d250.jsonl"
expect_exit 0 "JSON nested 250 deep (an ignored field)" "" "$E" fit --data "$T/d250.jsonl" --k 1 --out "$T/s5" --quiet

finish cli_limits
