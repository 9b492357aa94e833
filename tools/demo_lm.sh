#!/bin/sh
# The personality experiment on language-model policies (the paper's Table 1
# layout), on built-in data only: a byte-level tokenizer, SFT of a small
# Llama from scratch on the phrases, then Vanilla DPO, True-Label DPO,
# Cluster-DPO and EM-DPO on binary and ternary choices, evaluated on held-out
# annotators. Writes runs/demo_lm/. About 10 minutes on 2 busy cores: not yet
# the README's main job (the target is 5 minutes).
set -eu
E=${1:-build/emdpo}
out=runs/demo_lm
mkdir -p "$out"
cd "$out"
case "$E" in /*) ;; *) E="$OLDPWD/$E" ;; esac

# A llama2.c tokenizer with <unk>, BOS, EOS and the 256 byte pieces.
{
    printf '\020\000\000\000'
    printf '\000\000\000\000\005\000\000\000<unk>'
    printf '\000\000\000\000\005\000\000\000\n<s>\n'
    printf '\000\000\000\000\006\000\000\000\n</s>\n'
    b=0
    while [ $b -lt 256 ]; do
        printf '\000\000\000\000\006\000\000\000<0x%02X>' $b
        b=$((b + 1))
    done
} >tok.bin

"$E" simulate --preset personalities --annotators 600 --items 3 --seed 1 --out tern.jsonl
"$E" simulate --preset personalities --annotators 600 --items 2 --seed 1 --out bin.jsonl
"$E" simulate --preset personalities --annotators 300 --decisions 4 --items 3 --seed 2 --out test.jsonl

T="--tokenizer tok.bin --batch 8 --quiet"
echo "== SFT from scratch"
"$E" sft --data tern.jsonl --config dim=64,layers=2,heads=4,vocab=259,seq_len=128 $T --lr 3e-3 --steps 150 --out sft
echo "== baselines"
"$E" baseline --method vanilla --model sft $T --data tern.jsonl --lr 1e-3 --steps 100 --out vanilla
"$E" baseline --method truelabel --model sft $T --data tern.jsonl --lr 1e-3 --steps 100 --out truelabel
"$E" baseline --method cluster --k 3 --model sft $T --data tern.jsonl --lr 1e-3 --steps 100 --out cluster
echo "== EM-DPO, ternary and binary"
"$E" fit --policy llama --model sft $T --data tern.jsonl --k 3 --lr 1e-3 --steps 60 --max-iter 3 --out em_tern
"$E" fit --policy llama --model sft $T --data bin.jsonl --k 3 --lr 1e-3 --steps 60 --max-iter 3 --out em_bin
echo "== held-out evaluation (Table 1 layout)"
"$E" eval --ref sft --tokenizer tok.bin --data test.jsonl --policies truelabel,em_tern,em_bin,cluster,vanilla | tee table1.txt
