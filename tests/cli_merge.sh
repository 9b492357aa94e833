#!/bin/sh
# emdpo merge: a PEFT adapter (tests/fixtures/lora, tools/lora_fixture.py)
# merged into its base. The merged Hugging Face directory computes in
# PyTorch what the base with the adapter computes (when /usr/bin/python3 has
# PyTorch); an adapter with lora_alpha 0 gives the base's own bits back; a
# GGUF base gives the GGUF file that merging its Hugging Face twin and
# converting gives; --save-dtype is kept; a missing file, an adapter for
# another shape or a refused feature exits with code 2 naming the file and
# the tensor or key.
E=${1:-build/emdpo}
. tests/lib_cli.sh

F=tests/fixtures
if ! "$E" merge --help >/dev/null 2>&1 || [ ! -d "$F/lora/llama3_all" ]; then
    echo "cli_merge: 0 passed, 0 failed"
    exit 0
fi
PY=
if /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then PY=/usr/bin/python3; else echo "note: no PyTorch: the logits checks are skipped"; fi
pytorch_check() { # DIR CASE: DIR computes CASE's base with its adapter
    [ -z "$PY" ] || check_run "PyTorch: $1 is $2" "$PY" tools/lora_fixture.py --check-merged "$1" "$2"
}
dtype_of() { # the dtype of a saved model.safetensors's first tensor
    head -c 300 "$1/model.safetensors" | grep -ao '"dtype":"[A-Z0-9]*"' | head -n 1 | cut -d'"' -f4
}

# Hugging Face bases: all projections; rsLoRA on a subset (qwen2, tied);
# a regex on one layer with BF16 tensors; mistral's q_proj of another width.
for c in llama3:llama3_all qwen2:qwen2_rslora llama3:llama3_regex_bf16 mistral:mistral_qko; do
    base=${c%%:*} case=${c#*:}
    expect_exit 0 "merge $case" "" "$E" merge --model "$F/hf_families/$base" --adapter "$F/lora/$case" --out "$T/$case"
    check "$case: the weights changed" test -n "$(cmp "$F/hf_families/$base/model.safetensors" "$T/$case/model.safetensors" 2>&1)"
    check "$case: f32 like the base" test "$(dtype_of "$T/$case")" = F32
    pytorch_check "$T/$case" "$case"
done

# lora_alpha 0: the base's own bits, as emdpo convert writes them.
mkdir "$T/zero"
cp "$F/lora/llama3_all/adapter_model.safetensors" "$T/zero/"
sed 's/"lora_alpha": 8/"lora_alpha": 0/' "$F/lora/llama3_all/adapter_config.json" >"$T/zero/adapter_config.json"
check "alpha edited" grep -q '"lora_alpha": 0,' "$T/zero/adapter_config.json"
expect_exit 0 "merge alpha 0" "" "$E" merge --model "$F/hf_families/llama3" --adapter "$T/zero" --out "$T/zero_out"
expect_exit 0 "convert the base" "" "$E" convert --model "$F/hf_families/llama3" --out "$T/base_copy"
check "alpha 0 gives the base" cmp -s "$T/zero_out/model.safetensors" "$T/base_copy/model.safetensors"

expect_exit 0 "merge --save-dtype bf16" "" "$E" merge --model "$F/hf_families/llama3" --adapter "$F/lora/llama3_all" \
    --out "$T/bf16" --save-dtype bf16
check "bf16 written" test "$(dtype_of "$T/bf16")" = BF16
check "torch_dtype bfloat16" grep -q '"torch_dtype": "bfloat16"' "$T/bf16/config.json"

# A GGUF base (F16 adapter): the same file as merging its Hugging Face twin, then converting.
expect_exit 0 "merge a GGUF base" "" "$E" merge --model "$F/gguf/qwen2.gguf" --adapter "$F/lora/qwen2_gguf_attn" \
    --out "$T/merged.gguf"
expect_exit 0 "merge the twin" "" "$E" merge --model "$F/gguf/qwen2_hf" --adapter "$F/lora/qwen2_gguf_attn" --out "$T/twin"
pytorch_check "$T/twin" qwen2_gguf_attn
expect_exit 0 "convert the twin" "" "$E" convert --model "$T/twin" --tokenizer "$F/gguf/qwen2.gguf" --out "$T/twin.gguf" \
    --dtype f32
check "GGUF merge = HF merge + convert" cmp -s "$T/merged.gguf" "$T/twin.gguf"

# Errors: exit 2, naming the file and what is wrong.
expect_exit 2 "no --adapter" "--adapter" "$E" merge --model "$F/hf_families/llama3" --out "$T/x"
expect_exit 2 "missing adapter directory" "$T/none" "$E" merge --model "$F/hf_families/llama3" --adapter "$T/none" --out "$T/x"
mkdir "$T/cfg_only" "$T/st_only"
cp "$F/lora/llama3_all/adapter_config.json" "$T/cfg_only/"
cp "$F/lora/llama3_all/adapter_model.safetensors" "$T/st_only/"
expect_exit 2 "missing adapter_model.safetensors" "cfg_only/adapter_model.safetensors" "$E" merge \
    --model "$F/hf_families/llama3" --adapter "$T/cfg_only" --out "$T/x"
expect_exit 2 "missing adapter_config.json" "st_only/adapter_config.json" "$E" merge \
    --model "$F/hf_families/llama3" --adapter "$T/st_only" --out "$T/x"
expect_exit 2 "adapter for another shape" \
    'adapter_model.safetensors: tensor "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight" has shape [8, 4], expected [12, 4]' \
    "$E" merge --model "$F/hf_families/mistral" --adapter "$F/lora/llama3_all" --out "$T/x"
mkdir "$T/dora"
cp "$F/lora/llama3_all/adapter_model.safetensors" "$T/dora/"
sed 's/"use_dora": false/"use_dora": true/' "$F/lora/llama3_all/adapter_config.json" >"$T/dora/adapter_config.json"
expect_exit 2 "DoRA" "dora/adapter_config.json: use_dora is set" "$E" merge --model "$F/hf_families/llama3" \
    --adapter "$T/dora" --out "$T/x"
check "nothing written on failure" test ! -e "$T/x"
expect_exit 2 "bad --save-dtype" "save-dtype" "$E" merge --model "$F/hf_families/llama3" --adapter "$F/lora/llama3_all" \
    --out "$T/x" --save-dtype f8
finish cli_merge
