#!/bin/sh
# Restarts: a run killed (kill -9) and resumed logs each step once, leaves
# no temporary file of an interrupted write, and ends as an uninterrupted
# run would; a resumed run drops the log lines of steps after its
# checkpoint (and a line cut short), and removes the temporary files of
# dead writers but not those of a live one; a damaged trainer.bin is
# refused as damaged.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" sft --help >/dev/null 2>&1; then
    echo "cli_restart: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"
for i in 1 2 3 4 5 6 7 8; do
    printf '{"prompt": "p%d", "response": "r%d r%d"}\n' $i $i $i
done >"$T/sft.jsonl"

steps_of() { sed -n 's/.*"step": \([0-9]*\),.*/\1/p' "$1" | tr '\n' ' '; }
# every step 1..N once, in order
each_once() { test "$(steps_of "$1")" = "$(seq -s ' ' 1 "$2") "; }
# a pid that no longer runs
dead_pid() {
    sh -c 'exit 0' &
    p=$!
    wait $p
    echo $p
}

# Uninterrupted: 6 steps.
expect_exit 0 "straight run" "" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/a" --steps 6 \
    --lr 1e-2 --batch 2 --log "$T/a.log"

# Killed after step 3's checkpoint with steps 4-5 logged, step 6 half
# written and two writes interrupted: the resumed run logs 4-6 once.
expect_exit 0 "first 3 steps" "" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/b" --steps 3 \
    --lr 1e-2 --batch 2 --log "$T/b.log"
sed -n '4,5p' "$T/a.log" >>"$T/b.log"
printf '{"loss": 1.5, "grad_norm": 0.1, "step": 6, "ep' >>"$T/b.log"
dp=$(dead_pid)
printf 'partial' >"$T/b/trainer.bin.tmp.$dp"
printf 'partial' >"$T/b/model.safetensors.tmp.$dp"
printf 'live' >"$T/b/trainer.bin.tmp.$$"
printf 'mine' >"$T/b/notes.tmp.$dp"
expect_exit 0 "resume" "" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/b" --steps 6 \
    --lr 1e-2 --batch 2 --log "$T/b.log" --resume
check "resumed log: each step once" each_once "$T/b.log" 6
check "resumed log: every line whole" test "$(grep -c '"epoch": [0-9.e+-]*}$' "$T/b.log")" -eq 6
# the log without its timings
untimed() { sed 's/"examples_per_second": [^,]*,//' "$1"; }
check "resumed log: as the straight run's" test "$(untimed "$T/b.log")" = "$(untimed "$T/a.log")"
check "resumed run: same bits" cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors"
check "dead writer's trainer.bin.tmp removed" test ! -e "$T/b/trainer.bin.tmp.$dp"
check "dead writer's model.safetensors.tmp removed" test ! -e "$T/b/model.safetensors.tmp.$dp"
check "live writer's temporary file kept" test -e "$T/b/trainer.bin.tmp.$$"
check "another file's temporary file kept" test -e "$T/b/notes.tmp.$dp"
rm -f "$T/b/trainer.bin.tmp.$$"

# A log of a run resumed at its end is left as it is.
cp "$T/b.log" "$T/b.log.before"
expect_exit 0 "resume at the end" "" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/b" --steps 6 \
    --lr 1e-2 --batch 2 --log "$T/b.log" --resume
check "log of a finished run unchanged" cmp -s "$T/b.log" "$T/b.log.before"

# A real kill -9 during checkpoints every step, then --resume.
N=400
"$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/k" --steps $N --lr 1e-3 --batch 2 \
    --save-every 1 --log "$T/k.log" >/dev/null 2>&1 &
kp=$!
i=0
while [ ! -e "$T/k/trainer.bin" ] && [ $i -lt 600 ]; do
    sleep 0.05
    i=$((i + 1))
done
sleep 0.3
kill -9 $kp 2>/dev/null
wait $kp 2>/dev/null
echo "killed after $(steps_of "$T/k.log" | wc -w) logged steps"
if [ -e "$T/k/trainer.bin" ]; then
    expect_exit 0 "resume after kill -9" "" "$E" sft --data "$T/sft.jsonl" --config "$CFG" $COMMON --out "$T/k" \
        --steps $N --lr 1e-3 --batch 2 --save-every 1 --log "$T/k.log" --resume
    check "after kill -9: each step logged once" each_once "$T/k.log" $N
    check "after kill -9: no temporary file" test -z "$(find "$T/k" -name '*.tmp.*')"
else
    bad "the killed run wrote no checkpoint"
fi

# A damaged trainer.bin: 4 bytes overwritten mid-file.
size=$(wc -c <"$T/b/trainer.bin")
printf '\177\177\177\177' | dd of="$T/b/trainer.bin" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect_exit 2 "damaged trainer.bin" "trainer.bin: the checkpoint is damaged" "$E" sft --data "$T/sft.jsonl" \
    --config "$CFG" $COMMON --out "$T/b" --steps 8 --lr 1e-2 --batch 2 --resume

finish cli_restart
