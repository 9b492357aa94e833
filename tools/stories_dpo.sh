#!/bin/sh
# Does DPO keep a real pretrained model generating well? stories260K (a
# tiny Llama trained on TinyStories, ../shared/data/models) samples 400
# stories; pairs of them become preferences (the story with more distinct
# words is chosen; ties are dropped); then DPO runs from the model with
# the library's defaults, with the demos' settings, and with the demos'
# former settings (no warmup, no RPO), and `emdpo eval --generate` reports
# each policy's length, repetition and sampled KL to the model.
#
#   sh tools/stories_dpo.sh [EMDPO_BINARY]     (OUT [runs/stories_dpo], MODELS)
set -eu
E=${1:-build/emdpo}
case "$E" in /*) ;; *) E="$(pwd)/$E" ;; esac
M=${MODELS:-../shared/data/models}
case "$M" in /*) ;; *) M="$(pwd)/$M" ;; esac
if [ ! -f "$M/stories260K.bin" ] || [ ! -f "$M/tok512.bin" ]; then
    echo "stories_dpo: $M/stories260K.bin and tok512.bin are needed (../shared/data/models)" >&2
    exit 2
fi
out=${OUT:-runs/stories_dpo}
rm -rf "$out"
mkdir -p "$out"
cd "$out"
LM="--tokenizer $M/tok512.bin --threads 2"
PROMPT="Once upon a time"

"$E" generate --model "$M/stories260K.bin" $LM --prompt "$PROMPT" --n 400 --max-tokens 60 --seed 7 >samples.txt
awk -v prompt="$PROMPT" '
    function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, " ", s); return s }
    function distinct(s,    w, n, i, seen, d) {
        n = split(s, w, /[^A-Za-z]+/); d = 0
        for (i = 1; i <= n; i++) if (w[i] != "" && !(w[i] in seen)) { seen[w[i]] = 1; d++ }
        return d
    }
    function flush() { if (n) { sub("^" prompt, "", text); sub(/^ /, "", text); story[++k] = text } text = ""; n = 0 }
    /^--- sample / { flush(); n = 1; next }
    { text = text (text == "" ? "" : " ") $0 }
    END {
        flush()
        for (i = 1; i + 1 <= k; i += 2) {
            a = distinct(story[i]); b = distinct(story[i + 1])
            if (a == b) continue
            c = a > b ? story[i] : story[i + 1]; r = a > b ? story[i + 1] : story[i]
            printf "{\"annotator\": \"s%d\", \"group\": \"all\", \"prompt\": \"%s\", \"chosen\": \"%s\", \"rejected\": \"%s\"}\n", i, prompt, esc(c), esc(r)
        }
    }' samples.txt >prefs.jsonl
echo "stories_dpo: $(wc -l <prefs.jsonl) preference pairs"

DATA="--model $M/stories260K.bin $LM --data prefs.jsonl --quiet --max-length 128"
"$E" dpo $DATA --out defaults
# Two epochs of the pairs at the demos' batch of 8.
S=$(($(wc -l <prefs.jsonl) / 4))
"$E" dpo $DATA --beta 1 --lr 1e-4 --batch 8 --steps "$S" --out former
"$E" dpo $DATA --beta 1 --lr 3e-4 --batch 8 --steps "$S" --warmup 20 --rpo-alpha 10 --out demo
for p in defaults former demo; do mkdir -p "m_$p" && ln -s "../$p" "m_$p/type_1"; done
"$E" eval --ref "$M/stories260K.bin" $LM --data prefs.jsonl --beta 1 --policies m_defaults,m_former,m_demo \
    --generate --samples 100 --prompts 1 --max-tokens 60 --out eval.json | tee eval.log
