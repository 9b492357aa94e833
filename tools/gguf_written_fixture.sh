#!/bin/sh
# llama.cpp's greedy tokens on GGUF files that emdpo writes: each of
# tools/gguf_fixture.py's models converted by `emdpo convert --dtype f32`
# (a deterministic file; float32, since llama.cpp multiplies f16 weights
# with activations rounded to f16, which emdpo does not), run through
# node-llama-cpp. tests/test_gguf_model.c
# writes the same files and checks emdpo's tokens on them against these.
#   NODE_PATH=/path/to/node_modules sh tools/gguf_written_fixture.sh [build/emdpo]
set -eu
E=${1:-build/emdpo}
F=tests/fixtures/gguf
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for m in llama3_rope qwen2 qwen3; do
    "$E" convert --model "$F/$m.gguf" --out "$T/$m.gguf" --dtype f32
    node tools/llama_cpp_greedy.mjs "$T/$m.gguf" 24 "Hello world" "Once upon a time" "The cat sat on the mat." "" \
        >"$F/written_${m}.llama_cpp.jsonl"
done
