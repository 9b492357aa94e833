#!/bin/sh
# fit --policy llama --log/--resume: fits killed (kill -9) at several
# points and resumed end with the same fit.json (but its elapsed time),
# posterior.csv, policies and log (but its timings) as a fit never
# stopped, with each optimizer step logged once and no temporary file
# left; a damaged checkpoint is refused as damaged, one of other settings
# as such, and --resume without a checkpoint names it.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" fit --policy llama --help >/dev/null 2>&1; then
    echo "cli_fit_restart: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"
for g in A B; do
    for i in 1 2 3 4 5 6; do
        for p in "ab" "cd" "ef"; do
            if [ $g = A ]; then c=yes r=no; else c=no r=yes; fi
            printf '{"annotator": "%s%d", "prompt": "%s", "chosen": "%s", "rejected": "%s"}\n' $g $i $p $c $r
        done
    done
done >"$T/prefs.jsonl"
"$E" sft --data "$T/prefs.jsonl" --config "$CFG" $COMMON --out "$T/sft" --steps 2 --lr 1e-2 >/dev/null 2>&1
check "sft model for the fit" test -s "$T/sft/model.safetensors"

# 2 starts x 4 M-steps x 2 types x 40 steps: 640 log lines
STEPS=40
FIT0="--policy llama --data $T/prefs.jsonl --model $T/sft $COMMON --k 2 --beta 0.5 --steps $STEPS --batch 4
      --max-iter 3 --patience 5 --starts 2"
FIT="$FIT0 --lr 1e-3"
LINES=640
expect_exit 0 "straight fit" "" "$E" fit $FIT --out "$T/a" --log "$T/a.log"
check "straight fit: one log line per step" test "$(wc -l <"$T/a.log")" -eq $LINES

untimed_log() { sed 's/"examples_per_second": [^,]*,//' "$1"; }
untimed_fit() { grep -v '"elapsed_s"' "$1"; }
same_as_straight() { # DIR LOG
    test "$(untimed_fit "$1/fit.json")" = "$(untimed_fit "$T/a/fit.json")" &&
        cmp -s "$1/posterior.csv" "$T/a/posterior.csv" &&
        cmp -s "$1/type_1/model.safetensors" "$T/a/type_1/model.safetensors" &&
        cmp -s "$1/type_2/model.safetensors" "$T/a/type_2/model.safetensors" &&
        test "$(untimed_log "$2")" = "$(untimed_log "$T/a.log")"
}

# kill_at DIR LOG N [--resume]: the fit, killed once its log holds N lines
kill_at() {
    kdir=$1 klog=$2 kn=$3
    shift 3
    "$E" fit $FIT --out "$kdir" --log "$klog" "$@" >/dev/null 2>&1 &
    kp=$!
    i=0
    while [ "$(cat "$klog" 2>/dev/null | wc -l)" -lt "$kn" ] && [ $i -lt 2000 ] && kill -0 $kp 2>/dev/null; do
        i=$((i + 1))
    done
    kill -9 $kp 2>/dev/null
    wait $kp 2>/dev/null
}

# Killed early (first M-step), in the middle (a later start) and late; the
# second one also killed while resuming.
for n in 20 330 600; do
    kill_at "$T/k$n" "$T/k$n.log" $n
    echo "killed at $(wc -l <"$T/k$n.log") of $LINES log lines"
    if [ ! -e "$T/k$n/checkpoint/fit_state.bin" ]; then
        expect_exit 2 "resume before any checkpoint ($n)" "checkpoint" "$E" fit $FIT --out "$T/k$n" \
            --log "$T/k$n.log" --resume
        continue
    fi
    [ $n = 330 ] && kill_at "$T/k$n" "$T/k$n.log" 450 --resume
    expect_exit 0 "resume after kill -9 at $n" "" "$E" fit $FIT --out "$T/k$n" --log "$T/k$n.log" --resume
    check "killed at $n: the straight fit's files and log" same_as_straight "$T/k$n" "$T/k$n.log"
    check "killed at $n: no temporary file" test -z "$(find "$T/k$n" -name '*.tmp.*')"
done

# With LoRA adapters: the adapters' files are what is checkpointed.
LFIT="$FIT --lora-r 2 --lora-alpha 4"
expect_exit 0 "straight LoRA fit" "" "$E" fit $LFIT --out "$T/la" --log "$T/la.log"
"$E" fit $LFIT --out "$T/lk" --log "$T/lk.log" >/dev/null 2>&1 &
kp=$!
i=0
while [ "$(cat "$T/lk.log" 2>/dev/null | wc -l)" -lt 300 ] && [ $i -lt 2000 ] && kill -0 $kp 2>/dev/null; do
    i=$((i + 1))
done
kill -9 $kp 2>/dev/null
wait $kp 2>/dev/null
echo "LoRA fit killed at $(wc -l <"$T/lk.log") of $LINES log lines"
expect_exit 0 "LoRA fit resumed" "" "$E" fit $LFIT --out "$T/lk" --log "$T/lk.log" --resume
check "LoRA fit resumed: same fit.json" test "$(untimed_fit "$T/lk/fit.json")" = "$(untimed_fit "$T/la/fit.json")"
check "LoRA fit resumed: same adapters" cmp -s "$T/lk/type_2/adapter_model.safetensors" \
    "$T/la/type_2/adapter_model.safetensors"
check "LoRA fit resumed: same log" test "$(untimed_log "$T/lk.log")" = "$(untimed_log "$T/la.log")"

# Resuming a finished fit gives it again and leaves its log as it is.
cp "$T/a.log" "$T/a.log.before"
expect_exit 0 "resume a finished fit" "" "$E" fit $FIT --out "$T/a" --log "$T/a.log" --resume
check "finished fit resumed: log unchanged" cmp -s "$T/a.log" "$T/a.log.before"
check "finished fit resumed: same files" same_as_straight "$T/a" "$T/a.log"

# Only the current and the best iterate's parameter files are kept.
check "checkpoint keeps at most 2 files per type" test "$(ls "$T/a/checkpoint" | grep -c '^type_')" -le 4

# Another setting, a damaged state, a damaged parameter file, no checkpoint.
expect_exit 2 "resume with another --lr" "checkpoint was written by a fit of other data, model or settings" \
    "$E" fit $FIT0 --lr 2e-3 --out "$T/a" --resume
cp -r "$T/a" "$T/d"
size=$(wc -c <"$T/d/checkpoint/fit_state.bin")
printf '\177\177\177\177' | dd of="$T/d/checkpoint/fit_state.bin" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect_exit 2 "damaged fit_state.bin" "fit_state.bin: the checkpoint is damaged" "$E" fit $FIT --out "$T/d" --resume
cp -r "$T/a" "$T/p"
pf=$(ls "$T/p/checkpoint"/type_1.*.bin | head -1)
printf '\177\177\177\177' | dd of="$pf" bs=1 seek=40 conv=notrunc 2>/dev/null
expect_exit 2 "damaged parameter file" "the checkpoint is damaged" "$E" fit $FIT --out "$T/p" --resume
expect_exit 2 "resume without a checkpoint" "checkpoint/fit_state.bin" "$E" fit $FIT --out "$T/none" --resume

finish cli_fit_restart
