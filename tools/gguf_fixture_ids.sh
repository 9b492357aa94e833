#!/bin/sh
# llama.cpp's greedy tokens for emdpo's GGUF tests: runs tools/llama_cpp_greedy.mjs
# (node-llama-cpp, llama.cpp's prebuilt CPU build) on the fixtures of
# tools/gguf_fixture.py and on ../shared/data/gguf/llama-2-tiny-random.gguf, and
# writes tests/fixtures/gguf/NAME.llama_cpp.jsonl, which the tests read (they never
# run node). Needs `npm install node-llama-cpp` in a scratch folder:
#   NODE_PATH=/tmp/nlc/node_modules sh tools/gguf_fixture_ids.sh
set -e
F=tests/fixtures/gguf
run() { # model name
    node tools/llama_cpp_greedy.mjs "$1" 24 "Hello world" "Once upon a time" "The cat sat on the mat." "" \
        > "$F/$2.llama_cpp.jsonl"
}
for m in llama3_rope qwen2 qwen3; do run "$F/$m.gguf" "$m"; done
run ../shared/data/gguf/llama-2-tiny-random.gguf llama-2-tiny-random
