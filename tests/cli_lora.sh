#!/bin/sh
# LoRA adapters from the command line: emdpo dpo and sft --lora-r train a
# PEFT adapter on a frozen model (adapter_config.json and
# adapter_model.safetensors with PEFT's names, the base never written, the
# loss falls), --resume ends with the same bytes as an uninterrupted run,
# --merge writes base + adapter merged (what emdpo merge writes), a bf16
# base trains the adapter a float32 copy of it trains, --grad-checkpoint
# changes no bit, and bad LoRA flags exit 2.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" dpo --help 2>/dev/null | grep -q -- --lora-r; then
    echo "cli_lora: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=2,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"
cat >"$T/sft.jsonl" <<'JSON'
{"prompt": "ab", "response": "cd"}
{"prompt": "ef", "response": "gh"}
JSON
cat >"$T/prefs.jsonl" <<'JSON'
{"annotator": "u1", "prompt": "ab", "chosen": "yes", "rejected": ["no", "nah"]}
{"annotator": "u2", "prompt": "cd", "chosen": "yes", "rejected": "no"}
{"annotator": "u1", "prompt": "ef", "ranking": ["yes", "ok", "no"]}
JSON
loss_at() { sed -n "$1"'s/.*"loss": \([^,]*\),.*/\1/p' "$2"; }
decreased() { awk -v a="$(loss_at 1 "$1")" -v b="$(loss_at '$' "$1")" 'BEGIN { exit !(b + 0 < a + 0) }'; }

expect_exit 0 "a base" "" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/base" --steps 2
cp "$T/base/model.safetensors" "$T/base.before"
LORA="--lora-r 4 --lora-alpha 8 --lr 1e-2 --batch 3 --beta 0.5 --optimizer adamw"
expect_exit 0 "dpo --lora-r" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base" $COMMON --out "$T/a" $LORA \
    --steps 8 --log "$T/a.log"
check "adapter files" test -s "$T/a/adapter_config.json" -a -s "$T/a/adapter_model.safetensors" -a -s "$T/a/trainer.bin"
check "no model files beside the adapter" test ! -e "$T/a/model.safetensors" -a ! -e "$T/a/config.json"
check "PEFT's config" grep -q '"peft_type": "LORA"' "$T/a/adapter_config.json"
check "r and alpha" grep -q '"r": 4,' "$T/a/adapter_config.json"
check "all seven projections" test "$(grep -c '_proj"' "$T/a/adapter_config.json")" -eq 7
check "PEFT's tensor names" grep -aq 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight' \
    "$T/a/adapter_model.safetensors"
check "the base is never written" cmp -s "$T/base/model.safetensors" "$T/base.before"
check "the loss falls" decreased "$T/a.log"

# resume: the same bytes as the run above
expect_exit 0 "dpo --lora-r, 3 steps" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base" $COMMON --out "$T/b" \
    $LORA --steps 3
expect_exit 0 "dpo --lora-r --resume" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base" $COMMON --out "$T/b" \
    $LORA --steps 8 --resume
check "resumed adapter = uninterrupted" cmp -s "$T/a/adapter_model.safetensors" "$T/b/adapter_model.safetensors"

# --merge: what emdpo merge writes
expect_exit 0 "dpo --lora-r --merge" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base" $COMMON --out "$T/c" \
    $LORA --steps 8 --merge "$T/c_merged"
expect_exit 0 "emdpo merge" "" "$E" merge --model "$T/base" --adapter "$T/c" --out "$T/c_merge2"
check "--merge = emdpo merge" cmp -s "$T/c_merged/model.safetensors" "$T/c_merge2/model.safetensors"
check "merged is not the base" test -n "$(cmp "$T/c_merged/model.safetensors" "$T/base/model.safetensors" 2>&1)"
expect_exit 0 "score the merged model" "" "$E" score --model "$T/c_merged" --data "$T/prefs.jsonl" \
    --tokenizer "$T/tok.bin" --out "$T/merged.csv"

# the adapter directory is a model wherever one is read: its base (named by
# base_model_name_or_path, absolute) with the adapter merged in
check "the base's absolute path" grep -q "\"base_model_name_or_path\": \"/" "$T/c/adapter_config.json"
expect_exit 0 "score the adapter directory" "" "$E" score --model "$T/c" --data "$T/prefs.jsonl" \
    --tokenizer "$T/tok.bin" --out "$T/adapter.csv"
check "adapter directory = merged model" cmp -s "$T/adapter.csv" "$T/merged.csv"
expect_exit 0 "score --adapter (the base runs it, unmerged)" "" "$E" score --model "$T/base" --adapter "$T/c" \
    --data "$T/prefs.jsonl" --tokenizer "$T/tok.bin" --out "$T/unmerged.csv"
close_scores() { # two score CSVs agree to 1e-5 in logp
    paste -d, "$1" "$2" | awk -F, 'NR > 1 { d = $5 - $10; if (d < 0) d = -d; if (d > 1e-5) bad = 1 } END { exit bad }'
}
check "--adapter = merged model, to rounding" close_scores "$T/unmerged.csv" "$T/merged.csv"
expect_exit 0 "generate --adapter" "" "$E" generate --model "$T/base" --adapter "$T/c" --tokenizer "$T/tok.bin" \
    --prompt ab --temperature 0 --max-tokens 12
cp "$T/stdout" "$T/gen_adapter.txt"
expect_exit 0 "generate the merged model" "" "$E" generate --model "$T/c_merged" --tokenizer "$T/tok.bin" \
    --prompt ab --temperature 0 --max-tokens 12
check "generate --adapter = the merged model" cmp -s "$T/stdout" "$T/gen_adapter.txt"
[ -d tests/fixtures/lora/llama3_all ] && expect_exit 2 "--adapter of another model's shape" "adapter_model" \
    "$E" score --model "$T/base" --adapter tests/fixtures/lora/llama3_all --data "$T/prefs.jsonl" --tokenizer "$T/tok.bin"
sed 's/"base_model_name_or_path": "[^"]*"/"base_model_name_or_path": null/' "$T/c/adapter_config.json" >"$T/cfg"
mkdir "$T/nobase" && cp "$T/cfg" "$T/nobase/adapter_config.json" && cp "$T/c/adapter_model.safetensors" "$T/nobase/"
expect_exit 2 "an adapter without its base" "base_model_name_or_path" "$E" score --model "$T/nobase" \
    --data "$T/prefs.jsonl" --tokenizer "$T/tok.bin"

# a bf16 base (frozen, 16-bit) trains the adapter its float32 copy trains
expect_exit 0 "bf16 base" "" "$E" convert --model "$T/base" --out "$T/base16" --save-dtype bf16
expect_exit 0 "f32 copy of it" "" "$E" convert --model "$T/base16" --out "$T/base32" --save-dtype f32
expect_exit 0 "dpo on the bf16 base" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base16" $COMMON --out "$T/d16" \
    $LORA --steps 8 --lora-dropout 0.1
expect_exit 0 "dpo on its f32 copy" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base32" $COMMON --out "$T/d32" \
    $LORA --steps 8 --lora-dropout 0.1
check "bf16 base = f32 copy" cmp -s "$T/d16/adapter_model.safetensors" "$T/d32/adapter_model.safetensors"
check "dropout recorded" grep -q '"lora_dropout": 0.1' "$T/d16/adapter_config.json"

# sft with a subset of targets
expect_exit 0 "sft --lora-targets" "" "$E" sft --data "$T/sft.jsonl" --model "$T/base" $COMMON --out "$T/s" \
    --lora-r 2 --lora-targets q_proj,v_proj --steps 3 --lr 1e-2
check "two targets" test "$(grep -c '_proj"' "$T/s/adapter_config.json")" -eq 2

# activation checkpointing changes no bit: a four-layer model (two layers
# recomputed), an adapter with dropout, two threads; a resume may switch
expect_exit 0 "a deeper base" "" "$E" sft --data "$T/sft.jsonl" --config "dim=16,layers=4,heads=2,vocab=259,seq_len=64" \
    $COMMON --out "$T/deep" --steps 1
DEEP="--data $T/prefs.jsonl --model $T/deep --tokenizer $T/tok.bin --threads 2 --quiet $LORA --lora-dropout 0.2"
expect_exit 0 "dpo --lora-r" "" "$E" dpo $DEEP --out "$T/g0" --steps 4
expect_exit 0 "dpo --lora-r --grad-checkpoint" "" "$E" dpo $DEEP --out "$T/g1" --steps 4 --grad-checkpoint
check "--grad-checkpoint: the same adapter" cmp -s "$T/g0/adapter_model.safetensors" "$T/g1/adapter_model.safetensors"
expect_exit 0 "2 steps with --grad-checkpoint" "" "$E" dpo $DEEP --out "$T/g2" --steps 2 --grad-checkpoint
expect_exit 0 "resumed without it" "" "$E" dpo $DEEP --out "$T/g2" --steps 4 --resume
check "resume across --grad-checkpoint: the same adapter" cmp -s "$T/g0/adapter_model.safetensors" \
    "$T/g2/adapter_model.safetensors"
FULL="--data $T/prefs.jsonl --model $T/deep --tokenizer $T/tok.bin --threads 2 --quiet --lr 1e-3 --steps 3"
expect_exit 0 "dpo, the whole model" "" "$E" dpo $FULL --out "$T/f0"
expect_exit 0 "dpo, the whole model, --grad-checkpoint" "" "$E" dpo $FULL --out "$T/f1" --grad-checkpoint
check "--grad-checkpoint: the same model" cmp -s "$T/f0/model.safetensors" "$T/f1/model.safetensors"

# bad flags
expect_exit 2 "--lora-r 0" "lora-r" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base" $COMMON --out "$T/x" --lora-r 0
expect_exit 2 "--lora-dropout 1" "lora-dropout" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base" $COMMON \
    --out "$T/x" --lora-dropout 1
expect_exit 2 "--lora-targets lm_head" "lora-targets" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base" $COMMON \
    --out "$T/x" --lora-targets q_proj,lm_head
expect_exit 2 "--lora-r with --config" "needs --model" "$E" dpo --data "$T/prefs.jsonl" --config "$CFG" $COMMON \
    --out "$T/x" --lora-r 2
expect_exit 2 "--merge without LoRA" "merge" "$E" dpo --data "$T/prefs.jsonl" --model "$T/base" $COMMON --out "$T/x" \
    --merge "$T/y"
check "nothing written for bad flags" test ! -e "$T/x"
finish cli_lora
