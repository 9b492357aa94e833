/* The model's forward and backward against PyTorch: tests/fixtures/
 * llama_grad.bin (written by tools/llama_fixture.py) holds tiny Llamas, a
 * padded batch, per-token loss weights, and PyTorch's float64 log-probs,
 * loss and gradient of every parameter. Also checks that the backward adds
 * into the gradient, that results repeat bit for bit, and that a batch cut
 * into chunks of sequences, run on one or two threads, gives what its
 * sequences give one at a time (and, on the packed kernel's path, the same
 * bits on one thread as on two), and that activation checkpointing gives
 * the same bits as keeping every layer; and that the gradient's pieces
 * (emdpo_llama_grad_pieces, what data-parallel training sums while the
 * backward goes on) cover the gradient once each and are final when the
 * backward hands them out. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/threads.h"
#include "check.h"
#include "emdpo.h"
#include "lm/engine/gemm.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/engine/lora.h"

#define FIXTURE "tests/fixtures/llama_grad.bin"

static const char *const names[EMDPO_LLAMA_N_TENSORS] = {"tok_emb", "rms_att", "wq", "wk",        "wv",     "wo",
                                                         "rms_ffn", "w1",      "w2", "w3",        "rms_final", "lm_head"};

static int rd(FILE *fp, void *dst, size_t size, size_t n) { return fread(dst, size, n, fp) == n; }

/* Largest |a - b| over the tensor, relative to the tensor's largest |b|. */
static double tensor_err(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 1e-12;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

static void run_case(FILE *fp, int index) {
    int32_t h[10];
    float fe[2];
    CHECK(rd(fp, h, sizeof h[0], 10) && rd(fp, fe, sizeof fe[0], 2));
    emdpo_llama_config c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                            .vocab_size = h[5], .max_seq_len = h[6], .tied = h[7], .norm_eps = fe[0],
                            .rope_theta = fe[1]};
    int B = h[8], T = h[9];
    emdpo_llama *m;
    CHECK_EQ_INT(emdpo_llama_create(&c, &m), EMDPO_OK);
    size_t np = m->num_params, N = (size_t)B * T;
    int *tokens = malloc(N * sizeof(int)), *lens = malloc((size_t)B * sizeof(int));
    float *cw = malloc(N * sizeof(float)), *logp_ref = malloc(N * sizeof(float));
    float *g_ref = malloc(np * sizeof(float)), *g = calloc(np, sizeof(float)), *g2 = calloc(np, sizeof(float));
    double loss_ref;
    CHECK(rd(fp, tokens, sizeof(int), N) && rd(fp, lens, sizeof(int), (size_t)B) && rd(fp, cw, sizeof(float), N) &&
          rd(fp, logp_ref, sizeof(float), N) && rd(fp, &loss_ref, sizeof loss_ref, 1) &&
          rd(fp, m->param_buf, sizeof(float), np) && rd(fp, g_ref, sizeof(float), np));

    emdpo_llama_acts *a;
    CHECK_EQ_INT(emdpo_llama_acts_create(&c, B, T, 1, &a), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tokens, lens, B, T), EMDPO_OK);
    double loss = 0.0;
    for (size_t i = 0; i < N; i++) loss += (double)cw[i] * a->logp[i];
    CHECK_MSG(fabs(loss - loss_ref) <= 1e-4 * fmax(1.0, fabs(loss_ref)), "case %d: loss %.9g vs PyTorch %.9g", index,
              loss, loss_ref);
    CHECK_MSG(tensor_err(a->logp, logp_ref, N) < 1e-5, "case %d: logp error %g", index,
              tensor_err(a->logp, logp_ref, N));

    CHECK_EQ_INT(emdpo_llama_backward(m, a, cw, g), EMDPO_OK);
    size_t sizes[EMDPO_LLAMA_N_TENSORS], off = 0;
    emdpo_llama_tensor_sizes(&c, sizes);
    for (int t = 0; t < EMDPO_LLAMA_N_TENSORS; t++) {
        if (!sizes[t]) continue;
        double e = tensor_err(g + off, g_ref + off, sizes[t]);
        CHECK_MSG(e < 1e-4, "case %d: gradient of %s off by %g of its largest entry", index, names[t], e);
        off += sizes[t];
    }

    /* The backward uses its forward up; after another forward, a second
     * backward adds the same gradient again. */
    memcpy(g2, g, np * sizeof(float));
    CHECK_EQ_INT(emdpo_llama_backward(m, a, cw, g2), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tokens, lens, B, T), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_backward(m, a, cw, g2), EMDPO_OK);
    double worst = 0.0;
    for (size_t i = 0; i < np; i++) worst = fmax(worst, fabs(g2[i] - 2.0 * g[i]) / fmax(1.0, fabs(g[i])));
    CHECK_MSG(worst < 1e-5, "case %d: second backward did not add (%g)", index, worst);

    /* Same inputs, same bits; padding tokens are never read. */
    float *logp1 = malloc(N * sizeof(float));
    memcpy(logp1, a->logp, N * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int t = lens[b]; t < T; t++) tokens[(size_t)b * T + t] = -5;
    memset(g2, 0, np * sizeof(float));
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tokens, lens, B, T), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_backward(m, a, cw, g2), EMDPO_OK);
    CHECK(memcmp(logp1, a->logp, N * sizeof(float)) == 0);
    CHECK(memcmp(g, g2, np * sizeof(float)) == 0);

    /* Span helpers: the span's gradient lands on logp[b][s-1]. */
    int st[2] = {1, 2}, en[2] = {lens[0], lens[1]};
    double gs[2] = {0.5, -2.0};
    float *dl = calloc(N, sizeof(float));
    if (B == 2) {
        CHECK_EQ_INT(emdpo_llama_span_backward(a, st, en, gs, dl), EMDPO_OK);
        CHECK(dl[0] == 0.5f && dl[(size_t)lens[0] - 2] == 0.5f && dl[T] == 0.0f && dl[T + 1] == -2.0f);
        CHECK(lens[0] == T || dl[lens[0] - 1] == 0.0f);
    }
    /* Invalid inputs are refused. */
    tokens[0] = c.vocab_size;
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tokens, lens, B, T), EMDPO_ERR_INVALID_ARG);
    tokens[0] = 0;
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tokens, lens, B, T + 1), EMDPO_ERR_INVALID_ARG);
    lens[0] = T + 1;
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tokens, lens, B, T), EMDPO_ERR_INVALID_ARG);

    free(dl);
    free(logp1);
    emdpo_llama_acts_free(a);
    emdpo_llama_free(m);
    free(tokens), free(lens), free(cw), free(logp_ref), free(g_ref), free(g), free(g2);
}

/* The largest relative error of a gradient over its tensors (tensor_err). */
static double grad_err(const emdpo_llama_config *c, const float *g, const float *ref) {
    size_t sizes[EMDPO_LLAMA_N_TENSORS], off = 0;
    emdpo_llama_tensor_sizes(c, sizes);
    double worst = 0.0;
    for (int t = 0; t < EMDPO_LLAMA_N_TENSORS; t++) {
        if (sizes[t]) worst = fmax(worst, tensor_err(g + off, ref + off, sizes[t]));
        off += sizes[t];
    }
    return worst;
}

/* A padded batch of B sequences of T tokens against the same sequences run
 * one at a time (one chunk each): log-probs and gradient, on 1 and 2
 * threads. */
static void check_chunks(const emdpo_llama_config *c, int B, int T) {
    emdpo_llama *m;
    emdpo_llama_acts *a, *one;
    CHECK_EQ_INT(emdpo_llama_create(c, &m), EMDPO_OK);
    emdpo_llama_init(m, 7);
    /* norm weights off 1, so that a wrong row's gradient shows */
    for (size_t i = 0; i < (size_t)c->dim; i++) m->params.rms_final[i] = 1.0f + 0.01f * (float)(i % 5);
    emdpo_set_threads(2); /* the kernel's buffers are sized for the threads at creation */
    CHECK_EQ_INT(emdpo_llama_acts_create(c, B, T, 1, &a), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_acts_create(c, 1, T, 1, &one), EMDPO_OK);
    CHECK(a->wpack && one->wpack);
    if (emdpo_gemm_kernel_active()) CHECK(a->kthreads == emdpo_max_threads() && a->tn_scratch && a->att_scratch);
    size_t np = m->num_params, N = (size_t)B * T;
    int *tok = malloc(N * sizeof(int)), *lens = malloc((size_t)B * sizeof(int));
    float *w = malloc(N * sizeof(float)), *logp = malloc(N * sizeof(float)), *ref = calloc(np, sizeof(float));
    float *g[2] = {calloc(np, sizeof(float)), calloc(np, sizeof(float))};
    for (size_t i = 0; i < N; i++) {
        tok[i] = (int)((i * 2654435761u) % (unsigned)c->vocab_size);
        w[i] = (float)((int)(i % 11) - 5) / 5.0f;
    }
    for (int b = 0; b < B; b++) lens[b] = b % 3 ? T - (b * 7) % T : T;
    lens[B - 1] = 0, lens[B - 2] = 1; /* an empty sequence and one with no next token */
    for (int th = 0; th < 2; th++) {
        emdpo_set_threads(th + 1);
        CHECK_EQ_INT(emdpo_llama_forward(m, a, tok, lens, B, T), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_backward(m, a, w, g[th]), EMDPO_OK);
        if (th == 0) memcpy(logp, a->logp, N * sizeof(float));
        CHECK_MSG(tensor_err(a->logp, logp, N) < 1e-6, "logp differs between 1 and 2 threads");
    }
    /* the kernel's products sum in an order that no thread count changes */
    if (emdpo_gemm_kernel_active()) {
        CHECK_MSG(memcmp(g[0], g[1], np * sizeof(float)) == 0, "B %d T %d: 1 and 2 threads' gradient bits differ", B,
                  T);
        /* buffers made for one thread keep a two-thread pass to one thread, with the same bits */
        emdpo_llama_acts *a1;
        emdpo_set_threads(1);
        CHECK_EQ_INT(emdpo_llama_acts_create(c, B, T, 1, &a1), EMDPO_OK);
        emdpo_set_threads(2);
        memset(ref, 0, np * sizeof(float));
        CHECK_EQ_INT(emdpo_llama_forward(m, a1, tok, lens, B, T), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_backward(m, a1, w, ref), EMDPO_OK);
        CHECK(a1->kthreads == 1 && memcmp(ref, g[0], np * sizeof(float)) == 0);
        emdpo_llama_acts_free(a1);
    }
    /* whichever thread takes which chunk, 2 threads repeat their bits; the
     * path was chosen when the buffers were made, so the environment
     * changing after that changes nothing */
    const char *env = getenv("EMDPO_GEMM");
    char *saved_env = env ? strdup(env) : NULL;
    setenv("EMDPO_GEMM", "blas", 1);
    memset(ref, 0, np * sizeof(float));
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tok, lens, B, T), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_backward(m, a, w, ref), EMDPO_OK);
    CHECK(memcmp(ref, g[1], np * sizeof(float)) == 0);
    if (saved_env)
        setenv("EMDPO_GEMM", saved_env, 1);
    else
        unsetenv("EMDPO_GEMM");
    free(saved_env);
    memset(ref, 0, np * sizeof(float));
    emdpo_set_threads(1);
    double lp_err = 0.0;
    for (int b = 0; b < B; b++) {
        CHECK_EQ_INT(emdpo_llama_forward(m, one, tok + (size_t)b * T, lens + b, 1, T), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_backward(m, one, w + (size_t)b * T, ref), EMDPO_OK);
        lp_err = fmax(lp_err, tensor_err(one->logp, logp + (size_t)b * T, T));
    }
    CHECK_MSG(lp_err < 1e-5, "B %d T %d: batch logp vs one sequence at a time: %g", B, T, lp_err);
    for (int th = 0; th < 2; th++)
        CHECK_MSG(grad_err(c, g[th], ref) < 1e-4, "B %d T %d, %d thread(s): batch gradient vs one at a time: %g", B, T,
                  th + 1, grad_err(c, g[th], ref));
    free(tok), free(lens), free(w), free(logp), free(ref), free(g[0]), free(g[1]);
    emdpo_llama_acts_free(one);
    emdpo_llama_acts_free(a);
    emdpo_llama_free(m);
}

static void test_chunks(void) {
    /* deep and narrow: two chunks (6 and 1 sequences), every gradient slot in use, GQA, untied head */
    emdpo_llama_config deep = {.dim = 32, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                               .vocab_size = 37, .max_seq_len = 40, .tied = 0, .norm_eps = 1e-5f, .rope_theta = 1e4f};
    check_chunks(&deep, 7, 40);
    /* wide and shallow: on 2 threads the FFN's weight gradients go in two blocks (528 and 512 wide), and
     * attention in two blocks of query rows */
    emdpo_llama_config wide = {.dim = 64, .hidden_dim = 1040, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                               .vocab_size = 37, .max_seq_len = 100, .tied = 1, .norm_eps = 1e-5f, .rope_theta = 1e4f};
    check_chunks(&wide, 48, 100);
    /* heads of 64 over 128 positions: the attention backward's sgemms are large enough for
     * OpenBLAS to thread them unless the pass keeps it serial; one key/value head for two */
    emdpo_llama_config heads = {.dim = 128, .hidden_dim = 96, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                                .vocab_size = 37, .max_seq_len = 128, .tied = 1, .norm_eps = 1e-5f, .rope_theta = 1e4f};
    check_chunks(&heads, 4, 128);
    /* what the families add: an explicit head size (qd = 48 != C), q/k/v and o biases, q/k norms */
    emdpo_llama_config fam = {.dim = 32, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                              .vocab_size = 37, .max_seq_len = 40, .tied = 1, .norm_eps = 1e-5f, .rope_theta = 1e4f,
                              .head_dim = 12, .qkv_bias = 1, .o_bias = 1, .qk_norm = 1};
    check_chunks(&fam, 7, 40);
}

/* Activation checkpointing (EMDPO_ACTS_TRAIN_CKPT) against activations kept
 * for every layer: the same log-probs and gradient bits on 1 and 2
 * threads, twice in a row on the same buffers, in less memory. */
static void check_ckpt(const emdpo_llama_config *c, int B, int T) {
    emdpo_llama *m;
    CHECK_EQ_INT(emdpo_llama_create(c, &m), EMDPO_OK);
    emdpo_llama_init(m, 11);
    for (size_t i = 0; i < (size_t)c->n_layers * c->dim; i++) m->params.rms_ffn[i] = 1.0f + 0.02f * (float)(i % 7);
    size_t np = m->num_params, N = (size_t)B * T;
    int *tok = malloc(N * sizeof(int)), *lens = malloc((size_t)B * sizeof(int));
    float *w = malloc(N * sizeof(float)), *logp = malloc(N * sizeof(float));
    float *g = calloc(np, sizeof(float)), *gc = calloc(np, sizeof(float));
    for (size_t i = 0; i < N; i++) {
        tok[i] = (int)((i * 40503u + 7) % (unsigned)c->vocab_size);
        w[i] = (float)((int)(i % 13) - 6) / 6.0f;
    }
    for (int b = 0; b < B; b++) lens[b] = T - (b * 5) % T;
    emdpo_set_threads(2);
    emdpo_llama_acts *full, *ck;
    CHECK_EQ_INT(emdpo_llama_acts_create(c, B, T, EMDPO_ACTS_TRAIN, &full), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_acts_create(c, B, T, EMDPO_ACTS_TRAIN_CKPT, &ck), EMDPO_OK);
    CHECK(ck->ckpt && !full->ckpt && (c->n_layers > 2 ? ck->buf_n < full->buf_n : ck->buf_n == full->buf_n));
    for (int th = 1; th <= 2; th++) {
        emdpo_set_threads(th);
        memset(g, 0, np * sizeof(float));
        CHECK_EQ_INT(emdpo_llama_forward(m, full, tok, lens, B, T), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_backward(m, full, w, g), EMDPO_OK);
        memcpy(logp, full->logp, N * sizeof(float));
        for (int rep = 0; rep < 2; rep++) {
            memset(gc, 0, np * sizeof(float));
            CHECK_EQ_INT(emdpo_llama_forward(m, ck, tok, lens, B, T), EMDPO_OK);
            CHECK_EQ_INT(emdpo_llama_backward(m, ck, w, gc), EMDPO_OK);
            CHECK_MSG(memcmp(logp, ck->logp, N * sizeof(float)) == 0, "L %d, %d thread(s): checkpointed logp differs",
                      c->n_layers, th);
            CHECK_MSG(memcmp(g, gc, np * sizeof(float)) == 0,
                      "L %d, %d thread(s), pass %d: checkpointed gradient differs (rel %g)", c->n_layers, th, rep + 1,
                      grad_err(c, gc, g));
        }
    }
    free(tok), free(lens), free(w), free(logp), free(g), free(gc);
    emdpo_llama_acts_free(full);
    emdpo_llama_acts_free(ck);
    emdpo_llama_free(m);
}

static void test_ckpt(void) {
    /* five layers: three recomputed; two chunks; GQA; untied */
    emdpo_llama_config deep = {.dim = 32, .hidden_dim = 40, .n_layers = 5, .n_heads = 4, .n_kv_heads = 2,
                               .vocab_size = 37, .max_seq_len = 40, .tied = 0, .norm_eps = 1e-5f, .rope_theta = 1e4f};
    check_ckpt(&deep, 7, 40);
    /* the families' parts: head size, biases, q/k norms */
    emdpo_llama_config fam = {.dim = 32, .hidden_dim = 40, .n_layers = 4, .n_heads = 4, .n_kv_heads = 2,
                              .vocab_size = 37, .max_seq_len = 40, .tied = 1, .norm_eps = 1e-5f, .rope_theta = 1e4f,
                              .head_dim = 12, .qkv_bias = 1, .o_bias = 1, .qk_norm = 1};
    check_ckpt(&fam, 9, 24);
    /* one and two layers: nothing to recompute, the slots are the layers */
    emdpo_llama_config two = deep;
    two.n_layers = 2;
    check_ckpt(&two, 3, 40);
    two.n_layers = 1;
    check_ckpt(&two, 3, 40);
}

/* The pieces handed out, as offsets into the gradient, and (from a
 * backward) their contents at that moment. */
typedef struct pieces {
    float *grad, *seen; /* the gradient; a copy of each piece when handed out, or NULL */
    size_t n, off[4096], len[4096];
} pieces;

static void note_piece(void *ud, float *g, size_t n) {
    pieces *p = ud;
    CHECK(p->n < 4096 && g >= p->grad);
    if (p->n >= 4096 || g < p->grad) return;
    p->off[p->n] = (size_t)(g - p->grad);
    p->len[p->n++] = n;
    if (p->seen) memcpy(p->seen + (g - p->grad), g, n * sizeof *g);
}

/* lo NULL: the base's gradient (np floats), else the adapter's. */
static void check_pieces(const emdpo_llama_config *c, int mode, int lora_targets, int threads) {
    emdpo_llama *m;
    emdpo_lora *lo = NULL;
    CHECK_EQ_INT(emdpo_llama_create(c, &m), EMDPO_OK);
    emdpo_llama_init(m, 5);
    emdpo_lora_config lc;
    emdpo_lora_config_init(&lc);
    lc.r = 2;
    lc.targets = (unsigned)lora_targets;
    if (lora_targets) {
        CHECK_EQ_INT(emdpo_lora_create(c, &lc, &lo), EMDPO_OK);
        emdpo_lora_init(lo, 6);
        for (size_t i = 0; i < lo->n; i++) lo->buf[i] += 0.01f * (float)(i % 7); /* B off zero */
    }
    size_t np = lo ? lo->n : m->num_params;
    int B = 5, T = 24;
    size_t N = (size_t)B * T;
    int *tok = malloc(N * sizeof(int));
    float *w = malloc(N * sizeof(float)), *g = calloc(np, sizeof(float)), *seen = calloc(np, sizeof(float));
    int *cover = calloc(np, sizeof(int));
    for (size_t i = 0; i < N; i++) {
        tok[i] = (int)((i * 2246822519u + 3) % (unsigned)c->vocab_size);
        w[i] = (float)((int)(i % 9) - 4) / 4.0f;
    }
    static pieces all, got;
    all = (pieces){.grad = g};
    emdpo_llama_grad_pieces(c, lo, g, note_piece, &all);
    size_t total = 0;
    for (size_t i = 0; i < all.n; i++) {
        total += all.len[i];
        for (size_t j = 0; j < all.len[i] && all.off[i] + j < np; j++) cover[all.off[i] + j]++;
    }
    int once = 1;
    for (size_t i = 0; i < np; i++) once &= cover[i] == 1;
    CHECK_MSG(total == np && once, "L %d, lora %#x: the pieces cover %zu of %zu floats, not each once", c->n_layers,
              lora_targets, total, np);
    emdpo_set_threads(threads);
    emdpo_llama_acts *a;
    CHECK_EQ_INT(emdpo_llama_acts_create_lora(c, lo ? lc.r : 0, B, T, mode, &a), EMDPO_OK);
    got = (pieces){.grad = g, .seen = seen};
    a->grad_piece = note_piece;
    a->grad_piece_ud = &got;
    CHECK_EQ_INT(emdpo_llama_forward_lora(m, lo, a, tok, NULL, B, T), EMDPO_OK);
    CHECK_EQ_INT(lo ? emdpo_llama_backward_lora(m, lo, a, w, g) : emdpo_llama_backward(m, a, w, g), EMDPO_OK);
    CHECK_MSG(got.n == all.n && memcmp(got.off, all.off, all.n * sizeof *all.off) == 0 &&
                  memcmp(got.len, all.len, all.n * sizeof *all.len) == 0,
              "L %d, lora %#x: the backward handed out other pieces than emdpo_llama_grad_pieces", c->n_layers,
              lora_targets);
    CHECK_MSG(memcmp(seen, g, np * sizeof *g) == 0, "L %d, lora %#x, mode %d, %d thread(s): a piece changed after "
              "the backward handed it out", c->n_layers, lora_targets, mode, threads);
    int nonzero = 0;
    for (size_t i = 0; i < np; i++) nonzero += g[i] != 0.0f;
    CHECK(nonzero > 0);
    free(tok), free(w), free(g), free(seen), free(cover);
    emdpo_llama_acts_free(a);
    emdpo_lora_free(lo);
    emdpo_llama_free(m);
}

static void test_pieces(void) {
    emdpo_llama_config deep = {.dim = 32, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                               .vocab_size = 37, .max_seq_len = 40, .tied = 0, .norm_eps = 1e-5f, .rope_theta = 1e4f};
    emdpo_llama_config fam = {.dim = 32, .hidden_dim = 40, .n_layers = 4, .n_heads = 4, .n_kv_heads = 2,
                              .vocab_size = 37, .max_seq_len = 40, .tied = 1, .norm_eps = 1e-5f, .rope_theta = 1e4f,
                              .head_dim = 12, .qkv_bias = 1, .o_bias = 1, .qk_norm = 1};
    for (int th = 1; th <= 2; th++) {
        check_pieces(&deep, EMDPO_ACTS_TRAIN, 0, th);
        check_pieces(&fam, EMDPO_ACTS_TRAIN, 0, th);
        check_pieces(&fam, EMDPO_ACTS_TRAIN_CKPT, 0, th);
        check_pieces(&deep, EMDPO_ACTS_TRAIN, 0x7f, th);
        check_pieces(&fam, EMDPO_ACTS_TRAIN_CKPT, 0x29, th); /* q, o, up */
    }
}

int main(void) {
    FILE *fp = fopen(FIXTURE, "rb");
    CHECK_MSG(fp != NULL, "cannot open %s (run from the repository root)", FIXTURE);
    if (!fp) return check_report("test_llama_grad");
    char magic[4];
    int32_t hdr[2];
    CHECK(rd(fp, magic, 1, 4) && memcmp(magic, "EMLG", 4) == 0 && rd(fp, hdr, sizeof hdr[0], 2) && hdr[0] == 1);
    for (int i = 0; i < hdr[1]; i++) run_case(fp, i);
    CHECK(fgetc(fp) == EOF);
    fclose(fp);
    test_chunks();
    test_ckpt();
    test_pieces();
    return check_report("test_llama_grad");
}
