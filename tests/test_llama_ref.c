/* The Llama engine against a real pretrained model: llama2.c's stories260K
 * must give the reference logits at positions 0 and 1 and reproduce all 256
 * greedy tokens of the float64 reference, both through the KV-cache step and
 * through the batched forward. Skips (still reporting) without ../shared. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/json.h"
#include "check.h"
#include "testdata.h"
#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/io/llama2c.h"

#define MODEL "../shared/data/models/stories260K.bin"
#define REF "../shared/data/models/stories260K_greedy_reference.json"

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Largest |logits - reference| over the vocabulary. */
static double max_diff(const float *logits, const emdpo_json *ref, int V) {
    double d = 0.0;
    for (int i = 0; i < V; i++) d = fmax(d, fabs(logits[i] - ref->u.elems[i].num));
    return d;
}

int main(void) {
    size_t len;
    char *text = testdata_slurp(REF, &len);
    emdpo_llama *m = NULL;
    emdpo_diag diag;
    if (!text) {
        printf("skipping: %s not found\n", REF);
        return check_report("test_llama_ref");
    }
    int rc = emdpo_llama2c_load(MODEL, &m, &diag);
    CHECK_EQ_INT(rc, EMDPO_OK);
    if (rc) {
        fprintf(stderr, "%s: %s\n", diag.file, diag.msg);
        free(text);
        return check_report("test_llama_ref");
    }
    const emdpo_llama_config *c = &m->config;
    CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4 &&
          c->vocab_size == 512 && c->max_seq_len == 512 && c->tied == 1);
    CHECK_EQ_INT(m->num_params, 264128 - 2 * 512 * 4); /* SOURCES.md count less the RoPE tables */

    emdpo_json_doc *doc;
    const emdpo_json *root;
    emdpo_json_error jerr;
    CHECK_EQ_INT(emdpo_json_doc_create(&doc), EMDPO_OK);
    CHECK_EQ_INT(emdpo_json_parse(doc, text, len, &root, &jerr), EMDPO_OK);
    const emdpo_json *ids = emdpo_json_get(root, "token_ids_including_bos");
    const emdpo_json *l0 = emdpo_json_get(root, "logits_pos0_after_BOS");
    const emdpo_json *l1 = emdpo_json_get(root, "logits_pos1");
    CHECK(ids && ids->type == EMDPO_JSON_ARRAY && ids->len == 257);
    CHECK(l0 && l0->len == 512 && l1 && l1->len == 512);
    int V = c->vocab_size, n = (int)ids->len;
    int *ref = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) ref[i] = (int)ids->u.elems[i].inum;
    CHECK_EQ_INT(ref[0], 1);

    /* Greedy decoding with the KV cache. */
    emdpo_llama_kv *kv;
    CHECK_EQ_INT(emdpo_llama_kv_create(c, n, &kv), EMDPO_OK);
    int tok = 1, same = 1;
    for (int pos = 0; pos + 1 < n; pos++) {
        const float *logits;
        CHECK_EQ_INT(emdpo_llama_step(m, kv, tok, pos, &logits), EMDPO_OK);
        if (pos == 0) CHECK_MSG(max_diff(logits, l0, V) < 1e-4, "pos 0: max diff %g", max_diff(logits, l0, V));
        if (pos == 1) CHECK_MSG(max_diff(logits, l1, V) < 1e-4, "pos 1: max diff %g", max_diff(logits, l1, V));
        tok = argmax(logits, V);
        if (tok != ref[pos + 1]) {
            CHECK_MSG(0, "greedy token %d: got %d, reference %d", pos + 1, tok, ref[pos + 1]);
            same = 0;
            break;
        }
    }
    CHECK(same);
    /* Rewinding to an earlier position replays the same logits. */
    const float *lg;
    CHECK_EQ_INT(emdpo_llama_step(m, kv, 1, 0, &lg), EMDPO_OK);
    CHECK(max_diff(lg, l0, V) < 1e-4);
    CHECK_EQ_INT(emdpo_llama_step(m, kv, 1, 2, &lg), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_llama_step(m, kv, V, 1, &lg), EMDPO_ERR_INVALID_ARG);

    /* The batched forward over the whole greedy sequence (and a padded copy
     * of its first 100 tokens) agrees with the step path. */
    emdpo_llama_acts *a;
    CHECK_EQ_INT(emdpo_llama_acts_create(c, 2, n, 0, &a), EMDPO_OK);
    int *toks = malloc(2 * (size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        toks[i] = ref[i];
        toks[n + i] = i < 100 ? ref[i] : 7;
    }
    int lens[2] = {n, 100};
    CHECK_EQ_INT(emdpo_llama_forward(m, a, toks, lens, 2, n), EMDPO_OK);
    CHECK(max_diff(a->logits, l0, V) < 1e-4);
    CHECK(max_diff(a->logits + V, l1, V) < 1e-4);
    int agree = 1;
    double lp_diff = 0.0;
    for (int t = 0; t + 1 < n; t++) {
        agree &= argmax(a->logits + (size_t)t * V, V) == ref[t + 1];
        /* greedy picks the argmax, so its log-prob is -log sum exp(l - max) */
        const float *l = a->logits + (size_t)t * V;
        double z = 0.0;
        for (int i = 0; i < V; i++) z += exp(l[i] - l[ref[t + 1]]);
        lp_diff = fmax(lp_diff, fabs(a->logp[t] + log(z)));
        if (t < 99) lp_diff = fmax(lp_diff, fabs(a->logp[n + t] - a->logp[t]));
    }
    CHECK(agree);
    CHECK_MSG(lp_diff < 1e-4, "logp diff %g", lp_diff);
    CHECK(a->logp[n - 1] == 0.0f && a->logp[n + 99] == 0.0f && a->logp[n + 150] == 0.0f);
    int st[2] = {1, 50}, en[2] = {n, 100};
    double span[2];
    CHECK_EQ_INT(emdpo_llama_span_logp(a, st, en, span), EMDPO_OK);
    double want = 0.0;
    for (int t = 49; t < 99; t++) want += a->logp[t];
    CHECK_CLOSE(span[1], want, 1e-6);
    CHECK(span[0] < 0.0 && span[0] > -1000.0);
    en[1] = 101;
    CHECK_EQ_INT(emdpo_llama_span_logp(a, st, en, span), EMDPO_ERR_INVALID_ARG);

    emdpo_llama_acts_free(a);
    emdpo_llama_kv_free(kv);
    emdpo_json_doc_free(doc);
    emdpo_llama_free(m);
    free(toks);
    free(ref);
    free(text);
    return check_report("test_llama_ref");
}
