/* The Hugging Face families against PyTorch: tests/fixtures/hf_families/
 * (written by tools/hf_family_fixture.py after transformers' modelling code)
 * holds a tiny checkpoint of each family in HF's exact layout and naming,
 * with the logits of a sequence and the gradient of one DPO step of a
 * chosen/rejected pair, computed in float64. Each checkpoint is loaded
 * through the one model loader; its logits (batched forward and the
 * decoder's steps) and the DPO gradient, written back in HF's layout, must
 * match to 1e-4 of each tensor's largest entry, and a save must load back
 * as the same model. */
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
#include "lm/io/llama_hf.h"
#include "lm/io/safetensors.h"

#define DIR "tests/fixtures/hf_families"

static char g_tmp[64];

enum { MAX_T = 32 };

static void check_logits(const char *fam, const emdpo_llama *m, const emdpo_safetensors *ref, const int *tok, int T) {
    size_t n = 0;
    float *want = testdata_st_read_all(ref, "logits", &n);
    int V = m->config.vocab_size;
    CHECK_MSG(want && n == (size_t)T * V, "%s: reference logits", fam);
    if (!want || n != (size_t)T * V) {
        free(want);
        return;
    }
    emdpo_llama_acts *a;
    CHECK_EQ_INT(emdpo_llama_acts_create(&m->config, 1, T, 0, &a), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tok, NULL, 1, T), EMDPO_OK);
    double e = testdata_rel_err(a->logits, want, n);
    CHECK_MSG(e <= 1e-4, "%s: logits off by %g of the largest", fam, e);
    emdpo_llama_acts_free(a);
    /* the decoder's steps, one position at a time */
    emdpo_llama_kv *kv;
    CHECK_EQ_INT(emdpo_llama_kv_create(&m->config, T, &kv), EMDPO_OK);
    double worst = 0.0;
    for (int t = 0; t < T; t++) {
        const float *lg;
        CHECK_EQ_INT(emdpo_llama_step(m, kv, tok[t], t, &lg), EMDPO_OK);
        worst = fmax(worst, testdata_rel_err(lg, want + (size_t)t * V, (size_t)V));
    }
    CHECK_MSG(worst <= 1e-4, "%s: decoded logits off by %g", fam, worst);
    emdpo_llama_kv_free(kv);
    free(want);
}

/* One DPO step's gradient: forward the pair, the loss on the completion
 * spans' log-ratios, back through the spans and the model; written in HF's
 * layout and compared tensor by tensor with PyTorch's. */
static void check_dpo_grad(const char *fam, const emdpo_llama *m, const emdpo_safetensors *ref, const int *c, int nc,
                           const int *r, int nr) {
    int T = nc > nr ? nc : nr, P = (int)testdata_st_meta_num(ref, "prompt_len");
    int tok[2 * MAX_T] = {0}, lens[2] = {nc, nr}, start[2] = {P, P};
    memcpy(tok, c, (size_t)nc * sizeof *tok);
    memcpy(tok + T, r, (size_t)nr * sizeof *tok);
    emdpo_llama_acts *a;
    CHECK_EQ_INT(emdpo_llama_acts_create(&m->config, 2, T, 1, &a), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_forward(m, a, tok, lens, 2, T), EMDPO_OK);
    double lp[2], lr[2], g[2];
    CHECK_EQ_INT(emdpo_llama_span_logp(a, start, lens, lp), EMDPO_OK);
    lr[0] = lp[0] - testdata_st_meta_num(ref, "ref_chosen");
    lr[1] = lp[1] - testdata_st_meta_num(ref, "ref_rejected");
    emdpo_loss_opts o = {.kind = EMDPO_LOSS_DPO, .beta = testdata_st_meta_num(ref, "beta")};
    double loss = emdpo_pref_loss(&o, lr, 2, 1, 1.0, g);
    CHECK_MSG(fabs(loss - testdata_st_meta_num(ref, "loss")) <= 1e-5, "%s: loss %.9g vs PyTorch %.9g", fam, loss,
              testdata_st_meta_num(ref, "loss"));
    float *dlogp = calloc((size_t)2 * T, sizeof *dlogp), *grad = calloc(m->num_params, sizeof *grad);
    CHECK_EQ_INT(emdpo_llama_span_backward(a, start, lens, g, dlogp), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_backward(m, a, dlogp, grad), EMDPO_OK);
    emdpo_llama_params gp;
    emdpo_llama_point_params(&m->config, grad, &gp);
    char path[128];
    snprintf(path, sizeof path, "%s/%s_grad.safetensors", g_tmp, fam);
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_hf_write_params(path, &m->config, &gp, EMDPO_ST_F32, &d), EMDPO_OK);
    emdpo_safetensors *ours = NULL;
    CHECK_EQ_INT(emdpo_st_open(path, &ours, &d), EMDPO_OK);
    size_t n_ref_grads = 0;
    for (size_t i = 0; ours && i < emdpo_st_count(ref); i++) {
        const char *name = emdpo_st_tensor_at(ref, i)->name;
        if (strncmp(name, "grad.", 5) != 0) continue;
        n_ref_grads++;
        size_t n1 = 0, n2 = 0;
        float *want = testdata_st_read_all(ref, name, &n1), *got = testdata_st_read_all(ours, name + 5, &n2);
        CHECK_MSG(want && got && n1 == n2, "%s: %s has no counterpart of its size", fam, name + 5);
        if (want && got && n1 == n2) {
            double e = testdata_rel_err(got, want, n1);
            CHECK_MSG(e <= 1e-4, "%s: gradient of %s off by %g of its largest entry", fam, name + 5, e);
        }
        free(want);
        free(got);
    }
    CHECK_MSG(ours && n_ref_grads == emdpo_st_count(ours), "%s: %zu reference gradients for %zu tensors", fam,
              n_ref_grads, ours ? emdpo_st_count(ours) : 0);
    emdpo_st_close(ours);
    remove(path);
    free(dlogp);
    free(grad);
    emdpo_llama_acts_free(a);
}

/* Saving and loading again gives the same configuration and tensors. */
static void check_round_trip(const char *fam, const emdpo_llama *m) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s_saved", g_tmp, fam);
    emdpo_diag d;
    emdpo_llama *back = NULL;
    CHECK_EQ_INT(emdpo_llama_save(m, dir, &d), EMDPO_OK);
    CHECK_MSG(emdpo_llama_load(dir, &back, &d) == EMDPO_OK, "%s: %s: %s", fam, d.file, d.msg);
    CHECK_MSG(back && emdpo_llama_same_architecture(m, back) && back->num_params == m->num_params &&
                  memcmp(back->param_buf, m->param_buf, m->num_params * sizeof(float)) == 0,
              "%s: save -> load is not the identity", fam);
    emdpo_llama_free(back);
    char path[160];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    rmdir(dir);
}

static void check_family(const char *fam) {
    char path[160];
    snprintf(path, sizeof path, DIR "/%s", fam);
    emdpo_llama *m = NULL;
    emdpo_diag d;
    int rc = emdpo_llama_load(path, &m, &d);
    CHECK_MSG(rc == EMDPO_OK, "%s: %s: %s", fam, d.file, d.msg);
    snprintf(path, sizeof path, DIR "/%s_ref.safetensors", fam);
    emdpo_safetensors *ref = NULL;
    CHECK_EQ_INT(emdpo_st_open(path, &ref, &d), EMDPO_OK);
    if (!m || !ref) {
        emdpo_llama_free(m);
        emdpo_st_close(ref);
        return;
    }
    int c[MAX_T], r[MAX_T];
    int nc = testdata_st_meta_ids(ref, "chosen", c, MAX_T), nr = testdata_st_meta_ids(ref, "rejected", r, MAX_T);
    CHECK(nc > 1 && nr > 1);
    check_logits(fam, m, ref, c, nc);
    check_dpo_grad(fam, m, ref, c, nc, r, nr);
    check_round_trip(fam, m);
    emdpo_st_close(ref);
    emdpo_llama_free(m);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/emdpo_fam_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    static const char *const fams[] = {"llama3", "llama_bias", "mistral", "qwen2", "qwen3"};
    for (size_t i = 0; i < sizeof fams / sizeof *fams; i++) check_family(fams[i]);

    /* What sets the families apart landed in the description. */
    emdpo_llama *m = NULL;
    emdpo_diag d;
    if (emdpo_llama_load(DIR "/qwen3", &m, &d) == EMDPO_OK) {
        CHECK(m->config.arch == EMDPO_ARCH_QWEN3 && m->config.qk_norm && m->config.head_dim == 16 &&
              m->config.n_heads * m->config.head_dim != m->config.dim && m->config.tied);
        emdpo_llama_free(m);
    }
    if (emdpo_llama_load(DIR "/mistral", &m, &d) == EMDPO_OK) {
        /* sequences are kept to the window, where it changes nothing */
        emdpo_llama_acts *a = NULL;
        CHECK(emdpo_llama_context_length(m) == 16 && m->config.max_seq_len == 64);
        CHECK_EQ_INT(emdpo_llama_acts_create(&m->config, 1, 17, 0, &a), EMDPO_ERR_INVALID_ARG);
        emdpo_llama_free(m);
    }
    rmdir(g_tmp);
    return check_report("test_hf_families");
}
