#!/bin/sh
# LoRA adapters through the commands that read and write several policies:
# emdpo baseline and aggregate (lw, onpolicy) --lora-r train PEFT adapters
# on the frozen SFT model (PEFT's files and names, read back by the PEFT
# reader, the base never written); eval, regret, score and generate read
# adapter policies, unmerged where they are only scored, and give what the
# merged checkpoints give; eval and regret --adapter put an adapter on the
# base they evaluate whatever base it names; MMRA-LW with an adapter lowers
# its max regret and reports the regrets emdpo regret finds for it; bad
# LoRA flags exit 2.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" baseline --help 2>/dev/null | grep -q -- --lora-r; then
    echo "cli_lora_cmds: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"
two_group_prefs "$T/prefs.jsonl" 4 ab cd
LORA="--lora-r 4 --lora-alpha 8"

# Numbers of two files, in order, within $3 of each other (absolute).
close_nums() {
    grep -o -- '-\{0,1\}[0-9][0-9.]*\(e-\{0,1\}[0-9]*\)\{0,1\}' "$1" >"$T/n1"
    grep -o -- '-\{0,1\}[0-9][0-9.]*\(e-\{0,1\}[0-9]*\)\{0,1\}' "$2" >"$T/n2"
    [ "$(wc -l <"$T/n1")" -eq "$(wc -l <"$T/n2")" ] && [ -s "$T/n1" ] &&
        paste "$T/n1" "$T/n2" | awk -v tol="$3" '{ d = $1 - $2; if (d < 0) d = -d; if (d > tol) bad = 1 } END { exit bad }'
}
# Two score CSVs agree to 1e-5 in logp (and have the same rows).
close_scores() {
    [ "$(wc -l <"$1")" -eq "$(wc -l <"$2")" ] &&
        paste -d, "$1" "$2" | awk -F, 'NR > 1 { d = $5 - $10; if (d < 0) d = -d; if (d > 1e-5) bad = 1 } END { exit bad }'
}
# An adapter directory as PEFT wrote it: the config, PEFT's tensor names.
peft_dir() {
    grep -q '"peft_type": "LORA"' "$1/adapter_config.json" && grep -q '"r": 4,' "$1/adapter_config.json" &&
        grep -aq 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' "$1/adapter_model.safetensors" &&
        grep -aq 'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight' "$1/adapter_model.safetensors" &&
        [ ! -e "$1/model.safetensors" ] && [ ! -e "$1/config.json" ]
}

expect_exit 0 "an SFT model" "" "$E" sft --data "$T/prefs.jsonl" --config "$CFG" $COMMON --out "$T/sft" --steps 2 \
    --lr 1e-2
cp "$T/sft/model.safetensors" "$T/sft.before"
expect_exit 0 "fit --lora-r" "" "$E" fit --policy llama --data "$T/prefs.jsonl" --model "$T/sft" $COMMON --k 2 \
    --beta 0.5 --lr 1e-2 --steps 6 --batch 4 --max-iter 2 --out "$T/fit" $LORA

# ---- baseline --lora-r ----
BL="--data $T/prefs.jsonl --model $T/sft $COMMON --lr 1e-2 --optimizer adamw --beta 0.5"
expect_exit 0 "baseline truelabel --lora-r" "" "$E" baseline --method truelabel $BL --out "$T/tl" $LORA
mkdir -p "$T/tl_merged"
for k in 1 2; do
    check "baseline type_$k is a PEFT adapter directory" peft_dir "$T/tl/type_$k"
    # the PEFT reader checks every tensor's name and shape against the base
    expect_exit 0 "baseline type_$k reads as an adapter of the SFT model" "" "$E" merge --model "$T/sft" \
        --adapter "$T/tl/type_$k" --out "$T/tl_merged/type_$k"
done
check "baseline.json records the adapters" grep -qF '"lora": {"r": 4, "alpha": 8, "dropout": 0' "$T/tl/baseline.json"
check "the adapter's base is the SFT model" grep -qF "\"base_model_name_or_path\": \"$(cd "$T/sft" && pwd -P)\"" \
    "$T/tl/type_1/adapter_config.json"
check "baseline never writes the SFT model" cmp -s "$T/sft/model.safetensors" "$T/sft.before"
SCORE="--data $T/prefs.jsonl --tokenizer $T/tok.bin"
expect_exit 0 "score the base" "" "$E" score --model "$T/sft" $SCORE --out "$T/base.csv"
expect_exit 0 "score --adapter type_1" "" "$E" score --model "$T/sft" --adapter "$T/tl/type_1" $SCORE --out "$T/tl1.csv"
expect_exit 0 "score the merged type_1" "" "$E" score --model "$T/tl_merged/type_1" $SCORE --out "$T/tl1m.csv"
check "baseline adapter (unmerged) = its merged checkpoint" close_scores "$T/tl1.csv" "$T/tl1m.csv"
check "the baseline adapter was trained (its scores are not the base's)" test -n "$(cmp "$T/tl1.csv" "$T/base.csv" 2>&1)"
expect_exit 0 "baseline rerun, --grad-checkpoint" "" "$E" baseline --method truelabel $BL --out "$T/tl2" $LORA \
    --grad-checkpoint
check "baseline rerun (checkpointed) gives the same adapter" cmp -s "$T/tl/type_2/adapter_model.safetensors" \
    "$T/tl2/type_2/adapter_model.safetensors"
expect_exit 0 "baseline vanilla --lora-r --lora-targets" "" "$E" baseline --method vanilla $BL --out "$T/van" \
    --lora-r 4 --lora-targets q_proj,v_proj
check "vanilla: two targets" test "$(grep -c '_proj"' "$T/van/type_1/adapter_config.json")" -eq 2

# ---- eval: adapters unmerged on --ref = their merged checkpoints ----
mkdir -p "$T/fit_merged"
for k in 1 2; do
    expect_exit 0 "merge fit type_$k" "" "$E" merge --model "$T/sft" --adapter "$T/fit/type_$k" \
        --out "$T/fit_merged/type_$k"
done
EV="--ref $T/sft --tokenizer $T/tok.bin --data $T/prefs.jsonl --threads 1 --json"
expect_exit 0 "eval a LoRA fit" "" "$E" eval $EV --policies "$T/fit"
grep -E 'margin|accuracy' "$T/stdout" >"$T/ev_lora"
expect_exit 0 "eval its merged types" "" "$E" eval $EV --policies "$T/fit_merged"
grep -E 'margin|accuracy' "$T/stdout" >"$T/ev_merged"
check "eval: adapters unmerged = merged, to 1e-6" close_nums "$T/ev_lora" "$T/ev_merged" 1e-6
# a reference that is an adapter directory is its base merged with it, not its base: the fit's
# adapters on the SFT model are then not run on it
EV2="--tokenizer $T/tok.bin --data $T/prefs.jsonl --threads 1 --json"
expect_exit 0 "eval, --ref an adapter directory" "" "$E" eval $EV2 --ref "$T/tl/type_1" --policies "$T/fit"
grep -E 'margin|accuracy' "$T/stdout" >"$T/ev_aref"
expect_exit 0 "eval, --ref its merged checkpoint" "" "$E" eval $EV2 --ref "$T/tl_merged/type_1" \
    --policies "$T/fit_merged"
grep -E 'margin|accuracy' "$T/stdout" >"$T/ev_aref_merged"
check "eval: an adapter --ref is its merged model" close_nums "$T/ev_aref" "$T/ev_aref_merged" 1e-6
# an adapter made elsewhere: its base_model_name_or_path is a Hub id
mkdir -p "$T/hub/type_1" "$T/hub/type_2"
for k in 1 2; do
    sed 's|"base_model_name_or_path": "[^"]*"|"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M"|' \
        "$T/fit/type_$k/adapter_config.json" >"$T/hub/type_$k/adapter_config.json"
    cp "$T/fit/type_$k/adapter_model.safetensors" "$T/hub/type_$k/"
done
expect_exit 0 "eval --adapter: a directory of type_N adapters on --ref" "" "$E" eval $EV --adapter "$T/hub"
grep -E 'margin|accuracy' "$T/stdout" >"$T/ev_hub"
check "eval --adapter = the fit's adapters" close_nums "$T/ev_hub" "$T/ev_lora" 1e-12
expect_exit 0 "eval --adapter: one adapter directory" "" "$E" eval $EV --adapter "$T/hub/type_2"
check "eval --adapter DIR is a method of one policy" grep -qF '"policies": ["type_1"]' "$T/stdout"
expect_exit 0 "eval --generate: adapter types sampled merged" "" "$E" eval $EV --policies "$T/fit" --adapter "$T/hub" \
    --generate --samples 2 --prompts 1 --max-tokens 3
check "eval --generate: a row per adapter type" test "$(grep -c '"name": "[a-z]*/type_[12]"' "$T/stdout")" -eq 4
expect_exit 2 "eval --policies of adapters whose base is not found" "HuggingFaceTB" "$E" eval $EV --policies "$T/hub"
expect_exit 2 "eval --adapter of a checkpoint" "not a PEFT adapter directory" "$E" eval $EV --adapter "$T/fit_merged"
expect_exit 2 "eval with nothing to evaluate" "--adapter" "$E" eval $EV

# ---- regret: exact on adapters unmerged = merged; --adapter ----
RG="--fit $T/fit --estimator exact --threads 1 --json"
expect_exit 0 "regret of adapters" "" "$E" regret $RG --policies "t1=$T/fit/type_1,bl=$T/tl/type_1" --uniform
grep -o '"regret": \[[^]]*\]' "$T/stdout" >"$T/rg_lora"
expect_exit 0 "regret of merged checkpoints" "" "$E" regret $RG \
    --policies "t1=$T/fit_merged/type_1,bl=$T/tl_merged/type_1" --uniform
grep -o '"regret": \[[^]]*\]' "$T/stdout" >"$T/rg_merged"
check "regret: adapters = merged checkpoints, to 1e-6" close_nums "$T/rg_lora" "$T/rg_merged" 1e-6
expect_exit 0 "regret --adapter NAME=DIR (a Hub base name)" "" "$E" regret $RG --adapter "t1=$T/hub/type_1" \
    --policies "bl=$T/tl/type_1"
grep -o '"regret": \[[^]]*\]' "$T/stdout" >"$T/rg_hub"
head -n 2 "$T/rg_lora" >"$T/rg_lora2"
awk 'NR == 1 { first = $0; next } { print } END { print first }' "$T/rg_hub" >"$T/rg_hub2" # --policies come first
check "regret --adapter = the adapter on its own base" close_nums "$T/rg_hub2" "$T/rg_lora2" 1e-12
expect_exit 0 "regret sample of an adapter (merged to generate)" "" "$E" regret --fit "$T/fit" --threads 1 \
    --max-tokens 4 --samples 2 --adapter "t1=$T/hub/type_1"
expect_exit 2 "regret --adapter of a checkpoint" "not a PEFT adapter directory" "$E" regret $RG \
    --adapter "x=$T/fit_merged/type_1"
expect_exit 2 "regret --adapter without NAME=" "--adapter" "$E" regret $RG --adapter "$T/hub/type_1"

# ---- MMRA-AE's mixture of adapters: score and generate ----
expect_exit 0 "aggregate ae over the LoRA fit" "" "$E" aggregate --fit "$T/fit" --threads 1
check "mixture.json refers to the adapters" grep -qF '"members": ["type_1", "type_2"]' "$T/fit/mixture.json"
check "and to their base" grep -qF "\"reference\": \"$(cd "$T/sft" && pwd -P)\"" "$T/fit/mixture.json"
expect_exit 0 "score the mixture of adapters" "" "$E" score --model "$T/fit/mixture.json" $SCORE --out "$T/mix.csv"
sed 's|"type_\([12]\)"|"../fit_merged/type_\1"|g' "$T/fit/mixture.json" >"$T/fit/mixture_merged.json"
expect_exit 0 "score the mixture of merged members" "" "$E" score --model "$T/fit/mixture_merged.json" $SCORE \
    --out "$T/mixm.csv"
check "mixture: adapter members = merged members, to 1e-5" close_scores "$T/mix.csv" "$T/mixm.csv"
expect_exit 0 "generate from the mixture of adapters" "" "$E" generate --model "$T/fit/mixture.json" \
    --tokenizer "$T/tok.bin" --prompt ab --max-tokens 6 --n 3 --seed 7
grep -av '^--- sample' "$T/stdout" >"$T/gen_mix.txt"
expect_exit 0 "generate from the mixture of merged members" "" "$E" generate --model "$T/fit/mixture_merged.json" \
    --tokenizer "$T/tok.bin" --prompt ab --max-tokens 6 --n 3 --seed 7
grep -av '^--- sample' "$T/stdout" >"$T/gen_mixm.txt"
check "mixture generation: adapters = merged" cmp -s "$T/gen_mixm.txt" "$T/gen_mix.txt"

# ---- aggregate lw --lora-r ----
LW="--method lw --rounds 3 --steps 2 --eta 0.05 --lr 1e-2 --threads 1"
expect_exit 0 "aggregate lw --lora-r" "" "$E" aggregate --fit "$T/fit" $LW $LORA --out "$T/lw" --json
check "lw policy/ is a PEFT adapter directory" peft_dir "$T/lw/policy"
expect_exit 0 "lw policy/ reads as an adapter of the SFT model" "" "$E" merge --model "$T/sft" --adapter "$T/lw/policy" \
    --out "$T/lw_merged"
check "aggregate.json records the adapter" grep -qF '"lora": {"r": 4, "alpha": 8' "$T/lw/aggregate.json"
check "MMRA-LW never writes the SFT model" cmp -s "$T/sft/model.safetensors" "$T/sft.before"
max_regret() { sed -n "s/.*\"$1\": {[^}]*\"max_regret\": \([^,]*\),.*/\1/p" "$2" | head -n 1; }
check "MMRA-LW with an adapter lowers the max regret below the SFT model's" \
    awk -v a="$(max_regret start "$T/lw/aggregate.json")" -v b="$(max_regret final "$T/lw/aggregate.json")" \
    'BEGIN { exit !(b + 0 < a + 0) }'
# emdpo regret on the adapter (unmerged) finds the regrets LW reported
sed -n 's/.*"final": {[^}]*"regret": \(\[[^]]*\]\).*/\1/p' "$T/lw/aggregate.json" >"$T/lw_final"
expect_exit 0 "regret of the LW adapter" "" "$E" regret $RG --policies "lw=$T/lw/policy"
grep -o '"regret": \[[^]]*\]' "$T/stdout" >"$T/lw_regret"
check "regret of policy/ = LW's final regrets, to 1e-6" close_nums "$T/lw_regret" "$T/lw_final" 1e-6
expect_exit 0 "aggregate lw --lora-r rerun, --grad-checkpoint" "" "$E" aggregate --fit "$T/fit" $LW $LORA \
    --out "$T/lw2" --json --grad-checkpoint
check "lw rerun (checkpointed) gives the same adapter" cmp -s "$T/lw/policy/adapter_model.safetensors" \
    "$T/lw2/policy/adapter_model.safetensors"

expect_exit 0 "aggregate lw --lora-r, sample estimator (the adapter merged to generate)" "" "$E" aggregate \
    --fit "$T/fit" --method lw --rounds 1 --steps 1 --lr 1e-2 --estimator sample --samples 2 --max-tokens 3 \
    --max-prompts 2 --threads 1 $LORA --out "$T/lws" --json
check "lw sample: policy/ is a PEFT adapter directory" peft_dir "$T/lws/policy"

# ---- aggregate onpolicy --lora-r ----
OP="--method onpolicy --rounds 2 --steps 2 --lr 1e-2 --samples 2 --max-tokens 4 --max-prompts 2 --threads 1"
expect_exit 0 "aggregate onpolicy --lora-r" "" "$E" aggregate --fit "$T/fit" $OP $LORA --lora-dropout 0.1 \
    --out "$T/op" --json
check "onpolicy policy/ is a PEFT adapter directory" peft_dir "$T/op/policy"
expect_exit 0 "onpolicy policy/ reads as an adapter" "" "$E" score --model "$T/sft" --adapter "$T/op/policy" $SCORE \
    --out "$T/op.csv"
check "the onpolicy adapter was trained" test -n "$(cmp "$T/op.csv" "$T/base.csv" 2>&1)"
expect_exit 0 "aggregate onpolicy --lora-r rerun, --grad-checkpoint" "" "$E" aggregate --fit "$T/fit" $OP $LORA \
    --lora-dropout 0.1 --out "$T/op2" --json --grad-checkpoint
check "onpolicy rerun (checkpointed) gives the same adapter" cmp -s "$T/op/policy/adapter_model.safetensors" \
    "$T/op2/policy/adapter_model.safetensors"
check "the SFT model is never written" cmp -s "$T/sft/model.safetensors" "$T/sft.before"
expect_exit 2 "aggregate ae --grad-checkpoint" "grad-checkpoint applies" "$E" aggregate --fit "$T/fit" \
    --grad-checkpoint --out "$T/ae_ck"

# ---- bad flags: exit 2, nothing written ----
expect_exit 2 "baseline --lora-r 0" "lora-r" "$E" baseline --method vanilla $BL --out "$T/x1" --lora-r 0
expect_exit 2 "baseline --lora-targets lm_head" "lora-targets" "$E" baseline --method vanilla $BL --out "$T/x2" \
    --lora-targets lm_head
expect_exit 2 "aggregate ae --lora-r" "lora" "$E" aggregate --fit "$T/fit" --lora-r 4 --out "$T/x3"
expect_exit 2 "aggregate lw --lora-dropout 1" "lora-dropout" "$E" aggregate --fit "$T/fit" $LW --lora-dropout 1 \
    --out "$T/x4"
expect_exit 2 "aggregate lw --lora-targets w1" "lora-targets" "$E" aggregate --fit "$T/fit" $LW --lora-targets w1 \
    --out "$T/x5"
expect_exit 2 "LoRA flags with a log-linear policy" "lora-r" "$E" fit --policy loglinear --data "$T/prefs.jsonl" \
    --out "$T/x6" --lora-r 4
for x in x1 x2 x3 x4 x5 x6; do
    check "nothing written for bad flags ($x)" test ! -e "$T/$x"
done
check "no temporary files left" test -z "$(find "$T" -name '*.tmp*')"
finish cli_lora_cmds
