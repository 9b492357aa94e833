#!/bin/sh
# emdpo baseline and emdpo eval: a tiny SFT model, two groups of annotators
# with opposite preferences over the same two responses. Trains the vanilla,
# Cluster-DPO and True-Label DPO ensembles, checks their files, then
# evaluates them on held-out data: True-Label DPO's max-mean margin beats
# vanilla DPO's on at least one group. Bad input exits 2.
E=${1:-build/emdpo}
. tests/lib_cli.sh

if ! "$E" baseline --help >/dev/null 2>&1; then
    echo "cli_baseline: 0 passed, 0 failed"
    exit 0
fi

byte_tokenizer "$T/tok.bin"
CFG="dim=16,layers=1,heads=2,vocab=259,seq_len=64"
COMMON="--tokenizer $T/tok.bin --threads 1"

# Group A prefers "yes" to "no", group B the reverse; 4 annotators each.
gen() { # PREFIX PROMPTS...
    pre=$1
    shift
    for g in A B; do
        for i in 1 2 3 4; do
            for p in "$@"; do
                if [ $g = A ]; then c=yes r=no; else c=no r=yes; fi
                printf '{"annotator": "%s%s%d", "group": "%s", "prompt": "%s", "chosen": "%s", "rejected": "%s"}\n' \
                    "$pre" $g $i $g "$p" $c $r
            done
        done
    done
}
gen "" ab cd ef >"$T/prefs.jsonl"
gen "h" gh ij >"$T/heldout.jsonl"

"$E" sft --data "$T/prefs.jsonl" --config "$CFG" $COMMON --quiet --out "$T/sft" --steps 2 --lr 1e-2 >/dev/null 2>&1
check "sft model" test -s "$T/sft/model.safetensors"

B="--model $T/sft --data $T/prefs.jsonl $COMMON --quiet --beta 0.5 --lr 1e-2 --steps 6 --batch 4"
expect_exit 0 "vanilla" "" "$E" baseline --method vanilla $B --out "$T/vanilla"
expect_exit 0 "cluster" "" "$E" baseline --method cluster --k 2 $B --out "$T/cluster"
expect_exit 0 "truelabel" "" "$E" baseline --method truelabel $B --out "$T/truelabel"
for f in vanilla/type_1/model.safetensors vanilla/baseline.json cluster/type_1/config.json cluster/type_2/model.safetensors \
    cluster/clusters.csv truelabel/type_1/model.safetensors truelabel/type_2/model.safetensors truelabel/baseline.json; do
    check "wrote $f" test -s "$T/$f"
done
check "vanilla has one policy" test ! -e "$T/vanilla/type_2"
for key in '"method": "truelabel"' '"k": 2,' '"groups": ["A", "B"]' '"policies": ["type_1", "type_2"]' \
    '"decisions": [12, 12]' '"training": {"steps": 6'; do
    check "baseline.json has $key" grep -qF -- "$key" "$T/truelabel/baseline.json"
done
check "clusters.csv header" grep -qx 'annotator,cluster' "$T/cluster/clusters.csv"
check "clusters.csv rows" test "$(wc -l <"$T/cluster/clusters.csv")" -eq 9
expect_exit 0 "rerun" "" "$E" baseline --method cluster --k 2 $B --out "$T/cluster2"
check "rerun gives the same policy" cmp -s "$T/cluster/type_2/model.safetensors" "$T/cluster2/type_2/model.safetensors"

EV="--ref $T/sft --tokenizer $T/tok.bin --data $T/heldout.jsonl --beta 0.5 --threads 1"
expect_exit 0 "eval table" "" "$E" eval $EV --policies "$T/truelabel,$T/vanilla,$T/cluster"
check "table has a truelabel row" grep -q '^truelabel ' "$T/stdout"
expect_exit 0 "eval json" "" "$E" eval $EV --policies "$T/truelabel,$T/vanilla/" --json --out "$T/eval.json"
check "json methods" grep -qF '"name": "vanilla"' "$T/eval.json"
# max_mean_margin arrays in method order: truelabel's beats vanilla's on some group.
beats() {
    awk -F'[][]' '/"max_mean_margin"/ { n++; split($2, v, ", "); for (g in v) m[n, g] = v[g] + 0 }
        END { for (g = 1; g <= 2; g++) if (m[1, g] > m[2, g]) exit 0; exit 1 }' "$1"
}
check "truelabel beats vanilla on a group" beats "$T/eval.json"
# The posterior of the true-label split: ARI 1 with the groups.
{
    echo "annotator,gamma_1,gamma_2"
    for i in 1 2 3 4; do echo "hA$i,0.9,0.1"; echo "hB$i,0.2,0.8"; done
} >"$T/posterior.csv"
expect_exit 0 "eval ari" "" "$E" eval $EV --policies "$T/truelabel" --posterior "$T/posterior.csv" --json
check "ari is 1" grep -qF '"ari": 1,' "$T/stdout"
expect_exit 0 "eval deterministic" "" "$E" eval $EV --policies "$T/truelabel,$T/vanilla/" --json --out "$T/eval2.json"
check "same output twice" cmp -s "$T/eval.json" "$T/eval2.json"

# Generation quality: the reference's KL to itself is 0; a mixture of the
# reference with itself is the reference; validity is a share.
printf '{"kind": "mixture", "weights": [0.5, 0.5], "members": ["sft", "sft"]}\n' >"$T/selfmix.json"
G="--generate --closed-set --samples 3 --prompts 2 --max-tokens 8"
expect_exit 0 "eval generate" "" "$E" eval $EV --policies "$T/vanilla" $G \
    --generate-policies "mix=$T/selfmix.json,truelabel2=$T/truelabel/type_2" --json --out "$T/gen.json"
check "generation rows" test "$(grep -c '{"name": "\(reference\|vanilla/type_1\|mix\|truelabel2\)", "n": 6,' "$T/gen.json")" -eq 4
check "reference KL is 0" grep -qF '{"name": "reference", "n": 6, ' "$T/gen.json"
check "reference kl 0" grep -q '"name": "reference".*"kl": 0, "kl_se": 0}' "$T/gen.json"
check "mixture of the reference has KL 0" grep -q '"name": "mix".*"kl": 0, "kl_se": 0}' "$T/gen.json"
check "closed set of 2 responses" grep -qF '"closed_set": 2,' "$T/gen.json"
expect_exit 0 "eval generate table" "" "$E" eval $EV --policies "$T/vanilla" $G
check "table has the generation rows" grep -q '^vanilla/type_1 ' "$T/stdout"
expect_exit 2 "extra policies need --generate" "--generate" "$E" eval $EV --policies "$T/vanilla" \
    --generate-policies "a=$T/sft"
expect_exit 2 "extra policies need NAME=PATH" "NAME=PATH" "$E" eval $EV --policies "$T/vanilla" --generate \
    --generate-policies "$T/sft"
expect_exit 2 "zero samples" "samples" "$E" eval $EV --policies "$T/vanilla" --generate --samples 0
expect_exit 2 "missing extra policy" "none" "$E" eval $EV --policies "$T/vanilla" --generate \
    --generate-policies "a=$T/none"

# Bad input: exit 2.
sed 's/, "group": "[AB]"//' "$T/prefs.jsonl" >"$T/nogroup.jsonl"
expect_exit 2 "truelabel without groups" "group" "$E" baseline --method truelabel --model "$T/sft" \
    --data "$T/nogroup.jsonl" $COMMON --out "$T/b1"
check "no baseline.json in b1" test ! -e "$T/b1/baseline.json"
expect_exit 2 "unknown method" "--method" "$E" baseline --method spectral $B --out "$T/b2"
expect_exit 2 "k beyond annotators" "--k" "$E" baseline --method cluster --k 9 $B --out "$T/b3"
expect_exit 2 "eval without groups" "group" "$E" eval --ref "$T/sft" --tokenizer "$T/tok.bin" \
    --data "$T/nogroup.jsonl" --policies "$T/vanilla"
expect_exit 2 "eval on a directory without policies" "type_N" "$E" eval $EV --policies "$T/sft"
expect_exit 2 "eval on a missing directory" "none" "$E" eval $EV --policies "$T/vanilla,$T/none"
printf 'annotator,gamma_1\nhA1,x\n' >"$T/badpost.csv"
expect_exit 2 "bad posterior" "badpost.csv:2" "$E" eval $EV --policies "$T/vanilla" --posterior "$T/badpost.csv"
check "no temporary files left" test -z "$(find "$T" -name '*.tmp*')"

finish cli_baseline
