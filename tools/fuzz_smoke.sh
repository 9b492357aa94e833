#!/bin/sh
# The fuzzers' smoke run (make fuzz-smoke, CI): every build/fuzz/fuzz_NAME
# runs over its seeds fuzz/corpus/NAME, then mutates them for
# FUZZ_SECONDS (default 7; about a minute for all), in a scratch corpus so
# that the committed seeds stay as they are. Any crash, sanitizer report or
# failed invariant fails the run; libFuzzer leaves the input as
# build/fuzz/crash-* for reproducing it (see fuzz/README.md).
set -u
secs=${FUZZ_SECONDS:-7}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failed=""
n=0
for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=${bin#build/fuzz/fuzz_}
    seeds="fuzz/corpus/$name"
    [ "$name" = gguf_model ] && seeds="$seeds fuzz/corpus/gguf"
    extra=""
    [ "$name" = safetensors ] || [ "$name" = peft ] && extra="-dict=fuzz/safetensors.dict"
    mkdir -p "$T/$name"
    # shellcheck disable=SC2086 # seeds and extra are lists of words
    if "$bin" "$T/$name" $seeds $extra -max_total_time="$secs" -max_len=16384 -rss_limit_mb=4096 \
        -artifact_prefix=build/fuzz/ -print_final_stats=1 >"$T/$name.log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$name.log")
        echo "fuzz_$name: ${runs:-?} inputs in ${secs} s, nothing found"
    else
        echo "fuzz_$name: FAILED"
        tail -n 40 "$T/$name.log"
        failed="$failed fuzz_$name"
    fi
    n=$((n + 1))
done
if [ "$n" -eq 0 ]; then
    echo "fuzz_smoke: no harness built (make fuzz)" >&2
    exit 2
fi
[ -z "$failed" ] || { echo "fuzz_smoke: failed:$failed" >&2; exit 1; }
echo "fuzz_smoke: $n harnesses, nothing found"
