/* Allocation failure through the public API: each operation runs again and
 * again with its n-th allocation failing (n = 0, 1, ...) until it gets
 * through. Every run must return EMDPO_OK or EMDPO_ERR_NOMEM (never crash
 * or report another error), leave no block allocated once its results are
 * freed, and free every block with the size it was allocated with. */
#include <math.h>

#include "api_util.h"
#include "emdpo/experimental.h"
#include "failalloc.h"

static const char *prefs, *features, *tok_path, *model_dir;
static int vocab;

static int op_data(void) {
    emdpo_data *d = NULL, *s = NULL, *t = NULL, *v = NULL;
    int rc = emdpo_data_read(features, EMDPO_FORMAT_AUTO, &d, NULL);
    int64_t pick[2] = {3, 1};
    if (!rc) rc = emdpo_data_subset(d, pick, 2, &s);
    if (!rc) rc = emdpo_data_split(d, 0.3, 2, &t, &v);
    if (!rc) rc = emdpo_data_write(t, api_path("alloc.jsonl"), EMDPO_FORMAT_JSONL, NULL);
    if (!rc) rc = emdpo_data_write(v, api_path("alloc.csv"), EMDPO_FORMAT_CSV, NULL);
    emdpo_data_free(d);
    emdpo_data_free(s);
    emdpo_data_free(t);
    emdpo_data_free(v);
    d = NULL;
    if (!rc) {
        emdpo_data_builder *b = NULL;
        const char *texts[3] = {"a", "b", "c"};
        rc = emdpo_data_builder_create(0, &b);
        if (!rc) rc = emdpo_data_builder_add(b, "x", "g", "p", 3, 2, NULL, texts);
        if (!rc) rc = emdpo_data_builder_add(b, "y", NULL, NULL, 2, 1, NULL, texts);
        if (!rc) rc = emdpo_data_builder_finish(b, &d);
        else emdpo_data_builder_free(b);
        emdpo_data_free(d);
    }
    return rc;
}

static int op_loglinear(void) {
    emdpo_data *d = NULL;
    emdpo_fit *f = NULL, *r = NULL;
    emdpo_posterior *p = NULL;
    emdpo_aggregate *a = NULL;
    emdpo_loglinear_opts o;
    emdpo_loglinear_opts_init(&o);
    o.em.starts = 2;
    emdpo_aggregate_opts ao;
    emdpo_aggregate_opts_init(&ao);
    int rc = emdpo_data_read(features, EMDPO_FORMAT_AUTO, &d, NULL);
    if (!rc) rc = emdpo_loglinear_fit(d, &o, &f, NULL);
    if (!rc) {
        int se = emdpo_fit_compute_se(f, d, NULL);
        rc = se == EMDPO_ERR_NUMERIC ? EMDPO_OK : se;
    }
    if (!rc) rc = emdpo_fit_write(f, api_path("allocfit"), NULL);
    if (!rc) rc = emdpo_fit_read(api_path("allocfit"), &r, NULL);
    if (!rc) rc = emdpo_posterior_read(api_path("allocfit/posterior.csv"), 2, &p, NULL);
    if (!rc) rc = emdpo_loglinear_aggregate(r, d, &ao, &a, NULL);
    emdpo_aggregate_free(a);
    emdpo_posterior_free(p);
    emdpo_fit_free(r);
    emdpo_fit_free(f);
    emdpo_data_free(d);
    return rc;
}

static int op_lm(void) {
    emdpo_llama *m = NULL, *h = NULL;
    emdpo_tokenizer *t = NULL;
    emdpo_lm_set *set = NULL;
    emdpo_data *d = NULL;
    double logp[8];
    char spec[96];
    snprintf(spec, sizeof spec, "dim=8,layers=1,heads=2,vocab=%d,seq_len=32", vocab);
    int rc = emdpo_llama_from_spec(spec, 3, &m, NULL);
    if (!rc) rc = emdpo_llama_save(m, api_path("allocm"), NULL);
    if (!rc) rc = emdpo_llama_load(api_path("allocm"), &h, NULL);
    if (!rc) rc = emdpo_tokenizer_load(tok_path, vocab, &t, NULL);
    if (!rc) rc = emdpo_lm_set_read(prefs, t, 32, 16, 0, &set, &d, NULL);
    if (!rc) rc = emdpo_lm_score(h, set, 3, logp);
    if (!rc) {
        emdpo_bpe_opts bo;
        emdpo_bpe_opts_init(&bo);
        bo.vocab_size = 270;
        bo.min_count = 1;
        bo.up_to = 1;
        emdpo_vocab *v = NULL;
        const char *paths[1] = {prefs};
        rc = emdpo_vocab_train(paths, 1, &bo, &v, NULL);
        if (!rc) rc = emdpo_vocab_save(v, api_path("alloc_tok.bin"), NULL);
        emdpo_vocab_free(v);
    }
    if (!rc) {
        emdpo_sample_opts so;
        emdpo_sample_opts_init(&so);
        so.max_tokens = 4;
        so.n = 2;
        emdpo_generation *g = NULL;
        rc = emdpo_generate_text(api_path("allocm"), tok_path, "tea", &so, &g, NULL);
        emdpo_generation_free(g);
    }
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
    emdpo_tokenizer_free(t);
    emdpo_llama_free(h);
    emdpo_llama_free(m);
    return rc;
}

static int op_lm_fit(void) {
    emdpo_llama *m = NULL;
    emdpo_tokenizer *t = NULL;
    emdpo_data *d = NULL;
    emdpo_fit *f = NULL;
    emdpo_lm_fit_opts o;
    emdpo_lm_fit_opts_init(&o);
    o.em.max_iter = 0;
    o.em.init = EMDPO_INIT_RANDOM;
    o.mstep.steps = 1;
    o.mstep.max_length = 32;
    int rc = emdpo_llama_load(model_dir, &m, NULL);
    if (!rc) rc = emdpo_tokenizer_load(tok_path, vocab, &t, NULL);
    if (!rc) rc = emdpo_data_read(prefs, EMDPO_FORMAT_JSONL, &d, NULL);
    if (!rc) rc = emdpo_lm_fit(m, t, d, &o, &f, NULL);
    if (!rc) rc = emdpo_fit_write(f, api_path("alloclm"), NULL);
    emdpo_fit_free(f);
    emdpo_data_free(d);
    emdpo_tokenizer_free(t);
    emdpo_llama_free(m);
    return rc;
}

/* EM-DPO around any trainer: the files it reads, the E-step and what it
 * writes, the margin criterion and MMRA-AE on a given matrix. */
static int op_estep(void) {
    emdpo_logratios *a = NULL, *b = NULL;
    emdpo_margins *m = NULL;
    double g[4], en[2], ll, R[(EMDPO_MAX_K + 1) * EMDPO_MAX_K], crit;
    int rc = emdpo_logratios_read(api_path("lr.jsonl"), 0, &a, NULL), rows, K;
    if (!rc) rc = emdpo_logratios_read(api_path("lr.csv"), 2, &b, NULL);
    if (!rc)
        rc = emdpo_estep(2, emdpo_logratios_n_decisions(b), emdpo_logratios_values(b), emdpo_logratios_n_items(b),
                         emdpo_logratios_offsets(b), emdpo_logratios_ranking(b), emdpo_logratios_annotators(b),
                         emdpo_logratios_n_annotators(b), 1.0, NULL, g, en, &ll, NULL);
    if (!rc) rc = emdpo_estep_save(b, 1.0, NULL, g, en, ll, 1, api_path("alloc_estep"), NULL);
    if (!rc) rc = emdpo_margins_read(api_path("m.csv"), &m, NULL);
    if (!rc) {
        int64_t n_dec, n_annot;
        const double *mg;
        const int64_t *ann;
        int k = emdpo_margins_candidate(m, 0, &n_dec, &mg, &ann, &n_annot);
        rc = emdpo_margin_criterion(k, n_dec, mg, ann, n_annot, &crit, NULL, NULL);
    }
    emdpo_regrets_result res;
    if (!rc) rc = emdpo_regrets_read(api_path("r.json"), R, &rows, &K, NULL);
    if (!rc) rc = emdpo_mmra_ae_regrets(R, rows, K, EMDPO_GAME_HEDGE, NULL, &res, NULL);
    if (!rc) rc = emdpo_regrets_result_save(&res, "r.json", api_path("alloc_regrets"), NULL);
    emdpo_logratios_free(a);
    emdpo_logratios_free(b);
    emdpo_margins_free(m);
    return rc;
}

static void sweep(const char *name, int (*op)(void)) {
    int done = 0;
    long k = 0;
    for (; k < 200000 && !done; k++) {
        failalloc_install(k, 0);
        int rc = op();
        long leaked = failalloc_live();
        int size_errors = failalloc_size_errors();
        done = rc == EMDPO_OK && failalloc_count() <= k;
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "%s, allocation %ld failing: %s", name, k,
                  emdpo_status_name(rc));
        CHECK_MSG(leaked == 0, "%s, allocation %ld failing: %ld blocks leaked", name, k, leaked);
        CHECK_MSG(size_errors == 0, "%s, allocation %ld failing: %d frees of the wrong size", name, k, size_errors);
        if (rc != EMDPO_OK && rc != EMDPO_ERR_NOMEM) break;
    }
    CHECK_MSG(done && k > 10, "%s never got through (%ld tries)", name, k);
}

int main(void) {
    api_init();
    emdpo_set_threads(1);
    /* Inputs, made with the C library's allocator. */
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.n_annotators = 30;
    s.decisions = 2;
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK);
    static char fpath[256], ppath[256], tpath[256], mpath[256];
    snprintf(fpath, sizeof fpath, "%s", api_path("features.jsonl"));
    CHECK_EQ_INT(emdpo_data_write(d, fpath, EMDPO_FORMAT_JSONL, NULL), EMDPO_OK);
    emdpo_data_free(d);
    features = fpath;
    snprintf(ppath, sizeof ppath, "%s",
             api_write("prefs.jsonl", "{\"annotator\": \"u1\", \"prompt\": \"Pick\", \"chosen\": \"tea\", \"rejected\": "
                                      "\"coffee\"}\n{\"annotator\": \"u2\", \"prompt\": \"Pick\", \"chosen\": \"coffee\", "
                                      "\"rejected\": [\"tea\", \"water\"]}\n{\"annotator\": \"u1\", \"prompt\": \"Again\", "
                                      "\"chosen\": \"water\", \"rejected\": \"tea\"}\n"));
    prefs = ppath;
    emdpo_bpe_opts bo;
    emdpo_bpe_opts_init(&bo);
    bo.vocab_size = 280;
    bo.min_count = 1;
    bo.up_to = 1;
    emdpo_vocab *v = NULL;
    const char *paths[1] = {prefs};
    CHECK_EQ_INT(emdpo_vocab_train(paths, 1, &bo, &v, NULL), EMDPO_OK);
    if (!v) return check_report("test_api_alloc");
    vocab = emdpo_vocab_entries(v);
    snprintf(tpath, sizeof tpath, "%s", api_path("tok.bin"));
    CHECK_EQ_INT(emdpo_vocab_save(v, tpath, NULL), EMDPO_OK);
    emdpo_vocab_free(v);
    tok_path = tpath;
    char spec[96];
    snprintf(spec, sizeof spec, "dim=8,layers=1,heads=2,vocab=%d,seq_len=32", vocab);
    emdpo_llama *m = NULL;
    snprintf(mpath, sizeof mpath, "%s", api_path("sft"));
    CHECK(emdpo_llama_from_spec(spec, 5, &m, NULL) == EMDPO_OK && emdpo_llama_save(m, mpath, NULL) == EMDPO_OK);
    emdpo_llama_free(m);
    model_dir = mpath;

    api_write("lr.jsonl", "{\"annotator\": \"u1\", \"logratios\": [[0.5, -0.25, 1], [2, 0, -1]]}\n"
                          "{\"annotator\": 7, \"logratios\": [[1, 2], [3, 4]], \"ranking\": true}\n");
    api_write("lr.csv", "annotator,decision,type,item,logratio\nu1,d1,1,0,0.5\nu1,d1,2,0,2\nu1,d1,1,1,-0.25\n"
                        "u1,d1,2,1,0\nu2,d2,1,0,1\nu2,d2,1,1,2\nu2,d2,2,0,3\nu2,d2,2,1,4\n");
    api_write("m.csv", "k,annotator,decision,type,margin\n2,x,1,2,0\n2,x,1,1,1\n2,y,2,1,0.5\n2,y,2,2,0.25\n");
    api_write("r.json", "[[0, 1], [2, 0]]");
    sweep("EM-DPO around any trainer", op_estep);
    sweep("data", op_data);
    sweep("log-linear fit, files and aggregation", op_loglinear);
    sweep("Llama models, tokenizers, scores and generation", op_lm);
    sweep("EM-DPO on Llama policies", op_lm_fit);
    api_done();
    return check_report("test_api_alloc");
}
