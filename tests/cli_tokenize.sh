#!/bin/sh
# emdpo tokenize: the whole process against HF tokenizers 0.23.2's ids and
# texts (tests/fixtures/tokenizer_parity, made by tools/tokenizer_parity)
# for each tokenizer.json in ../shared, with and without --special, and
# --decode; a model directory works as --tokenizer; bad lines exit 2 with
# their line number after the lines before them; the output does not
# depend on the thread count.
E=${1:-build/emdpo}
. tests/lib_cli.sh
F=tests/fixtures/tokenizer_parity
S=../shared/data/tokenizers

# compare FIXTURE FIELD OUTPUT: OUTPUT's JSON lines equal FIELD of each line
# of FIXTURE.
compare() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
want = [json.loads(l)[sys.argv[2]] for l in open(sys.argv[1], encoding="utf-8")]
got = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")]
bad = [i + 1 for i, (a, b) in enumerate(zip(want, got)) if a != b]
if len(want) != len(got) or bad:
    print(f"    {len(got)} lines for {len(want)}; first differing lines: {bad[:5]}")
    sys.exit(1)
PY
}

ran=0
for tk in llama2 llama3 qwen3 mistral gpt2-hf; do
    [ -f "$S/$tk/tokenizer.json" ] || continue
    ran=1
    "$E" tokenize --tokenizer "$S/$tk/tokenizer.json" <"$F/strings.jsonl" >"$T/plain" 2>"$T/err"
    check "$tk: exit 0" test $? -eq 0
    check "$tk: ids as HF add_special_tokens=False" compare "$F/$tk.jsonl" plain "$T/plain"
    "$E" tokenize --tokenizer "$S/$tk" --special --threads 1 <"$F/strings.jsonl" >"$T/special"
    check "$tk: ids as HF add_special_tokens=True (model directory)" compare "$F/$tk.jsonl" special "$T/special"
    "$E" tokenize --tokenizer "$S/$tk/tokenizer.json" --decode <"$T/special" >"$T/decoded"
    check "$tk: decode as HF" compare "$F/$tk.jsonl" decoded_special "$T/decoded"
    python3 -c "import json,sys; [print(json.dumps(json.loads(l)['ids'])) for l in open(sys.argv[1])]" \
        "$F/$tk.decode.jsonl" >"$T/ids"
    "$E" tokenize --tokenizer "$S/$tk/tokenizer.json" --decode <"$T/ids" >"$T/texts"
    check "$tk: decode of nasty id sequences as HF" compare "$F/$tk.decode.jsonl" text "$T/texts"
    "$E" tokenize --tokenizer "$S/$tk/tokenizer.json" --threads 2 <"$F/strings.jsonl" >"$T/plain2"
    check "$tk: same output on 2 threads" cmp -s "$T/plain" "$T/plain2"
done
[ $ran -eq 1 ] || echo "cli_tokenize: ../shared's tokenizers absent, parity skipped"

# Errors, with a tokenizer.json small enough to write here.
printf '%s' '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}' >"$T/tokenizer.json"
printf '"ab"\n"ba"\n"a\n"b"\n' >"$T/in"
expect_exit 2 "a bad line" "<stdin>:3" "$E" tokenize --tokenizer "$T/tokenizer.json" <"$T/in"
check "the lines before it are written" test "$(cat "$T/stdout")" = "$(printf '[2]\n[1,0]')"
printf '"ab"\n[2]\n' >"$T/in"
expect_exit 2 "an array to encode" "expected a string" "$E" tokenize --tokenizer "$T/tokenizer.json" <"$T/in"
printf '[2, 0]\n[3]\n' >"$T/in"
expect_exit 2 "an id out of range" "<stdin>:2: element 0 is not an id in 0..2" \
    "$E" tokenize --tokenizer "$T/tokenizer.json" --decode <"$T/in"
printf '\n' >"$T/in"
expect_exit 2 "an empty line" "<stdin>:1: an empty line" "$E" tokenize --tokenizer "$T/tokenizer.json" <"$T/in"
expect_exit 0 "no input, no output" "" "$E" tokenize --tokenizer "$T/tokenizer.json" </dev/null
check "nothing written" test ! -s "$T/stdout"
expect_exit 2 "a missing tokenizer" "nope.json" "$E" tokenize --tokenizer "$T/nope.json" </dev/null
printf 'ab' >"$T/tiny.bin"
expect_exit 2 "a 2-byte file" "neither a tokenizer.json" "$E" tokenize --tokenizer "$T/tiny.bin" </dev/null
printf '{"model":{"type":"Unigram","vocab":[]}}' >"$T/u.json"
expect_exit 2 "an unsupported model" "model type \"Unigram\" is not supported" \
    "$E" tokenize --tokenizer "$T/u.json" </dev/null
expect_exit 2 "a missing directory" "cannot open" "$E" tokenize --tokenizer "$T/nodir" </dev/null
mkdir "$T/nodir"
expect_exit 2 "a directory without tokenizer.json" "without tokenizer.json" "$E" tokenize --tokenizer "$T/nodir" \
    </dev/null

echo "cli_tokenize: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
