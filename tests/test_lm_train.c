/* Language-model training on a tiny random Llama with an in-memory
 * tokenizer: truncation and packing, SFT lowering its loss, DPO widening
 * the chosen log-ratio margin, zero weights leaving the model alone,
 * resume giving the same bits as an uninterrupted run, the reference
 * computed once, and allocation failures handled cleanly. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/half.h"
#include "base/rng.h"
#include "check.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
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

/* ---- truncation and packing ----------------------------------------------- */

static void test_batch(const emdpo_tokenizer *tok) {
    emdpo_lm_set *s;
    CHECK_EQ_INT(emdpo_lm_set_create(8, 8, &s), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_set_create(12, 4, &s), EMDPO_OK);
    /* "a b" -> BOS, " a", " b"; "c" -> " c", EOS. Fits: no cut. */
    const char *r1[2] = {"c", ""};
    CHECK_EQ_INT(emdpo_lm_set_add(s, tok, "a b", r1, 2, 1), EMDPO_OK);
    CHECK_EQ_INT(s->n_seq, 2);
    CHECK_EQ_INT(emdpo_lm_seq_len(s, 0), 5);
    CHECK_EQ_INT(s->seq_start[0], 3);
    CHECK_EQ_INT(s->tok[0], EMDPO_TOK_BOS);
    CHECK_EQ_INT(s->tok[4], EMDPO_TOK_EOS);
    /* An empty response is EOS alone. */
    CHECK_EQ_INT(emdpo_lm_seq_len(s, 1), 4);
    CHECK_EQ_INT(s->tok[s->seq_off[1] + 3], EMDPO_TOK_EOS);
    CHECK_EQ_INT(s->n_truncated, 0);
    /* A long prompt keeps BOS and its last 3 tokens; then the longer
     * response keeps its first 12 - 4 = 8 tokens (losing EOS). */
    const char *r2[2] = {"q r s t u v w x y z", "k"};
    CHECK_EQ_INT(emdpo_lm_set_add(s, tok, "a b c d e f", r2, 2, 1), EMDPO_OK);
    int64_t i = 2;
    CHECK_EQ_INT(s->seq_start[i], 4);
    CHECK_EQ_INT(emdpo_lm_seq_len(s, i), 12);
    const int32_t *q = s->tok + s->seq_off[i];
    size_t len;
    char text[64];
    CHECK_EQ_INT(q[0], EMDPO_TOK_BOS);
    int ids[3] = {q[1], q[2], q[3]};
    CHECK_EQ_INT(emdpo_tokenizer_decode(tok, ids, 3, text, sizeof text, &len), EMDPO_OK);
    CHECK(strcmp(text, " d e f") == 0);
    CHECK(q[11] != EMDPO_TOK_EOS);
    CHECK_EQ_INT(emdpo_lm_seq_len(s, i + 1), 6); /* prompt 4 + " k" + EOS */
    CHECK_EQ_INT(s->n_truncated, 2);
    CHECK(s->longest <= 12);
    /* Packing pads with 0 behind lens. */
    int64_t seqs[2] = {1, 2};
    int tokens[2 * 12], lens[2], st[2], en[2], T;
    emdpo_lm_pack(s, seqs, 2, tokens, lens, st, en, &T);
    CHECK_EQ_INT(T, 12);
    CHECK_EQ_INT(lens[0], 4);
    CHECK(tokens[4] == 0 && tokens[11] == 0);
    CHECK_EQ_INT(st[1], 4);
    CHECK_EQ_INT(en[1], 12);
    CHECK_EQ_INT(s->group_stages[1], 1);
    CHECK_EQ_INT(emdpo_lm_set_add(s, tok, "a", r1, 2, 2), EMDPO_ERR_INVALID_ARG);
    emdpo_lm_set_free(s);
}

/* ---- training --------------------------------------------------------------- */

static const char *const prompts[4] = {"a b c", "d e", "f g h i", "j"};
static const char *const chosen[4] = {"x y z", "x x y", "z y x", "y z"};
static const char *const rejected[4] = {"m n", "n o p", "o o", "p m n"};

static emdpo_lm_set *sft_set(const emdpo_tokenizer *tok) {
    emdpo_lm_set *s;
    if (emdpo_lm_set_create(32, 16, &s)) return NULL;
    for (int k = 0; k < 4; k++)
        if (emdpo_lm_set_add(s, tok, prompts[k], &chosen[k], 1, 0)) {
            emdpo_lm_set_free(s);
            return NULL;
        }
    return s;
}

static emdpo_lm_set *pref_set(const emdpo_tokenizer *tok) {
    emdpo_lm_set *s;
    if (emdpo_lm_set_create(32, 16, &s)) return NULL;
    for (int k = 0; k < 4; k++) {
        const char *r[3] = {chosen[k], rejected[k], rejected[(k + 1) % 4]};
        /* One three-way choice and one ranking among the pairs. */
        if (emdpo_lm_set_add(s, tok, prompts[k], r, k == 0 ? 3 : 2 + (k == 3), k == 3 ? 2 : 1)) {
            emdpo_lm_set_free(s);
            return NULL;
        }
    }
    return s;
}

static void config(emdpo_train_config *c, emdpo_train_mode mode, emdpo_optim_kind kind, double lr) {
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->loss.kind = EMDPO_LOSS_DPO;
    c->loss.beta = 0.5;
    emdpo_optim_config_init(&c->optim, kind);
    c->optim.lr = lr;
    c->optim.clip = 10;
    c->batch = 2;
    c->accum = 2;
    c->seed = 7;
}

static double mean_margin(const emdpo_llama *m, const emdpo_lm_set *s, const double *ref) {
    double lp[16], sum = 0.0;
    if (emdpo_lm_score(m, s, 3, lp)) return NAN;
    for (int64_t g = 0; g < s->n_group; g++) {
        int64_t i = s->group_off[g];
        sum += (lp[i] - ref[i]) - (lp[i + 1] - ref[i + 1]);
    }
    return sum / (double)s->n_group;
}

/* Texts far longer than a sequence (a prompt and responses of ~100 kB,
 * with multi-byte characters) are encoded from a window of their bytes:
 * the kept tokens are those of the whole text, truncated as a short one. */
static void test_long_texts(const emdpo_tokenizer *tok) {
    enum { L = 12, P = 4, N = 100000 };
    char *prompt = malloc(N + 16), *resp = malloc(N + 16);
    CHECK(prompt && resp);
    if (!prompt || !resp) goto out;
    const char *words[4] = {" a b", " c\xC3\xA9", " d e f", " \xE2\x82\xAC g"};
    size_t at = 0, rat = 0;
    for (int w = 0; at + 8 < N; w++) {
        size_t n = strlen(words[w % 4]), rn_w = strlen(words[(w + 1) % 4]);
        memcpy(prompt + at, words[w % 4], n);
        memcpy(resp + rat, words[(w + 1) % 4], rn_w);
        at += n;
        rat += rn_w;
    }
    prompt[at] = resp[rat] = 0;
    int *pids = NULL, *rids = NULL;
    size_t pn = 0, rn = 0;
    CHECK_EQ_INT(emdpo_tokenizer_encode_alloc(tok, prompt, at, EMDPO_TOK_ADD_BOS, &pids, &pn), EMDPO_OK);
    CHECK_EQ_INT(emdpo_tokenizer_encode_alloc(tok, resp, rat, 0, &rids, &rn), EMDPO_OK);
    emdpo_lm_set *s = NULL;
    CHECK_EQ_INT(emdpo_lm_set_create(L, P, &s), EMDPO_OK);
    const char *r[2] = {resp, "a"};
    CHECK_EQ_INT(emdpo_lm_set_add(s, tok, prompt, r, 2, 1), EMDPO_OK);
    CHECK(s->window > 0 && s->window < at);
    CHECK(pn > 1000 && rn > 1000);
    if (s && pids && rids && pn > P && rn > L) {
        /* BOS and the prompt's last P - 1 tokens, then the response's first. */
        const int32_t *q = s->tok;
        CHECK_EQ_INT(emdpo_lm_seq_len(s, 0), L);
        CHECK_EQ_INT(s->seq_start[0], P);
        CHECK_EQ_INT(q[0], EMDPO_TOK_BOS);
        for (int i = 1; i < P; i++) CHECK_EQ_INT(q[i], pids[pn - P + i]);
        for (int i = P; i < L; i++) CHECK_EQ_INT(q[i], rids[i - P]);
        CHECK_EQ_INT(s->n_truncated, 2);
    }
    emdpo_ids_free(pids, pn);
    emdpo_ids_free(rids, rn);
    emdpo_lm_set_free(s);
out:
    free(prompt);
    free(resp);
}

/* Texts of 3 MB read from JSONL keep only the ends the tokenizer window
 * reads, and give the same tokens as the whole texts (DPO records and SFT
 * texts); a record whose implicit prompt would need a cut text whole is
 * refused at its line. */
static void test_kept_texts(const emdpo_tokenizer *tok) {
    enum { L = 200, P = 100, N = 3000000 };
    const char *json_words[4] = {" a b", " c\xC3\xA9", " d\\ne f", " \xE2\x82\xAC g"};
    const char *words[4] = {" a b", " c\xC3\xA9", " d\ne f", " \xE2\x82\xAC g"};
    char *prompt = malloc(N + 16), *resp = malloc(N + 16), *jp = malloc(2 * N), *jr = malloc(2 * N);
    char path[64];
    snprintf(path, sizeof path, "/tmp/emdpo_test_kept_%ld.jsonl", (long)getpid());
    CHECK(prompt && resp && jp && jr);
    if (!prompt || !resp || !jp || !jr) goto out;
    size_t at = 0, rat = 0, jat = 0, jrat = 0;
    for (int w = 0; at + 8 < N; w++) {
        const char *pw = words[w % 4], *rw = words[(w + 1) % 4];
        memcpy(prompt + at, pw, strlen(pw));
        at += strlen(pw);
        memcpy(resp + rat, rw, strlen(rw));
        rat += strlen(rw);
        memcpy(jp + jat, json_words[w % 4], strlen(json_words[w % 4]));
        jat += strlen(json_words[w % 4]);
        memcpy(jr + jrat, json_words[(w + 1) % 4], strlen(json_words[(w + 1) % 4]));
        jrat += strlen(json_words[(w + 1) % 4]);
    }
    prompt[at] = resp[rat] = jp[jat] = jr[jrat] = 0;
    for (int sft = 0; sft < 2; sft++) {
        FILE *fp = fopen(path, "wb");
        if (!fp) break;
        if (sft) fprintf(fp, "{\"prompt\": \"%s\", \"response\": \"%s\"}\n", jp, jr);
        else fprintf(fp, "{\"prompt\": \"%s\", \"chosen\": \"%s\", \"rejected\": \"b\"}\n", jp, jr);
        fclose(fp);
        emdpo_lm_set *got = NULL, *want = NULL;
        emdpo_data *d = NULL;
        emdpo_diag diag;
        CHECK_EQ_INT(emdpo_lm_set_read(path, tok, L, P, 0, &got, sft ? NULL : &d, &diag), EMDPO_OK);
        CHECK_EQ_INT(emdpo_lm_set_create(L, P, &want), EMDPO_OK);
        const char *r[2] = {resp, "b"};
        CHECK_EQ_INT(emdpo_lm_set_add(want, tok, prompt, r, sft ? 1 : 2, sft ? 0 : 1), EMDPO_OK);
        CHECK(!d || strlen(d->dec_prompt[0]) < at / 100); /* what the data kept */
        CHECK(got && want && got->n_seq == want->n_seq && got->n_tok == want->n_tok);
        if (got && want && got->n_tok == want->n_tok && got->n_seq == want->n_seq) {
            CHECK(memcmp(got->tok, want->tok, (size_t)got->n_tok * sizeof *got->tok) == 0);
            CHECK(memcmp(got->seq_start, want->seq_start, (size_t)got->n_seq * sizeof *got->seq_start) == 0);
            CHECK_EQ_INT(got->n_truncated, want->n_truncated);
        }
        emdpo_lm_set_free(got);
        emdpo_lm_set_free(want);
        emdpo_data_free(d);
    }
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fprintf(fp, "\n{\"chosen\": \"%s x\", \"rejected\": \"%s y\"}\n", jp, jp);
        fclose(fp);
        emdpo_lm_set *got = NULL;
        emdpo_diag diag;
        CHECK_EQ_INT(emdpo_lm_set_read(path, tok, L, P, 0, &got, NULL, &diag), EMDPO_ERR_PARSE);
        CHECK(diag.line == 2 && strstr(diag.msg, "needs it whole"));
        emdpo_lm_set_free(got);
    }
    remove(path);
out:
    free(prompt);
    free(resp);
    free(jp);
    free(jr);
}

static void test_dpo(const emdpo_tokenizer *tok) {
    emdpo_lm_set *s = pref_set(tok);
    emdpo_llama *m = make_model(3);
    CHECK(s && m);
    if (!s || !m) return;
    double ref[16];
    CHECK(s->n_seq <= 16);
    CHECK_EQ_INT(emdpo_lm_score(m, s, 4, ref), EMDPO_OK);
    emdpo_train_config c;
    config(&c, EMDPO_TRAIN_DPO, EMDPO_OPTIM_RMSPROP, 1e-3);
    emdpo_trainer *t;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, NULL, &c, &t), EMDPO_OK);
    emdpo_train_metrics met;
    CHECK_EQ_INT(emdpo_trainer_step(t, &met), EMDPO_ERR_INVALID_ARG); /* no reference yet */
    CHECK_EQ_INT(emdpo_trainer_set_reference(t, NULL), EMDPO_OK);
    int64_t ref_forwards = emdpo_trainer_forwards(t);
    /* max_B = batch 2 x 3 items = 6 sequences per forward. */
    CHECK_EQ_INT(ref_forwards, (s->n_seq + 5) / 6);
    double first = 0.0;
    for (int k = 0; k < 15; k++) {
        CHECK_EQ_INT(emdpo_trainer_step(t, &met), EMDPO_OK);
        if (k == 0) {
            first = met.loss;
            /* At the reference, every log-ratio is (nearly) 0: loss = mean -log softmax. */
            CHECK(fabs(met.rewards_margins) < 1e-4);
        }
    }
    CHECK_EQ_INT(emdpo_trainer_forwards(t), ref_forwards + 15 * c.accum);
    CHECK_EQ_INT(met.step, 15);
    CHECK_CLOSE(met.epoch, 15.0, 1e-12);
    CHECK_MSG(met.loss < first, "DPO loss %g -> %g", first, met.loss);
    double margin = mean_margin(m, s, ref);
    CHECK_MSG(margin > 1.0, "chosen log-ratio margin %g", margin);
    CHECK(met.rewards_accuracies > 0.5);
    emdpo_trainer_free(t);
    emdpo_llama_free(m);
    emdpo_lm_set_free(s);
}

/* RPO: the loss adds alpha times the weighted chosen responses' NLL per
 * chosen token, and the step's gradient matches central differences of
 * the loss along random directions. */
static double rpo_loss_at(emdpo_trainer *t) {
    emdpo_train_metrics met;
    return emdpo_trainer_step(t, &met) == EMDPO_OK ? met.loss : NAN;
}

static void test_rpo(const emdpo_tokenizer *tok) {
    emdpo_lm_set *s = pref_set(tok);
    emdpo_llama *m = make_model(13), *r = make_model(14);
    CHECK(s && m && r);
    if (!s || !m || !r) return;
    double ref[16], lp[16], w[4] = {1.0, 0.5, 2.0, 0.25}, alpha = 0.7;
    CHECK_EQ_INT(emdpo_lm_score(r, s, 4, ref), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(m, s, 4, lp), EMDPO_OK);
    /* Every step holds all four decisions (batch 4): the loss does not
     * depend on the shuffle. lr 0 leaves the model where it is. */
    emdpo_train_config c;
    config(&c, EMDPO_TRAIN_DPO, EMDPO_OPTIM_RMSPROP, 0.0);
    c.batch = 4;
    c.accum = 1;
    c.optim.clip = 0;
    emdpo_trainer *plain, *t;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, w, &c, &plain), EMDPO_OK);
    c.loss.rpo_alpha = alpha;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, w, &c, &t), EMDPO_OK);
    CHECK_EQ_INT(emdpo_trainer_set_reference_logp(plain, ref), EMDPO_OK);
    CHECK_EQ_INT(emdpo_trainer_set_reference_logp(t, ref), EMDPO_OK);
    double nll = 0.0, ntok = 0.0;
    for (int64_t g = 0; g < s->n_group; g++) {
        int64_t i = s->group_off[g];
        nll -= w[g] * lp[i];
        ntok += emdpo_lm_seq_len(s, i) - s->seq_start[i];
    }
    double base = rpo_loss_at(plain), with = rpo_loss_at(t);
    CHECK_CLOSE(with - base, alpha * nll / ntok, 1e-5);
    c.loss.rpo_alpha = -1;
    emdpo_trainer *bad;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, w, &c, &bad), EMDPO_ERR_INVALID_ARG);

    size_t n = m->num_params;
    float *g = malloc(n * sizeof *g), *p0 = malloc(n * sizeof *p0), *d = malloc(n * sizeof *d);
    CHECK(g && p0 && d);
    if (g && p0 && d) {
        memcpy(g, emdpo_trainer_grad(t), n * sizeof *g);
        memcpy(p0, m->param_buf, n * sizeof *p0);
        emdpo_rng rng;
        emdpo_rng_seed(&rng, 5, 0);
        for (int trial = 0; trial < 3; trial++) {
            double gd = 0.0, eps = 2e-3;
            for (size_t q = 0; q < n; q++) {
                d[q] = (float)(emdpo_rng_uniform(&rng) - 0.5);
                gd += (double)g[q] * d[q];
            }
            for (size_t q = 0; q < n; q++) m->param_buf[q] = p0[q] + (float)eps * d[q];
            double up = rpo_loss_at(t);
            for (size_t q = 0; q < n; q++) m->param_buf[q] = p0[q] - (float)eps * d[q];
            double down = rpo_loss_at(t);
            double fd = (up - down) / (2 * eps);
            CHECK_MSG(fabs(fd - gd) <= 2e-2 * fabs(gd) + 1e-4, "directional derivative %g, gradient gives %g", fd, gd);
        }
        memcpy(m->param_buf, p0, n * sizeof *p0);
    }
    free(g);
    free(p0);
    free(d);
    emdpo_trainer_free(plain);
    emdpo_trainer_free(t);
    emdpo_llama_free(m);
    emdpo_llama_free(r);
    emdpo_lm_set_free(s);
}

static void test_sft(const emdpo_tokenizer *tok) {
    emdpo_lm_set *s = sft_set(tok);
    emdpo_llama *m = make_model(5);
    emdpo_train_config c;
    config(&c, EMDPO_TRAIN_SFT, EMDPO_OPTIM_ADAMW, 1e-2);
    c.optim.warmup = 2;
    /* One step covers all four examples: a fixed batch. */
    emdpo_trainer *t;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, NULL, &c, &t), EMDPO_OK);
    emdpo_train_metrics met;
    double first = 0.0;
    for (int k = 0; k < 30; k++) {
        CHECK_EQ_INT(emdpo_trainer_step(t, &met), EMDPO_OK);
        if (k == 0) {
            first = met.loss;
            CHECK_CLOSE(met.learning_rate, 1e-2 / 3, 1e-12); /* (0+1)/(2+1) of the rate */
            /* A random model's cross-entropy is near log V. */
            CHECK(fabs(first - log(TESTDATA_LETTER_VOCAB)) < 0.5);
        }
    }
    CHECK_MSG(met.loss < 0.5 * first, "SFT loss %g -> %g", first, met.loss);
    CHECK(met.rewards_chosen == 0.0);
    emdpo_trainer_free(t);
    /* SFT needs one response per example. */
    emdpo_lm_set *p = pref_set(tok);
    CHECK_EQ_INT(emdpo_trainer_create(m, p, NULL, &c, &t), EMDPO_ERR_INVALID_ARG);
    emdpo_lm_set_free(p);
    emdpo_llama_free(m);
    emdpo_lm_set_free(s);
}

static void test_zero_weights(const emdpo_tokenizer *tok) {
    emdpo_lm_set *s = pref_set(tok);
    for (int kind = 0; kind < 2 && s; kind++) {
        emdpo_llama *m = make_model(9);
        size_t bytes = m->num_params * sizeof(float);
        float *before = malloc(bytes);
        memcpy(before, m->param_buf, bytes);
        double w[4] = {0, 0, 0, 0};
        emdpo_train_config c;
        config(&c, EMDPO_TRAIN_DPO, (emdpo_optim_kind)kind, 1e-2);
        emdpo_trainer *t;
        CHECK_EQ_INT(emdpo_trainer_create(m, s, w, &c, &t), EMDPO_OK);
        CHECK_EQ_INT(emdpo_trainer_set_reference(t, NULL), EMDPO_OK);
        emdpo_train_metrics met;
        CHECK_EQ_INT(emdpo_trainer_step(t, &met), EMDPO_OK);
        CHECK(met.loss == 0.0 && met.grad_norm == 0.0);
        CHECK(memcmp(before, m->param_buf, bytes) == 0);
        emdpo_trainer_free(t);
        /* Negative weights are refused. */
        w[2] = -1;
        CHECK_EQ_INT(emdpo_trainer_create(m, s, w, &c, &t), EMDPO_ERR_INVALID_ARG);
        free(before);
        emdpo_llama_free(m);
    }
    emdpo_lm_set_free(s);
}

/* Runs `steps` steps on a fresh model; with `split`, stops there, saves,
 * and continues in a new trainer (and a new model from other weights)
 * resumed from the checkpoint. Returns the final parameters. */
static float *run(const emdpo_tokenizer *tok, emdpo_train_mode mode, int steps, int split, const char *path) {
    emdpo_lm_set *s = mode == EMDPO_TRAIN_DPO ? pref_set(tok) : sft_set(tok);
    emdpo_llama *m = make_model(11);
    double w[4] = {1.0, 0.5, 2.0, 0.25};
    emdpo_train_config c;
    config(&c, mode, mode == EMDPO_TRAIN_DPO ? EMDPO_OPTIM_RMSPROP : EMDPO_OPTIM_ADAMW, 1e-3);
    c.batch = 3; /* not dividing the 4 examples: epochs straddle steps */
    c.accum = 1;
    c.optim.warmup = 3;
    emdpo_trainer *t;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, w, &c, &t), EMDPO_OK);
    if (mode == EMDPO_TRAIN_DPO) CHECK_EQ_INT(emdpo_trainer_set_reference(t, NULL), EMDPO_OK);
    for (int k = 0; k < (split ? split : steps); k++) CHECK_EQ_INT(emdpo_trainer_step(t, NULL), EMDPO_OK);
    if (split) {
        emdpo_diag diag;
        CHECK_EQ_INT(emdpo_trainer_save(t, path, &diag), EMDPO_OK);
        emdpo_trainer_free(t);
        emdpo_llama_free(m);
        m = make_model(12);
        CHECK_EQ_INT(emdpo_trainer_create(m, s, w, &c, &t), EMDPO_OK);
        CHECK_EQ_INT(emdpo_trainer_resume(t, path, &diag), EMDPO_OK);
        CHECK_EQ_INT(emdpo_trainer_steps_done(t), split);
        /* The reference came from the checkpoint: no forward was needed. */
        CHECK_EQ_INT(emdpo_trainer_forwards(t), 0);
        for (int k = split; k < steps; k++) CHECK_EQ_INT(emdpo_trainer_step(t, NULL), EMDPO_OK);
    }
    float *out = malloc(m->num_params * sizeof(float));
    memcpy(out, m->param_buf, m->num_params * sizeof(float));
    emdpo_trainer_free(t);
    emdpo_llama_free(m);
    emdpo_lm_set_free(s);
    return out;
}

static void test_resume(const emdpo_tokenizer *tok) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/emdpo_test_ckpt_%ld.bin", (long)getpid());
    emdpo_llama *probe = make_model(1);
    size_t bytes = probe->num_params * sizeof(float);
    emdpo_llama_free(probe);
    for (int mode = 0; mode < 2; mode++) {
        float *a = run(tok, (emdpo_train_mode)mode, 8, 0, path);
        float *b = run(tok, (emdpo_train_mode)mode, 8, 4, path);
        float *c = run(tok, (emdpo_train_mode)mode, 8, 0, path);
        CHECK_MSG(memcmp(a, c, bytes) == 0, "mode %d: two straight runs differ", mode);
        CHECK_MSG(memcmp(a, b, bytes) == 0, "mode %d: resumed run differs from the straight one", mode);
        free(a);
        free(b);
        free(c);
    }
    /* A checkpoint of another run is refused with a reason. */
    emdpo_lm_set *s = pref_set(tok);
    emdpo_llama *m = make_model(1);
    emdpo_train_config c;
    config(&c, EMDPO_TRAIN_DPO, EMDPO_OPTIM_RMSPROP, 1e-3);
    emdpo_trainer *t;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, NULL, &c, &t), EMDPO_OK);
    CHECK_EQ_INT(emdpo_trainer_resume(t, path, &diag), EMDPO_ERR_PARSE);
    CHECK(strstr(diag.msg, "batch") != NULL);
    /* Four bytes overwritten mid-file (in the parameters): named as damage,
     * before any other check. */
    FILE *fp = fopen(path, "r+b");
    long size = -1;
    if (fp && fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    CHECK(size > 64);
    if (fp && size > 64 && fseek(fp, size / 2, SEEK_SET) == 0) fwrite("\x7f\x7f\x7f\x7f", 1, 4, fp);
    if (fp) fclose(fp);
    CHECK_EQ_INT(emdpo_trainer_resume(t, path, &diag), EMDPO_ERR_PARSE);
    CHECK(strstr(diag.msg, "damaged") != NULL);
    fp = fopen(path, "wb");
    if (fp) {
        fputs("garbage", fp);
        fclose(fp);
    }
    CHECK_EQ_INT(emdpo_trainer_resume(t, path, &diag), EMDPO_ERR_PARSE);
    CHECK(strstr(diag.msg, "not an emdpo") != NULL);
    remove(path);
    CHECK_EQ_INT(emdpo_trainer_resume(t, path, &diag), EMDPO_ERR_IO);
    emdpo_trainer_free(t);
    /* Sequences longer than the model's context are refused. */
    m->config.max_seq_len = 4;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, NULL, &c, &t), EMDPO_ERR_LIMIT);
    m->config.max_seq_len = 64;
    emdpo_llama_free(m);
    emdpo_lm_set_free(s);
}

static void test_texts(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/emdpo_test_texts_%ld.jsonl", (long)getpid());
    FILE *fp = fopen(path, "wb");
    if (!fp) return;
    fputs("{\"prompt\": \"a\", \"response\": \"b\"}\n\n{\"text\": \"c d\"}\n{\"response\": \"\"}\n", fp);
    fclose(fp);
    emdpo_lm_texts *t;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_lm_texts_read(path, &t, &diag), EMDPO_OK);
    CHECK_EQ_INT(t->n, 3);
    CHECK(strcmp(t->prompt[1], "") == 0 && strcmp(t->response[1], "c d") == 0);
    emdpo_lm_texts_free(t);
    const char *bad[3] = {"{\"prompt\": \"a\"}\n", "{\"text\": \"a\", \"response\": \"b\"}\n",
                          "{\"text\": \"\xff\"}\n"};
    for (int k = 0; k < 3; k++) {
        fp = fopen(path, "wb");
        fprintf(fp, "{\"text\": \"ok\"}\n%s", bad[k]);
        fclose(fp);
        CHECK_EQ_INT(emdpo_lm_texts_read(path, &t, &diag), EMDPO_ERR_PARSE);
        CHECK_EQ_INT(diag.line, 2);
    }
    fp = fopen(path, "wb");
    fputs("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n", fp);
    fclose(fp);
    CHECK_EQ_INT(emdpo_lm_texts_read(path, &t, &diag), EMDPO_ERR_UNSUPPORTED);
    remove(path);
}

static void test_failalloc(const emdpo_tokenizer *tok) {
    emdpo_llama *m = make_model(2);
    emdpo_train_config c;
    config(&c, EMDPO_TRAIN_DPO, EMDPO_OPTIM_ADAMW, 1e-3);
    int done = 0;
    for (long n = 0; !done && n < 2000; n++) {
        failalloc_install(n, 0);
        emdpo_lm_set *s = pref_set(tok);
        emdpo_trainer *t = NULL;
        int rc = s ? emdpo_trainer_create(m, s, NULL, &c, &t) : EMDPO_ERR_NOMEM;
        if (!rc) rc = emdpo_trainer_set_reference(t, NULL);
        if (!rc) rc = emdpo_trainer_step(t, NULL);
        done = rc == EMDPO_OK;
        CHECK(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM);
        emdpo_trainer_free(t);
        emdpo_lm_set_free(s);
        long live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(live == 0, "fail at %ld: %ld blocks leaked", n, live);
    }
    CHECK(done);
    CHECK_EQ_INT(failalloc_size_errors(), 0);
    emdpo_llama_free(m);
}

/* ---- LoRA ------------------------------------------------------------------- */

/* DPO of an adapter on a base: the first step sits at the reference (the
 * base, the fresh adapter being zero), the loss falls and the margin of
 * base + adapter grows, the base is never written, a run resumed from a
 * checkpoint (into a fresh adapter) ends with the same bits, and a frozen
 * bf16 base trains its adapter as its float32 twin does. */
static float *lora_run(const emdpo_tokenizer *tok, emdpo_llama *m, float dropout, int steps, int split,
                       const char *path, double *first_margin, double *loss_drop) {
    emdpo_lm_set *s = pref_set(tok);
    emdpo_lora_config lc;
    emdpo_lora_config_init(&lc);
    lc.r = 4;
    lc.alpha = 8.0f;
    lc.dropout = dropout;
    emdpo_lora *lo = NULL;
    CHECK_EQ_INT(emdpo_lora_create(&m->config, &lc, &lo), EMDPO_OK);
    if (!s || !lo) return NULL;
    emdpo_lora_init(lo, 5);
    emdpo_train_config c;
    config(&c, EMDPO_TRAIN_DPO, EMDPO_OPTIM_ADAMW, 1e-2);
    emdpo_trainer *t = NULL;
    CHECK_EQ_INT(emdpo_trainer_create_lora(m, lo, s, NULL, &c, &t), EMDPO_OK);
    CHECK_EQ_INT(emdpo_trainer_set_reference(t, m), EMDPO_OK);
    emdpo_train_metrics met = {0};
    double first_loss = 0.0;
    for (int k = 0; k < (split ? split : steps); k++) {
        CHECK_EQ_INT(emdpo_trainer_step(t, &met), EMDPO_OK);
        if (k == 0 && first_margin) *first_margin = met.rewards_margins;
        if (k == 0) first_loss = met.loss;
    }
    if (split) {
        emdpo_diag diag;
        CHECK_EQ_INT(emdpo_trainer_save(t, path, &diag), EMDPO_OK);
        emdpo_trainer_free(t);
        emdpo_lora_init(lo, 6); /* what the checkpoint restores */
        CHECK_EQ_INT(emdpo_trainer_create_lora(m, lo, s, NULL, &c, &t), EMDPO_OK);
        CHECK_EQ_INT(emdpo_trainer_resume(t, path, &diag), EMDPO_OK);
        for (int k = split; k < steps; k++) CHECK_EQ_INT(emdpo_trainer_step(t, &met), EMDPO_OK);
    }
    if (loss_drop) *loss_drop = first_loss - met.loss;
    float *out = malloc(lo->n * sizeof(float));
    memcpy(out, lo->buf, lo->n * sizeof(float));
    if (!split && first_margin) { /* the margin of base + adapter over the base */
        double ref[16], lp[16], sum = 0.0;
        CHECK_EQ_INT(emdpo_lm_score(m, s, 3, ref), EMDPO_OK);
        CHECK_EQ_INT(emdpo_lm_score_lora(m, lo, s, 3, lp), EMDPO_OK);
        for (int64_t g = 0; g < s->n_group; g++) {
            int64_t i = s->group_off[g];
            sum += (lp[i] - ref[i]) - (lp[i + 1] - ref[i + 1]);
        }
        CHECK_MSG(sum / (double)s->n_group > 0.5, "LoRA DPO: chosen log-ratio margin %g", sum / (double)s->n_group);
    }
    emdpo_trainer_free(t);
    emdpo_lora_free(lo);
    emdpo_lm_set_free(s);
    return out;
}

static void test_lora(const emdpo_tokenizer *tok) {
    emdpo_llama *m = make_model(13);
    if (!m) return;
    float *base = malloc(m->num_params * sizeof(float));
    memcpy(base, m->param_buf, m->num_params * sizeof(float));
    double first = 1.0, drop = 0.0;
    float *a = lora_run(tok, m, 0.0f, 12, 0, NULL, &first, &drop);
    CHECK_MSG(fabs(first) < 1e-6, "first step's margin %g: not at the reference", first);
    CHECK_MSG(drop > 0.0, "LoRA DPO: the loss did not fall (%g)", drop);
    CHECK_MSG(memcmp(base, m->param_buf, m->num_params * sizeof(float)) == 0, "LoRA training wrote the base");
    char path[64];
    snprintf(path, sizeof path, "/tmp/emdpo_test_lora_%d.bin", (int)getpid());
    float *b = lora_run(tok, m, 0.0f, 12, 5, path, NULL, NULL);
    size_t n = 0;
    {
        emdpo_lora_config lc;
        emdpo_lora_config_init(&lc);
        lc.r = 4;
        n = emdpo_lora_num_params(&m->config, &lc);
    }
    CHECK_MSG(a && b && memcmp(a, b, n * sizeof(float)) == 0, "LoRA: a resumed run differs");
    /* with dropout, a resumed run redraws the same masks */
    float *da = lora_run(tok, m, 0.2f, 9, 0, NULL, NULL, &drop), *db = lora_run(tok, m, 0.2f, 9, 4, path, NULL, NULL);
    CHECK_MSG(da && db && memcmp(da, db, n * sizeof(float)) == 0, "LoRA dropout: a resumed run differs");
    free(da);
    free(db);
    /* a frozen bf16 base against the same values in float32 */
    emdpo_llama *f = NULL;
    CHECK_EQ_INT(emdpo_llama_create_frozen(&m->config, EMDPO_DTYPE_BF16, &f), EMDPO_OK);
    if (f) {
        for (size_t i = 0; i < m->num_params; i++) m->param_buf[i] = emdpo_bf16_to_float(emdpo_float_to_bf16(m->param_buf[i]));
        const emdpo_llama_config *c = &m->config;
        float *w32[EMDPO_N_PROJ];
        emdpo_llama_proj_weights(&m->params, w32);
        for (size_t i = 0; i < (size_t)c->vocab_size * c->dim; i++) {
            f->frozen->tok_emb[i] = emdpo_float_to_bf16(m->params.tok_emb[i]);
            f->frozen->lm_head[i] = emdpo_float_to_bf16(m->params.lm_head[i]);
        }
        for (int t = 0; t < EMDPO_N_PROJ; t++) {
            int out, in;
            emdpo_llama_proj_shape(c, t, &out, &in);
            for (size_t i = 0; i < (size_t)c->n_layers * out * in; i++) f->frozen->w[t][i] = emdpo_float_to_bf16(w32[t][i]);
        }
        size_t LC = (size_t)c->n_layers * c->dim;
        memcpy(f->params.rms_att, m->params.rms_att, LC * sizeof(float));
        memcpy(f->params.rms_ffn, m->params.rms_ffn, LC * sizeof(float));
        memcpy(f->params.rms_final, m->params.rms_final, (size_t)c->dim * sizeof(float));
        float *x = lora_run(tok, m, 0.1f, 6, 0, NULL, NULL, NULL), *y = lora_run(tok, f, 0.1f, 6, 0, NULL, NULL, NULL);
        CHECK_MSG(x && y && memcmp(x, y, n * sizeof(float)) == 0, "LoRA on a frozen bf16 base differs from float32");
        free(x);
        free(y);
        emdpo_trainer *t = NULL;
        emdpo_lm_set *s = pref_set(tok);
        emdpo_train_config cfg;
        config(&cfg, EMDPO_TRAIN_DPO, EMDPO_OPTIM_ADAMW, 1e-2);
        CHECK_EQ_INT(emdpo_trainer_create(f, s, NULL, &cfg, &t), EMDPO_ERR_INVALID_ARG); /* a frozen model itself */
        emdpo_lm_set_free(s);
    }
    emdpo_llama_free(f);
    remove(path);
    free(a);
    free(b);
    free(base);
    emdpo_llama_free(m);
}

/* Every allocation that emdpo_trainer_save makes can fail, and a failure
 * is reported as out of memory (not as a write error) with no file left. */
static void test_save_failalloc(const emdpo_tokenizer *tok) {
    emdpo_llama *m = make_model(2);
    emdpo_train_config c;
    config(&c, EMDPO_TRAIN_DPO, EMDPO_OPTIM_ADAMW, 1e-3);
    emdpo_lm_set *s = pref_set(tok);
    emdpo_trainer *t = NULL;
    CHECK_EQ_INT(emdpo_trainer_create(m, s, NULL, &c, &t), EMDPO_OK);
    char path[64];
    snprintf(path, sizeof path, "/tmp/emdpo_test_save_%ld.bin", (long)getpid());
    emdpo_diag diag;
    failalloc_install(-1, 0);
    CHECK_EQ_INT(t ? emdpo_trainer_save(t, path, &diag) : EMDPO_ERR_NOMEM, EMDPO_OK);
    long count = failalloc_count();
    failalloc_uninstall();
    remove(path);
    CHECK(count >= 3); /* the temporary's names and the checksum's buffer */
    for (long n = 0; n < count; n++) {
        failalloc_install(n, 0);
        int rc = emdpo_trainer_save(t, path, &diag);
        long live = failalloc_live();
        failalloc_uninstall();
        /* A failure that only skips removing stale temporaries still saves. */
        CHECK_MSG(rc == EMDPO_OK || (rc == EMDPO_ERR_NOMEM && strcmp(diag.msg, "out of memory") == 0),
                  "fail at %ld: %s (%s)", n, emdpo_status_name(rc), diag.msg);
        CHECK_MSG(rc == EMDPO_OK || access(path, F_OK) != 0, "fail at %ld left %s", n, path);
        CHECK_MSG(live == 0, "fail at %ld: %ld blocks leaked", n, live);
        remove(path);
    }
    emdpo_trainer_free(t);
    emdpo_lm_set_free(s);
    emdpo_llama_free(m);
}

int main(void) {
    emdpo_tokenizer *tok = testdata_letter_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return check_report("test_lm_train");
    test_batch(tok);
    test_long_texts(tok);
    test_kept_texts(tok);
    test_texts();
    test_dpo(tok);
    test_rpo(tok);
    test_sft(tok);
    test_zero_weights(tok);
    test_resume(tok);
    test_lora(tok);
    test_failalloc(tok);
    test_save_failalloc(tok);
    emdpo_tokenizer_free(tok);
    return check_report("test_lm_train");
}
