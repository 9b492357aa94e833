#!/bin/sh
# emdpo fit --policy llama: a tiny SFT model, two groups of annotators with
# opposite preferences over the same two responses, K = 2. Checks the fit
# contract (fit.json, posterior.csv), the K checkpoints, that the posterior
# separates the groups, that a rerun gives the same bits, and that bad
# input exits 2.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" fit --policy llama --help >/dev/null 2>&1; then
    echo "cli_fit_lm: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1 --quiet"

# Group A prefers "yes" to "no", group B the reverse; 6 annotators each,
# 3 decisions per annotator.
two_group_prefs "$T/prefs.jsonl" 6 ab cd ef

"$E" sft --data "$T/prefs.jsonl" --config "$CFG" $COMMON --out "$T/sft" --steps 2 --lr 1e-2 >/dev/null 2>&1
check "sft model for the fit" test -s "$T/sft/model.safetensors"

FIT="--policy llama --data $T/prefs.jsonl --model $T/sft $COMMON --k 2 --beta 0.5 --lr 1e-2 --steps 6 --batch 4 --max-iter 3"
expect_exit 0 "fit trains" "" "$E" fit $FIT --out "$T/fit"
for f in fit.json posterior.csv type_1/config.json type_1/model.safetensors type_2/config.json type_2/model.safetensors; do
    check "wrote $f" test -s "$T/fit/$f"
done
for key in '"family": "llama"' '"k": 2,' '"loglik": -' '"iterations": ' '"converged": ' '"eta": [' \
    '"max_iter": 3,' '"tol": 0,' '"patience": 2,' \
    '"n_annotators": 12,' '"n_decisions": 36,' '"loglik_trace": [' '"aic": null' '"policies": ["type_1", "type_2"]'; do
    check "fit.json has $key" grep -qF -- "$key" "$T/fit/fit.json"
done
# The fit returns its best iterate: loglik is the largest entry of the
# trace, the one at best_iteration.
best_of_trace() {
    awk '/"loglik":/ { v = $2; sub(/,$/, "", v) }
         /"best_iteration":/ { b = $2; sub(/,$/, "", b) }
         /"loglik_trace":/ { s = $0; sub(/.*\[/, "", s); sub(/\].*/, "", s); n = split(s, t, /, */) }
         END { m = t[1]; for (i = 2; i <= n; i++) if (t[i] + 0 > m + 0) m = t[i]
               exit !(n > 0 && t[b + 1] == v && m + 0 == v + 0) }' "$1"
}
check "loglik is the trace's best, at best_iteration" best_of_trace "$T/fit/fit.json"
check "posterior header" grep -qx 'annotator,gamma_1,gamma_2' "$T/fit/posterior.csv"
check "posterior rows" test "$(wc -l <"$T/fit/posterior.csv")" -eq 13
# At least 80% of annotators put > 0.5 on their group's type (either labelling).
separated() {
    awk -F, 'NR > 1 { g = substr($1, 1, 1); a += (g == "A") == ($2 > 0.5); n++ }
             END { s = a > n - a ? a : n - a; exit !(s >= 0.8 * n) }' "$1"
}
check "posterior separates the groups" separated "$T/fit/posterior.csv"
# The fitted types are ordinary checkpoints: score reads one.
expect_exit 0 "score a fitted type" "" "$E" score --data "$T/prefs.jsonl" --model "$T/fit/type_1" --ref "$T/sft" \
    --tokenizer "$T/tok.bin"

expect_exit 0 "random init, restart" "" "$E" fit $FIT --out "$T/fit2" --init random --restart --weight-norm none
check "random init separates the groups" separated "$T/fit2/posterior.csv"
expect_exit 0 "token-contrast init" "" "$E" fit $FIT --out "$T/fit4" --init kmeans-tokens
check "token-contrast init separates the groups" separated "$T/fit4/posterior.csv"
check "fit.json names the init" grep -q '"init": "kmeans-tokens"' "$T/fit4/fit.json"
expect_exit 0 "patience 0" "" "$E" fit $FIT --out "$T/fit5" --patience 0
check "patience 0: loglik is the trace's best" best_of_trace "$T/fit5/fit.json"
check "patience 0: recorded" grep -qF '"patience": 0,' "$T/fit5/fit.json"
expect_exit 0 "rerun" "" "$E" fit $FIT --out "$T/fit3"
check "rerun gives the same posterior" cmp -s "$T/fit/posterior.csv" "$T/fit3/posterior.csv"
check "rerun gives the same policy" cmp -s "$T/fit/type_2/model.safetensors" "$T/fit3/type_2/model.safetensors"

# LoRA types: PEFT adapters on the one SFT model, which none writes.
cp "$T/sft/model.safetensors" "$T/sft.before"
expect_exit 0 "fit --lora-r" "" "$E" fit $FIT --out "$T/lora" --lora-r 4 --lora-alpha 8 --lora-dropout 0.05
for f in adapter_config.json adapter_model.safetensors; do
    check "wrote type_1/$f and type_2/$f" test -s "$T/lora/type_1/$f" -a -s "$T/lora/type_2/$f"
done
check "no full checkpoint in a LoRA type" test ! -e "$T/lora/type_1/model.safetensors"
check "the SFT model is never written" cmp -s "$T/sft/model.safetensors" "$T/sft.before"
check "fit.json records the adapters" grep -qF '"lora": {"r": 4, "alpha": 8, "dropout": 0.05' "$T/lora/fit.json"
check "LoRA posterior separates the groups" separated "$T/lora/posterior.csv"
expect_exit 0 "fit --lora-r rerun, --grad-checkpoint" "" "$E" fit $FIT --out "$T/lora2" --lora-r 4 --lora-alpha 8 \
    --lora-dropout 0.05 --grad-checkpoint
check "LoRA rerun (checkpointed) gives the same posterior" cmp -s "$T/lora/posterior.csv" "$T/lora2/posterior.csv"
check "LoRA rerun (checkpointed) gives the same adapter" cmp -s "$T/lora/type_2/adapter_model.safetensors" \
    "$T/lora2/type_2/adapter_model.safetensors"
expect_exit 0 "score a LoRA type (its base merged)" "" "$E" score --data "$T/prefs.jsonl" --model "$T/lora/type_1" \
    --ref "$T/sft" --tokenizer "$T/tok.bin"
expect_exit 2 "bad --lora-targets" "lora-targets" "$E" fit $FIT --out "$T/b8" --lora-targets w1

# Bad input: exit 2 and nothing written.
expect_exit 2 "k out of range" "--k" "$E" fit $FIT --out "$T/b1" --k 0
expect_exit 2 "missing model" "none.bin" "$E" fit --policy llama --data "$T/prefs.jsonl" --model "$T/none.bin" \
    $COMMON --k 2 --out "$T/b2"
printf '{"annotator": "u", "prompt": "p", "chosen": {"features": [1]}, "rejected": {"features": [0]}}\n' >"$T/feat.jsonl"
expect_exit 2 "feature responses" "text" "$E" fit --policy llama --data "$T/feat.jsonl" --model "$T/sft" $COMMON \
    --k 2 --out "$T/b3"
expect_exit 2 "unknown weight-norm" "--weight-norm" "$E" fit $FIT --out "$T/b4" --weight-norm batch
expect_exit 2 "unknown init" "--init" "$E" fit $FIT --out "$T/b5" --init spectral
expect_exit 2 "negative patience" "--patience" "$E" fit $FIT --out "$T/b7" --patience -1
expect_exit 2 "max-length beyond context" "--max-length" "$E" fit $FIT --out "$T/b6" --max-length 100
for d in b1 b2 b3 b4 b5 b6 b7 b8; do
    check "no fit.json in $d" test ! -e "$T/$d/fit.json"
done
check "no temporary files left" test -z "$(find "$T" -name '*.tmp*')"

finish cli_fit_lm
