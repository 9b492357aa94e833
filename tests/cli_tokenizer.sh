#!/bin/sh
# emdpo tokenizer: trains on preference data and on plain texts, gives the
# same file twice, refuses a vocabulary the texts cannot fill (saying how
# many entries they support) and bad input with exit 2 and no file; the
# result drives a model (sft) and shortens sequences against bytes.
# Also simulate --phrases: a balanced phrase subset.
E=${1:-build/emdpo}
. tests/lib_cli.sh

"$E" simulate --preset personalities --phrases 10 --annotators 200 --items 3 --seed 3 --out "$T/p.jsonl" >/dev/null
check "phrases: 10 distinct chosen or rejected texts" \
    test "$(grep -o '"text":"[^"]*"' "$T/p.jsonl" | sort -u | wc -l)" -eq 10
expect_exit 2 "phrases below items" "--phrases" "$E" simulate --phrases 2 --items 3 --out "$T/x.jsonl"
check "no file on a bad --phrases" test ! -e "$T/x.jsonl"

expect_exit 0 "train on preferences" "" "$E" tokenizer --data "$T/p.jsonl" --vocab 400 --out "$T/a.bin"
check "summary line" grep -q "wrote .*a.bin: 400 entries" "$T/stdout"
"$E" tokenizer --data "$T/p.jsonl" --vocab 400 --out "$T/b.bin" >/dev/null
check "deterministic" cmp -s "$T/a.bin" "$T/b.bin"

expect_exit 2 "vocabulary too large" "support" "$E" tokenizer --data "$T/p.jsonl" --vocab 100000 --out "$T/c.bin"
check "no file when refused" test ! -e "$T/c.bin"
expect_exit 0 "--up-to stops where the texts do" "" "$E" tokenizer --data "$T/p.jsonl" --vocab 100000 --up-to \
    --out "$T/c.bin"
n=$(sed -n 's/.*: \([0-9]*\) entries.*/\1/p' "$T/stdout")
check "--up-to gives fewer entries ($n)" test "${n:-0}" -gt 400 -a "${n:-0}" -lt 100000
expect_exit 0 "exactly that many without --up-to" "" "$E" tokenizer --data "$T/p.jsonl" --vocab "$n" --out "$T/d.bin"
check "the same file" cmp -s "$T/c.bin" "$T/d.bin"
rm -f "$T/c.bin"
expect_exit 2 "vocabulary too small" "--vocab" "$E" tokenizer --data "$T/p.jsonl" --vocab 259 --out "$T/c.bin"
printf '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": \n' >"$T/bad.jsonl"
expect_exit 2 "malformed data" "bad.jsonl:2" "$E" tokenizer --data "$T/bad.jsonl" --vocab 400 --out "$T/c.bin"
check "no file on bad data" test ! -e "$T/c.bin"

printf '{"text": "the cat sat on the mat"}\n{"prompt": "the cat", "response": "sat on the mat"}\n' >"$T/t.jsonl"
expect_exit 0 "train on plain texts" "" "$E" tokenizer --data "$T/t.jsonl,$T/t.jsonl" --vocab 281 --out "$T/t.bin"

# Bytes per token well above 1: words became pieces.
bpt=$(sed -n 's/.*; \([0-9.]*\) bytes per token.*/\1/p' "$T/stdout")
check "fewer tokens than bytes ($bpt)" awk -v b="$bpt" 'BEGIN { exit !(b > 3) }' </dev/null
"$E" tokenizer --data "$T/p.jsonl" --vocab 400 --out "$T/a.bin" >"$T/stdout"
bpt=$(sed -n 's/.*; \([0-9.]*\) bytes per token.*/\1/p' "$T/stdout")
check "preference texts compress ($bpt)" awk -v b="$bpt" 'BEGIN { exit !(b > 2) }' </dev/null

expect_exit 0 "sft with the trained vocabulary" "" "$E" sft --data "$T/p.jsonl" --tokenizer "$T/a.bin" \
    --config dim=16,layers=1,heads=2,vocab=400,seq_len=64 --steps 2 --batch 4 --threads 1 --quiet --out "$T/m"
expect_exit 2 "sft with a vocabulary of another size" "" "$E" sft --data "$T/p.jsonl" --tokenizer "$T/a.bin" \
    --config dim=16,layers=1,heads=2,vocab=401,seq_len=64 --steps 2 --threads 1 --quiet --out "$T/m2"

# A GGUF file's vocabulary as --tokenizer (llama.cpp's vocabulary files in
# ../shared): Llama's SentencePiece vocabulary drives a model; GPT-2's
# byte-level one is refused with the reason.
G=../shared/data/gguf
if [ -f "$G/ggml-vocab-llama-spm.gguf" ]; then
    expect_exit 0 "sft with a GGUF vocabulary" "" "$E" sft --data "$T/p.jsonl" --tokenizer "$G/ggml-vocab-llama-spm.gguf" \
        --config dim=16,layers=1,heads=2,vocab=32000,seq_len=64 --steps 2 --batch 4 --threads 1 --quiet --out "$T/g"
    expect_exit 0 "generate with a GGUF vocabulary" "" "$E" generate --model "$T/g" \
        --tokenizer "$G/ggml-vocab-llama-spm.gguf" --prompt "Hello world" --max-tokens 4 --threads 1
    check "the prompt decodes back" grep -q "^Hello world" "$T/stdout"
    expect_exit 2 "a GGUF vocabulary of another size" "32000 tokens" "$E" generate --model "$T/m" \
        --tokenizer "$G/ggml-vocab-llama-spm.gguf" --prompt "x" --max-tokens 1 --threads 1
    expect_exit 2 "a byte-level GGUF vocabulary larger than the model's" "50257 tokens; the model's has" \
        "$E" generate --model "$T/m" --tokenizer "$G/ggml-vocab-gpt-2.gguf" --prompt "x" --max-tokens 1 --threads 1
fi
finish cli_tokenizer
