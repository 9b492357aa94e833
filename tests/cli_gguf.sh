#!/bin/sh
# emdpo generate and convert with GGUF models: the exact generate interface
# (the model's own tokenizer by default, the prompt printed as given), a
# Hugging Face twin giving the same text (test_gguf_model.c checks the
# tokens against llama.cpp's), conversion to
# GGUF and to a Hugging Face directory giving the same greedy text, and
# malformed files exiting 2 with the offset named.
E=${1:-build/emdpo}
F=tests/fixtures/gguf
if ! "$E" convert --help >/dev/null 2>&1; then
    echo "cli_gguf: 0 passed, 0 failed"
    exit 0
fi
. tests/lib_cli.sh

G="$E generate --temperature 0 --max-tokens 24"
expect_exit 0 "generate from a GGUF file alone" "" $G --model $F/llama3_rope.gguf --prompt "Once upon a time"
cp "$T/stdout" "$T/gguf"
check "the prompt is printed as given" grep -q "^Once upon a time" "$T/gguf"
expect_exit 0 "the same with --tokenizer" "" $G --model $F/llama3_rope.gguf --tokenizer $F/llama3_rope.gguf \
    --prompt "Once upon a time"
check "same text" cmp -s "$T/gguf" "$T/stdout"
expect_exit 0 "the Hugging Face twin" "" $G --model $F/llama3_rope_hf --tokenizer $F/llama3_rope.gguf \
    --prompt "Once upon a time"
check "the twin gives the same text" cmp -s "$T/gguf" "$T/stdout"

expect_exit 0 "convert to f16 GGUF" "" "$E" convert --model $F/llama3_rope.gguf --out "$T/m.gguf" --dtype f16
expect_exit 0 "generate from the f16 file" "" $G --model "$T/m.gguf" --prompt "Once upon a time"
check "the prompt starts the f16 text" grep -q "^Once upon a time" "$T/stdout"
expect_exit 0 "the f16 file to a Hugging Face directory" "" "$E" convert --model "$T/m.gguf" --out "$T/hf16" \
    --tokenizer $F/llama3_rope.gguf
check "... keeps f16" sh -c "head -c 4096 '$T/hf16/model.safetensors' | grep -q '\"F16\"'"
check "... and says so in config.json" grep -q '"torch_dtype": "float16"' "$T/hf16/config.json"
expect_exit 0 "convert to a Hugging Face directory" "" "$E" convert --model $F/llama3_rope.gguf --out "$T/hf"
check "config.json and model.safetensors written" test -s "$T/hf/config.json" -a -s "$T/hf/model.safetensors"
expect_exit 0 "generate from it" "" $G --model "$T/hf" --tokenizer $F/llama3_rope.gguf --prompt "Once upon a time"
check "the directory gives the same text" cmp -s "$T/gguf" "$T/stdout"
expect_exit 0 "back to GGUF from the directory" "" "$E" convert --model "$T/hf" --tokenizer $F/llama3_rope.gguf \
    --out "$T/back.gguf" --dtype f32
expect_exit 0 "generate from it" "" $G --model "$T/back.gguf" --prompt "Once upon a time"
check "the round trip gives the same text" cmp -s "$T/gguf" "$T/stdout"

expect_exit 2 "a bad dtype" "q4_0" "$E" convert --model $F/qwen2.gguf --out "$T/x.gguf" --dtype q4_0
expect_exit 2 "dtype for a directory" "--dtype" "$E" convert --model $F/qwen2.gguf --out "$T/x" --dtype f16
expect_exit 2 "a directory without tokenizer.json" "tokenizer" $G --model "$T/hf"
head -c 3000 $F/qwen2.gguf > "$T/cut.gguf"
expect_exit 2 "a truncated file" "byte offset" $G --model "$T/cut.gguf" --tokenizer $F/qwen2.gguf
SPM=../shared/data/gguf/ggml-vocab-llama-spm.gguf
if [ -f $SPM ]; then
    expect_exit 2 "a vocabulary of another size" "tokens" "$E" convert --model $F/qwen2.gguf --tokenizer $SPM \
        --out "$T/x.gguf"
fi
finish cli_gguf
