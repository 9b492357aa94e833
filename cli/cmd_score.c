/* emdpo score: sequence log-probabilities of responses under a Llama policy
 * or a mixture of them (and log-ratios against a reference), plus the model
 * and tokenizer loading that sft and dpo share. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "cli.h"
#include "cli_lm.h"
#include "lm/io/llama2c.h"
#include "lm/io/llama_hf.h"
#include "lm/lm_mixture.h"
#include "lm/lm_train.h"

/* "key=value,..." into c; 0 or an exit code. */
static int parse_spec(const char *cmd, const char *spec, emdpo_llama_config *c) {
    int vals[8] = {0, 0, 2, 0, 0, 0, 256, 1}; /* dim hidden layers heads kv_heads vocab seq_len tied */
    static const char *const keys[8] = {"dim", "hidden", "layers", "heads", "kv_heads", "vocab", "seq_len", "tied"};
    const char *p = spec;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (!eq) return cli_usage_error(cmd, "--config: expected key=value in '%s'", p);
        size_t klen = (size_t)(eq - p);
        int k = 0;
        while (k < 8 && !(strlen(keys[k]) == klen && strncmp(keys[k], p, klen) == 0)) k++;
        if (k == 8)
            return cli_usage_error(cmd, "--config: unknown key '%.*s' (dim, hidden, layers, heads, kv_heads, vocab, "
                                        "seq_len, tied)", (int)klen, p);
        char *end;
        errno = 0;
        long v = strtol(eq + 1, &end, 10);
        if (end == eq + 1 || (*end && *end != ',') || errno || v < 0 || v > 1 << 24)
            return cli_usage_error(cmd, "--config: bad value for %s", keys[k]);
        vals[k] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (vals[0] <= 0) return cli_usage_error(cmd, "--config needs dim=N");
    if (vals[5] <= 0) return cli_usage_error(cmd, "--config needs vocab=N (the tokenizer's vocabulary size)");
    if (!vals[3]) vals[3] = vals[0] % 16 == 0 ? vals[0] / 16 : 1;
    if (!vals[4]) vals[4] = vals[3];
    if (!vals[1]) vals[1] = (2 * 4 * vals[0] / 3 + 31) / 32 * 32; /* llama2.c's SwiGLU width */
    emdpo_llama_config x = {vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6], vals[7] != 0, 1e-5f,
                            10000.0f};
    if (emdpo_llama_config_check(&x))
        return cli_usage_error(cmd, "--config: inconsistent architecture (dim divisible by heads, heads by "
                                    "kv_heads, an even head size)");
    *c = x;
    return 0;
}

int cli_lm_model(const char *cmd, const char *path, const char *spec, uint64_t seed, emdpo_llama **out) {
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    *out = NULL;
    if (path && spec) return cli_usage_error(cmd, "give --model or --config, not both");
    if (!path && !spec) return cli_usage_error(cmd, "missing --model (or --config for a fresh model)");
    if (spec) {
        emdpo_llama_config c;
        int rc = parse_spec(cmd, spec, &c);
        if (rc) return rc;
        if ((rc = emdpo_llama_create(&c, out))) return cli_fail(cmd, rc, NULL, "cannot create the model");
        emdpo_llama_init(*out, seed);
        return 0;
    }
    struct stat st;
    int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    int rc = is_dir ? emdpo_llama_hf_load(path, out, &diag) : emdpo_llama2c_load(path, out, &diag);
    if (rc) {
        if (!diag.file[0]) snprintf(diag.file, sizeof diag.file, "%s", path);
        return cli_fail(cmd, rc, &diag, "cannot load the model");
    }
    return 0;
}

int cli_lm_tokenizer(const char *cmd, const char *path, int vocab, emdpo_tokenizer **out) {
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc = emdpo_tokenizer_load(path, vocab, out, &diag);
    if (rc) {
        if (!diag.file[0]) snprintf(diag.file, sizeof diag.file, "%s", path);
        return cli_fail(cmd, rc, &diag, "cannot load the tokenizer");
    }
    return 0;
}

int cli_lm_lengths(const char *cmd, const emdpo_llama *m, int *max_length, int *max_prompt_length) {
    int seq = m->config.max_seq_len;
    if (*max_length == 0) *max_length = seq < 512 ? seq : 512;
    if (*max_prompt_length == 0) *max_prompt_length = *max_length / 2;
    if (*max_length < 2 || *max_length > seq)
        return cli_usage_error(cmd, "--max-length must be in 2..%d (the model's context)", seq);
    if (*max_prompt_length < 1 || *max_prompt_length >= *max_length)
        return cli_usage_error(cmd, "--max-prompt-length must be in 1..%d (below --max-length)", *max_length - 1);
    return 0;
}

typedef struct score_args {
    const char *model, *ref, *tokenizer, *data, *out;
    int max_length, max_prompt_length, batch, threads;
} score_args;

static void csv_text(FILE *fp, const char *s) {
    if (!s) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"') fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

static void write_scores(FILE *fp, const emdpo_lm_set *s, const emdpo_data *d, const double *lp, const double *rl) {
    fputs("example,item,annotator,response_tokens,logp", fp);
    fputs(rl ? ",ref_logp,logratio\n" : "\n", fp);
    for (int64_t g = 0, a = 0; g < s->n_group; g++) {
        while (d && d->annot_dec[a + 1] <= g) a++;
        for (int64_t i = s->group_off[g]; i < s->group_off[g + 1]; i++) {
            fprintf(fp, "%lld,%lld,", (long long)g + 1, (long long)(i - s->group_off[g]) + 1);
            if (d) csv_text(fp, d->annot_name[a]);
            fprintf(fp, ",%d,%.17g", emdpo_lm_seq_len(s, i) - s->seq_start[i], lp[i]);
            if (rl) fprintf(fp, ",%.17g,%.17g", rl[i], lp[i] - rl[i]);
            fputc('\n', fp);
        }
    }
}

/* The mixture's log-probability of every sequence: each member's, then
 * their log-sum-exp. */
static int score_mixture(const emdpo_lm_mixture *mix, const emdpo_lm_set *set, int batch, double *lp) {
    size_t n = (size_t)set->n_seq, nl = (size_t)mix->K * n;
    double *each = emdpo_malloc(nl * sizeof *each);
    if (!each) return EMDPO_ERR_NOMEM;
    int rc = EMDPO_OK;
    for (int k = 0; !rc && k < mix->K; k++)
        if (mix->w[k] > 0) rc = emdpo_lm_score(mix->model[k], set, batch, each + (size_t)k * n);
    if (!rc) emdpo_lm_mixture_logp(mix->K, mix->w, set->n_seq, each, lp);
    emdpo_free(each, nl * sizeof *each);
    return rc;
}

int cmd_score(int argc, char **argv) {
    score_args a = {0};
    a.batch = 8;
    cli_opt opts[] = {
        {"model", CLI_STR, &a.model, "CKPT", "policy: a llama2.c .bin, a Hugging Face directory or a mixture.json", 1,
         0},
        {"ref", CLI_STR, &a.ref, "CKPT", "reference model: adds ref_logp and logratio columns", 0, 0},
        {"tokenizer", CLI_STR, &a.tokenizer, "FILE", "llama2.c tokenizer.bin for the model's vocabulary", 1, 0},
        {"data", CLI_STR, &a.data, "FILE", "JSONL: preference data (prompt/chosen/rejected or ranking) or "
                                           "{\"prompt\",\"response\"} / {\"text\"} lines", 1, 0},
        {"out", CLI_STR, &a.out, "FILE", "write the CSV here (atomically) instead of standard output", 0, 0},
        {"max-length", CLI_INT, &a.max_length, "N", "truncate sequences to N tokens (min(512, context))", 0, 0},
        {"max-prompt-length", CLI_INT, &a.max_prompt_length, "N", "cut prompts to N tokens first (max-length/2)", 0, 0},
        {"batch", CLI_INT, &a.batch, "N", "sequences per forward pass (8)", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
    };
    cli_cmd cmd = {"score", "Sequence log-probabilities of responses (and log-ratios against a reference).",
                   "Prints CSV: example,item,annotator,response_tokens,logp[,ref_logp,logratio], one row per\n"
                   "response in file order within each decision (preference data: decisions grouped by\n"
                   "annotator as the dataset stores them; item 1 is the chosen one). logp sums the\n"
                   "log-probabilities of the response tokens and the EOS after them, given BOS + prompt.\n"
                   "Too-long sequences are truncated like the DPO reference implementation: the prompt\n"
                   "keeps BOS and its last tokens, then the response keeps its first.\n"
                   "For a mixture.json (emdpo aggregate's), logp is the mixture's: log sum_k w_k pi_k(y|x)\n"
                   "over its members, computed as a log-sum-exp of the members' logp.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (a.batch < 1) return cli_usage_error("score", "--batch must be >= 1");
    cli_set_threads(a.threads);
    emdpo_llama *m = NULL, *ref = NULL;
    emdpo_lm_mixture *mix = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_lm_texts *texts = NULL;
    emdpo_data *d = NULL;
    emdpo_lm_set *set = NULL;
    double *lp = NULL, *rl = NULL;
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    if (emdpo_lm_mixture_is_file(a.model)) {
        if ((rc = emdpo_lm_mixture_open(a.model, &mix, &diag))) {
            rc = cli_fail("score", rc, &diag, "cannot load the mixture");
            goto done;
        }
        m = mix->model[0]; /* borrowed: the members share vocabulary and context */
    } else if ((rc = cli_lm_model("score", a.model, NULL, 0, &m))) {
        goto done;
    }
    if (a.ref && (rc = cli_lm_model("score", a.ref, NULL, 0, &ref))) goto done;
    if (ref && ref->config.vocab_size != m->config.vocab_size) {
        rc = cli_usage_error("score", "--ref has vocabulary %d, --model %d", ref->config.vocab_size,
                             m->config.vocab_size);
        goto done;
    }
    if ((rc = cli_lm_tokenizer("score", a.tokenizer, m->config.vocab_size, &tok)) ||
        (rc = cli_lm_lengths("score", m, &a.max_length, &a.max_prompt_length)))
        goto done;
    if (ref && a.max_length > ref->config.max_seq_len) {
        rc = cli_usage_error("score", "--max-length %d exceeds the reference's context %d", a.max_length,
                             ref->config.max_seq_len);
        goto done;
    }
    rc = emdpo_lm_texts_read(a.data, &texts, &diag);
    if (rc == EMDPO_ERR_UNSUPPORTED) {
        if ((rc = cli_load_data("score", a.data, "jsonl", &d))) goto done;
        if (!emdpo_data_has_text(d)) {
            rc = cli_usage_error("score", "%s: responses have no text", a.data);
            goto done;
        }
        rc = emdpo_lm_set_from_data(d, tok, a.max_length, a.max_prompt_length, &set);
    } else if (rc) {
        rc = cli_fail("score", rc, &diag, "cannot read data");
        goto done;
    } else {
        rc = emdpo_lm_set_from_texts(texts, tok, a.max_length, a.max_prompt_length, &set);
    }
    if (rc) {
        rc = cli_fail("score", rc, NULL, "cannot tokenize the data");
        goto done;
    }
    lp = emdpo_malloc((size_t)set->n_seq * sizeof *lp);
    if (ref) rl = emdpo_malloc((size_t)set->n_seq * sizeof *rl);
    if (!lp || (ref && !rl)) {
        rc = cli_fail("score", EMDPO_ERR_NOMEM, NULL, "scoring");
        goto done;
    }
    if ((rc = mix ? score_mixture(mix, set, a.batch, lp) : emdpo_lm_score(m, set, a.batch, lp)) ||
        (ref && (rc = emdpo_lm_score(ref, set, a.batch, rl)))) {
        rc = cli_fail("score", rc, NULL, "scoring failed");
        goto done;
    }
    if (set->n_truncated)
        fprintf(stderr, "emdpo score: note: %lld of %lld sequences were truncated to %d tokens\n",
                (long long)set->n_truncated, (long long)set->n_seq, a.max_length);
    if (a.out) {
        emdpo_afile af;
        if (emdpo_afile_open(&af, a.out)) {
            rc = cli_usage_error("score", "cannot write %s", a.out);
            goto done;
        }
        write_scores(af.fp, set, d, lp, rl);
        if (emdpo_afile_commit(&af)) rc = cli_usage_error("score", "cannot write %s", a.out);
    } else {
        write_scores(stdout, set, d, lp, rl);
        if (fflush(stdout)) rc = cli_fail("score", EMDPO_ERR_IO, NULL, "writing standard output");
    }
done:
    if (set) {
        emdpo_free(lp, lp ? (size_t)set->n_seq * sizeof *lp : 0);
        emdpo_free(rl, rl ? (size_t)set->n_seq * sizeof *rl : 0);
    }
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
    emdpo_lm_texts_free(texts);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(ref);
    if (!mix) emdpo_llama_free(m);
    emdpo_lm_mixture_free(mix);
    return rc;
}
