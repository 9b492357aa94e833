#!/bin/sh
# Checkpoints through the commands: the PyTorch-made sharded bfloat16
# fixture trained for a step at learning rate 0 comes back as one bfloat16
# file with the same bits (and, with --save-dtype, as F16/F32); --save-dtype
# reaches sft, fit, baseline, aggregate and convert; the tokenizer and
# generation_config.json are written beside the weights; and, when
# /usr/bin/python3 has PyTorch, tools/hf_check.py loads every saved
# directory as transformers would and finds the fixture's tensors and
# logits in the round-tripped one.
E=${1:-build/emdpo}
. tests/lib_cli.sh

FIX=tests/fixtures/hf_tiny_sharded
if ! "$E" dpo --help >/dev/null 2>&1 || [ ! -f "$FIX/config.json" ]; then
    echo "cli_checkpoint: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"
two_group_prefs "$T/prefs.jsonl" 3 ab

dtype_of() { # the dtype of a saved model.safetensors's first tensor
    head -c 300 "$1/model.safetensors" | grep -ao '"dtype":"[A-Z0-9]*"' | head -n 1 | cut -d'"' -f4
}
PY=
if /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then PY=/usr/bin/python3; else echo "note: no PyTorch: tools/hf_check.py skipped"; fi
hf_check() { # DIR [ARGS]: loads as transformers would (when PyTorch is here)
    [ -z "$PY" ] || check_run "hf_check $*" "$PY" tools/hf_check.py "$@"
}

# Sharded bfloat16 in, one step at lr 0, one bfloat16 file out with the same bits.
expect_exit 0 "dpo from the sharded fixture" "" "$E" dpo --data "$T/prefs.jsonl" --model "$FIX" $COMMON \
    --out "$T/same" --steps 1 --lr 0
check "kept bf16" test "$(dtype_of "$T/same")" = BF16
check "torch_dtype bfloat16" grep -q '"torch_dtype": "bfloat16"' "$T/same/config.json"
check "tokenizer.bin copied" cmp -s "$T/tok.bin" "$T/same/tokenizer.bin"
check "generation_config.json" grep -q '"bos_token_id": 1,' "$T/same/generation_config.json"
check "config.json eos" grep -q '"eos_token_id": 2,' "$T/same/config.json"
check "no index in the output" test ! -e "$T/same/model.safetensors.index.json"
hf_check "$T/same" --like "$FIX" --dtype bfloat16

# Reloaded and saved again: the same file.
expect_exit 0 "dpo from the saved copy" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/same" $COMMON \
    --out "$T/same2" --steps 1 --lr 0
check "bf16 round trip is the identity" cmp -s "$T/same/model.safetensors" "$T/same2/model.safetensors"

for dt in f16 f32; do
    expect_exit 0 "dpo --save-dtype $dt" "" "$E" dpo --data "$T/prefs.jsonl" --model "$FIX" $COMMON \
        --out "$T/$dt" --steps 1 --lr 0 --save-dtype $dt
    expect_exit 0 "dpo from $dt" "" "$E" dpo --data "$T/prefs.jsonl" --model "$T/$dt" $COMMON \
        --out "$T/${dt}b" --steps 1 --lr 0
    check "$dt round trip is the identity" cmp -s "$T/$dt/model.safetensors" "$T/${dt}b/model.safetensors"
done
check "f16 written" test "$(dtype_of "$T/f16")" = F16
check "f32 written" test "$(dtype_of "$T/f32")" = F32
hf_check "$T/f16" --dtype float16
hf_check "$T/f32" --dtype float32
expect_exit 2 "bad --save-dtype" "--save-dtype must be auto, f32, f16 or bf16" "$E" dpo --data "$T/prefs.jsonl" \
    --model "$FIX" $COMMON --out "$T/bad" --save-dtype f8

# The other commands that save models.
expect_exit 0 "sft --save-dtype bf16" "" "$E" sft --data "$T/prefs.jsonl" --config "dim=16,layers=1,heads=2,vocab=259" \
    $COMMON --out "$T/sft" --steps 1 --save-dtype bf16
check "sft wrote bf16" test "$(dtype_of "$T/sft")" = BF16
hf_check "$T/sft" --dtype bfloat16
expect_exit 0 "fit --save-dtype f16" "" "$E" fit --policy llama --data "$T/prefs.jsonl" --model "$FIX" $COMMON \
    --k 2 --steps 1 --max-iter 1 --out "$T/fit" --save-dtype f16
for k in 1 2; do
    check "fit type_$k is f16" test "$(dtype_of "$T/fit/type_$k")" = F16
    check "fit type_$k has the tokenizer" cmp -s "$T/tok.bin" "$T/fit/type_$k/tokenizer.bin"
done
hf_check "$T/fit/type_1" --dtype float16
expect_exit 0 "fit keeps bf16" "" "$E" fit --policy llama --data "$T/prefs.jsonl" --model "$FIX" $COMMON \
    --k 2 --steps 1 --max-iter 1 --out "$T/fitb"
check "fit type_2 is bf16" test "$(dtype_of "$T/fitb/type_2")" = BF16
expect_exit 0 "baseline --save-dtype f32" "" "$E" baseline --method vanilla --data "$T/prefs.jsonl" --model "$FIX" \
    $COMMON --steps 1 --out "$T/base" --save-dtype f32
check "baseline type_1 is f32" test "$(dtype_of "$T/base/type_1")" = F32
check "baseline has generation_config.json" test -s "$T/base/type_1/generation_config.json"
expect_exit 0 "aggregate lw keeps bf16" "" "$E" aggregate --fit "$T/fitb" --method lw --rounds 1 --steps 1 \
    --out "$T/agg" --threads 1
check "aggregate policy is bf16" test "$(dtype_of "$T/agg/policy")" = BF16
check "aggregate policy has the tokenizer" cmp -s "$T/tok.bin" "$T/agg/policy/tokenizer.bin"
hf_check "$T/agg/policy" --dtype bfloat16

if "$E" convert --help >/dev/null 2>&1; then
    expect_exit 0 "convert keeps bf16" "" "$E" convert --model "$FIX" --out "$T/conv"
    check "convert wrote bf16" test "$(dtype_of "$T/conv")" = BF16
    check "convert wrote no tokenizer" test ! -e "$T/conv/tokenizer.bin"
    expect_exit 0 "convert --save-dtype f16 --tokenizer" "" "$E" convert --model "$FIX" --out "$T/conv16" \
        --save-dtype f16 --tokenizer "$T/tok.bin"
    check "convert wrote f16" test "$(dtype_of "$T/conv16")" = F16
    check "convert copied the tokenizer" cmp -s "$T/tok.bin" "$T/conv16/tokenizer.bin"
    hf_check "$T/conv16" --dtype float16
    expect_exit 2 "--save-dtype for GGUF output" "--save-dtype is for a Hugging Face directory" "$E" convert \
        --model "$FIX" --out "$T/x.gguf" --save-dtype f16
fi

finish cli_checkpoint
