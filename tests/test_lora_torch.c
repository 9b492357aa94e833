/* The engine's LoRA forward and backward (emdpo_llama_forward_lora,
 * _backward_lora) against PyTorch: tests/fixtures/lora/NAME_ref.safetensors
 * (tools/lora_fixture.py) holds, for a PEFT adapter on a base of
 * tests/fixtures/hf_families, computed in float64 with PEFT's formula
 * base(x) + lora_B(lora_A(x)) · s, the logits of three sequences with the
 * adapter and without it, the chosen/rejected pair's completion
 * log-probabilities under both, one DPO step's loss (the reference: the
 * base with the adapter off, as the trainer has it) and that step's
 * gradient with respect to every lora_A and lora_B, by PEFT's tensor name
 * in Hugging Face's layout. For each case, with the base loaded as for
 * training and as a frozen base (emdpo_llama_load_frozen: the float32
 * fixtures load as float32 either way, so this checks the trainer's path
 * gives the same answers):
 *   - the three sequences run as one padded batch; every sequence's logits,
 *     with the adapter and without, within 1e-4 of the largest, and the
 *     adapter changes them (> 1e-2), so the check can tell;
 *   - the completion log-probabilities and the DPO loss within 1e-5
 *     (relative, at least 1) of PyTorch's;
 *   - the DPO step's gradient, written under PEFT's names in HF's row order
 *     (emdpo_peft_write_tensors), within 1e-4 of each tensor's largest
 *     entry, tensor by tensor, as test_hf_families checks the full model's
 *     (float32 against float64: the errors seen are near 1e-6); a
 *     projection the adapter holds on some layers only is zero there in
 *     emdpo (lm/io/peft.h), and its gradient there must be exactly zero.
 * The third sequence is padding for the pair's loss (its gradient weight is
 * zero), so padding must not leak into the gradient.
 * Cases whose files (or base) are absent are skipped with a note. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "testdata.h"
#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/engine/lm_loss.h"
#include "lm/engine/lora.h"
#include "lm/io/peft.h"
#include "lm/io/safetensors.h"

#define FIX "tests/fixtures/lora"

enum { MAX_SEQS = 4, MAX_T = 32 };

static char g_tmp[64];

/* The fixture's sequences, padded into one (B, T) batch. */
typedef struct batch {
    int B, T, P;
    int tok[MAX_SEQS * MAX_T], lens[MAX_SEQS], start[MAX_SEQS];
} batch;

static int read_batch(const emdpo_safetensors *ref, batch *b) {
    memset(b, 0, sizeof *b);
    b->B = (int)testdata_st_meta_num(ref, "n_seqs");
    b->P = (int)testdata_st_meta_num(ref, "prompt_len");
    if (!(b->B >= 2 && b->B <= MAX_SEQS && b->P >= 1)) return 0;
    int ids[MAX_SEQS][MAX_T];
    for (int s = 0; s < b->B; s++) {
        char key[16];
        snprintf(key, sizeof key, "seq.%d", s);
        b->lens[s] = testdata_st_meta_ids(ref, key, ids[s], MAX_T);
        if (b->lens[s] <= b->P) return 0;
        b->start[s] = b->P;
        if (b->lens[s] > b->T) b->T = b->lens[s];
    }
    for (int s = 0; s < b->B; s++) memcpy(b->tok + (size_t)s * b->T, ids[s], (size_t)b->lens[s] * sizeof(int));
    return 1;
}

/* The logits of every sequence of the last forward against key.s. */
static void check_logits(const char *what, const emdpo_llama_acts *a, const emdpo_safetensors *ref, const batch *b,
                         const char *key, const char *other_key) {
    int V = a->config.vocab_size;
    for (int s = 0; s < b->B; s++) {
        char k1[32], k2[32];
        snprintf(k1, sizeof k1, "%s.%d", key, s);
        snprintf(k2, sizeof k2, "%s.%d", other_key, s);
        size_t n = 0, n2 = 0, want_n = (size_t)b->lens[s] * V;
        float *want = testdata_st_read_all(ref, k1, &n), *other = testdata_st_read_all(ref, k2, &n2);
        CHECK_MSG(want && other && n == want_n && n2 == want_n, "%s: reference %s", what, k1);
        if (want && other && n == want_n && n2 == want_n) {
            double e = testdata_rel_err(a->logits + (size_t)s * b->T * V, want, n);
            CHECK_MSG(e <= 1e-4, "%s: %s off by %g of the largest", what, k1, e);
            CHECK_MSG(testdata_rel_err(other, want, n) > 1e-2, "%s: the adapter hardly changes sequence %d", what, s);
        }
        free(want);
        free(other);
    }
}

/* grad (laid out as lo's buffer), written under PEFT's names, against the
 * fixture's grad.<name> tensors. */
static void check_grads(const char *what, const emdpo_lora *lo, float *grad, const emdpo_safetensors *ref) {
    emdpo_lora g = *lo;
    g.buf = grad;
    emdpo_lora_point(&lo->base, &lo->config, grad, g.A, g.B);
    char path[128];
    snprintf(path, sizeof path, "%s/grad.safetensors", g_tmp);
    emdpo_diag d;
    emdpo_safetensors *ours = NULL;
    CHECK_EQ_INT(emdpo_peft_write_tensors(&g, path, EMDPO_ST_F32, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_st_open(path, &ours, &d), EMDPO_OK);
    size_t n_ref = 0, n_extra = 0;
    for (size_t i = 0; ours && i < emdpo_st_count(ref); i++) {
        const char *name = emdpo_st_tensor_at(ref, i)->name;
        if (strncmp(name, "grad.", 5) != 0) continue;
        n_ref++;
        size_t n1 = 0, n2 = 0;
        float *want = testdata_st_read_all(ref, name, &n1), *got = testdata_st_read_all(ours, name + 5, &n2);
        CHECK_MSG(want && got && n1 == n2, "%s: %s has no counterpart of its size", what, name + 5);
        if (want && got && n1 == n2) {
            double e = testdata_rel_err(got, want, n1);
            CHECK_MSG(e <= 1e-4, "%s: gradient of %s off by %g of its largest entry", what, name + 5, e);
        }
        free(want);
        free(got);
    }
    /* the layers PEFT does not adapt, held as zeros: no gradient reaches them */
    for (size_t i = 0; ours && i < emdpo_st_count(ours); i++) {
        const char *name = emdpo_st_tensor_at(ours, i)->name;
        char key[256];
        snprintf(key, sizeof key, "grad.%s", name);
        if (emdpo_st_find(ref, key)) continue;
        n_extra++;
        size_t n = 0;
        float *got = testdata_st_read_all(ours, name, &n);
        int zero = got != NULL;
        for (size_t j = 0; got && j < n; j++) zero &= got[j] == 0;
        CHECK_MSG(zero, "%s: %s is not in the fixture and its gradient is not zero", what, name);
        free(got);
    }
    CHECK_MSG(ours && n_ref > 0 && n_ref + n_extra == emdpo_st_count(ours), "%s: %zu reference gradients for %zu",
              what, n_ref, ours ? emdpo_st_count(ours) : 0);
    emdpo_st_close(ours);
    remove(path);
}

/* Forward with the adapter off and on, the pair's DPO loss, its backward. */
static void check_case(const char *what, const emdpo_llama *m, const emdpo_lora *lo, const emdpo_safetensors *ref,
                       const batch *b) {
    emdpo_llama_acts *a = NULL;
    CHECK_EQ_INT(emdpo_llama_acts_create_lora(&m->config, lo->config.r, b->B, b->T, 1, &a), EMDPO_OK);
    if (!a) return;
    double ref_lp[MAX_SEQS], lp[MAX_SEQS], lr[2], g[MAX_SEQS] = {0};
    /* the reference: the base, adapter off */
    CHECK_EQ_INT(emdpo_llama_forward_lora(m, NULL, a, b->tok, b->lens, b->B, b->T), EMDPO_OK);
    check_logits(what, a, ref, b, "base_logits", "logits");
    CHECK_EQ_INT(emdpo_llama_span_logp(a, b->start, b->lens, ref_lp), EMDPO_OK);
    CHECK_CLOSE(ref_lp[0], testdata_st_meta_num(ref, "ref_chosen"), 1e-5);
    CHECK_CLOSE(ref_lp[1], testdata_st_meta_num(ref, "ref_rejected"), 1e-5);

    CHECK_EQ_INT(emdpo_llama_forward_lora(m, lo, a, b->tok, b->lens, b->B, b->T), EMDPO_OK);
    check_logits(what, a, ref, b, "logits", "base_logits");
    CHECK_EQ_INT(emdpo_llama_span_logp(a, b->start, b->lens, lp), EMDPO_OK);
    CHECK_CLOSE(lp[0], testdata_st_meta_num(ref, "policy_chosen"), 1e-5);
    CHECK_CLOSE(lp[1], testdata_st_meta_num(ref, "policy_rejected"), 1e-5);

    /* one DPO step on the pair (sequences 0 and 1), as emdpo_trainer_step
     * computes it for a batch of one decision */
    lr[0] = lp[0] - ref_lp[0];
    lr[1] = lp[1] - ref_lp[1];
    emdpo_loss_opts o = {.kind = EMDPO_LOSS_DPO, .beta = testdata_st_meta_num(ref, "beta")};
    double loss = emdpo_pref_loss(&o, lr, 2, 1, 1.0, g);
    CHECK_MSG(fabs(loss - testdata_st_meta_num(ref, "loss")) <= 1e-5, "%s: loss %.9g vs PyTorch %.9g", what, loss,
              testdata_st_meta_num(ref, "loss"));
    float *dlogp = calloc((size_t)b->B * b->T, sizeof *dlogp), *grad = calloc(lo->n, sizeof *grad);
    CHECK_EQ_INT(emdpo_llama_span_backward(a, b->start, b->lens, g, dlogp), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_backward_lora(m, lo, a, dlogp, grad), EMDPO_OK);
    check_grads(what, lo, grad, ref);
    free(dlogp);
    free(grad);
    emdpo_llama_acts_free(a);
}

/* Returns 1 when the case's files are there (and were checked). */
static int run_case(const char *name) {
    char path[160];
    snprintf(path, sizeof path, FIX "/%s_ref.safetensors", name);
    if (access(path, R_OK) != 0) {
        printf("test_lora_torch: %s absent, %s skipped\n", path, name);
        return 0;
    }
    emdpo_diag d;
    emdpo_safetensors *ref = NULL;
    CHECK_MSG(emdpo_st_open(path, &ref, &d) == EMDPO_OK, "%s: %s", d.file, d.msg);
    batch b;
    const char *base = ref ? emdpo_st_metadata(ref, "base") : NULL;
    int ok = ref && base && read_batch(ref, &b);
    CHECK_MSG(ok, "%s: the reference's metadata", name);
    char cfg[200];
    snprintf(cfg, sizeof cfg, "%s/config.json", ok ? base : "");
    if (ok && access(cfg, R_OK) != 0) {
        printf("test_lora_torch: %s absent, %s skipped\n", cfg, name);
        emdpo_st_close(ref);
        return 0;
    }
    for (int frozen = 0; ok && frozen < 2; frozen++) {
        char what[96];
        snprintf(what, sizeof what, "%s (%s)", name, frozen ? "loaded frozen" : "loaded");
        emdpo_llama *m = NULL;
        emdpo_lora *lo = NULL;
        int rc = frozen ? emdpo_llama_load_frozen(base, &m, &d) : emdpo_llama_load(base, &m, &d);
        CHECK_MSG(rc == EMDPO_OK, "%s: %s: %s", what, d.file, d.msg);
        snprintf(path, sizeof path, FIX "/%s", name);
        rc = m ? emdpo_peft_read(path, &m->config, &lo, &d) : EMDPO_ERR_IO;
        CHECK_MSG(rc == EMDPO_OK, "%s: %s: %s", what, d.file, d.msg);
        if (m && lo) {
            CHECK_CLOSE(emdpo_lora_scale(&lo->config), testdata_st_meta_num(ref, "scaling"), 1e-7);
            check_case(what, m, lo, ref, &b);
        }
        emdpo_lora_free(lo);
        emdpo_llama_free(m);
    }
    emdpo_st_close(ref);
    return 1;
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/emdpo_loratorch_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    static const char *const cases[] = {"llama3_all", "qwen2_rslora", "llama3_regex_bf16", "mistral_qko"};
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) ran += run_case(cases[i]);
    rmdir(g_tmp);
    if (!ran) printf("test_lora_torch: no fixtures in " FIX ", skipped\n");
    return check_report("test_lora_torch");
}
