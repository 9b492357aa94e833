# Sourced by bench/dist_lm.sh and bench/dist_lm_gen.sh, after
# tests/lib_cli.sh (byte_tokenizer, $T) and with $E the emdpo to run: the
# LM benchmarks' data and model. $T/tok.bin a byte-level tokenizer,
# $T/prefs.jsonl 64 decisions of 16 annotators (prompts of about 80 bytes,
# responses of about 75), $T/sft a fresh model of the Llama engine
# benchmark's small shape (dim 256, 4 layers, 4 heads, hidden 688) on the
# 259-token vocabulary after one SFT step.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
byte_tokenizer "$T/tok.bin"
awk 'BEGIN {
    for (i = 0; i < 64; i++) {
        p = sprintf("question %03d: which of these two answers about topic %d reads better to you?", i, i % 7)
        a = sprintf("the first answer, number %03d, explains the topic plainly and at some length.", i)
        b = sprintf("the second answer, number %03d, is short, vague and mostly beside the point.", i)
        printf "{\"annotator\": \"u%d\", \"prompt\": \"%s\", \"chosen\": \"%s\", \"rejected\": \"%s\"}\n", i % 16, p, a, b
    }
}' >"$T/prefs.jsonl"
"$E" sft --data "$T/prefs.jsonl" --config "dim=256,layers=4,heads=4,hidden=688,vocab=259,seq_len=192" \
    --tokenizer "$T/tok.bin" --out "$T/sft" --steps 1 --quiet
