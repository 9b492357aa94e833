#!/bin/sh
# Language-model commands: sft and dpo train a tiny fresh model on tiny
# generated data (loss falls, files appear, --resume continues), score
# prints log-probabilities, and bad input exits 2 leaving no output.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" sft --help >/dev/null 2>&1; then
    echo "cli_lm: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"

cat >"$T/sft.jsonl" <<'JSON'
{"prompt": "ab", "response": "cd"}
{"prompt": "ef", "response": "gh"}
{"text": "ijk"}
{"prompt": "x", "response": ""}
JSON
cat >"$T/prefs.jsonl" <<'JSON'
{"annotator": "u1", "prompt": "ab", "chosen": "yes", "rejected": ["no", "nah"]}
{"annotator": "u2", "prompt": "cd", "chosen": "yes", "rejected": "no"}
{"annotator": "u1", "prompt": "ef", "ranking": ["yes", "ok", "no"]}
JSON

# first and last "loss" of a JSONL log
loss_at() { sed -n "$1"'s/.*"loss": \([^,]*\),.*/\1/p' "$2"; }
decreased() { awk -v a="$(loss_at 1 "$1")" -v b="$(loss_at '$' "$1")" 'BEGIN { exit !(b + 0 < a + 0) }'; }

expect_exit 0 "sft trains" "" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/sft" \
    --steps 12 --lr 1e-2 --batch 4 --log "$T/sft.log"
check "sft wrote the model" test -s "$T/sft/model.safetensors" -a -s "$T/sft/config.json" -a -s "$T/sft/trainer.bin"
check "sft logged every step" test "$(wc -l <"$T/sft.log")" -eq 12
check "sft log has TRL keys" grep -q '"grad_norm": .*"learning_rate": .*"examples_per_second": .*"step": 12, "epoch"' "$T/sft.log"
check "sft loss decreases" decreased "$T/sft.log"

expect_exit 0 "dpo trains" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --out "$T/dpo" \
    --steps 10 --lr 1e-2 --batch 3 --beta 0.5 --log "$T/dpo.log"
check "dpo log has rewards" grep -q '"rewards/chosen": .*"rewards/rejected": .*"rewards/margins": .*"rewards/accuracies"' "$T/dpo.log"
check "dpo loss decreases" decreased "$T/dpo.log"

# A killed run resumed from its checkpoint ends with the same bits.
"$E" dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --out "$T/r1" --steps 6 --lr 1e-2 --batch 2 >/dev/null 2>&1
"$E" dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --out "$T/r2" --steps 3 --lr 1e-2 --batch 2 >/dev/null 2>&1
expect_exit 0 "dpo resumes" "" "$E" dpo --data "$T/prefs.jsonl" $COMMON --out "$T/r2" --steps 6 --lr 1e-2 --batch 2 --resume
check "resume gives the same bits" cmp -s "$T/r1/model.safetensors" "$T/r2/model.safetensors"

printf 'annotator,gamma_1,gamma_2\nu1,0.25,0.75\nu2,1,0\n' >"$T/post.csv"
expect_exit 0 "dpo with annotator weights" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON \
    --out "$T/w" --steps 2 --weights "$T/post.csv" --weight-column gamma_2 --loss ipo
expect_exit 0 "score" "" "$E" score --data "$T/prefs.jsonl" --model "$T/dpo" --ref "$T/sft" --tokenizer "$T/tok.bin"
check "score header" grep -q '^example,item,annotator,response_tokens,logp,ref_logp,logratio$' "$T/stdout"
check "score rows" test "$(wc -l <"$T/stdout")" -eq 9

# Bad input: exit 2, file:line, nothing written.
printf '{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n' >"$T/nores.jsonl"
expect_exit 2 "sft: missing response" "nores.jsonl:2:" "$E" sft --data "$T/nores.jsonl" --config "$CFG" $COMMON --out "$T/b1"
printf '{"text": "ok"}\n{"text": "\377"}\n' >"$T/utf8.jsonl"
expect_exit 2 "sft: invalid UTF-8" "utf8.jsonl:2:" "$E" sft --data "$T/utf8.jsonl" --config "$CFG" $COMMON --out "$T/b2"
printf '{"prompt": "a", "chosen": "b", "rejected": []}\n' >"$T/norej.jsonl"
expect_exit 2 "dpo: empty rejected" "norej.jsonl:1:" "$E" dpo --data "$T/norej.jsonl" --model "$T/sft" $COMMON --out "$T/b3"
printf 'weight\n1\n-2\n1\n' >"$T/neg.csv"
expect_exit 2 "dpo: negative weight" "neg.csv:3:" "$E" dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --out "$T/b4" --weights "$T/neg.csv"
printf 'annotator,w\nu1,1\n' >"$T/few.csv"
expect_exit 2 "dpo: annotator without weight" "u2" "$E" dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --out "$T/b5" --weights "$T/few.csv"
expect_exit 2 "dpo: unknown loss" "--loss" "$E" dpo --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --out "$T/b6" --loss kto
expect_exit 2 "sft: max-length beyond context" "--max-length" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/b7" --max-length 100
expect_exit 2 "sft: missing model" "none.bin" "$E" sft --data "$T/sft.jsonl" --model "$T/none.bin" $COMMON --out "$T/b8"
expect_exit 2 "sft: tokenizer for another vocabulary" "tok.bin" "$E" sft --data "$T/sft.jsonl" --config "dim=16,layers=1,heads=2,vocab=300" $COMMON --out "$T/b9"
expect_exit 2 "resume without checkpoint" "--resume" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/b10" --resume
expect_exit 2 "resume with other flags" "--batch" "$E" dpo --data "$T/prefs.jsonl" $COMMON --out "$T/r2" --steps 7 --batch 3 --resume
for d in b1 b2 b3 b4 b5 b6 b7 b8 b9 b10; do
    check "no output left in $d" test ! -e "$T/$d/trainer.bin"
done
check "no temporary files left" test -z "$(find "$T" -name '*.tmp*')"

finish cli_lm
