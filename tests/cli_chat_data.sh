#!/bin/sh
# TRL's chat data end to end with a real tokenizer (../shared's Llama 3
# tokenizer.json and its chat template): conversational and implicit-prompt
# records, gzip-compressed and as one JSON array, with the annotator in
# user_id, go through emdpo dpo and emdpo fit --policy llama on a fresh tiny
# model of Llama 3's vocabulary; the prompts end where the chat template
# opens the assistant's turn, and scores cover only the completions. Also
# the long CSV's column flags.
E=${1:-build/emdpo}
. tests/lib_cli.sh
S=../shared/data/tokenizers/llama3

cat >"$T/conv.jsonl" <<'JSON'
{"user_id": "u1", "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}], "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}
{"user_id": "u1", "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]}
{"user_id": "u2", "prompt": [{"role": "user", "content": "Name a colour."}], "chosen": [{"role": "assistant", "content": "Blue"}], "rejected": [[{"role": "assistant", "content": "Seven"}], [{"role": "assistant", "content": "Dog"}]]}
{"user_id": "u2", "prompt": [{"role": "user", "content": "Capital of France?"}], "ranking": [[{"role": "assistant", "content": "Paris"}], [{"role": "assistant", "content": "Lyon"}], [{"role": "assistant", "content": "Rome"}]]}
{"user_id": "u3", "chosen": "The sky is blue.", "rejected": "The sky is green."}
JSON

if [ -f "$S/tokenizer.json" ]; then
    CFG="dim=16,layers=1,heads=2,vocab=128256,seq_len=96"
    COMMON="--tokenizer $S --threads 1 --quiet"
    expect_exit 0 "dpo on conversational JSONL" "" "$E" dpo --data "$T/conv.jsonl" --annotator-field user_id \
        --config "$CFG" $COMMON --steps 2 --batch 2 --out "$T/dpo"
    check "dpo wrote a model" test -s "$T/dpo/model.safetensors"
    gzip -c "$T/conv.jsonl" >"$T/conv.jsonl.gz"
    python3 -c "import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])], indent=1))" \
        "$T/conv.jsonl" >"$T/conv.json"
    for f in conv.jsonl conv.jsonl.gz conv.json; do
        "$E" score --model "$T/dpo" --data "$T/$f" --tokenizer "$S" --threads 1 --annotator-field user_id \
            >"$T/$f.csv" 2>"$T/err"
        check "score reads $f" test -s "$T/$f.csv"
    done
    check "scores by user_id" grep -q "^5,1,u3," "$T/conv.jsonl.csv"
    check "the same scores from .jsonl, .jsonl.gz and a JSON array" \
        sh -c "cmp -s '$T/conv.jsonl.csv' '$T/conv.jsonl.gz.csv' && cmp -s '$T/conv.jsonl.csv' '$T/conv.json.csv'"
    expect_exit 0 "fit --policy llama on conversational data" "" "$E" fit --policy llama --data "$T/conv.jsonl.gz" \
        --annotator-field user_id --model "$T/dpo" $COMMON --k 2 --max-iter 1 --steps 1 --out "$T/fit"
    check "the fit has three annotators" grep -q '"n_annotators": 3' "$T/fit/fit.json"
    check "posterior rows by user_id" sh -c "cut -d, -f1 '$T/fit/posterior.csv' | tr '\n' ' ' | grep -q 'u1 u2 u3'"
    check "fit.json records how the data was read" grep -q '"annotator_field": "user_id"' "$T/fit/fit.json"
    check "... and the chat template" grep -q '"chat_template": ".*tokenizer_config.json"' "$T/fit/fit.json"
    expect_exit 0 "aggregate re-reads the fit's chat data the same way" "" "$E" aggregate --fit "$T/fit" \
        --threads 1
    check "aggregate wrote the mixture" test -s "$T/fit/mixture.json"
    expect_exit 0 "regret too" "" "$E" regret --fit "$T/fit" --uniform --threads 1
    expect_exit 2 "a field no record has" 'no record has the annotator field "worker_id"' "$E" dpo \
        --data "$T/conv.jsonl" --annotator-field worker_id --config "$CFG" $COMMON --steps 1 --out "$T/bad"
    printf '{"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "assistant", "content": "y"}], "rejected": [{"role": "assistant", "content": "z"}]}\n' >"$T/one.jsonl"
    mkdir "$T/tk"
    ln -s "$(cd "$S" && pwd)/tokenizer.json" "$T/tk/tokenizer.json"
    printf '{"eos_token": "<|eot_id|>"}' >"$T/tk/tokenizer_config.json"
    expect_exit 2 "a conversation without a template" "no chat_template" "$E" dpo --data "$T/one.jsonl" \
        --config "$CFG" --tokenizer "$T/tk" --threads 1 --quiet --steps 1 --out "$T/bad"
    printf '{{ raise_exception("no way") }}' >"$T/refuse.jinja"
    expect_exit 2 "a template's raise_exception names the record" "one.jsonl:1: the chat template: no way" "$E" dpo \
        --data "$T/one.jsonl" --config "$CFG" $COMMON --chat-template "$T/refuse.jinja" --steps 1 --out "$T/bad"
else
    echo "cli_chat_data: $S absent, the Llama 3 runs skipped"
fi

# The long CSV's own column names.
cat >"$T/long.csv" <<'CSV'
person,q,option,pick,x1,x2
p1,1,1,1,1,0
p1,1,2,0,0,1
p1,2,1,0,1,1
p1,2,2,1,0,0
p2,1,1,1,0,1
p2,1,2,0,1,0
CSV
expect_exit 0 "a long CSV with its own column names" "" "$E" fit --data "$T/long.csv" --id person --task q \
    --alt option --choice pick --k 1 --out "$T/csvfit" --quiet --no-se
check "two annotators, three decisions" grep -q '"n_decisions": 3' "$T/csvfit/fit.json"
expect_exit 2 "a column that is not there" 'missing column "annotator"' "$E" fit --data "$T/long.csv" --k 1 \
    --out "$T/csvbad" --quiet

echo "cli_chat_data: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
