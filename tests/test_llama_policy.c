/* The Llama policy family behind the seam, on a tiny random Llama and tiny
 * text data: decision log-probabilities against a direct computation, the
 * reference scored once, zero-weight types left bit-identical, restart and
 * weight normalisation semantics, annotator embeddings against a direct
 * computation, a small EM fit that separates two groups with opposite
 * preferences, determinism, and allocation failures handled cleanly. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "check.h"
#include "core/em.h"
#include "core/heldout.h"
#include "data/data.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/llama_policy.h"
#include "lm/lm_embed.h"
#include "lm/lm_train.h"
#include "testdata.h"



static emdpo_llama *make_model(uint64_t seed) {
    emdpo_llama_config c = {.dim = 16, .hidden_dim = 32, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                            .vocab_size = TESTDATA_LETTER_VOCAB, .max_seq_len = 64, .tied = 0, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f};
    emdpo_llama *m = NULL;
    if (emdpo_llama_create(&c, &m)) return NULL;
    emdpo_llama_init(m, seed);
    return m;
}

/* ---- data ------------------------------------------------------------------- */

/* Three annotators: pairs, a three-way choice and a ranking; u3's last
 * decision repeats u1's first, so two sequences are duplicates. */
static emdpo_data *small_data(void) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(0, &b)) return NULL;
    const char *r1[2] = {"x y z", "m n"}, *r2[3] = {"x x y", "n o p", "o o"}, *r3[3] = {"z y x", "o o", "p m n"};
    const char *r4[2] = {"y z", "p"};
    int rc = emdpo_data_builder_add(b, "u1", NULL, "a b c", 2, 1, NULL, r1) ||
             emdpo_data_builder_add(b, "u1", NULL, "d e", 3, 1, NULL, r2) ||
             emdpo_data_builder_add(b, "u2", NULL, "f g h i", 3, 2, NULL, r3) ||
             emdpo_data_builder_add(b, "u3", NULL, "j", 2, 1, NULL, r4) ||
             emdpo_data_builder_add(b, "u3", NULL, NULL, 2, 1, NULL, r1) ||
             emdpo_data_builder_add(b, "u3", NULL, "a b c", 2, 1, NULL, r1);
    emdpo_data *d = NULL;
    if (rc) {
        emdpo_data_builder_free(b);
        return NULL;
    }
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

/* n annotators per group, m decisions each over two fixed responses;
 * group A prefers the first, group B the second. */
static emdpo_data *two_groups(int n, int m) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(0, &b)) return NULL;
    static const char *const prompts[4] = {"a b", "c d e", "f", "g h"};
    const char *ab[2] = {"x y z", "m n"}, *ba[2] = {"m n", "x y z"};
    int rc = 0;
    for (int g = 0; g < 2 && !rc; g++)
        for (int i = 0; i < n && !rc; i++) {
            char name[16];
            snprintf(name, sizeof name, "%c%d", "AB"[g], i);
            for (int j = 0; j < m && !rc; j++)
                rc = emdpo_data_builder_add(b, name, g ? "B" : "A", prompts[(i + j) % 4], 2, 1, NULL, g ? ba : ab);
        }
    emdpo_data *d = NULL;
    if (rc) {
        emdpo_data_builder_free(b);
        return NULL;
    }
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

static void opts_for_test(emdpo_lm_mstep_opts *o) {
    emdpo_lm_mstep_opts_init(o);
    o->beta = 0.5;
    o->max_length = 32;
    o->max_prompt_length = 16;
    o->optim.lr = 1e-3;
    o->optim.warmup = 0;
    o->batch = 2;
    o->steps = 3;
    o->score_batch = 3;
    o->seed = 5;
}

/* The Plackett-Luce log-probability written out, independent of choice.c. */
static double pl_logp(const double *u, int n, int stages) {
    double lp = 0.0;
    for (int t = 0; t < stages; t++) {
        double z = 0.0;
        for (int q = t; q < n; q++) z += exp(u[q]);
        lp += u[t] - log(z);
    }
    return lp;
}

/* logp (n_dec, K) computed from scratch: each item scored alone under type
 * k and the reference, beta times the log-ratio, Plackett-Luce. */
static void direct_logp(const emdpo_policy *pol, const emdpo_llama *sft, const emdpo_tokenizer *tok,
                        const emdpo_data *d, const emdpo_lm_mstep_opts *o, double *logp) {
    int K = pol->K;
    emdpo_lm_set *s = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, o->max_length, o->max_prompt_length, &s), EMDPO_OK);
    if (!s) return;
    double *ref = malloc((size_t)s->n_seq * sizeof *ref), *lp = malloc((size_t)s->n_seq * sizeof *lp), u[8];
    CHECK_EQ_INT(emdpo_lm_score(sft, s, 1, ref), EMDPO_OK);
    for (int k = 0; k < K; k++) {
        CHECK_EQ_INT(emdpo_lm_score(emdpo_llama_policy_model(pol, k), s, 1, lp), EMDPO_OK);
        for (int64_t j = 0; j < d->n_dec; j++) {
            int n = emdpo_dec_n_items(d, j);
            for (int q = 0; q < n; q++) {
                int64_t i = d->dec_item[j] + q;
                u[q] = o->beta * (lp[i] - ref[i]);
            }
            logp[j * K + k] = pl_logp(u, n, d->dec_stages[j]);
        }
    }
    free(ref);
    free(lp);
    emdpo_lm_set_free(s);
}

static int params_equal(const emdpo_llama *a, const emdpo_llama *b) {
    return a->num_params == b->num_params && memcmp(a->param_buf, b->param_buf, a->num_params * sizeof(float)) == 0;
}

/* ---- (a) decision_logp, (b) reference once --------------------------------- */

static void test_decision_logp(const emdpo_tokenizer *tok) {
    emdpo_data *d = small_data();
    emdpo_llama *sft = make_model(3);
    CHECK(d && sft);
    if (!d || !sft) return;
    emdpo_lm_mstep_opts o;
    opts_for_test(&o);
    const int K = 2;
    emdpo_policy *pol = NULL;
    CHECK_EQ_INT(emdpo_llama_policy_create(K, sft, tok, &o, d, &pol), EMDPO_OK);
    if (!pol) return;
    CHECK(strcmp(pol->ops->family, "llama") == 0);
    int64_t refs, fw;
    emdpo_llama_policy_counters(pol, &refs, &fw);
    CHECK_EQ_INT(refs, 1);
    CHECK_EQ_INT(fw, 0);
    size_t nd = (size_t)d->n_dec;
    double *lp = malloc(nd * K * sizeof *lp), *want = malloc(nd * K * sizeof *want);
    double *start = malloc(nd * K * sizeof *start);
    /* At the start every type is the reference: all utilities are 0. */
    CHECK_EQ_INT(pol->ops->decision_logp(pol, d, start), EMDPO_OK);
    for (int64_t j = 0; j < d->n_dec; j++) {
        int n = emdpo_dec_n_items(d, j);
        double u0[8] = {0};
        for (int k = 0; k < K; k++) CHECK_CLOSE(start[j * K + k], pl_logp(u0, n, d->dec_stages[j]), 1e-12);
    }
    /* After an M-step the types differ from the reference and each other. */
    double w[3 * 2] = {1, 0, 0.25, 0.75, 0, 1};
    unsigned char active[2] = {1, 1};
    emdpo_mstep_info info;
    double al[3 * 2];
    CHECK(d->n_annot == 3);
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, active, al, &info), EMDPO_OK);
    CHECK_EQ_INT(info.iterations, 2 * o.steps);
    CHECK(info.converged == 0);
    CHECK(!params_equal(emdpo_llama_policy_model(pol, 0), sft));
    CHECK(!params_equal(emdpo_llama_policy_model(pol, 0), emdpo_llama_policy_model(pol, 1)));
    direct_logp(pol, sft, tok, d, &o, want);
    double *again = malloc(nd * K * sizeof *again);
    CHECK_EQ_INT(pol->ops->decision_logp(pol, d, again), EMDPO_OK);
    /* The M-step's annotator sums are the policy's at its final parameters. */
    double obj = 0.0;
    for (int64_t i = 0; i < d->n_annot; i++)
        for (int k = 0; k < K; k++) {
            double sum = 0.0;
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) sum += again[j * K + k];
            CHECK(al[i * K + k] == sum);
            obj += w[i * K + k] * sum;
        }
    CHECK_CLOSE(info.objective, obj, 1e-12);
    memcpy(lp, again, nd * K * sizeof *lp);
    int moved = 0;
    for (size_t q = 0; q < nd * K; q++) {
        CHECK_CLOSE(again[q], want[q], 1e-5);
        moved += fabs(want[q] - start[q]) > 1e-3;
    }
    CHECK_MSG(moved == (int)(nd * K), "%d of %d decision log-probabilities moved", moved, (int)(nd * K));
    /* (b) Several decision_logp calls: no new reference pass; each scores
     * every item under every type, and the M-step's trainer ran no
     * reference forward (steps x accum forwards per type). */
    /* Each distinct sequence is run once: two of the items repeat. */
    int64_t per_pass = (d->n_items - 2 + o.score_batch - 1) / o.score_batch;
    CHECK_EQ_INT(pol->ops->decision_logp(pol, d, again), EMDPO_OK);
    emdpo_llama_policy_counters(pol, &refs, &fw);
    CHECK_EQ_INT(refs, 1);
    CHECK_EQ_INT(fw, 3 * K * per_pass + K * o.steps + K * per_pass);
    /* A clone shares the cache: still one reference pass. */
    emdpo_policy *cl = NULL;
    CHECK_EQ_INT(pol->ops->clone(pol, &cl), EMDPO_OK);
    CHECK_EQ_INT(cl->ops->decision_logp(cl, d, again), EMDPO_OK);
    for (size_t q = 0; q < nd * K; q++) CHECK(again[q] == lp[q]);
    emdpo_llama_policy_counters(cl, &refs, NULL);
    CHECK_EQ_INT(refs, 1);
    /* Another dataset is tokenized and scored anew (the cache is keyed by
     * the data), and the original again after it. */
    emdpo_data *d2 = two_groups(2, 2);
    double *lp2 = malloc((size_t)d2->n_dec * K * sizeof *lp2);
    CHECK_EQ_INT(cl->ops->decision_logp(cl, d2, lp2), EMDPO_OK);
    emdpo_llama_policy_counters(cl, &refs, NULL);
    CHECK_EQ_INT(refs, 2);
    CHECK_EQ_INT(cl->ops->decision_logp(cl, d, again), EMDPO_OK);
    for (size_t q = 0; q < nd * K; q++) CHECK(again[q] == lp[q]);
    emdpo_llama_policy_counters(pol, &refs, NULL);
    CHECK_EQ_INT(refs, 1);
    /* copy_type, and its refusals. */
    CHECK_EQ_INT(cl->ops->copy_type(cl, 1, pol, 0), EMDPO_OK);
    CHECK(params_equal(emdpo_llama_policy_model(cl, 1), emdpo_llama_policy_model(pol, 0)));
    CHECK_EQ_INT(cl->ops->copy_type(cl, 2, pol, 0), EMDPO_ERR_INVALID_ARG);
    CHECK(emdpo_llama_policy_model(cl, 2) == NULL);
    /* Bad weights and options are refused. */
    double bad[3 * 2] = {1, 0, -1, 1, 0, 1};
    CHECK_EQ_INT(pol->ops->mstep(pol, d, bad, active, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_policy *x = NULL;
    CHECK_EQ_INT(emdpo_llama_policy_create(0, sft, tok, &o, d, &x), EMDPO_ERR_INVALID_ARG);
    emdpo_lm_mstep_opts ob = o;
    ob.beta = 0;
    CHECK_EQ_INT(emdpo_llama_policy_create(K, sft, tok, &ob, d, &x), EMDPO_ERR_INVALID_ARG);
    ob = o;
    ob.max_length = 65;
    CHECK_EQ_INT(emdpo_llama_policy_create(K, sft, tok, &ob, d, &x), EMDPO_ERR_LIMIT);
    ob = o;
    ob.optim.eps = 0;
    CHECK_EQ_INT(emdpo_llama_policy_create(K, sft, tok, &ob, d, &x), EMDPO_ERR_INVALID_ARG);
    CHECK(x == NULL);
    /* Feature data has no text to score. */
    emdpo_data_builder *fb;
    emdpo_data *fd = NULL;
    double feat[2] = {1, 0};
    CHECK_EQ_INT(emdpo_data_builder_create(1, &fb), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(fb, "u", NULL, "p", 2, 1, feat, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_finish(fb, &fd), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_policy_create(K, sft, tok, &o, fd, &x), EMDPO_ERR_UNSUPPORTED);
    CHECK_EQ_INT(pol->ops->decision_logp(pol, fd, lp), EMDPO_ERR_UNSUPPORTED);
    emdpo_data_free(fd);
    free(lp);
    free(start);
    free(lp2);
    free(want);
    free(again);
    emdpo_policy_free(cl);
    emdpo_policy_free(pol);
    emdpo_data_free(d2);
    emdpo_data_free(d);
    emdpo_llama_free(sft);
}

/* ---- (c) zero weights, restart, weight normalisation ------------------------- */

static emdpo_policy *policy_after(const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *d,
                                  const emdpo_lm_mstep_opts *o, const double *w1, const double *w2) {
    emdpo_policy *pol = NULL;
    unsigned char active[2] = {1, 1};
    CHECK_EQ_INT(emdpo_llama_policy_create(2, sft, tok, o, d, &pol), EMDPO_OK);
    if (!pol) return NULL;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w1, active, NULL, NULL), EMDPO_OK);
    if (w2) CHECK_EQ_INT(pol->ops->mstep(pol, d, w2, active, NULL, NULL), EMDPO_OK);
    return pol;
}

static void test_mstep(const emdpo_tokenizer *tok) {
    emdpo_data *d = small_data();
    emdpo_llama *sft = make_model(4);
    CHECK(d && sft);
    if (!d || !sft) return;
    emdpo_lm_mstep_opts o;
    opts_for_test(&o);
    double w1[6] = {1, 0, 0.5, 0, 0.25, 0}, w2[6] = {0.5, 1, 1, 0.5, 0, 2}, w3[6] = {0, 1, 1, 0, 1, 1};
    /* Type 2 weighs nothing in the first M-step: bit-identical to the SFT
     * model, and its annotator sums are the reference's (sums of log(1/n)). */
    emdpo_policy *pol = NULL;
    CHECK_EQ_INT(emdpo_llama_policy_create(2, sft, tok, &o, d, &pol), EMDPO_OK);
    unsigned char active[2] = {1, 1};
    double al[3 * 2];
    CHECK(d->n_annot == 3);
    emdpo_mstep_info info;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w1, active, al, &info), EMDPO_OK);
    CHECK_EQ_INT(info.iterations, o.steps);
    CHECK(!params_equal(emdpo_llama_policy_model(pol, 0), sft));
    CHECK(params_equal(emdpo_llama_policy_model(pol, 1), sft));
    for (int64_t i = 0; i < d->n_annot; i++) {
        double u0[8] = {0}, sum = 0.0;
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++)
            sum += pl_logp(u0, emdpo_dec_n_items(d, j), d->dec_stages[j]);
        CHECK_CLOSE(al[i * 2 + 1], sum, 1e-12);
    }
    /* After training, zero weights again leave the trained type alone. */
    emdpo_llama *keep = make_model(1);
    memcpy(keep->param_buf, emdpo_llama_policy_model(pol, 0)->param_buf, keep->num_params * sizeof(float));
    double w0[6] = {0, 1, 0, 1, 0, 1};
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w0, active, NULL, &info), EMDPO_OK);
    CHECK(params_equal(emdpo_llama_policy_model(pol, 0), keep));
    CHECK(isnan(info.objective));
    /* An inactive type is neither trained nor scored. */
    unsigned char only2[2] = {0, 1};
    al[0] = 123.0;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w2, only2, al, NULL), EMDPO_OK);
    CHECK(params_equal(emdpo_llama_policy_model(pol, 0), keep));
    CHECK(al[0] == 123.0);
    emdpo_policy_free(pol);
    emdpo_llama_free(keep);

    /* Restart: the second M-step does not depend on where the first left
     * the policy; warm start does. */
    for (int restart = 0; restart < 2; restart++) {
        o.restart = restart;
        emdpo_policy *a = policy_after(sft, tok, d, &o, w1, w2), *b = policy_after(sft, tok, d, &o, w3, w2);
        for (int k = 0; k < 2 && a && b; k++) {
            int same = params_equal(emdpo_llama_policy_model(a, k), emdpo_llama_policy_model(b, k));
            CHECK_MSG(same == restart, "restart %d type %d: same %d", restart, k, same);
        }
        emdpo_policy_free(a);
        emdpo_policy_free(b);
    }
    o.restart = 0;
    /* MEAN normalisation makes the M-step blind to a common scale of the
     * weights (a power of 2 keeps it exact); NONE does not. */
    double w1q[6];
    for (int q = 0; q < 6; q++) w1q[q] = w1[q] * 0.25;
    for (int wn = 0; wn < 2; wn++) {
        o.weight_norm = (emdpo_weight_norm)wn;
        emdpo_policy *a = policy_after(sft, tok, d, &o, w1, NULL), *b = policy_after(sft, tok, d, &o, w1q, NULL);
        if (a && b) {
            int same = params_equal(emdpo_llama_policy_model(a, 0), emdpo_llama_policy_model(b, 0));
            CHECK_MSG(same == (wn == EMDPO_WEIGHT_NORM_MEAN), "wnorm %d: same %d", wn, same);
        }
        emdpo_policy_free(a);
        emdpo_policy_free(b);
    }
    emdpo_data_free(d);
    emdpo_llama_free(sft);
}

/* ---- annotator embeddings -------------------------------------------------- */

static void test_embed(const emdpo_tokenizer *tok) {
    emdpo_data *d = small_data();
    emdpo_llama *m = make_model(6);
    emdpo_lm_set *s = NULL;
    CHECK(d && m);
    if (!d || !m) return;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, 32, 16, &s), EMDPO_OK);
    int C = m->config.dim;
    size_t n = (size_t)d->n_annot * C;
    double *e = malloc(n * sizeof *e), *want = calloc(n, sizeof *want);
    CHECK_EQ_INT(emdpo_lm_embed_annotators(m, d, s, 2, e), EMDPO_OK);
    /* Directly: each chosen response alone, the mean of its final
     * hidden states over its response tokens, averaged per annotator. */
    emdpo_llama_acts *a = NULL;
    CHECK_EQ_INT(emdpo_llama_acts_create(&m->config, 1, s->longest, 0, &a), EMDPO_OK);
    for (int64_t i = 0; i < d->n_annot; i++) {
        int64_t nd = d->annot_dec[i + 1] - d->annot_dec[i];
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
            int64_t q = s->group_off[j];
            int len = emdpo_lm_seq_len(s, q), st = s->seq_start[q], toks[64];
            for (int t = 0; t < len; t++) toks[t] = s->tok[s->seq_off[q] + t];
            CHECK_EQ_INT(emdpo_llama_forward(m, a, toks, NULL, 1, len), EMDPO_OK);
            for (int c = 0; c < C; c++) {
                double sum = 0.0;
                for (int t = st; t < len; t++) sum += a->lnf[(size_t)t * C + c];
                want[i * C + c] += sum / (len - st) / (double)nd;
            }
        }
    }
    double diff = 0.0, norm = 0.0;
    for (size_t q = 0; q < n; q++) {
        diff = fmax(diff, fabs(e[q] - want[q]));
        norm = fmax(norm, fabs(want[q]));
    }
    CHECK_MSG(diff < 1e-5 * norm && norm > 0.1, "embedding differs by %g (scale %g)", diff, norm);
    /* Batch size changes nothing but the grouping of forwards. */
    double *e1 = malloc(n * sizeof *e1);
    CHECK_EQ_INT(emdpo_lm_embed_annotators(m, d, s, 5, e1), EMDPO_OK);
    for (size_t q = 0; q < n; q++) CHECK_CLOSE(e1[q], e[q], 1e-5);
    CHECK_EQ_INT(emdpo_lm_embed_annotators(m, d, s, 0, e1), EMDPO_ERR_INVALID_ARG);
    emdpo_data *d2 = two_groups(2, 1);
    CHECK_EQ_INT(emdpo_lm_embed_annotators(m, d2, s, 2, e1), EMDPO_ERR_INVALID_ARG);
    emdpo_data_free(d2);
    m->config.max_seq_len = 4;
    CHECK_EQ_INT(emdpo_lm_embed_annotators(m, d, s, 2, e1), EMDPO_ERR_LIMIT);
    m->config.max_seq_len = 64;
    emdpo_llama_acts_free(a);
    free(e);
    free(e1);
    free(want);
    emdpo_lm_set_free(s);
    emdpo_data_free(d);
    emdpo_llama_free(m);
}

/* ---- (d) EM end to end, (e) determinism -------------------------------------- */

typedef struct fit_out {
    double *gamma;
    float *params;  /* both types' parameters, back to back */
    double loglik;
} fit_out;

static fit_out fit_groups(const emdpo_tokenizer *tok, const emdpo_data *d, emdpo_init init) {
    fit_out f = {NULL, NULL, NAN};
    emdpo_llama *sft = make_model(8);
    emdpo_lm_mstep_opts o;
    opts_for_test(&o);
    o.steps = 4;
    o.batch = 4;
    emdpo_policy *pol = NULL;
    CHECK_EQ_INT(emdpo_llama_policy_create(2, sft, tok, &o, d, &pol), EMDPO_OK);
    emdpo_em_opts eo;
    emdpo_em_opts_init(&eo);
    eo.max_iter = 3;
    eo.tol = 0;
    eo.seed = 3;
    eo.init = init;
    int C = sft->config.dim;
    double *summary = malloc((size_t)d->n_annot * C * sizeof *summary);
    emdpo_lm_set *s = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, 32, 16, &s), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_embed_annotators(sft, d, s, 4, summary), EMDPO_OK);
    eo.summary = summary;
    eo.q = C;
    emdpo_em_result res;
    CHECK_EQ_INT(emdpo_em_fit(&pol, d, &eo, &res), EMDPO_OK);
    if (pol) {
        size_t np = sft->num_params;
        f.gamma = malloc((size_t)d->n_annot * 2 * sizeof *f.gamma);
        f.params = malloc(2 * np * sizeof *f.params);
        memcpy(f.gamma, res.gamma, (size_t)d->n_annot * 2 * sizeof *f.gamma);
        for (int k = 0; k < 2; k++)
            memcpy(f.params + k * np, emdpo_llama_policy_model(pol, k)->param_buf, np * sizeof(float));
        f.loglik = res.loglik;
        CHECK(res.n_trace >= 2);
        /* The policy the fit returned, with its eta, gives the returned
         * log-likelihood (that of its best iterate), still from the one
         * reference pass. */
        double ll;
        CHECK_EQ_INT(emdpo_heldout_loglik(pol, res.eta, d, NULL, &ll), EMDPO_OK);
        CHECK_CLOSE(ll, res.loglik, 1e-9 * fabs(ll));
        int64_t refs;
        emdpo_llama_policy_counters(pol, &refs, NULL);
        CHECK_EQ_INT(refs, 1);
    }
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    emdpo_lm_set_free(s);
    free(summary);
    emdpo_llama_free(sft);
    return f;
}

/* Share of annotators whose posterior puts > 0.5 on their group's type,
 * under the better of the two labellings. */
static double separation(const emdpo_data *d, const double *gamma) {
    int64_t hit[2] = {0, 0};
    for (int64_t i = 0; i < d->n_annot; i++) {
        int g = d->annot_group[i];
        for (int perm = 0; perm < 2; perm++) hit[perm] += gamma[i * 2 + (g ^ perm)] > 0.5;
    }
    return (double)(hit[0] > hit[1] ? hit[0] : hit[1]) / (double)d->n_annot;
}

/* Token-contrast summaries against counts from encoding each response's
 * text directly (+ EOS), and bucketing as folding the full vector. */
static void test_choice_summaries(const emdpo_tokenizer *tok) {
    emdpo_data *d = small_data();
    emdpo_lm_set *s = NULL;
    CHECK(d != NULL);
    if (!d) return;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, 32, 16, &s), EMDPO_OK);
    int V = emdpo_tokenizer_vocab_size(tok), D = 7;
    size_t n = (size_t)d->n_annot * V;
    double *got = malloc(n * sizeof *got), *want = calloc(n, sizeof *want);
    double *folded = malloc((size_t)d->n_annot * D * sizeof *folded);
    CHECK_EQ_INT(emdpo_lm_choice_summaries(d, s, V, got), EMDPO_OK);
    for (int64_t a = 0; a < d->n_annot; a++) {
        int64_t nd = d->annot_dec[a + 1] - d->annot_dec[a];
        for (int64_t j = d->annot_dec[a]; j < d->annot_dec[a + 1]; j++) {
            int64_t first = d->dec_item[j], ni = d->dec_item[j + 1] - first;
            for (int64_t i = first; i < first + ni; i++) {
                const char *text = d->item_text[i] ? d->item_text[i] : "";
                int ids[64];
                size_t m = 0;
                CHECK_EQ_INT(emdpo_tokenizer_encode(tok, text, strlen(text), 0, ids, 63, &m), EMDPO_OK);
                ids[m++] = EMDPO_TOK_EOS;
                double w = ((i == first) - 1.0 / (double)ni) / (double)nd;
                for (size_t t = 0; t < m; t++) want[a * V + ids[t]] += w;
            }
        }
    }
    double diff = 0.0, norm = 0.0;
    for (size_t q = 0; q < n; q++) {
        diff = fmax(diff, fabs(got[q] - want[q]));
        norm = fmax(norm, fabs(want[q]));
    }
    CHECK_MSG(diff < 1e-12 && norm > 0.1, "summaries differ by %g (scale %g)", diff, norm);
    CHECK_EQ_INT(emdpo_lm_choice_summaries(d, s, D, folded), EMDPO_OK);
    double fdiff = 0.0;
    for (int64_t a = 0; a < d->n_annot; a++)
        for (int b = 0; b < D; b++) {
            double sum = 0.0;
            for (int t = b; t < V; t += D) sum += want[a * V + t];
            fdiff = fmax(fdiff, fabs(folded[a * D + b] - sum));
        }
    CHECK_MSG(fdiff < 1e-12, "folded summaries differ by %g", fdiff);
    CHECK_EQ_INT(emdpo_lm_choice_summaries(d, s, 0, folded), EMDPO_ERR_INVALID_ARG);
    emdpo_data *d2 = two_groups(2, 1);
    CHECK_EQ_INT(emdpo_lm_choice_summaries(d2, s, D, folded), EMDPO_ERR_INVALID_ARG);
    emdpo_data_free(d2);
    free(got);
    free(want);
    free(folded);
    emdpo_lm_set_free(s);
    emdpo_data_free(d);
}

static void test_em(const emdpo_tokenizer *tok) {
    emdpo_data *d = two_groups(6, 4);
    CHECK(d != NULL);
    if (!d) return;
    for (int init = 0; init < 2; init++) {
        fit_out a = fit_groups(tok, d, (emdpo_init)init);
        if (!a.gamma) continue;
        double sep = separation(d, a.gamma);
        CHECK_MSG(sep >= 0.8, "init %d: %.2f of annotators on their group's type", init, sep);
        /* (e) The same seed gives the same bits. */
        if (init == EMDPO_INIT_KMEANS) {
            fit_out b = fit_groups(tok, d, (emdpo_init)init);
            emdpo_llama *probe = make_model(1);
            if (b.gamma) {
                CHECK(memcmp(a.gamma, b.gamma, (size_t)d->n_annot * 2 * sizeof(double)) == 0);
                CHECK(memcmp(a.params, b.params, 2 * probe->num_params * sizeof(float)) == 0);
                CHECK(a.loglik == b.loglik);
            }
            emdpo_llama_free(probe);
            free(b.gamma);
            free(b.params);
        }
        free(a.gamma);
        free(a.params);
    }
    emdpo_data_free(d);
}

/* ---- allocation failures ------------------------------------------------------- */

static void test_failalloc(const emdpo_tokenizer *tok) {
    emdpo_data *d = small_data();
    emdpo_llama *sft = make_model(2);
    emdpo_lm_mstep_opts o;
    opts_for_test(&o);
    o.steps = 1;
    double w[6] = {1, 0, 0.5, 0.5, 0, 1}, lp[2 * 8], *emb = malloc((size_t)d->n_annot * 16 * sizeof *emb);
    unsigned char active[2] = {1, 1};
    emdpo_lm_set *s = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, 32, 16, &s), EMDPO_OK);
    int done = 0;
    for (long n = 0; !done && n < 5000; n++) {
        failalloc_install(n, 0);
        emdpo_policy *pol = NULL, *cl = NULL;
        int rc = emdpo_llama_policy_create(2, sft, tok, &o, d, &pol);
        if (!rc) rc = pol->ops->decision_logp(pol, d, lp);
        if (!rc) rc = pol->ops->clone(pol, &cl);
        if (!rc) rc = cl->ops->mstep(cl, d, w, active, lp, NULL);
        if (!rc) rc = emdpo_lm_embed_annotators(sft, d, s, 2, emb);
        done = rc == EMDPO_OK;
        CHECK(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM);
        emdpo_policy_free(cl);
        emdpo_policy_free(pol);
        long live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(live == 0, "fail at %ld: %ld blocks leaked", n, live);
    }
    CHECK(done);
    CHECK_EQ_INT(failalloc_size_errors(), 0);
    free(emb);
    emdpo_lm_set_free(s);
    emdpo_data_free(d);
    emdpo_llama_free(sft);
}

/* ---- resumable fits ------------------------------------------------------------ */

static void clear_dir(const char *dir) {
    DIR *dp = opendir(dir);
    struct dirent *e;
    char path[512];
    while (dp && (e = readdir(dp)))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (dp) closedir(dp);
}

/* A fit's posterior, log-likelihood and every type's parameters, for
 * comparing bits. */
typedef struct fit_bits {
    double gamma[64], loglik;
    float *params;
    size_t n;
} fit_bits;

static int take_bits(const emdpo_fit *f, const emdpo_data *d, fit_bits *b) {
    size_t n = emdpo_fit_model(f, 0)->num_params;
    b->n = 2 * n;
    if (!(b->params = malloc(b->n * sizeof *b->params)) || emdpo_fit_posterior(f, b->gamma, d->n_annot, 2)) return 1;
    for (int k = 0; k < 2; k++) memcpy(b->params + k * n, emdpo_fit_model(f, k)->param_buf, n * sizeof(float));
    b->loglik = emdpo_fit_loglik(f);
    return 0;
}

static int same_bits(const fit_bits *a, const fit_bits *b, int64_t n_annot) {
    return a->n == b->n && a->loglik == b->loglik &&
           memcmp(a->gamma, b->gamma, (size_t)n_annot * 2 * sizeof(double)) == 0 &&
           memcmp(a->params, b->params, a->n * sizeof(float)) == 0;
}

/* A fit stopped at every 11th allocation (by failing it: the state on disk
 * is that of a kill at that point) and resumed ends with the same bits as
 * one never stopped; a failing resume leaks nothing either. Two starts,
 * so that a resume may fall in the second while the best iterate is the
 * first's. */
static void test_resume(const emdpo_tokenizer *tok) {
    emdpo_data *d = two_groups(3, 2);
    emdpo_llama *sft = make_model(4);
    char dir[] = "/tmp/emdpo_test_resume_XXXXXX";
    CHECK(d && sft && mkdtemp(dir));
    if (!d || !sft) return;
    char ck[64];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    emdpo_lm_fit_opts o;
    emdpo_lm_fit_opts_init(&o);
    o.k = 2;
    o.em.max_iter = 2;
    o.em.starts = 2;
    o.em.patience = 5;
    opts_for_test(&o.mstep);
    o.mstep.steps = 2;
    o.checkpoint = ck;
    emdpo_diag diag;
    emdpo_fit *f = NULL;
    fit_bits ref = {0};
    int rc = emdpo_lm_fit(sft, tok, d, &o, &f, &diag);
    CHECK_MSG(rc == EMDPO_OK, "%s", diag.msg);
    if (rc || take_bits(f, d, &ref)) return;
    emdpo_fit_free(f);
    f = NULL;
    clear_dir(ck);
    failalloc_install(-1, 0);
    CHECK_EQ_INT(emdpo_lm_fit(sft, tok, d, &o, &f, &diag), EMDPO_OK);
    emdpo_fit_free(f);
    f = NULL;
    long count = failalloc_count();
    failalloc_uninstall();
    int resumed = 0;
    for (long n = 0; n < count; n += 11) {
        clear_dir(ck);
        o.resume = 0;
        failalloc_install(n, 0);
        rc = emdpo_lm_fit(sft, tok, d, &o, &f, &diag);
        emdpo_fit_free(f);
        f = NULL;
        long live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_ERR_NOMEM || rc == EMDPO_OK, "fail at %ld: %d %s", n, rc, diag.msg);
        CHECK_MSG(live == 0, "fail at %ld: %ld blocks leaked", n, live);
        if (rc != EMDPO_ERR_NOMEM) continue;
        char state[96];
        snprintf(state, sizeof state, "%s/fit_state.bin", ck);
        if (access(state, F_OK) != 0) continue;
        o.resume = 1;
        /* the resume itself fails once, at an allocation of its own */
        failalloc_install(n % 50, 0);
        rc = emdpo_lm_fit(sft, tok, d, &o, &f, &diag);
        emdpo_fit_free(f);
        f = NULL;
        live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_ERR_NOMEM || rc == EMDPO_OK, "resume failing at %ld: %d %s", n % 50, rc, diag.msg);
        CHECK_MSG(live == 0, "resume failing at %ld: %ld blocks leaked", n % 50, live);
        rc = emdpo_lm_fit(sft, tok, d, &o, &f, &diag);
        CHECK_MSG(rc == EMDPO_OK, "stopped at %ld, resumed: %s", n, diag.msg);
        fit_bits b = {0};
        if (!rc && !take_bits(f, d, &b)) {
            CHECK_MSG(same_bits(&ref, &b, d->n_annot), "stopped at allocation %ld of %ld: other bits", n, count);
            resumed++;
        }
        free(b.params);
        emdpo_fit_free(f);
        f = NULL;
    }
    CHECK_MSG(resumed >= 10, "%d resumed fits", resumed);
    CHECK_EQ_INT(failalloc_size_errors(), 0);
    /* a state of other settings is refused, naming it */
    o.resume = 1;
    o.mstep.beta = 0.25;
    CHECK_EQ_INT(emdpo_lm_fit(sft, tok, d, &o, &f, &diag), EMDPO_ERR_PARSE);
    CHECK(strstr(diag.file, "fit_state.bin") && strstr(diag.msg, "other data, model or settings"));
    free(ref.params);
    clear_dir(ck);
    rmdir(ck);
    rmdir(dir);
    emdpo_data_free(d);
    emdpo_llama_free(sft);
}

/* ---- LoRA types -------------------------------------------------------------- */

/* Types as adapters on one shared SFT model: fresh ones are the
 * reference exactly; an M-step trains each type's adapter and never the
 * SFT model; the decision log-probabilities are those of the SFT model
 * under each type's adapter (emdpo_lm_score_lora); clones and copy_type
 * carry the adapters. */
static void test_lora_types(const emdpo_tokenizer *tok) {
    emdpo_data *d = small_data();
    emdpo_llama *sft = make_model(3), *keep = make_model(3);
    if (!d || !sft || !keep) return;
    emdpo_lm_mstep_opts o;
    opts_for_test(&o);
    o.lora.r = 4;
    o.lora.alpha = 8.0f;
    o.optim.lr = 1e-2;
    const int K = 2;
    emdpo_policy *pol = NULL, *cl = NULL;
    CHECK_EQ_INT(emdpo_llama_policy_create(K, sft, tok, &o, d, &pol), EMDPO_OK);
    if (!pol) return;
    CHECK(emdpo_llama_policy_model(pol, 0) == sft && emdpo_llama_policy_adapter(pol, 1) != NULL);
    size_t nd = (size_t)d->n_dec;
    double *lp = malloc(nd * K * sizeof *lp), *lp2 = malloc(nd * K * sizeof *lp2);
    CHECK_EQ_INT(pol->ops->decision_logp(pol, d, lp), EMDPO_OK);
    for (int64_t j = 0; j < d->n_dec; j++) {
        double u0[8] = {0};
        for (int k = 0; k < K; k++) CHECK_CLOSE(lp[j * K + k], pl_logp(u0, emdpo_dec_n_items(d, j), d->dec_stages[j]), 1e-12);
    }
    double w[3 * 2] = {1, 0, 0.25, 0.75, 0, 1};
    unsigned char active[2] = {1, 1};
    emdpo_mstep_info info;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, active, NULL, &info), EMDPO_OK);
    CHECK_MSG(params_equal(sft, keep), "an M-step of adapters wrote the SFT model");
    const emdpo_lora *a0 = emdpo_llama_policy_adapter(pol, 0), *a1 = emdpo_llama_policy_adapter(pol, 1);
    CHECK(a0 && a1 && memcmp(a0->buf, a1->buf, a0->n * sizeof(float)) != 0);
    /* the policy's log-probabilities are the SFT model's under each adapter */
    CHECK_EQ_INT(pol->ops->decision_logp(pol, d, lp), EMDPO_OK);
    emdpo_lm_set *set = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, o.max_length, o.max_prompt_length, &set), EMDPO_OK);
    if (set) {
        double *ref = malloc((size_t)set->n_seq * sizeof *ref), *seq = malloc((size_t)set->n_seq * sizeof *seq);
        CHECK_EQ_INT(emdpo_lm_score(sft, set, 2, ref), EMDPO_OK);
        double worst = 0.0;
        for (int k = 0; k < K; k++) {
            CHECK_EQ_INT(emdpo_lm_score_lora(sft, emdpo_llama_policy_adapter(pol, k), set, 2, seq), EMDPO_OK);
            for (int64_t j = 0; j < set->n_group; j++) {
                double u[8];
                int64_t i0 = set->group_off[j];
                int n = (int)(set->group_off[j + 1] - i0);
                for (int q = 0; q < n; q++) u[q] = o.beta * (seq[i0 + q] - ref[i0 + q]);
                worst = fmax(worst, fabs(pl_logp(u, n, set->group_stages[j]) - lp[j * K + k]));
            }
        }
        CHECK_MSG(worst < 1e-5, "LoRA types: decision log-probabilities off by %g", worst);
        free(ref);
        free(seq);
    }
    emdpo_lm_set_free(set);
    /* clones carry the adapters; copy_type copies one */
    CHECK_EQ_INT(pol->ops->clone(pol, &cl), EMDPO_OK);
    if (cl) {
        CHECK_EQ_INT(cl->ops->copy_type(cl, 1, pol, 0), EMDPO_OK);
        CHECK_EQ_INT(cl->ops->decision_logp(cl, d, lp2), EMDPO_OK);
        int same = 1;
        for (size_t j = 0; j < nd; j++) same &= lp2[j * K + 0] == lp[j * K + 0] && lp2[j * K + 1] == lp[j * K + 0];
        CHECK_MSG(same, "a clone's adapters differ");
        cl->ops->free(cl);
    }
    o.lora.dropout = 1.5f;
    emdpo_policy *bad = NULL;
    CHECK_EQ_INT(emdpo_llama_policy_create(K, sft, tok, &o, d, &bad), EMDPO_ERR_INVALID_ARG);
    free(lp);
    free(lp2);
    pol->ops->free(pol);
    emdpo_llama_free(sft);
    emdpo_llama_free(keep);
    emdpo_data_free(d);
}

int main(void) {
    emdpo_tokenizer *tok = testdata_letter_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return check_report("test_llama_policy");
    test_decision_logp(tok);
    test_mstep(tok);
    test_embed(tok);
    test_choice_summaries(tok);
    test_em(tok);
    test_lora_types(tok);
    test_failalloc(tok);
    test_resume(tok);
    emdpo_tokenizer_free(tok);
    return check_report("test_llama_policy");
}
