#!/bin/sh
# Record-level errors cite file:line, for records that are malformed and
# for records that are valid JSON but lack what the command needs: a JSON
# array of records (each record's line, where it begins; a syntax error's
# line), an MPI inventory CSV, chat records (with ../shared's Llama 3 chat
# template). Valid edge cases beside each: an array whose strings hold
# brackets, quotes and braces, records spread over several lines.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" dpo --help >/dev/null 2>&1; then
    echo "cli_lines: 0 passed, 0 failed"
    exit 0
fi
byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
DPO="--config $CFG --tokenizer $T/tok.bin --threads 1 --quiet --steps 1 --batch 2"

# A JSON array of records.
cat >"$T/ok.json" <<'JSON'
[{"prompt": "p [x", "chosen": "a", "rejected": "b"},

  {"prompt": "p\"{", "chosen": "a]",
   "rejected": "b"},
  {"prompt": "q", "chosen": "c", "rejected": "d"}]
JSON
expect_exit 0 "array: brackets, quotes and braces in strings" "" "$E" dpo $DPO --data "$T/ok.json" --out "$T/a0"
sed 's/"rejected": "d"/"other": "d"/' "$T/ok.json" >"$T/norej.json"
expect_exit 2 "array: a record without rejected, at its line" 'norej.json:5: missing field "rejected"' \
    "$E" dpo $DPO --data "$T/norej.json" --out "$T/a1"
printf '[\n{"prompt": "p", "chosen": "a", "rejected": "b"},\n\n7\n]\n' >"$T/num.json"
expect_exit 2 "array: a record that is not an object" "num.json:4: record 2 is a JSON number" \
    "$E" dpo $DPO --data "$T/num.json" --out "$T/a2"
printf '[\n{"prompt": "p", "chosen": "a", "rejected": "b"},\n{"prompt": "p", "chosen": "a",}\n]\n' >"$T/syntax.json"
expect_exit 2 "array: a syntax error, at its line" "syntax.json:3: the JSON array is not valid JSON" \
    "$E" dpo $DPO --data "$T/syntax.json" --out "$T/a3"
printf '[{"prompt": "p", "chosen": "a", "rejected": "b"},\n {"prompt": "p", "chosen": "a", "rejected": []}]\n' \
    >"$T/empty.json"
expect_exit 2 "array: an empty rejected list, at its line" "empty.json:2:" "$E" dpo $DPO --data "$T/empty.json" --out "$T/a4"

# An MPI inventory (emdpo identify --design phrases --inventory).
printf 'text,label_ocean,key\nI like parties,E,1\nI worry,N,2\n' >"$T/inv.csv"
expect_exit 2 "inventory: a bad key, at its line" "inv.csv:3: key must be 1, -1 or 0" \
    "$E" identify --design phrases --inventory "$T/inv.csv" --n 50 --starts 1 --max-iter 2 --quiet --threads 1
printf 'text,label_ocean,key\nI like parties,E,1\nI worry,X,1\n' >"$T/inv2.csv"
expect_exit 2 "inventory: a bad trait, at its line" "inv2.csv:3: label_ocean" \
    "$E" identify --design phrases --inventory "$T/inv2.csv" --n 50 --starts 1 --max-iter 2 --quiet --threads 1

# Chat records, with a chat template.
S=../shared/data/tokenizers/llama3
if [ -f "$S/tokenizer.json" ]; then
    C="--config dim=16,layers=1,heads=2,vocab=128256,seq_len=96 --tokenizer $S --threads 1 --quiet --steps 1"
    G='{"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}'
    printf '%s\n{"prompt": [{"role": "user", "content": 5}], "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}\n' "$G" >"$T/c1.jsonl"
    expect_exit 2 "chat: content not a string, at its line" 'c1.jsonl:2: message 1: "content" must be a string' \
        "$E" dpo $C --data "$T/c1.jsonl" --out "$T/c1"
    printf '%s\n{"prompt": [{"content": "Hi"}], "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}\n' "$G" >"$T/c2.jsonl"
    expect_exit 2 "chat: a message without a role, at its line" "c2.jsonl:2:" "$E" dpo $C --data "$T/c2.jsonl" --out "$T/c2"
    printf '%s\n{"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "assistant", "content": "4"}], "rejected": "plain"}\n' "$G" >"$T/c3.jsonl"
    expect_exit 2 "chat: responses of two kinds, at their line" "c3.jsonl:2: the responses mix conversations" \
        "$E" dpo $C --data "$T/c3.jsonl" --out "$T/c3"
    printf '%s\n%s\n' "$G" "$G" >"$T/c4.jsonl"
    expect_exit 0 "chat: valid records" "" "$E" dpo $C --data "$T/c4.jsonl" --batch 2 --out "$T/c4"
fi

finish cli_lines
