/* emdpo tokenizer: train a BPE vocabulary (tokenizer_train.h) on the texts
 * of JSONL files and write it as a llama2.c tokenizer.bin, for models trained
 * from scratch (emdpo sft --config ... vocab=N). */
#include <stdlib.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "cli.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/io/tokenizer_train.h"

typedef struct tok_args {
    const char *data, *out;
    int vocab, min_count, up_to;
} tok_args;

/* A growing list of borrowed texts. */
typedef struct text_list {
    const char **s;
    size_t *len;
    int64_t n, cap;
} text_list;

static int text_push(text_list *t, const char *s) {
    if (!s || !*s) return EMDPO_OK;
    if (t->n == t->cap) {
        int64_t nc = t->cap ? 2 * t->cap : 1024;
        const char **ns = emdpo_realloc((void *)t->s, (size_t)t->cap * sizeof *ns, (size_t)nc * sizeof *ns);
        if (!ns) return EMDPO_ERR_NOMEM;
        t->s = ns;
        size_t *nl = emdpo_realloc(t->len, (size_t)t->cap * sizeof *nl, (size_t)nc * sizeof *nl);
        if (!nl) return EMDPO_ERR_NOMEM;
        t->len = nl;
        t->cap = nc;
    }
    t->s[t->n] = s;
    t->len[t->n++] = strlen(s);
    return EMDPO_OK;
}

/* The sources of one file: plain texts ({"text"} or {"prompt","response"})
 * or preference data (every decision's prompt and every item's text, as
 * often as they occur, since frequency drives the merges). */
typedef struct source {
    emdpo_lm_texts *texts;
    emdpo_data *pref;
} source;

static int read_source(const char *path, source *src, text_list *t) {
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc = emdpo_lm_texts_read(path, &src->texts, &diag);
    if (rc == EMDPO_ERR_UNSUPPORTED) {
        if ((rc = cli_load_data("tokenizer", path, "jsonl", &src->pref))) return rc;
        const emdpo_data *d = src->pref;
        if (!emdpo_data_has_text(d)) return cli_usage_error("tokenizer", "%s: responses have no text", path);
        for (int64_t j = 0; !rc && j < d->n_dec; j++) rc = text_push(t, d->dec_prompt ? d->dec_prompt[j] : NULL);
        for (int64_t i = 0; !rc && i < d->n_items; i++) rc = text_push(t, d->item_text[i]);
    } else if (rc) {
        return cli_fail("tokenizer", rc, &diag, "cannot read data");
    } else {
        for (int64_t i = 0; !rc && i < src->texts->n; i++) {
            rc = text_push(t, src->texts->prompt[i]);
            if (!rc) rc = text_push(t, src->texts->response[i]);
        }
    }
    return rc ? cli_fail("tokenizer", rc, NULL, "out of memory") : 0;
}

static int write_file(const char *path, const void *buf, size_t len) {
    emdpo_afile af;
    memset(&af, 0, sizeof af);
    int rc = emdpo_afile_open(&af, path);
    if (!rc) {
        fwrite(buf, 1, len, af.fp);
        rc = emdpo_afile_commit(&af);
    }
    return rc ? cli_usage_error("tokenizer", "%s: cannot write", path) : 0;
}

/* Encodes every text with the new vocabulary, for the summary line. */
static int count_tokens(const void *buf, size_t len, int vocab, const text_list *t, int64_t *n_tok, int64_t *n_bytes) {
    emdpo_tokenizer *tok = NULL;
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc = emdpo_tokenizer_parse(buf, len, vocab, "trained vocabulary", &tok, &diag);
    size_t cap = 0;
    int *ids = NULL;
    *n_tok = *n_bytes = 0;
    for (int64_t i = 0; !rc && i < t->n; i++) {
        size_t need = emdpo_tokenizer_encode_bound(t->len[i]), n = 0;
        if (need > cap) {
            emdpo_free(ids, cap * sizeof *ids);
            cap = need;
            if (!(ids = emdpo_malloc(cap * sizeof *ids))) rc = EMDPO_ERR_NOMEM;
        }
        if (!rc) rc = emdpo_tokenizer_encode(tok, t->s[i], t->len[i], 0, ids, cap, &n);
        *n_tok += (int64_t)n;
        *n_bytes += (int64_t)t->len[i];
    }
    emdpo_free(ids, cap * sizeof *ids);
    emdpo_tokenizer_free(tok);
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    tok_args a = {0};
    a.vocab = 512;
    a.min_count = 2;
    cli_opt opts[] = {
        {"data", CLI_STR, &a.data, "FILE[,FILE...]",
         "JSONL: preference data (prompts and responses) or {\"text\"} / {\"prompt\",\"response\"} lines", 1, 0},
        {"out", CLI_STR, &a.out, "FILE", "the tokenizer.bin to write (atomically)", 1, 0},
        {"vocab", CLI_INT, &a.vocab, "N", "vocabulary size, > 259: the 259 control and byte pieces, then text pieces "
                                          "(512)", 0, 0},
        {"min-count", CLI_INT, &a.min_count, "N", "merge only pairs seen at least N times (2)", 0, 0},
        {"up-to", CLI_FLAG, &a.up_to, NULL, "--vocab is a maximum: stop early when no pair is left to merge", 0, 0},
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
    if (a.vocab <= EMDPO_TOK_MIN_VOCAB || a.vocab > (1 << 20))
        return cli_usage_error("tokenizer", "--vocab must be in %d..%d", EMDPO_TOK_MIN_VOCAB + 1, 1 << 20);
    if (a.min_count < 1) return cli_usage_error("tokenizer", "--min-count must be >= 1");

    size_t dlen = strlen(a.data);
    char *paths = emdpo_malloc(dlen + 1);
    if (!paths) return cli_fail("tokenizer", EMDPO_ERR_NOMEM, NULL, "out of memory");
    memcpy(paths, a.data, dlen + 1);
    int n_src = 1;
    for (const char *c = paths; *c; c++) n_src += *c == ',';
    source *src = emdpo_calloc((size_t)n_src, sizeof *src);
    text_list t = {0};
    void *buf = NULL;
    size_t len = 0;
    int entries = 0;
    if (!src) rc = cli_fail("tokenizer", EMDPO_ERR_NOMEM, NULL, "out of memory");
    char *save = NULL;
    int i = 0;
    for (char *p = strtok_r(paths, ",", &save); !rc && p; p = strtok_r(NULL, ",", &save)) rc = read_source(p, &src[i++], &t);
    if (!rc && t.n == 0) rc = cli_usage_error("tokenizer", "%s: no text to train on", a.data);
    if (!rc) {
        emdpo_diag diag;
        memset(&diag, 0, sizeof diag);
        emdpo_bpe_opts bo;
        emdpo_bpe_opts_default(&bo);
        bo.vocab_size = a.vocab;
        bo.min_count = a.min_count;
        bo.exact = !a.up_to;
        int trc = emdpo_tokenizer_train(t.s, t.len, t.n, &bo, &buf, &len, &entries, &diag);
        if (trc == EMDPO_ERR_LIMIT) rc = cli_usage_error("tokenizer", "%s: %s", a.data, diag.msg);
        else if (trc) rc = cli_fail("tokenizer", trc, &diag, "training failed");
    }
    int64_t n_tok = 0, n_bytes = 0;
    if (!rc && (rc = count_tokens(buf, len, entries, &t, &n_tok, &n_bytes)))
        rc = cli_fail("tokenizer", rc, NULL, "cannot check the vocabulary");
    if (!rc) rc = write_file(a.out, buf, len);
    if (!rc)
        printf("wrote %s: %d entries from %lld texts; %.2f bytes per token (%lld tokens)\n", a.out, entries,
               (long long)t.n, n_tok ? (double)n_bytes / (double)n_tok : 0.0, (long long)n_tok);
    emdpo_free(buf, len);
    emdpo_free((void *)t.s, (size_t)t.cap * sizeof *t.s);
    emdpo_free(t.len, (size_t)t.cap * sizeof *t.len);
    for (int k = 0; src && k < n_src; k++) {
        emdpo_lm_texts_free(src[k].texts);
        emdpo_data_free(src[k].pref);
    }
    emdpo_free(src, (size_t)n_src * sizeof *src);
    emdpo_free(paths, dlen + 1);
    return rc;
}
