#!/bin/sh
# emdpo generate: greedy stories260K reproduces its reference text, a seed
# fixes the samples, bad flags exit 2. Skips without the command or the models.
E=${1:-build/emdpo}
M=../shared/data/models
if ! "$E" generate --help >/dev/null 2>&1 || [ ! -d "$M" ]; then
    echo "cli_generate: 0 passed, 0 failed"
    exit 0
fi
. tests/lib_cli.sh
G="$E generate --model $M/stories260K.bin --tokenizer $M/tok512.bin"

expect_exit 0 "greedy" "" $G --temperature 0 --max-tokens 64
check "greedy starts like the reference" grep -q "^Once upon a time, there was a little girl named Lily" "$T/stdout"
cp "$T/stdout" "$T/greedy"
expect_exit 0 "greedy batched" "" $G --temperature 0 --max-tokens 64 --n 3
check "greedy batched: every sample is the greedy text" \
    test "$(grep -c '^Once upon a time, there was a little girl named Lily' "$T/stdout")" -eq 3

expect_exit 0 "sample seed 7" "" $G --seed 7 --n 2 --max-tokens 48 --top-p 0.9 --prompt "The cat"
cp "$T/stdout" "$T/s7a"
expect_exit 0 "sample seed 7 again" "" $G --seed 7 --n 2 --max-tokens 48 --top-p 0.9 --prompt "The cat"
check "same seed, same samples" cmp -s "$T/s7a" "$T/stdout"
check "the prompt is continued" grep -q "^The cat" "$T/stdout"
expect_exit 0 "sample seed 8" "" $G --seed 8 --n 2 --max-tokens 48 --top-p 0.9 --prompt "The cat"
check "another seed, other samples" sh -c "! cmp -s '$T/s7a' '$T/stdout'"
expect_exit 0 "one thread" "" $G --seed 7 --n 2 --max-tokens 48 --top-p 0.9 --prompt "The cat" --threads 1
check "same samples on one thread" cmp -s "$T/s7a" "$T/stdout"

expect_exit 2 "negative temperature" "--temperature" $G --temperature -1
expect_exit 2 "top-p 0" "--top-p" $G --top-p 0
expect_exit 2 "top-p above 1" "--top-p" $G --top-p 1.5
expect_exit 2 "negative top-k" "--top-k" $G --top-k -3
expect_exit 2 "top-k above the vocabulary" "--top-k" $G --top-k 513
expect_exit 2 "negative max-tokens" "--max-tokens" $G --max-tokens -1
expect_exit 2 "n 0" "--n" $G --n 0
expect_exit 2 "bad number" "--temperature" $G --temperature warm
expect_exit 2 "unknown flag" "unknown flag" $G --bogus 1
expect_exit 2 "missing model" "nonexistent.bin" "$E" generate --model "$T/nonexistent.bin" --tokenizer $M/tok512.bin
expect_exit 2 "missing tokenizer flag" "--tokenizer" "$E" generate --model $M/stories260K.bin
expect_exit 2 "tokenizer as model" "tok512.bin" "$E" generate --model $M/tok512.bin --tokenizer $M/tok512.bin

finish cli_generate
