/* emdpo tokenizer: train a BPE vocabulary on the texts of JSONL files and
 * write it as a llama2.c tokenizer.bin, for models trained from scratch
 * (emdpo sft --config ... vocab=N). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_tokenizer(int argc, char **argv) {
    emdpo_bpe_opts o;
    emdpo_bpe_opts_init(&o);
    const char *data = NULL, *out = NULL;
    cli_opt opts[] = {
        {"data", CLI_STR, &data, "FILE[,FILE...]",
         "JSONL: preference data (prompts and responses) or {\"text\"} / {\"prompt\",\"response\"} lines", 1, 0, 0},
        {"out", CLI_STR, &out, "FILE", "the tokenizer.bin to write (atomically)", 1, 0, 0},
        {"vocab", CLI_INT, &o.vocab_size, "N", "vocabulary size, > 259: the 259 control and byte pieces, then text "
                                               "pieces", 0, 0, 0},
        {"min-count", CLI_INT, &o.min_count, "N", "merge only pairs seen at least N times", 0, 0, 0},
        {"up-to", CLI_FLAG, &o.up_to, NULL, "--vocab is a maximum: stop early when no pair is left to merge", 0, 0, 0},
    };
    cli_cmd cmd = {"tokenizer", "Train a BPE vocabulary on texts and write a llama2.c tokenizer.bin.",
                   "Ids 0-2 are <unk>, BOS and EOS, 3-258 the byte-fallback pieces; then the corpus's most\n"
                   "frequent characters, then BPE merges in order (SentencePiece style: each text gets a\n"
                   "leading space, pieces never span two words). The file holds exactly --vocab entries\n"
                   "(with --up-to: at most that many; the summary line says how many): use that number as\n"
                   "the model's vocab (emdpo sft --config ...,vocab=N). Without --up-to it fails when the\n"
                   "texts run out of pairs to merge first, saying how many entries they support.\n"
                   "The same texts always give the same file.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (o.vocab_size <= EMDPO_TOK_MIN_VOCAB || o.vocab_size > EMDPO_BPE_MAX_VOCAB)
        return cli_usage_error("tokenizer", "--vocab must be in %d..%d", EMDPO_TOK_MIN_VOCAB + 1, EMDPO_BPE_MAX_VOCAB);

    /* The comma-separated files; empty names between commas are skipped. */
    size_t len = strlen(data) + 1;
    char *list = malloc(len);
    const char **paths = malloc(len * sizeof *paths);
    int n = 0;
    if (!list || !paths) {
        free(list);
        free(paths);
        return cli_fail("tokenizer", EMDPO_ERR_NOMEM, NULL, &cmd);
    }
    memcpy(list, data, len);
    for (char *p = list, *comma; p; p = comma ? comma + 1 : NULL) {
        if ((comma = strchr(p, ','))) *comma = '\0';
        if (*p) paths[n++] = p;
    }
    emdpo_vocab *v = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_vocab_train(paths, n, &o, &v, &diag)) == EMDPO_ERR_LIMIT) {
        rc = cli_usage_error("tokenizer", "%s: %s", data, diag.msg);
    } else if (rc || (rc = emdpo_vocab_save(v, out, &diag))) {
        rc = cli_fail("tokenizer", rc, &diag, &cmd);
    } else {
        int64_t n_tok = emdpo_vocab_n_tokens(v);
        printf("wrote %s: %d entries from %lld texts; %.2f bytes per token (%lld tokens)\n", out,
               emdpo_vocab_entries(v), (long long)emdpo_vocab_n_texts(v),
               n_tok ? (double)emdpo_vocab_n_bytes(v) / (double)n_tok : 0.0, (long long)n_tok);
    }
    emdpo_vocab_free(v);
    free(paths);
    free(list);
    return rc;
}
