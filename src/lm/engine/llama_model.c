#include "lm/engine/llama_model.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "base/alloc.h"
#include "base/half.h"
#include "base/threads.h"
#include "emdpo.h"
#include "lm/engine/gemm.h"
#include "lm/engine/llama_ops.h"

/* Hands out consecutive pieces of one buffer. Run once with base NULL to
 * count (with overflow checks), then again over the allocation. */
typedef struct carve {
    float *base;
    size_t used;
    int overflow;
} carve;

static float *take(carve *cv, size_t a, size_t b) {
    if (cv->overflow || (a && b > SIZE_MAX / 8 / a) || a * b > SIZE_MAX / 8 - cv->used) {
        cv->overflow = 1;
        return NULL;
    }
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += a * b;
    return p;
}

/* Whether buffers made for y fit a model of x (arch, a label, may
 * differ). */
static int same_config(const emdpo_llama_config *x, const emdpo_llama_config *y) {
    return x->dim == y->dim && x->hidden_dim == y->hidden_dim && x->n_layers == y->n_layers &&
           x->n_heads == y->n_heads && x->n_kv_heads == y->n_kv_heads && x->vocab_size == y->vocab_size &&
           x->max_seq_len == y->max_seq_len && x->tied == y->tied && x->norm_eps == y->norm_eps &&
           x->rope_theta == y->rope_theta && x->rope_type == y->rope_type && x->rope_factor == y->rope_factor &&
           x->rope_low_freq_factor == y->rope_low_freq_factor &&
           x->rope_high_freq_factor == y->rope_high_freq_factor &&
           x->rope_original_max_pos == y->rope_original_max_pos &&
           emdpo_llama_head_size(x) == emdpo_llama_head_size(y) && x->qkv_bias == y->qkv_bias &&
           x->o_bias == y->o_bias && x->qk_norm == y->qk_norm && x->sliding_window == y->sliding_window;
}

/* The attention widths: hs per head, qd = NH * hs for the queries, kvd =
 * NKV * hs for the keys and values. */
typedef struct widths {
    int hs, qd, kvd;
} widths;

static widths widths_of(const emdpo_llama_config *c) {
    int hs = emdpo_llama_head_size(c);
    return (widths){hs, c->n_heads * hs, c->n_kv_heads * hs};
}

/* Each chunk's RMSNorm weight gradients: the layers' attention and FFN
 * norms and the final one (C each), then with qk_norm the layers' q and k
 * norms (hs each). */
static size_t dnorm_floats(const emdpo_llama_config *c) {
    size_t L = (size_t)c->n_layers;
    return (2 * L + 1) * (size_t)c->dim + (c->qk_norm ? 2 * L * (size_t)emdpo_llama_head_size(c) : 0);
}

static void acts_layout(emdpo_llama_acts *a, carve *cv) {
    const emdpo_llama_config *c = &a->config;
    size_t N = (size_t)a->max_B * a->max_T, C = (size_t)c->dim, H = (size_t)c->hidden_dim, T = (size_t)a->max_T;
    widths wd = widths_of(c);
    size_t V = (size_t)c->vocab_size, hs = (size_t)wd.hs, qd = (size_t)wd.qd, kvd = (size_t)wd.kvd;
    /* L and N are each checked below through take() */
    size_t L = (size_t)c->n_layers, LN = (!a->training ? 1 : a->ckpt && L > 2 ? 2 : L) * N;
    size_t qkn = c->qk_norm ? LN : 0, dxw = qd > C ? qd : C;
    a->encoded = a->training ? take(cv, N, C) : NULL;
    a->ln1 = take(cv, LN, C);
    a->ln1_rstd = take(cv, LN, 1);
    a->q = take(cv, LN, qd);
    a->k = take(cv, LN, kvd);
    a->v = take(cv, LN, kvd);
    a->q_pre = take(cv, qkn, qd);
    a->k_pre = take(cv, qkn, kvd);
    a->q_rstd = take(cv, qkn, (size_t)c->n_heads);
    a->k_rstd = take(cv, qkn, (size_t)c->n_kv_heads);
    a->att = take(cv, LN, (size_t)c->n_heads * T);
    a->atty = take(cv, LN, qd);
    a->res2 = a->training ? take(cv, LN, C) : NULL;
    a->ln2 = take(cv, LN, C);
    a->ln2_rstd = take(cv, LN, 1);
    a->h1 = take(cv, LN, H);
    a->h3 = take(cv, LN, H);
    a->hg = take(cv, LN, H);
    a->res3 = take(cv, a->training ? L * N : N, C);
    a->lnf = take(cv, N, C);
    a->lnf_rstd = take(cv, N, 1);
    a->logits = take(cv, N, V);
    a->lse = take(cv, N, 1);
    a->logp = take(cv, N, 1);
    a->rope_cos = take(cv, T, hs / 2);
    a->rope_sin = take(cv, T, hs / 2);
    size_t R = (size_t)a->lora_r;
    a->lora_u_stride = LN * R;
    a->lora_g_stride = a->training ? 2 * N * R : 0;
    a->lora_u = R ? take(cv, LN, EMDPO_N_PROJ * R) : NULL;
    a->lora_g = R && a->training ? take(cv, 2 * N, EMDPO_N_PROJ * R) : NULL;
    size_t xw = 0, dA = 0;
    for (int P = 0; P < EMDPO_N_PROJ; P++) {
        int out, in;
        emdpo_llama_proj_shape(c, P, &out, &in);
        xw = (size_t)in > xw ? (size_t)in : xw;
        dA += (size_t)in; /* times R below */
    }
    a->lora_x_width = xw;
    a->lora_dA_chunk = R * dA;
    a->lora_x = R && a->training ? take(cv, N, xw) : NULL;
    a->lora_dA = R && a->training ? take(cv, 2 * (size_t)a->max_B, R * dA) : NULL;
    if (!a->training) return;
    a->dres = take(cv, 3 * N, C);
    a->dres2 = take(cv, 2 * N, C);
    a->dq = take(cv, 2 * N, qd);
    a->dk = take(cv, 2 * N, kvd);
    a->dv = take(cv, 2 * N, kvd);
    a->dqk = take(cv, c->qk_norm ? N : 0, qd); /* qd >= kvd */
    a->dh1 = take(cv, 2 * N, H);
    a->dh3 = take(cv, 2 * N, H);
    a->dhg = take(cv, N, H);
    a->dx = take(cv, N, dxw);
    a->datt = take(cv, N, T);
    a->dnorm = take(cv, (size_t)a->max_B, dnorm_floats(c));
    a->dlogits = a->logits; /* the gradient overwrites the logits, each read once (emdpo_logprob_backward_set) */
}

static int kernel_buffers(emdpo_llama_acts *a);

int emdpo_llama_acts_create(const emdpo_llama_config *c, int max_B, int max_T, int mode, emdpo_llama_acts **out) {
    return emdpo_llama_acts_create_lora(c, 0, max_B, max_T, mode, out);
}

int emdpo_llama_acts_create_lora(const emdpo_llama_config *c, int lora_r, int max_B, int max_T, int mode,
                                 emdpo_llama_acts **out) {
    *out = NULL;
    int rc = emdpo_llama_config_check(c);
    if (rc) return rc;
    if (max_B < 1 || max_T < 1 || max_T > emdpo_llama_context(c) || lora_r < 0 || mode < EMDPO_ACTS_INFER ||
        mode > EMDPO_ACTS_TRAIN_CKPT)
        return EMDPO_ERR_INVALID_ARG;
    if (lora_r > 1 << 16) return EMDPO_ERR_LIMIT;
    /* sgemm takes the row count B*T as an int */
    if (max_B > INT_MAX / max_T || (size_t)c->n_layers * (size_t)max_B * max_T > SIZE_MAX / 8) return EMDPO_ERR_LIMIT;
    emdpo_llama_acts *a = emdpo_calloc(1, sizeof *a);
    if (!a) return EMDPO_ERR_NOMEM;
    a->config = *c;
    a->max_B = max_B;
    a->max_T = max_T;
    a->training = mode != EMDPO_ACTS_INFER;
    a->ckpt = mode == EMDPO_ACTS_TRAIN_CKPT;
    a->lora_r = lora_r;
    carve cv = {NULL, 0, 0};
    acts_layout(a, &cv);
    size_t N = (size_t)max_B * max_T;
    if (cv.overflow || N > (SIZE_MAX / sizeof(int) - max_B) / 2) {
        emdpo_free(a, sizeof *a);
        return EMDPO_ERR_LIMIT;
    }
    a->buf_n = cv.used;
    a->ibuf_n = 2 * N + (size_t)max_B;
    a->buf = emdpo_malloc(a->buf_n * sizeof(float));
    a->ibuf = emdpo_malloc(a->ibuf_n * sizeof(int));
    if (!a->buf || !a->ibuf) {
        emdpo_llama_acts_free(a);
        return EMDPO_ERR_NOMEM;
    }
    cv = (carve){a->buf, 0, 0};
    acts_layout(a, &cv);
    a->tokens = a->ibuf;
    a->targets = a->ibuf + N;
    a->lens = a->ibuf + 2 * N;
    rc = kernel_buffers(a);
    if (rc) {
        emdpo_llama_acts_free(a);
        return rc;
    }
    *out = a;
    return EMDPO_OK;
}

void emdpo_llama_acts_free(emdpo_llama_acts *a) {
    if (!a) return;
    emdpo_free(a->buf, a->buf_n * sizeof(float));
    emdpo_free(a->ibuf, a->ibuf_n * sizeof(int));
    emdpo_free(a->kbuf, a->kbuf_n * sizeof(float));
    emdpo_free(a, sizeof *a);
}

/* Chunks: the unit of work of the forward and of the backward's activation
 * gradients is a run of whole sequences (attention never crosses them) of
 * about CHUNK_ROWS rows: enough for sgemm to run near its peak, few enough
 * that the chunks balance the threads and a chunk's layer stays in cache.
 * The cut depends on B and T only, not on which thread runs a chunk. */
enum { CHUNK_ROWS = 256 };

static int chunk_seqs(int T) { return T >= CHUNK_ROWS ? 1 : CHUNK_ROWS / T; }

static int team_size(int nchunks) {
    int t = emdpo_max_threads();
    return t < nchunks ? t : nchunks;
}

/* Inside a team each thread calls sgemm on its own chunk: a pthreads
 * OpenBLAS's own threads would only compete with the team, so it runs
 * single-threaded until the pass ends (an OpenMP OpenBLAS does so by itself
 * inside an active parallel region). So it does on the kernel path
 * whatever the team: what still goes to BLAS there (the backward's
 * attention) then sums in an order that no thread count changes (with a
 * pthreads OpenBLAS, Debian's; an OpenMP one may still thread a one-thread
 * team's calls). serial: a team of two or more, or the kernel path.
 * Returns the thread count to restore. */
static int blas_serial(int serial) { return serial && openblas_get_parallel() == OPENBLAS_THREAD; }

static int blas_begin(int serial) {
    int n = openblas_get_num_threads();
    if (blas_serial(serial)) openblas_set_num_threads(1);
    return n;
}

static void blas_end(int serial, int n) {
    if (blas_serial(serial)) openblas_set_num_threads(n);
}

/* Layer l's slot in the per-layer tensors: its own with training, one of
 * two with checkpointing, else the one slot every layer overwrites. res3
 * keeps every layer with training (layer_out). */
static size_t slot(const emdpo_llama_acts *a, int l) {
    return !a->training ? 0 : a->ckpt ? (size_t)(l % 2) : (size_t)l;
}

/* Layer l's output (res3) for the rows from r0. */
static float *layer_out(const emdpo_llama_acts *a, int l, size_t r0) {
    size_t N = (size_t)a->B * a->T;
    return a->res3 + ((a->training ? (size_t)l : 0) * N + r0) * a->config.dim;
}

/* The projections of one layer (or the head) as right-hand sides of the
 * row products, packed into a->wpack on the kernel path. Forward: out =
 * inp · wᵀ; backward: dinp = dout · w (EMDPO_PROJ_* order). */
typedef struct proj_set {
    emdpo_gemm_rhs r[EMDPO_N_PROJ];
    int n;        /* EMDPO_N_PROJ for a layer, 1 for the head (in r[0]) */
    int panels;   /* over all of them */
} proj_set;

/* The weight (OC, IC), w in float32 or w16 in 16 bits (dtype), as a
 * right-hand side in either orientation. */
static void proj_add(proj_set *ps, float **space, const float *w, const uint16_t *w16, int dtype, int plain, int OC,
                     int IC, int fwd) {
    int K = fwd ? IC : OC, N = fwd ? OC : IC;
    size_t n = emdpo_gemm_rhs_floats(K, N);
    if (w16)
        emdpo_gemm_rhs_init16(&ps->r[ps->n], w16, dtype, IC, K, N, fwd, plain, *space);
    else
        emdpo_gemm_rhs_init(&ps->r[ps->n], w, IC, K, N, fwd, *space);
    if (*space) *space += n;
    ps->panels += emdpo_gemm_rhs_panels(&ps->r[ps->n]);
    ps->n++;
}

/* Shapes (OC, IC) of a layer's projections in EMDPO_PROJ_ order, then the head's. */
static void proj_dims(const emdpo_llama_config *c, int dims[EMDPO_N_PROJ + 1][2]) {
    for (int i = 0; i < EMDPO_N_PROJ; i++) emdpo_llama_proj_shape(c, i, &dims[i][0], &dims[i][1]);
    dims[EMDPO_N_PROJ][0] = c->vocab_size;
    dims[EMDPO_N_PROJ][1] = c->dim;
}

/* Layer l's projections; plain: a frozen model's widened for BLAS
 * (emdpo_gemm_rhs), not packed. */
static void proj_layer(proj_set *ps, const emdpo_llama *m, float *space, int plain, int l, int fwd) {
    float *w[EMDPO_N_PROJ];
    int dims[EMDPO_N_PROJ + 1][2];
    emdpo_llama_proj_weights(&m->params, w);
    proj_dims(&m->config, dims);
    ps->n = ps->panels = 0;
    for (int i = 0; i < EMDPO_N_PROJ; i++) {
        size_t off = (size_t)l * dims[i][0] * dims[i][1];
        const emdpo_llama_mats16 *f = m->frozen;
        proj_add(ps, &space, f ? NULL : w[i] + off, f ? f->w[i] + off : NULL, f ? f->dtype : 0, plain, dims[i][0],
                 dims[i][1], fwd);
    }
}

/* The head runs in blocks of HEAD_ROWS vocabulary rows (a multiple of the
 * kernel's panel width, so blocking changes no forward sum), which keeps
 * its packed or widened copy near a layer's size however large the
 * vocabulary; the BLAS path blocks it alike, so that a frozen model's
 * widened copy meets the calls a float32 model makes. */
enum { HEAD_ROWS = 4096 };

static int head_rows(const emdpo_llama_config *c) { return c->vocab_size > HEAD_ROWS ? HEAD_ROWS : c->vocab_size; }

/* Rows [v0, v0 + nv) of the head. */
static void proj_head(proj_set *ps, const emdpo_llama *m, float *space, int plain, int v0, int nv, int fwd) {
    size_t off = (size_t)v0 * m->config.dim;
    const emdpo_llama_mats16 *f = m->frozen;
    ps->n = ps->panels = 0;
    proj_add(ps, &space, f ? NULL : m->params.lm_head + off, f ? f->lm_head + off : NULL, f ? f->dtype : 0, plain,
             nv, m->config.dim, fwd);
}

/* Floats of a->wpack: the larger of a layer's projections and a head
 * block, in the larger of the two orientations (they differ only by
 * padding). */
static size_t wpack_floats(const emdpo_llama_config *c) {
    int dims[EMDPO_N_PROJ + 1][2];
    proj_dims(c, dims);
    if (dims[EMDPO_N_PROJ][0] > HEAD_ROWS) dims[EMDPO_N_PROJ][0] = HEAD_ROWS;
    size_t best = 0;
    for (int fwd = 0; fwd < 2; fwd++) { /* (OC, IC) packs as (IC, OC) forward, (OC, IC) backward */
        size_t n[EMDPO_N_PROJ + 1], layer = 0;
        for (int i = 0; i <= EMDPO_N_PROJ; i++)
            n[i] = emdpo_gemm_rhs_floats(dims[i][fwd], dims[i][!fwd]);
        for (int i = 0; i < EMDPO_N_PROJ; i++) layer += n[i];
        if (layer > best) best = layer;
        if (n[EMDPO_N_PROJ] > best) best = n[EMDPO_N_PROJ];
    }
    return best;
}

/* The packed (or widened) weights and, where the kernel is active, each
 * thread's scratch, in one allocation, every piece a multiple of 16 floats
 * from a 64-byte boundary, so that packed panel rows are whole cache
 * lines. */
static int kernel_buffers(emdpo_llama_acts *a) {
    const emdpo_llama_config *c = &a->config;
    int kernel = emdpo_gemm_kernel_active();
    size_t wn = wpack_floats(c), kt = kernel ? (size_t)emdpo_max_threads() : 0;
    size_t tn = a->training ? emdpo_gemm_tn_scratch() : 0, att = emdpo_attention_scratch(a->max_T, emdpo_llama_head_size(c));
    if (wn > SIZE_MAX / 8 - 16 || (kt && tn + att > (SIZE_MAX / 8 - wn - 16) / kt)) return EMDPO_ERR_LIMIT;
    a->kbuf_n = wn + kt * (tn + att) + 16;
    a->kbuf = emdpo_malloc(a->kbuf_n * sizeof(float));
    if (!a->kbuf) return EMDPO_ERR_NOMEM;
    a->wpack = a->kbuf + (16 - ((uintptr_t)a->kbuf / sizeof(float)) % 16) % 16;
    a->tn_scratch = kt && tn ? a->wpack + wn : NULL;
    a->tn_scratch_n = tn;
    a->att_scratch = kt ? a->wpack + wn + kt * tn : NULL;
    a->att_scratch_n = att;
    a->kthreads = (int)kt;
    return EMDPO_OK;
}

/* Whether a pass of nchunks chunks takes the kernel: a single chunk would
 * not repay the packing, and its products are better left to BLAS's own
 * threads. */
static int kernel_pass(const emdpo_llama_acts *a, int nchunks) { return nchunks > 1 && a->kthreads > 0; }

/* Where a pass packs the weights for the kernel, or widens a frozen
 * model's for BLAS (plain); NULL: BLAS on the float32 weights. */
static float *packing_space(const emdpo_llama *m, const emdpo_llama_acts *a, int nchunks) {
    return kernel_pass(a, nchunks) || m->frozen ? a->wpack : NULL;
}

/* Packing a set is cut into jobs of PACK_PANELS panels, shared by a team. */
enum { PACK_PANELS = 4 };

static int pack_jobs(const proj_set *ps) { return (ps->panels + PACK_PANELS - 1) / PACK_PANELS; }

static void pack_job(const proj_set *ps, int job) {
    int p0 = job * PACK_PANELS, p1 = p0 + PACK_PANELS;
    for (int i = 0; i < ps->n && p0 < p1; i++) {
        int np = emdpo_gemm_rhs_panels(&ps->r[i]);
        if (p0 < np) {
            emdpo_gemm_rhs_pack(&ps->r[i], p0, p1 < np ? p1 : np);
            p1 -= np;
            p0 = 0;
        } else {
            p0 -= np;
            p1 -= np;
        }
    }
}

/* out (nr, OC) = inp · wᵀ, plus res when res is given (the residual add
 * folded into the product; out may be res). */
static void proj_forward(float *out, const float *res, const float *inp, const emdpo_gemm_rhs *w, int nr) {
    if (res && out != res) memcpy(out, res, (size_t)nr * w->N * sizeof(float));
    emdpo_gemm_rows(out, w->N, inp, w->K, w, nr, res ? 1.0f : 0.0f);
}

/* dinp (nr, IC) = dout · w (beta 0: overwriting) or += (beta 1). */
static void proj_dinp(float *dinp, const float *dout, const emdpo_gemm_rhs *w, int nr, float beta) {
    emdpo_gemm_rows(dinp, w->N, dout, w->K, w, nr, beta);
}

/* The residual stream entering layer l for the chunk starting at row r0.
 * Without training it is one buffer (res3's one slot) that the wo and w2
 * products add into in place. */
static float *stream_in(const emdpo_llama_acts *a, int l, size_t r0) {
    if (!a->training) return layer_out(a, 0, r0);
    return l ? layer_out(a, l - 1, r0) : a->encoded + r0 * (size_t)a->config.dim;
}

/* The queries or keys of nr rows, nh heads: x (nr, nh * hs) holds the
 * projection's output, biased; with qk_norm it is kept in pre and each
 * head RMSNormed into x (rstd (nr, nh)); then RoPE by the tables' rows. */
static void qk_finish(const emdpo_llama_config *c, float *x, float *pre, float *rstd, const float *norm_w,
                      const float *cosv, const float *sinv, int nb, int T, int nh, int hs) {
    size_t n = (size_t)nb * T * nh;
    if (c->qk_norm) {
        memcpy(pre, x, n * hs * sizeof(float));
        emdpo_rmsnorm_forward(x, rstd, pre, norm_w, n, hs, c->norm_eps);
    }
    emdpo_rope_forward(x, x, cosv, sinv, nb, T, nh, hs);
}

/* Dropout's mask: 1/(1-p) for element (row i, column j) of projection P's
 * input in layer l when the hash keeps it, else 0. */
static float dropout_scale(uint64_t seed, int l, int P, size_t i, int j, float p) {
    uint64_t z = seed ^ ((uint64_t)(l * EMDPO_N_PROJ + P) << 48) ^ ((uint64_t)i << 20) ^ (uint64_t)j;
    z += 0x9e3779b97f4a7c15ull; /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53 < p ? 0.0f : 1.0f / (1.0f - p);
}

/* dst (nr, IC) = src (nr, IC) * dropout's mask for rows [r0, r0 + nr) of
 * the batch. */
static void dropout_apply(float *dst, const float *src, const emdpo_llama_acts *a, float p, int l, int P, size_t r0,
                          int nr, int IC) {
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < IC; j++)
            dst[(size_t)i * IC + j] = src[(size_t)i * IC + j] * dropout_scale(a->lora_seed, l, P, r0 + i, j, p);
}

/* Whether adapter lo drops out of its inputs in a pass through a. */
static int dropping(const emdpo_lora *lo, const emdpo_llama_acts *a) {
    return lo && a->training && lo->config.dropout > 0.0f;
}

/* Adapter projection P of layer l (none when lo is NULL or does not adapt
 * it) for the nr rows of inp (nr, in), batch rows from r0, row o of layer
 * l's slot: u = s · x' Aᵀ is kept (x' = inp after dropout), out (nr, out)
 * += u Bᵀ. */
static void lora_forward(const emdpo_lora *lo, emdpo_llama_acts *a, int l, int P, float *out, const float *inp,
                         int nr, size_t r0, size_t o) {
    if (!lo || !lo->A[P]) return;
    int OC, IC, r = lo->config.r;
    emdpo_llama_proj_shape(&a->config, P, &OC, &IC);
    float *u = a->lora_u + (size_t)P * a->lora_u_stride + o * (size_t)r;
    const float *A = lo->A[P] + (size_t)l * r * IC, *B = lo->B[P] + (size_t)l * OC * r, *x = inp;
    if (dropping(lo, a)) {
        float *xd = a->lora_x + r0 * a->lora_x_width;
        dropout_apply(xd, inp, a, lo->config.dropout, l, P, r0, nr, IC);
        x = xd;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, r, IC, emdpo_lora_scale(&lo->config), x, IC, A, IC, 0.0f,
                u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, OC, r, 1.0f, u, r, B, r, 1.0f, out, OC);
}

/* Sequences [b0, b1) through layer l (after the embedding at l == 0). */
static void layer_forward_chunk(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, const proj_set *ps,
                                float *att_scratch, int l, int b0, int b1) {
    const emdpo_llama_config *c = &m->config;
    const emdpo_llama_params *p = &m->params;
    const emdpo_gemm_rhs *w = ps->r;
    widths wd = widths_of(c);
    int B = a->B, T = a->T, C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads;
    int hs = wd.hs, qd = wd.qd, kvd = wd.kvd, nb = b1 - b0, nr = nb * T;
    size_t N = (size_t)B * T, r0 = (size_t)b0 * T, TT = (size_t)T * T, lC = (size_t)l * C, lh = (size_t)l * hs;
    size_t o = slot(a, l) * N + r0; /* first row of the chunk in layer l's slot */
    float *x = stream_in(a, l, r0);
    if (l == 0 && m->frozen)
        emdpo_embed16_forward(x, a->tokens + r0, m->frozen->tok_emb, m->frozen->dtype == EMDPO_DTYPE_F16, (size_t)nr, C);
    else if (l == 0)
        emdpo_embed_forward(x, a->tokens + r0, p->tok_emb, (size_t)nr, C);
    float *ln1 = a->ln1 + o * C, *q = a->q + o * qd, *k = a->k + o * kvd, *v = a->v + o * kvd;
    float *att = a->att + (slot(a, l) * B + b0) * NH * TT, *atty = a->atty + o * qd;
    float *res2 = a->training ? a->res2 + o * C : x;
    float *ln2 = a->ln2 + o * C, *h1 = a->h1 + o * H, *h3 = a->h3 + o * H, *hg = a->hg + o * H;
    emdpo_rmsnorm_forward(ln1, a->ln1_rstd + o, x, p->rms_att + lC, (size_t)nr, C, c->norm_eps);
    proj_forward(q, NULL, ln1, &w[EMDPO_PROJ_Q], nr);
    proj_forward(k, NULL, ln1, &w[EMDPO_PROJ_K], nr);
    proj_forward(v, NULL, ln1, &w[EMDPO_PROJ_V], nr);
    lora_forward(lo, a, l, EMDPO_PROJ_Q, q, ln1, nr, r0, o);
    lora_forward(lo, a, l, EMDPO_PROJ_K, k, ln1, nr, r0, o);
    lora_forward(lo, a, l, EMDPO_PROJ_V, v, ln1, nr, r0, o);
    if (c->qkv_bias) {
        emdpo_bias_forward(q, p->bq + (size_t)l * qd, (size_t)nr, qd);
        emdpo_bias_forward(k, p->bk + (size_t)l * kvd, (size_t)nr, kvd);
        emdpo_bias_forward(v, p->bv + (size_t)l * kvd, (size_t)nr, kvd);
    }
    int qn = c->qk_norm;
    qk_finish(c, q, qn ? a->q_pre + o * qd : NULL, qn ? a->q_rstd + o * NH : NULL, p->q_norm + lh, a->rope_cos,
              a->rope_sin, nb, T, NH, hs);
    qk_finish(c, k, qn ? a->k_pre + o * kvd : NULL, qn ? a->k_rstd + o * NKV : NULL, p->k_norm + lh, a->rope_cos,
              a->rope_sin, nb, T, NKV, hs);
    for (int b = 0; b < nb; b++) {
        size_t rb = (size_t)b * T;
        emdpo_attention_forward(atty + rb * qd, att + b * NH * TT, att_scratch, q + rb * qd, k + rb * kvd,
                                v + rb * kvd, a->lens[b0 + b], T, NH, NKV, hs);
    }
    proj_forward(res2, x, atty, &w[EMDPO_PROJ_O], nr);
    lora_forward(lo, a, l, EMDPO_PROJ_O, res2, atty, nr, r0, o);
    if (c->o_bias) emdpo_bias_forward(res2, p->bo + lC, (size_t)nr, C);
    emdpo_rmsnorm_forward(ln2, a->ln2_rstd + o, res2, p->rms_ffn + lC, (size_t)nr, C, c->norm_eps);
    proj_forward(h1, NULL, ln2, &w[EMDPO_PROJ_GATE], nr);
    proj_forward(h3, NULL, ln2, &w[EMDPO_PROJ_UP], nr);
    lora_forward(lo, a, l, EMDPO_PROJ_GATE, h1, ln2, nr, r0, o);
    lora_forward(lo, a, l, EMDPO_PROJ_UP, h3, ln2, nr, r0, o);
    emdpo_swiglu_forward(hg, h1, h3, (size_t)nr * H);
    float *out = layer_out(a, l, r0);
    proj_forward(out, res2, hg, &w[EMDPO_PROJ_DOWN], nr);
    lora_forward(lo, a, l, EMDPO_PROJ_DOWN, out, hg, nr, r0, o);
}

/* The head's three steps for sequences [b0, b1): the final norm, the
 * product with head rows [v0, v0 + nv) (logits columns), the log-softmax. */
static void final_norm_chunk(const emdpo_llama *m, emdpo_llama_acts *a, int b0, int b1) {
    const emdpo_llama_config *c = &m->config;
    int C = c->dim, nr = (b1 - b0) * a->T;
    size_t r0 = (size_t)b0 * a->T;
    const float *top = layer_out(a, c->n_layers - 1, r0);
    emdpo_rmsnorm_forward(a->lnf + r0 * C, a->lnf_rstd + r0, top, m->params.rms_final, (size_t)nr, C, c->norm_eps);
}

static void head_block_chunk(emdpo_llama_acts *a, const proj_set *ps, int v0, int b0, int b1) {
    int C = a->config.dim, V = a->config.vocab_size;
    size_t r0 = (size_t)b0 * a->T;
    emdpo_gemm_rows(a->logits + r0 * V + v0, V, a->lnf + r0 * C, C, &ps->r[0], (b1 - b0) * a->T, 0.0f);
}

static void logprob_chunk(emdpo_llama_acts *a, int b0, int b1) {
    int V = a->config.vocab_size;
    size_t r0 = (size_t)b0 * a->T;
    emdpo_logprob_forward(a->logp + r0, a->lse + r0, a->logits + r0 * V, a->targets + r0, (size_t)(b1 - b0) * a->T, V);
}

/* Called by every thread of a team: packs ps, shared out in jobs. */
static void team_pack(const proj_set *ps) {
    int np = pack_jobs(ps);
#pragma omp for schedule(dynamic, 1)
    for (int j = 0; j < np; j++) pack_job(ps, j);
}

/* Called by every thread of a team: layer l's forward over the batch's
 * nchunks chunks of bc sequences. space: the packing buffer (proj_layer),
 * kspace: the same where the kernel runs (then the attention's per-thread
 * scratch is used), else NULL. */
static void team_layer_forward(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, float *space,
                               int plain, const float *kspace, int l, int bc, int nchunks) {
    proj_set ps;
    proj_layer(&ps, m, space, plain, l, 1);
    team_pack(&ps);
#pragma omp for schedule(dynamic, 1)
    for (int ch = 0; ch < nchunks; ch++) {
        int b0 = ch * bc, b1 = b0 + bc < a->B ? b0 + bc : a->B;
        float *att_scratch = kspace ? a->att_scratch + (size_t)emdpo_thread_num() * a->att_scratch_n : NULL;
        layer_forward_chunk(m, lo, a, &ps, att_scratch, l, b0, b1);
    }
}

/* Whether lo (or NULL) fits m and a. */
static int lora_fits(const emdpo_llama *m, const emdpo_lora *lo, const emdpo_llama_acts *a) {
    return !lo || (lo->config.r <= a->lora_r && emdpo_lora_fits(lo, &m->config));
}

int emdpo_llama_forward(const emdpo_llama *m, emdpo_llama_acts *a, const int *tokens, const int *lens, int B, int T) {
    return emdpo_llama_forward_lora(m, NULL, a, tokens, lens, B, T);
}

int emdpo_llama_forward_lora(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, const int *tokens,
                             const int *lens, int B, int T) {
    const emdpo_llama_config *c = &m->config;
    if (!same_config(c, &a->config) || B < 1 || B > a->max_B || T < 1 || T > a->max_T || !lora_fits(m, lo, a))
        return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < B; b++) {
        int len = lens ? lens[b] : T;
        if (len < 0 || len > T) return EMDPO_ERR_INVALID_ARG;
        for (int t = 0; t < len; t++)
            if (tokens[(size_t)b * T + t] < 0 || tokens[(size_t)b * T + t] >= c->vocab_size) return EMDPO_ERR_INVALID_ARG;
    }
    a->B = B;
    a->T = T;
    a->unused = 1;
    for (int b = 0; b < B; b++) {
        int len = lens ? lens[b] : T;
        a->lens[b] = len;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            a->tokens[i] = t < len ? tokens[i] : 0;
            a->targets[i] = t + 1 < len ? tokens[i + 1] : -1;
        }
    }
    emdpo_rope_table(a->rope_cos, a->rope_sin, 0, T, emdpo_llama_head_size(c), c);
    int L = c->n_layers, bc = chunk_seqs(T), nchunks = (B + bc - 1) / bc, team = team_size(nchunks);
    float *space = packing_space(m, a, nchunks);
    /* A frozen model's pass without the kernel goes to BLAS as a float32
     * model's does, on its matrices widened into space (plain); kspace: the
     * kernel's. */
    int plain = m->frozen && !kernel_pass(a, nchunks);
    float *kspace = plain ? NULL : space;
    if (kspace) team = team < a->kthreads ? team : a->kthreads;
    int serial = team > 1 || kspace, saved = blas_begin(serial);
    /* Layer by layer: the team packs layer l's weights once, then takes the
     * chunks through it; then the head, a block of rows at a time. */
    int V = c->vocab_size, hr = head_rows(c);
#pragma omp parallel num_threads(team)
    {
        for (int l = 0; l < L; l++) team_layer_forward(m, lo, a, space, plain, kspace, l, bc, nchunks);
#pragma omp for schedule(dynamic, 1)
        for (int ch = 0; ch < nchunks; ch++) final_norm_chunk(m, a, ch * bc, ch * bc + bc < B ? ch * bc + bc : B);
        for (int v0 = 0; v0 < V; v0 += hr) {
            proj_set ps;
            proj_head(&ps, m, space, plain, v0, V - v0 < hr ? V - v0 : hr, 1);
            team_pack(&ps);
#pragma omp for schedule(dynamic, 1)
            for (int ch = 0; ch < nchunks; ch++) head_block_chunk(a, &ps, v0, ch * bc, ch * bc + bc < B ? ch * bc + bc : B);
        }
#pragma omp for schedule(dynamic, 1)
        for (int ch = 0; ch < nchunks; ch++) logprob_chunk(a, ch * bc, ch * bc + bc < B ? ch * bc + bc : B);
    }
    blas_end(serial, saved);
    return EMDPO_OK;
}

/* The backward in stages. Stage L takes each chunk through the log-softmax,
 * the head and the final RMSNorm; stage l in [0, L) takes each chunk through
 * layer l (activation gradients only) while the weight gradients of layer
 * l+1 (at stage L-1: of the head) are computed; stage -1 finishes layer 0's,
 * the embedding's and the RMSNorm weights'. Within a stage every job writes
 * its own rows or its own block of a gradient, so their order does not
 * matter; the stages' barriers order the rest. With checkpointing, stage l
 * first runs layer l's forward again into slot l % 2 (layer l + 2's, done
 * with; layer l + 1's, which the stage's weight gradients read, is in the
 * other): the same calls on the same inputs, so the same bits. The last
 * two layers are still there from the forward. */
typedef struct bwd {
    const emdpo_llama *m;
    emdpo_llama_acts *a;
    const float *dlogp;
    emdpo_llama_params g;
    const emdpo_lora *lo;            /* with an adapter: its gradient alone, in gA, gB */
    float *gA[EMDPO_N_PROJ], *gB[EMDPO_N_PROJ];
    int bc, nchunks; /* sequences per chunk, chunks */
    int split;       /* weight gradients in blocks (else whole, each sgemm free to use OpenBLAS's threads) */
    float *space;    /* packed projections, or NULL for the BLAS path */
    float *scratch;  /* the weight-gradient kernel's, per team thread; NULL without space */
} bwd;

/* dL/d(layer j's output) for j in [-1, L): three live at once. */
static float *dres_slot(const bwd *w, int j) {
    return w->a->dres + (size_t)((j + 1) % 3) * w->a->B * w->a->T * w->a->config.dim;
}

/* This chunk's RMSNorm weight gradients: layer l's attention norm at l,
 * its FFN norm at L + l, the final norm at 2L; with qk_norm, layer l's q
 * norm at 2L + 1 + l and its k norm at 3L + 1 + l. */
static float *dnorm_of(const bwd *w, int ch, int k) {
    const emdpo_llama_config *c = &w->m->config;
    size_t L = (size_t)c->n_layers, K = (size_t)k, base = (size_t)ch * dnorm_floats(c);
    if (K <= 2 * L) return w->a->dnorm + base + K * c->dim;
    return w->a->dnorm + base + (2 * L + 1) * c->dim + (K - 2 * L - 1) * emdpo_llama_head_size(c);
}

/* Stage L for sequences [b0, b1) of chunk ch, in three steps: the logits'
 * gradient; the final norm output's, dx, one block of head rows [v0, v0 +
 * nv) at a time (rows in order, so the sum's order is fixed); the final
 * norm's backward. */
static void head_dlogits_chunk(const bwd *w, int ch, int b0, int b1) {
    emdpo_llama_acts *a = w->a;
    int V = a->config.vocab_size, nr = (b1 - b0) * a->T;
    size_t r0 = (size_t)b0 * a->T;
    memset(dnorm_of(w, ch, 0), 0, dnorm_floats(&a->config) * sizeof(float));
    emdpo_logprob_backward_set(a->dlogits + r0 * V, w->dlogp + r0, a->logits + r0 * V, a->lse + r0, a->targets + r0,
                               (size_t)nr, V);
}

static void head_dx_chunk(const bwd *w, const proj_set *ps, int v0, int b0, int b1) {
    emdpo_llama_acts *a = w->a;
    int C = a->config.dim, V = a->config.vocab_size;
    size_t r0 = (size_t)b0 * a->T;
    emdpo_gemm_rows(a->dx + r0 * C, C, a->dlogits + r0 * V + v0, V, &ps->r[0], (b1 - b0) * a->T, v0 ? 1.0f : 0.0f);
}

static void head_norm_chunk(const bwd *w, int ch, int b0, int b1) {
    const emdpo_llama_config *c = &w->m->config;
    emdpo_llama_acts *a = w->a;
    int L = c->n_layers, C = c->dim, nr = (b1 - b0) * a->T;
    size_t r0 = (size_t)b0 * a->T;
    float *dtop = dres_slot(w, L - 1) + r0 * C;
    memset(dtop, 0, (size_t)nr * C * sizeof(float));
    emdpo_rmsnorm_backward(dtop, dnorm_of(w, ch, 2 * L), a->dx + r0 * C, layer_out(a, L - 1, r0),
                           w->m->params.rms_final, a->lnf_rstd + r0, (size_t)nr, C);
}

/* Where chunk ch keeps its share of projection P's dA in slot l % 2. */
static float *lora_dA_part(const bwd *w, int l, int ch, int P) {
    size_t off = 0;
    for (int q = 0; q < P; q++) {
        int out, in;
        emdpo_llama_proj_shape(&w->m->config, q, &out, &in);
        off += (size_t)w->lo->config.r * in;
    }
    return w->a->lora_dA + ((size_t)(l % 2) * w->a->max_B + (size_t)ch) * w->a->lora_dA_chunk + off;
}

/* The adapter's share of projection P's input gradient for chunk ch (nr
 * rows from batch row r0; inp its input): g = s · dout B is kept (row s0
 * of slot l % 2), dinp (nr, in) += (g A) * dropout's mask, and the
 * chunk's dA = gᵀ x' (x' the input after dropout) goes to its partial
 * sum, which lora_dA_job adds up in chunk order. */
static void lora_dinp(const bwd *w, int l, int P, int ch, float *dinp, const float *dout, const float *inp, int nr,
                      size_t r0, size_t s0) {
    const emdpo_lora *lo = w->lo;
    if (!lo || !lo->A[P]) return;
    emdpo_llama_acts *a = w->a;
    int OC, IC, r = lo->config.r, drop = dropping(lo, a);
    emdpo_llama_proj_shape(&w->m->config, P, &OC, &IC);
    float *g = a->lora_g + (size_t)P * a->lora_g_stride + s0 * (size_t)r, *xd = a->lora_x + r0 * a->lora_x_width;
    const float *A = lo->A[P] + (size_t)l * r * IC, *B = lo->B[P] + (size_t)l * OC * r;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, r, OC, emdpo_lora_scale(&lo->config), dout, OC, B, r,
                0.0f, g, r);
    if (drop) { /* g A into the scratch, then masked into dinp */
        float p = lo->config.dropout;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, IC, r, 1.0f, g, r, A, IC, 0.0f, xd, IC);
        for (int i = 0; i < nr; i++)
            for (int j = 0; j < IC; j++)
                dinp[(size_t)i * IC + j] += xd[(size_t)i * IC + j] * dropout_scale(a->lora_seed, l, P, r0 + i, j, p);
        dropout_apply(xd, inp, a, p, l, P, r0, nr, IC);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, IC, r, 1.0f, g, r, A, IC, 1.0f, dinp, IC);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, IC, nr, 1.0f, g, r, drop ? xd : inp, IC, 0.0f,
                lora_dA_part(w, l, ch, P), IC);
}

/* dA of projection P in layer l += the chunks' shares, in chunk order. */
static void lora_dA_job(const bwd *w, int l, int P) {
    int out, in;
    emdpo_llama_proj_shape(&w->m->config, P, &out, &in);
    size_t n = (size_t)w->lo->config.r * in;
    float *dA = w->gA[P] + (size_t)l * n;
    for (int ch = 0; ch < w->nchunks; ch++) {
        const float *part = lora_dA_part(w, l, ch, P);
        for (size_t i = 0; i < n; i++) dA[i] += part[i];
    }
}

/* d (n, hs) holds the gradient of n per-head RMSNorm outputs; it becomes
 * their inputs' gradient, dw += the weight's. scratch holds n * hs floats. */
static void qk_norm_backward(float *d, float *scratch, float *dw, const float *pre, const float *w, const float *rstd,
                             size_t n, int hs) {
    memcpy(scratch, d, n * hs * sizeof(float));
    memset(d, 0, n * hs * sizeof(float));
    emdpo_rmsnorm_backward(d, dw, scratch, pre, w, rstd, n, hs);
}

/* The residual adds pass the stream's gradient through, so dL/d(layer
 * input) = dL/d(res2) + the attention branch's and dL/d(res2) =
 * dL/d(layer output) + the FFN branch's. */
static void layer_chunk(const bwd *w, const proj_set *ps, int l, int ch, int b0, int b1) {
    const emdpo_llama_config *c = &w->m->config;
    const emdpo_llama_params *p = &w->m->params;
    emdpo_llama_acts *a = w->a;
    widths wd = widths_of(c);
    int B = a->B, T = a->T, C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads, L = c->n_layers;
    int hs = wd.hs, qd = wd.qd, kvd = wd.kvd, nb = b1 - b0, nr = nb * T;
    size_t N = (size_t)B * T, r0 = (size_t)b0 * T, o = slot(a, l) * N + r0, s = (size_t)(l % 2) * N + r0;
    size_t TT = (size_t)T * T, lC = (size_t)l * C, lh = (size_t)l * hs;
    const float *x = stream_in(a, l, r0);
    const float *att = a->att + (slot(a, l) * B + b0) * NH * TT;
    const float *dout = dres_slot(w, l) + r0 * C;
    float *dr2 = a->dres2 + s * C, *dq = a->dq + s * qd, *dk = a->dk + s * kvd, *dv = a->dv + s * kvd;
    /* dx holds C or qd columns: a chunk's rows start max(C, qd) apart, so chunks never overlap */
    float *dh1 = a->dh1 + s * H, *dh3 = a->dh3 + s * H, *dhg = a->dhg + r0 * H, *dx = a->dx + r0 * (qd > C ? qd : C);
    float *din = dres_slot(w, l - 1) + r0 * C;
    /* FFN branch: res3 = res2 + w2(silu(w1 ln2) * w3 ln2) */
    proj_dinp(dhg, dout, &ps->r[EMDPO_PROJ_DOWN], nr, 0.0f);
    lora_dinp(w, l, EMDPO_PROJ_DOWN, ch, dhg, dout, a->hg + o * H, nr, r0, s);
    emdpo_swiglu_backward_set(dh1, dh3, dhg, a->h1 + o * H, a->h3 + o * H, (size_t)nr * H);
    proj_dinp(dx, dh1, &ps->r[EMDPO_PROJ_GATE], nr, 0.0f);
    proj_dinp(dx, dh3, &ps->r[EMDPO_PROJ_UP], nr, 1.0f);
    lora_dinp(w, l, EMDPO_PROJ_GATE, ch, dx, dh1, a->ln2 + o * C, nr, r0, s);
    lora_dinp(w, l, EMDPO_PROJ_UP, ch, dx, dh3, a->ln2 + o * C, nr, r0, s);
    memcpy(dr2, dout, (size_t)nr * C * sizeof(float));
    emdpo_rmsnorm_backward(dr2, dnorm_of(w, ch, L + l), dx, a->res2 + o * C, p->rms_ffn + lC, a->ln2_rstd + o,
                           (size_t)nr, C);
    /* Attention branch: res2 = x + wo(attention(rope(norm(wq ln1 + bq)), rope(norm(wk ln1 + bk)), wv ln1 + bv))
     * + bo, the biases and norms where the family has them. The biases'
     * gradients are sums over all rows of dq, dk, dv and dres2 (bias_job). */
    proj_dinp(dx, dr2, &ps->r[EMDPO_PROJ_O], nr, 0.0f);
    lora_dinp(w, l, EMDPO_PROJ_O, ch, dx, dr2, a->atty + o * qd, nr, r0, s);
    memset(dq, 0, (size_t)nr * qd * sizeof(float));
    memset(dk, 0, (size_t)nr * kvd * sizeof(float));
    memset(dv, 0, (size_t)nr * kvd * sizeof(float));
    for (int b = 0; b < nb; b++) {
        size_t rb = (size_t)b * T;
        emdpo_attention_backward(dq + rb * qd, dk + rb * kvd, dv + rb * kvd, a->datt + (size_t)(b0 + b) * TT,
                                 dx + rb * qd, a->q + (o + rb) * qd, a->k + (o + rb) * kvd, a->v + (o + rb) * kvd,
                                 att + b * NH * TT, a->lens[b0 + b], T, NH, NKV, hs);
    }
    emdpo_rope_backward_inplace(dq, a->rope_cos, a->rope_sin, nb, T, NH, hs);
    emdpo_rope_backward_inplace(dk, a->rope_cos, a->rope_sin, nb, T, NKV, hs);
    if (c->qk_norm) {
        float *scratch = a->dqk + r0 * qd;
        qk_norm_backward(dq, scratch, dnorm_of(w, ch, 2 * L + 1 + l), a->q_pre + o * qd, p->q_norm + lh,
                         a->q_rstd + o * NH, (size_t)nr * NH, hs);
        qk_norm_backward(dk, scratch, dnorm_of(w, ch, 3 * L + 1 + l), a->k_pre + o * kvd, p->k_norm + lh,
                         a->k_rstd + o * NKV, (size_t)nr * NKV, hs);
    }
    proj_dinp(dx, dq, &ps->r[EMDPO_PROJ_Q], nr, 0.0f);
    proj_dinp(dx, dk, &ps->r[EMDPO_PROJ_K], nr, 1.0f);
    proj_dinp(dx, dv, &ps->r[EMDPO_PROJ_V], nr, 1.0f);
    lora_dinp(w, l, EMDPO_PROJ_Q, ch, dx, dq, a->ln1 + o * C, nr, r0, s);
    lora_dinp(w, l, EMDPO_PROJ_K, ch, dx, dk, a->ln1 + o * C, nr, r0, s);
    lora_dinp(w, l, EMDPO_PROJ_V, ch, dx, dv, a->ln1 + o * C, nr, r0, s);
    memcpy(din, dr2, (size_t)nr * C * sizeof(float));
    emdpo_rmsnorm_backward(din, dnorm_of(w, ch, l), dx, x, p->rms_att + lC, a->ln1_rstd + o, (size_t)nr, C);
}

/* One weight gradient: dw (OC, IC) += doutᵀ · inp over all B*T rows. */
typedef struct wgrad {
    float *dw;
    const float *dout, *inp;
    int OC, IC;
} wgrad;

/* An adapter's dB (out, r) += doutᵀ u for layer l, over all rows, for
 * each adapted projection (dA comes from the chunks' shares). */
static int lora_wgrads(const bwd *w, int l, wgrad *out) {
    const emdpo_llama_config *c = &w->m->config;
    const emdpo_llama_acts *a = w->a;
    widths wd = widths_of(c);
    int n = 0, r = w->lo->config.r, C = c->dim, H = c->hidden_dim, qd = wd.qd, kvd = wd.kvd;
    size_t N = (size_t)a->B * a->T, o = slot(a, l) * N, sl = (size_t)(l % 2) * N;
    const float *dout[EMDPO_N_PROJ] = {a->dq + sl * qd,  a->dk + sl * kvd,  a->dv + sl * kvd, a->dres2 + sl * C,
                                       a->dh1 + sl * H,  a->dh3 + sl * H,   dres_slot(w, l)};
    for (int P = 0; P < EMDPO_N_PROJ; P++) {
        int OC, IC;
        if (!w->lo->A[P]) continue;
        emdpo_llama_proj_shape(c, P, &OC, &IC);
        const float *u = a->lora_u + (size_t)P * a->lora_u_stride + o * r;
        out[n++] = (wgrad){w->gB[P] + (size_t)l * OC * r, dout[P], u, OC, r};
    }
    return n;
}

/* The weight gradients computed during stage s; returns how many (at most
 * MAX_WGRADS). */
enum { MAX_WGRADS = 2 * EMDPO_N_PROJ };

static int stage_wgrads(const bwd *w, int s, wgrad out[MAX_WGRADS]) {
    const emdpo_llama_config *c = &w->m->config;
    const emdpo_llama_acts *a = w->a;
    widths wd = widths_of(c);
    int n = 0, l = s + 1, C = c->dim, H = c->hidden_dim, qd = wd.qd, kvd = wd.kvd;
    size_t N = (size_t)a->B * a->T;
    if (w->lo) return l >= 0 && l < c->n_layers ? lora_wgrads(w, l, out) : 0;
    if (s == c->n_layers - 1) out[n++] = (wgrad){w->g.lm_head, a->dlogits, a->lnf, c->vocab_size, C};
    if (l < 0 || l >= c->n_layers) return n;
    size_t o = slot(a, l) * N, sl = (size_t)(l % 2) * N, lQC = (size_t)l * qd * C, lKC = (size_t)l * kvd * C;
    size_t lHC = (size_t)l * H * C;
    const float *ln1 = a->ln1 + o * C, *ln2 = a->ln2 + o * C;
    out[n++] = (wgrad){w->g.w2 + lHC, dres_slot(w, l), a->hg + o * H, C, H};
    out[n++] = (wgrad){w->g.w1 + lHC, a->dh1 + sl * H, ln2, H, C};
    out[n++] = (wgrad){w->g.w3 + lHC, a->dh3 + sl * H, ln2, H, C};
    out[n++] = (wgrad){w->g.wo + lQC, a->dres2 + sl * C, a->atty + o * qd, C, qd};
    out[n++] = (wgrad){w->g.wq + lQC, a->dq + sl * qd, ln1, qd, C};
    out[n++] = (wgrad){w->g.wk + lKC, a->dk + sl * kvd, ln1, kvd, C};
    out[n++] = (wgrad){w->g.wv + lKC, a->dv + sl * kvd, ln1, kvd, C};
    return n;
}

/* One bias gradient: db (OC) += the sum over all B*T rows of dout (OC). */
typedef struct bgrad {
    float *db;
    const float *dout;
    int OC;
} bgrad;

/* The bias gradients computed during stage s (those of layer s + 1);
 * returns how many. */
static int stage_bgrads(const bwd *w, int s, bgrad out[4]) {
    const emdpo_llama_config *c = &w->m->config;
    const emdpo_llama_acts *a = w->a;
    widths wd = widths_of(c);
    int n = 0, l = s + 1;
    if (l < 0 || l >= c->n_layers || w->lo) return 0;
    size_t sl = (size_t)(l % 2) * a->B * a->T;
    if (c->qkv_bias) {
        out[n++] = (bgrad){w->g.bq + (size_t)l * wd.qd, a->dq + sl * wd.qd, wd.qd};
        out[n++] = (bgrad){w->g.bk + (size_t)l * wd.kvd, a->dk + sl * wd.kvd, wd.kvd};
        out[n++] = (bgrad){w->g.bv + (size_t)l * wd.kvd, a->dv + sl * wd.kvd, wd.kvd};
    }
    if (c->o_bias) out[n++] = (bgrad){w->g.bo + (size_t)l * c->dim, a->dres2 + sl * c->dim, c->dim};
    return n;
}

/* A weight gradient is cut along its longer side into blocks of about 2^29
 * FLOPs (a multiple of 16 wide): each job repacks the whole of the operand
 * along the other side, so that one is the smaller of the two. */
static int block_width(const bwd *w, const wgrad *wg) {
    int side = wg->OC > wg->IC ? wg->OC : wg->IC;
    double flops = 2.0 * wg->OC * wg->IC * w->a->B * w->a->T;
    int nb = w->split ? (int)ceil(flops / (double)(1 << 29)) : 1, width = (side + nb - 1) / nb;
    width = (width + 15) / 16 * 16;
    return width < side ? width : side;
}

static int wgrad_blocks(const bwd *w, const wgrad *wg) {
    int side = wg->OC > wg->IC ? wg->OC : wg->IC, width = block_width(w, wg);
    return (side + width - 1) / width;
}

static void wgrad_block(const bwd *w, const wgrad *wg, int blk) {
    int width = block_width(w, wg), N = w->a->B * w->a->T, OC = wg->OC, IC = wg->IC;
    int i0 = width * blk, rows = OC > IC ? (OC - i0 < width ? OC - i0 : width) : OC;
    int cols = OC > IC ? IC : (IC - i0 < width ? IC - i0 : width);
    size_t r0 = OC > IC ? (size_t)i0 : 0, c0 = OC > IC ? 0 : (size_t)i0;
    float *scratch = w->scratch ? w->scratch + (size_t)emdpo_thread_num() * w->a->tn_scratch_n : NULL;
    emdpo_gemm_tn_acc(wg->dw + r0 * IC + c0, IC, wg->dout + r0, OC, wg->inp + c0, IC, rows, cols, N, scratch);
}

enum { EMBED_JOBS = 8 };

/* Embedding rows [v0, v1) += the input gradient of the rows holding those
 * tokens, in row order. */
static void embed_job(const bwd *w, int job) {
    const emdpo_llama_acts *a = w->a;
    int C = a->config.dim, V = a->config.vocab_size, v0 = (int)((long)V * job / EMBED_JOBS);
    int v1 = (int)((long)V * (job + 1) / EMBED_JOBS);
    size_t N = (size_t)a->B * a->T;
    const float *din = dres_slot(w, -1);
    for (size_t n = 0; n < N; n++) {
        int t = a->tokens[n];
        if (t < v0 || t >= v1) continue;
        float *d = w->g.tok_emb + (size_t)t * C;
        const float *gr = din + n * C;
        for (int i = 0; i < C; i++) d[i] += gr[i];
    }
}

/* The RMSNorm weight gradients: the chunks' partial sums in chunk order. */
static void dnorm_job(const bwd *w) {
    const emdpo_llama_config *c = &w->m->config;
    int L = c->n_layers, C = c->dim, hs = emdpo_llama_head_size(c);
    for (int k = 0; k < (c->qk_norm ? 4 * L + 1 : 2 * L + 1); k++) {
        float *dst = k < L           ? w->g.rms_att + (size_t)k * C
                     : k < 2 * L     ? w->g.rms_ffn + (size_t)(k - L) * C
                     : k == 2 * L    ? w->g.rms_final
                     : k <= 3 * L    ? w->g.q_norm + (size_t)(k - 2 * L - 1) * hs
                                     : w->g.k_norm + (size_t)(k - 3 * L - 1) * hs;
        int n = k <= 2 * L ? C : hs;
        for (int ch = 0; ch < w->nchunks; ch++) {
            const float *src = dnorm_of(w, ch, k);
            for (int i = 0; i < n; i++) dst[i] += src[i];
        }
    }
}

/* Job j of stage s: first the weight-gradient blocks, then the bias
 * gradients, then an adapter's dA sums, then the chunks (at stage -1 the
 * embedding's jobs and the RMSNorm weights', for the base's gradient). */
/* The adapter's dA sums of stage s (layer s + 1's, one job per adapted
 * projection); 0 without an adapter. */
static int stage_dA_jobs(const bwd *w, int s) {
    int l = s + 1, n = 0;
    if (!w->lo || l < 0 || l >= w->m->config.n_layers) return 0;
    for (int P = 0; P < EMDPO_N_PROJ; P++) n += w->lo->A[P] != NULL;
    return n;
}

static void stage_job(const bwd *w, const proj_set *ps, int s, const wgrad *wg, int nwg, const bgrad *bg, int nbg,
                      int ndA, int j) {
    for (int i = 0; i < nwg; i++) {
        int nb = wgrad_blocks(w, &wg[i]);
        if (j < nb) {
            wgrad_block(w, &wg[i], j);
            return;
        }
        j -= nb;
    }
    if (j < nbg) {
        emdpo_bias_backward(bg[j].db, bg[j].dout, (size_t)w->a->B * w->a->T, bg[j].OC);
        return;
    }
    j -= nbg;
    if (j < ndA) {
        for (int P = 0; P < EMDPO_N_PROJ; P++)
            if (w->lo->A[P] && j-- == 0) lora_dA_job(w, s + 1, P);
        return;
    }
    j -= ndA;
    int B = w->a->B, b0 = j * w->bc, b1 = b0 + w->bc < B ? b0 + w->bc : B;
    if (s >= 0)
        layer_chunk(w, ps, s, j, b0, b1);
    else if (j < EMBED_JOBS)
        embed_job(w, j);
    else
        dnorm_job(w);
}

/* Calls f with the pieces of the gradient that stage s finishes
 * (emdpo_llama_grad_pieces): layer s + 1's matrices and biases, or its
 * adapter's A and B; the untied head's at the top stage; the embedding's
 * and every RMSNorm weight's (which dnorm_job adds up) at stage -1. */
static void stage_pieces(const emdpo_llama_config *c, const emdpo_lora *lo, const emdpo_llama_params *g,
                         float *const gA[EMDPO_N_PROJ], float *const gB[EMDPO_N_PROJ], int s, emdpo_grad_piece_fn f,
                         void *ud) {
    widths wd = widths_of(c);
    int L = c->n_layers, l = s + 1;
    size_t C = (size_t)c->dim, H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size, qd = (size_t)wd.qd;
    size_t kvd = (size_t)wd.kvd, hs = (size_t)wd.hs;
    if (lo) {
        size_t r = (size_t)lo->config.r;
        for (int P = 0; l < L && P < EMDPO_N_PROJ; P++) {
            if (!lo->A[P]) continue;
            int OC, IC;
            emdpo_llama_proj_shape(c, P, &OC, &IC);
            f(ud, gA[P] + (size_t)l * r * (size_t)IC, r * (size_t)IC);
            f(ud, gB[P] + (size_t)l * (size_t)OC * r, (size_t)OC * r);
        }
        return;
    }
    if (s == L - 1 && !c->tied) f(ud, g->lm_head, V * C);
    if (l < L) {
        f(ud, g->w2 + l * C * H, C * H);
        f(ud, g->w1 + l * H * C, H * C);
        f(ud, g->w3 + l * H * C, H * C);
        f(ud, g->wo + l * C * qd, C * qd);
        f(ud, g->wq + l * qd * C, qd * C);
        f(ud, g->wk + l * kvd * C, kvd * C);
        f(ud, g->wv + l * kvd * C, kvd * C);
        if (c->qkv_bias) {
            f(ud, g->bq + l * qd, qd);
            f(ud, g->bk + l * kvd, kvd);
            f(ud, g->bv + l * kvd, kvd);
        }
        if (c->o_bias) f(ud, g->bo + l * C, C);
    }
    if (s == -1) {
        f(ud, g->tok_emb, V * C);
        f(ud, g->rms_att, (size_t)L * C);
        f(ud, g->rms_ffn, (size_t)L * C);
        f(ud, g->rms_final, C);
        if (c->qk_norm) {
            f(ud, g->q_norm, (size_t)L * hs);
            f(ud, g->k_norm, (size_t)L * hs);
        }
    }
}

void emdpo_llama_grad_pieces(const emdpo_llama_config *c, const emdpo_lora *lo, float *grad, emdpo_grad_piece_fn f,
                             void *ud) {
    emdpo_llama_params g;
    float *gA[EMDPO_N_PROJ], *gB[EMDPO_N_PROJ];
    if (lo)
        emdpo_lora_point(&lo->base, &lo->config, grad, gA, gB);
    else
        emdpo_llama_point_params(c, grad, &g);
    for (int s = c->n_layers - 1; s >= -1; s--) stage_pieces(c, lo, &g, gA, gB, s, f, ud);
}

/* The backward of the base's parameters (lo NULL; grad laid out as m's) or
 * of adapter lo's (grad laid out as lo's buffer). */
static int backward(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, const float *dlogp, float *grad) {
    const emdpo_llama_config *c = &m->config;
    if (!same_config(c, &a->config) || !a->training || !a->unused || (m->frozen && !lo) || !lora_fits(m, lo, a))
        return EMDPO_ERR_INVALID_ARG;
    a->unused = 0;
    bwd w = {.m = m, .a = a, .dlogp = dlogp, .lo = lo, .bc = chunk_seqs(a->T)};
    if (lo)
        emdpo_lora_point(&lo->base, &lo->config, grad, w.gA, w.gB);
    else
        emdpo_llama_point_params(c, grad, &w.g);
    w.nchunks = (a->B + w.bc - 1) / w.bc;
    int team = team_size(w.nchunks), L = c->n_layers;
    /* as in the forward: plain widens a frozen base for BLAS */
    w.space = packing_space(m, a, w.nchunks);
    int plain = m->frozen && !kernel_pass(a, w.nchunks);
    if (w.space && !plain) {
        w.scratch = a->tn_scratch;
        team = team < a->kthreads ? team : a->kthreads;
    }
    float *kspace = w.space && !plain ? w.space : NULL;
    int serial = team > 1 || kspace, saved = blas_begin(serial);
    w.split = team > 1;
    int V = c->vocab_size, hr = head_rows(c), bc = w.bc, B = a->B, nch = w.nchunks;
#pragma omp parallel num_threads(team)
    {
#pragma omp for schedule(dynamic, 1)
        for (int ch = 0; ch < nch; ch++) head_dlogits_chunk(&w, ch, ch * bc, ch * bc + bc < B ? ch * bc + bc : B);
        for (int v0 = 0; v0 < V; v0 += hr) {
            proj_set ps;
            proj_head(&ps, m, w.space, plain, v0, V - v0 < hr ? V - v0 : hr, 0);
            team_pack(&ps);
#pragma omp for schedule(dynamic, 1)
            for (int ch = 0; ch < nch; ch++) head_dx_chunk(&w, &ps, v0, ch * bc, ch * bc + bc < B ? ch * bc + bc : B);
        }
#pragma omp for schedule(dynamic, 1)
        for (int ch = 0; ch < nch; ch++) head_norm_chunk(&w, ch, ch * bc, ch * bc + bc < B ? ch * bc + bc : B);
        for (int s = L - 1; s >= -1; s--) {
            wgrad wg[MAX_WGRADS];
            bgrad bg[4];
            if (a->ckpt && s >= 0 && s < L - 2) team_layer_forward(m, lo, a, w.space, plain, kspace, s, bc, nch);
            proj_set ps = {.n = 0, .panels = 0};
            if (s >= 0) proj_layer(&ps, m, w.space, plain, s, 0);
            team_pack(&ps);
            int nwg = stage_wgrads(&w, s, wg), nbg = stage_bgrads(&w, s, bg), ndA = stage_dA_jobs(&w, s);
            /* the embedding's and the norms' gradients only for the base's */
            int njobs = (s >= 0 ? w.nchunks : lo ? 0 : EMBED_JOBS + 1) + nbg + ndA;
            for (int i = 0; i < nwg; i++) njobs += wgrad_blocks(&w, &wg[i]);
#pragma omp for schedule(dynamic, 1)
            for (int j = 0; j < njobs; j++) stage_job(&w, &ps, s, wg, nwg, bg, nbg, ndA, j);
            if (a->grad_piece) {
#pragma omp master
                stage_pieces(c, lo, &w.g, w.gA, w.gB, s, a->grad_piece, a->grad_piece_ud);
            }
        }
    }
    blas_end(serial, saved);
    return EMDPO_OK;
}

int emdpo_llama_backward(const emdpo_llama *m, emdpo_llama_acts *a, const float *dlogp, float *grad) {
    return backward(m, NULL, a, dlogp, grad);
}

int emdpo_llama_backward_lora(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, const float *dlogp,
                              float *grad) {
    return lo ? backward(m, lo, a, dlogp, grad) : EMDPO_ERR_INVALID_ARG;
}

static int span_ok(const emdpo_llama_acts *a, const int *start, const int *end) {
    if (a->B < 1) return 0;
    for (int b = 0; b < a->B; b++)
        if (start[b] < 1 || start[b] > end[b] || end[b] > a->lens[b]) return 0;
    return 1;
}

int emdpo_llama_span_logp(const emdpo_llama_acts *a, const int *start, const int *end, double *out) {
    if (!span_ok(a, start, end)) return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < a->B; b++) {
        double s = 0.0;
        for (int t = start[b] - 1; t < end[b] - 1; t++) s += a->logp[(size_t)b * a->T + t];
        out[b] = s;
    }
    return EMDPO_OK;
}

int emdpo_llama_span_backward(const emdpo_llama_acts *a, const int *start, const int *end, const double *g,
                              float *dlogp) {
    if (!span_ok(a, start, end)) return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < a->B; b++)
        for (int t = start[b] - 1; t < end[b] - 1; t++) dlogp[(size_t)b * a->T + t] += (float)g[b];
    return EMDPO_OK;
}

/* Output rows per block of a decoding product. */
enum { DECODE_ROWS = 256 };

size_t emdpo_llama_decode_scratch(const emdpo_llama_config *c) {
    int in = c->dim;
    for (int i = 0; i < EMDPO_N_PROJ; i++) {
        int o, n;
        emdpo_llama_proj_shape(c, i, &o, &n);
        if (n > in) in = n;
    }
    return (size_t)DECODE_ROWS * (size_t)in;
}

void emdpo_llama_decode_matmul(const emdpo_llama *m, int l, int proj, const float *x, float *out, int na,
                               float *wrows) {
    const emdpo_llama_config *c = &m->config;
    const emdpo_llama_mats16 *f = m->frozen;
    int OC = c->vocab_size, IC = c->dim;
    const float *w = m->params.lm_head;
    const uint16_t *w16 = f ? f->lm_head : NULL;
    if (proj < EMDPO_N_PROJ) {
        float *ws[EMDPO_N_PROJ];
        emdpo_llama_proj_shape(c, proj, &OC, &IC);
        size_t off = (size_t)l * OC * IC;
        emdpo_llama_proj_weights(&m->params, ws);
        w = f ? NULL : ws[proj] + off;
        w16 = f ? f->w[proj] + off : NULL;
    }
    for (int r0 = 0; r0 < OC; r0 += DECODE_ROWS) {
        int nr = OC - r0 < DECODE_ROWS ? OC - r0 : DECODE_ROWS;
        const float *blk = w ? w + (size_t)r0 * IC : wrows;
        if (!w) emdpo_widen16(wrows, w16 + (size_t)r0 * IC, (size_t)nr * IC, f->dtype == EMDPO_DTYPE_F16);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, na, nr, IC, 1.0f, x, IC, blk, IC, 0.0f, out + r0, OC);
    }
}

void emdpo_llama_decode_embed(const emdpo_llama *m, int token, float *x) {
    if (m->frozen)
        emdpo_embed16_forward(x, &token, m->frozen->tok_emb, m->frozen->dtype == EMDPO_DTYPE_F16, 1, m->config.dim);
    else
        emdpo_embed_forward(x, &token, m->params.tok_emb, 1, m->config.dim);
}

void emdpo_llama_decode_qkv(const emdpo_llama *m, int l, const float *xb, float *q, float *k, float *v,
                            const float *cosv, const float *sinv, float *rstd, int na, float *wrows) {
    const emdpo_llama_config *c = &m->config;
    const emdpo_llama_params *p = &m->params;
    widths wd = widths_of(c);
    int NH = c->n_heads, NKV = c->n_kv_heads;
    size_t lh = (size_t)l * wd.hs;
    emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_Q, xb, q, na, wrows);
    emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_K, xb, k, na, wrows);
    emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_V, xb, v, na, wrows);
    if (c->qkv_bias) {
        emdpo_bias_forward(q, p->bq + (size_t)l * wd.qd, (size_t)na, wd.qd);
        emdpo_bias_forward(k, p->bk + (size_t)l * wd.kvd, (size_t)na, wd.kvd);
        emdpo_bias_forward(v, p->bv + (size_t)l * wd.kvd, (size_t)na, wd.kvd);
    }
    if (c->qk_norm) {
        emdpo_rmsnorm_forward(q, rstd, q, p->q_norm + lh, (size_t)na * NH, wd.hs, c->norm_eps);
        emdpo_rmsnorm_forward(k, rstd, k, p->k_norm + lh, (size_t)na * NKV, wd.hs, c->norm_eps);
    }
    /* B = 1, T = na: row j rotates by table row j, its own position. */
    emdpo_rope_forward(q, q, cosv, sinv, 1, na, NH, wd.hs);
    emdpo_rope_forward(k, k, cosv, sinv, 1, na, NKV, wd.hs);
}

void emdpo_llama_decode_out(const emdpo_llama *m, int l, const float *atty, float *out, int na, float *wrows) {
    const emdpo_llama_config *c = &m->config;
    emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_O, atty, out, na, wrows);
    if (c->o_bias) emdpo_bias_forward(out, m->params.bo + (size_t)l * c->dim, (size_t)na, c->dim);
}

static void kv_layout(emdpo_llama_kv *kv, carve *cv) {
    const emdpo_llama_config *c = &kv->config;
    widths wd = widths_of(c);
    size_t C = (size_t)c->dim, H = (size_t)c->hidden_dim, hs = (size_t)wd.hs, qd = (size_t)wd.qd;
    size_t kvd = (size_t)wd.kvd, LT = (size_t)c->n_layers * kv->max_T;
    kv->k = take(cv, LT, kvd);
    kv->v = take(cv, LT, kvd);
    kv->x = take(cv, C, 1);
    kv->xb = take(cv, C, 1);
    kv->xb2 = take(cv, qd, 1);
    kv->q = take(cv, qd, 1);
    kv->rstd = take(cv, (size_t)c->n_heads, 1);
    kv->hb = take(cv, H, 1);
    kv->hb2 = take(cv, H, 1);
    kv->att = take(cv, (size_t)kv->max_T, 1);
    kv->rope_cos = take(cv, hs / 2, 1);
    kv->rope_sin = take(cv, hs / 2, 1);
    kv->logits = take(cv, (size_t)c->vocab_size, 1);
    kv->wrows = take(cv, emdpo_llama_decode_scratch(c), 1);
}

int emdpo_llama_kv_create(const emdpo_llama_config *c, int max_T, emdpo_llama_kv **out) {
    *out = NULL;
    int rc = emdpo_llama_config_check(c);
    if (rc) return rc;
    if (max_T < 1 || max_T > emdpo_llama_context(c)) return EMDPO_ERR_INVALID_ARG;
    emdpo_llama_kv *kv = emdpo_calloc(1, sizeof *kv);
    if (!kv) return EMDPO_ERR_NOMEM;
    kv->config = *c;
    kv->max_T = max_T;
    carve cv = {NULL, 0, 0};
    kv_layout(kv, &cv);
    if (cv.overflow) {
        emdpo_free(kv, sizeof *kv);
        return EMDPO_ERR_LIMIT;
    }
    kv->buf_n = cv.used;
    kv->buf = emdpo_malloc(kv->buf_n * sizeof(float));
    if (!kv->buf) {
        emdpo_free(kv, sizeof *kv);
        return EMDPO_ERR_NOMEM;
    }
    cv = (carve){kv->buf, 0, 0};
    kv_layout(kv, &cv);
    *out = kv;
    return EMDPO_OK;
}

void emdpo_llama_kv_free(emdpo_llama_kv *kv) {
    if (!kv) return;
    emdpo_free(kv->buf, kv->buf_n * sizeof(float));
    emdpo_free(kv, sizeof *kv);
}

int emdpo_llama_step(const emdpo_llama *m, emdpo_llama_kv *kv, int token, int pos, const float **logits) {
    const emdpo_llama_config *c = &m->config;
    if (!same_config(c, &kv->config) || token < 0 || token >= c->vocab_size || pos < 0 || pos > kv->n ||
        pos >= kv->max_T)
        return EMDPO_ERR_INVALID_ARG;
    widths wd = widths_of(c);
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads;
    int hs = wd.hs, kvd = wd.kvd, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs), rstd;
    const emdpo_llama_params *p = &m->params;
    emdpo_llama_decode_embed(m, token, kv->x);
    emdpo_rope_table(kv->rope_cos, kv->rope_sin, pos, 1, hs, c);
    for (int l = 0; l < c->n_layers; l++) {
        size_t lC = (size_t)l * C;
        float *kl = kv->k + (size_t)l * kv->max_T * kvd, *vl = kv->v + (size_t)l * kv->max_T * kvd;
        emdpo_rmsnorm_forward(kv->xb, &rstd, kv->x, p->rms_att + lC, 1, C, c->norm_eps);
        emdpo_llama_decode_qkv(m, l, kv->xb, kv->q, kl + (size_t)pos * kvd, vl + (size_t)pos * kvd, kv->rope_cos,
                               kv->rope_sin, kv->rstd, 1, kv->wrows);
        for (int h = 0; h < NH; h++) {
            const float *qh = kv->q + (size_t)h * hs;
            size_t koff = (size_t)(h / group) * hs;
            float *o = kv->xb2 + (size_t)h * hs, mx = -INFINITY, z = 0.0f;
            for (int u = 0; u <= pos; u++) {
                const float *ku = kl + (size_t)u * kvd + koff;
                float s = 0.0f;
                for (int i = 0; i < hs; i++) s += qh[i] * ku[i];
                kv->att[u] = s * scale;
                if (kv->att[u] > mx) mx = kv->att[u];
            }
            for (int u = 0; u <= pos; u++) z += kv->att[u] = expf(kv->att[u] - mx);
            memset(o, 0, (size_t)hs * sizeof(float));
            for (int u = 0; u <= pos; u++) {
                const float *vu = vl + (size_t)u * kvd + koff;
                float w = kv->att[u] / z;
                for (int i = 0; i < hs; i++) o[i] += w * vu[i];
            }
        }
        emdpo_llama_decode_out(m, l, kv->xb2, kv->xb, 1, kv->wrows);
        emdpo_residual_forward(kv->x, kv->x, kv->xb, (size_t)C);
        emdpo_rmsnorm_forward(kv->xb, &rstd, kv->x, p->rms_ffn + lC, 1, C, c->norm_eps);
        emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_GATE, kv->xb, kv->hb, 1, kv->wrows);
        emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_UP, kv->xb, kv->hb2, 1, kv->wrows);
        emdpo_swiglu_forward(kv->hb, kv->hb, kv->hb2, (size_t)H);
        emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_DOWN, kv->hb, kv->xb, 1, kv->wrows);
        emdpo_residual_forward(kv->x, kv->x, kv->xb, (size_t)C);
    }
    emdpo_rmsnorm_forward(kv->xb, &rstd, kv->x, p->rms_final, 1, C, c->norm_eps);
    emdpo_llama_decode_matmul(m, 0, EMDPO_N_PROJ, kv->xb, kv->logits, 1, kv->wrows);
    kv->n = pos + 1;
    *logits = kv->logits;
    return EMDPO_OK;
}
