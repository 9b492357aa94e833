#!/bin/sh
# emdpo chat-template: exact renderings of a .jinja file and of a
# tokenizer_config.json's template (its own tokens, or the flags'; an empty
# --bos-token), --add-generation-prompt, one JSON string per input line;
# raise_exception, bad JSON and unsupported constructs end with exit 2
# naming the input line. The shared templates are used when ../shared is
# present; the rest runs on templates written here.
E=${1:-build/emdpo}
. tests/lib_cli.sh

cat >"$T/t.jinja" <<'TPL'
{{- bos_token }}
{%- for message in messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {{- '<|' + message['role'] + '|>\n' + message['content'] | trim + eos_token + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}
TPL
printf '%s\n' '[{"role": "user", "content": " Hi \"there\" 😀 "}, {"role": "assistant", "content": "Hello!\n"}]' \
    '' '[]' >"$T/in.jsonl"
expect_exit 0 "render a .jinja" "" sh -c "\"$E\" chat-template --template \"$T/t.jinja\" --bos-token '<s>' \
    --eos-token '</s>' <\"$T/in.jsonl\""
printf '%s\n' '"<s><|user|>\nHi \"there\" 😀</s>\n<|assistant|>\nHello!</s>\n"' '"<s>"' >"$T/want"
check "exact output, one line per conversation (blank lines skipped)" cmp -s "$T/stdout" "$T/want"

expect_exit 0 "--add-generation-prompt, empty --bos-token" "" sh -c "\"$E\" chat-template --template \"$T/t.jinja\" \
    --bos-token '' --eos-token '' --add-generation-prompt <\"$T/in.jsonl\""
printf '%s\n' '"<|user|>\nHi \"there\" 😀\n<|assistant|>\nHello!\n<|assistant|>\n"' '"<|assistant|>\n"' >"$T/want"
check "exact output with the generation prompt" cmp -s "$T/stdout" "$T/want"

printf '%s\n' '[{"role": "user", "content": "a"}]' '[{"role": "assistant", "content": "b"}]' >"$T/raise.jsonl"
expect_exit 2 "raise_exception: exit 2" "stdin:2: Conversation roles must alternate user/assistant/user/assistant/..." \
    sh -c "\"$E\" chat-template --template \"$T/t.jinja\" --bos-token '' --eos-token '' <\"$T/raise.jsonl\""
check "lines before the failure were written" test "$(wc -l <"$T/stdout")" -eq 1

printf '%s\n' '[{"role": "user", "content": "a"}]' '[{"role": "user", "content": "a"' >"$T/bad.jsonl"
expect_exit 2 "bad JSON: exit 2 naming the line" "stdin:2:" \
    sh -c "\"$E\" chat-template --template \"$T/t.jinja\" --bos-token '' --eos-token '' <\"$T/bad.jsonl\""
printf '%s\n' '{"role": "user", "content": "a"}' >"$T/obj.jsonl"
expect_exit 2 "not an array" "stdin:1: not a JSON array" \
    sh -c "\"$E\" chat-template --template \"$T/t.jinja\" <\"$T/obj.jsonl\""
printf '%s\n' '[{"role": "user", "content": "a", "tool_calls": []}]' >"$T/extra.jsonl"
expect_exit 2 "keys other than role and content" "tool_calls" \
    sh -c "\"$E\" chat-template --template \"$T/t.jinja\" <\"$T/extra.jsonl\""

printf 'x\n{%% call m() %%}{%% endcall %%}\n' >"$T/call.jinja"
expect_exit 2 "an unsupported construct names file and line" "call.jinja:2: unsupported: {% call %}" \
    "$E" chat-template --template "$T/call.jinja"
printf '{{ messages[0].content | nosuchfilter }}\n' >"$T/filter.jinja"
expect_exit 2 "a template error names the input line and the template's" "stdin:1: $T/filter.jinja:1: Unknown StringValue filter: nosuchfilter" \
    sh -c "\"$E\" chat-template --template \"$T/filter.jinja\" <\"$T/raise.jsonl\""
expect_exit 2 "missing --template" "--template" "$E" chat-template
expect_exit 2 "missing file" "no/such.jinja" "$E" chat-template --template "$T/no/such.jinja"
printf '{"bos_token": "<s>"}\n' >"$T/tokenizer_config.json"
expect_exit 2 "a tokenizer_config.json without chat_template" "has no chat_template" \
    "$E" chat-template --template "$T/tokenizer_config.json"
printf '{"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ bos_token }}|{{ eos_token }}"}], "bos_token": {"content": "<B>"}, "eos_token": null}\n' \
    >"$T/tokenizer_config.json"
expect_exit 0 "a template list's default, an AddedToken bos, a null eos" "" \
    sh -c "\"$E\" chat-template --template \"$T/tokenizer_config.json\" <\"$T/in.jsonl\""
check "tokens from the file" test "$(head -n 1 "$T/stdout")" = '"<B>|"'

Q=../shared/data/tokenizers/qwen3/tokenizer_config.json
if [ -f "$Q" ]; then
    printf '%s\n' '[{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\nHello"}]' >"$T/q.jsonl"
    expect_exit 0 "qwen3's tokenizer_config.json (bos null)" "" \
        sh -c "\"$E\" chat-template --template \"$Q\" --add-generation-prompt <\"$T/q.jsonl\""
    printf '%s\n' '"<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\nHello<|im_end|>\n<|im_start|>assistant\n"' >"$T/want"
    check "qwen3: exact output" cmp -s "$T/stdout" "$T/want"
    G=../shared/data/chat_templates/google-gemma-2-2b-it.jinja
    printf '%s\n' '[{"role": "user", "content": "ok"}]' '[{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]' >"$T/g.jsonl"
    expect_exit 2 "gemma refuses a system role on line 2" "stdin:2: System role not supported" \
        sh -c "\"$E\" chat-template --template \"$G\" --bos-token '<bos>' --eos-token '<eos>' <\"$T/g.jsonl\""
    check "gemma: line 1 written" test "$(cat "$T/stdout")" = '"<bos><start_of_turn>user\nok<end_of_turn>\n"'
else
    echo "cli_chat_template: ../shared absent, shared templates skipped"
fi

echo "cli_chat_template: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
