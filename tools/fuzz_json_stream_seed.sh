#!/bin/sh
# Writes fuzz/corpus/json_stream/: JSON texts behind fuzz_json_stream's
# selector byte (see fuzz/fuzz_json_stream.c): a preference record, a JSON
# array of records over several lines, a log-ratio record, a model's
# config.json, and strings of escapes and multi-byte characters, read with
# and without limits. Run from the repository root.
set -eu
D=fuzz/corpus/json_stream
mkdir -p "$D"
seed() { # NAME SELECTOR(octal) FILE-OR-TEXT
    { printf "\\$2"; if [ -f "$3" ]; then cat "$3"; else printf '%s' "$3"; fi; } >"$D/$1"
}
seed record 000 '{"annotator": "u1", "prompt": "Hi \u00e9\ud83d\ude00", "chosen": "yes", "rejected": ["no", "maybe"]}'
seed record_kept 012 '{"annotator": "u1", "prompt": "a long prompt with \n escapes \u20ac and €😀 characters", "chosen": "yes"}'
seed array 003 '[{"chosen": "a", "rejected": "b"},

 {"chosen": "c", "rejected": "d", "group": 7}, 3]
'
seed logratios 207 '{"annotator": "u1", "a": [[0.5, -0.2, 0.1], [-1.0, 0.3, 2e-3]], "ranking": true}'
seed keys 101 '{"short": 1, "a_key_longer_than_eight": [true, false, null], "n": 123456789.5e-3}'
seed config 005 tests/fixtures/hf_tiny/config.json
seed lines 002 '{"x": "a\r\nb"}
  
{"y": [1,
2]}'
