#!/bin/sh
# Writes fuzz/corpus/lm_files/, the seeds of fuzz/fuzz_lm_files.c: byte 0
# picks the reader as the harness reads it. The trainer.bin seed is the
# checkpoint of the harness's own start-up run (the same data, tokenizer,
# configuration and defaults), so that resuming from it succeeds.
#   sh tools/fuzz_lm_files_seed.sh build/emdpo
set -eu
E=${1:-build/emdpo}
C=fuzz/corpus/lm_files
mkdir -p "$C"
. tests/lib_cli.sh # byte_tokenizer, and $T, a scratch directory removed at exit
byte_tokenizer "$T/tok.bin"

# 0: SFT texts and preference records.
{ printf '\000'; printf '{"prompt": "ab", "response": "cd"}\n{"text": "ijk"}\n{"prompt": "x", "response": ""}\n'; } >"$C/sft"
{
    printf '\000'
    printf '{"annotator": "u1", "prompt": "ab", "chosen": "yes", "rejected": ["no", "nah"]}\n'
    printf '{"annotator": "u2", "prompt": "cd", "chosen": "yes", "rejected": "no"}\n'
    printf '{"annotator": "u1", "prompt": "ef", "ranking": ["yes", "ok", "no"]}\n'
} >"$C/dpo"

# 1: a llama2.c checkpoint: dim 4, hidden 8, 1 layer, 2 heads, 1 KV head,
# vocabulary 8 (tied), context 4; weights i/1000.
{
    printf '\001'
    python3 -c '
import struct, sys
dim, hid, L, H, KV, V, S = 4, 8, 1, 2, 1, 8, 4
kv = dim * KV // H
n = V*dim + L*dim + L*dim*dim + 2*L*dim*kv + L*dim*dim + L*dim + 3*L*hid*dim + dim + 2*S*(dim//H//2)
sys.stdout.buffer.write(struct.pack("<7i", dim, hid, L, H, KV, V, S) + struct.pack("<%df" % n, *[i / 1000 for i in range(n)]))'
} >"$C/llama2c"
tail -c +2 "$C/llama2c" >"$T/m.bin"
"$E" convert --model "$T/m.bin" --out "$T/m" >/dev/null # the loader accepts it

# 2: trainer.bin (selector 2, then an odd byte: its checksum as written).
printf '{"prompt": "ab", "response": "cd"}\n{"text": "efg"}\n' >"$T/sft.jsonl"
"$E" sft --data "$T/sft.jsonl" --config dim=8,layers=1,heads=1,vocab=259,seq_len=32 --tokenizer "$T/tok.bin" \
    --out "$T/run" --steps 1 --threads 1 --quiet
{ printf '\002\001'; cat "$T/run/trainer.bin"; } >"$C/trainer"

# 3: the report's files (selector 3, then 0 run.json, 1 table1.json,
# 2 table3.json, 3 select.json, 4 a type directory's fit.json).
{
    printf '\003\000'
    printf '{"title": "t", "command": "c", "config": {"a": 1, "b": [2, 3], "c": {"d": null}},'
    printf ' "timings": [{"stage": "sft", "seconds": 1.5}], "total_seconds": 2}\n'
} >"$C/run_json"
{
    printf '\003\001'
    printf '{"beta": 0.1, "groups": ["P1", "P2"], "decisions": [4, 6], "methods": [{"name": "em", "dir": "x",'
    printf ' "policies": ["type_1", "type_2"], "max_mean_margin": [0.4, 0.1], "accuracy": [0.6, 0.5],'
    printf ' "best": ["type_1", null], "policy_margin": [[0.4, 0.1], [0.2, 0.1]],'
    printf ' "policy_accuracy": [[0.6, 0.5], [0.4, 0.5]]}], "ari": 0.5, "ari_annotators": 10}\n'
} >"$C/table1"
{
    printf '\003\002'
    printf '{"beta": 0.1, "estimator": "sampled", "types": ["type_1", "type_2"], "policies": [{"name": "ae",'
    printf ' "path": "m.json", "regret": [0.1, 0.2], "se": [0.01, 0.02], "max_regret": 0.2}]}\n'
} >"$C/table3"
{
    printf '\003\003'
    printf '{"rows": [{"k": 1, "loglik": -10, "bic": 21}, {"k": 2, "loglik": -9, "bic": 22}], "best_k_bic": 1}\n'
} >"$C/select"
{
    printf '\003\004'
    printf '{"family": "llama", "k": 2, "eta": [0.55, 0.45], "iterations": 2, "converged": false,'
    printf ' "loglik": -6.5, "loglik_trace": [-7.25, null, -6.5], "elapsed_s": 2}\n'
} >"$C/fit"
# 4: a fit checkpoint's fit_state.bin (selector 4, then an odd byte: its
# checksum as written), of a fit with the harness's settings on its
# llama2.c model of fixed weights (i mod 100) / 1000.
python3 -c '
import struct, sys
dim, hid, L, H, KV, V, S = 8, 16, 1, 1, 1, 259, 32
kv = dim * KV // H
n = V*dim + L*dim + L*dim*dim + 2*L*dim*kv + L*dim*dim + L*dim + 3*L*hid*dim + dim + 2*S*(dim//H//2)
sys.stdout.buffer.write(struct.pack("<7i", dim, hid, L, H, KV, V, S) + struct.pack("<%df" % n, *[(i % 100) / 1000 for i in range(n)]))' >"$T/sft.bin"
{
    printf '{"annotator": "a", "prompt": "ab", "chosen": "x", "rejected": "y"}\n'
    printf '{"annotator": "b", "prompt": "ab", "chosen": "y", "rejected": "x"}\n'
    printf '{"annotator": "c", "prompt": "cd", "chosen": "x", "rejected": "y"}\n'
} >"$T/prefs.jsonl"
"$E" fit --policy llama --data "$T/prefs.jsonl" --model "$T/sft.bin" --tokenizer "$T/tok.bin" --k 2 --max-iter 1 \
    --steps 2 --batch 2 --threads 1 --quiet --out "$T/fit"
{ printf '\004\001'; cat "$T/fit/checkpoint/fit_state.bin"; } >"$C/fit_state"
ls -l "$C"
