/* The public API of Llama policies (emdpo/lm.h, emdpo/mmra.h's Llama
 * parts), through the shared library, on a model trained from scratch in
 * the test: vocabularies and tokenizers, checkpoints in both formats,
 * scoring, generation, training with bit-exact resumption, EM-DPO with
 * its files, MMRA, regrets, evaluation, baselines and mixtures; and PEFT
 * LoRA adapters on a fixture base (tests/fixtures/lora). */
#include <math.h>

#include "api_util.h"

/* Two groups with opposite tastes, each annotator deciding twice. */
static const char *write_prefs(void) {
    static const char *const like[2][2] = {{"a calm walk by the river", "a loud party with friends"},
                                           {"tea in the garden", "coffee at a busy bar"}};
    char text[8192] = "";
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 2; j++) {
            int g = i % 2;
            char line[512];
            snprintf(line, sizeof line,
                     "{\"annotator\": \"u%d\", \"group\": \"%s\", \"prompt\": \"Which do you prefer?\", \"chosen\": \"%s\", "
                     "\"rejected\": \"%s\"}\n",
                     i, g ? "quiet" : "lively", like[j][g], like[j][1 - g]);
            strcat(text, line);
        }
    static char path[256];
    snprintf(path, sizeof path, "%s", api_write("prefs.jsonl", text));
    return path;
}

static double sum(const double *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

static emdpo_tokenizer *tok;
static emdpo_llama *sft;
static int vocab;

static void test_vocab(const char *prefs) {
    emdpo_bpe_opts o;
    emdpo_bpe_opts_init(&o);
    CHECK(o.vocab_size == 512 && o.min_count == 2 && o.up_to == 0);
    o.vocab_size = 300;
    o.min_count = 1;
    o.up_to = 1;
    emdpo_vocab *v = NULL;
    emdpo_diag diag;
    const char *paths[1] = {prefs};
    CHECK_EQ_INT(emdpo_vocab_train(paths, 1, &o, &v, &diag), EMDPO_OK);
    if (!v) exit(1);
    vocab = emdpo_vocab_entries(v);
    CHECK(vocab > EMDPO_TOK_MIN_VOCAB && vocab <= 300);
    CHECK(emdpo_vocab_n_texts(v) > 0 && emdpo_vocab_n_tokens(v) > 0 && emdpo_vocab_n_bytes(v) > emdpo_vocab_n_tokens(v));
    CHECK_EQ_INT(emdpo_vocab_save(v, api_path("tok.bin"), &diag), EMDPO_OK);
    emdpo_vocab_free(v);
    /* Without up_to, asking for more than the texts support is refused. */
    o.up_to = 0;
    o.vocab_size = 5000;
    CHECK_EQ_INT(emdpo_vocab_train(paths, 1, &o, &v, &diag), EMDPO_ERR_LIMIT);
    o.vocab_size = 200;
    CHECK_EQ_INT(emdpo_vocab_train(paths, 1, &o, &v, &diag), EMDPO_ERR_INVALID_ARG);

    CHECK_EQ_INT(emdpo_tokenizer_load(api_path("tok.bin"), vocab, &tok, &diag), EMDPO_OK);
    if (!tok) exit(1);
    CHECK(emdpo_tokenizer_vocab_size(tok) == vocab && strcmp(emdpo_tokenizer_source(tok), api_path("tok.bin")) == 0);
    emdpo_tokenizer *t2 = NULL;
    CHECK_EQ_INT(emdpo_tokenizer_load(api_path("tok.bin"), vocab + 1, &t2, &diag), EMDPO_ERR_PARSE);
    CHECK_EQ_INT(emdpo_tokenizer_load(api_path("tok.bin"), 10, &t2, &diag), EMDPO_ERR_INVALID_ARG);

    /* Round trips, through byte fallback for what the vocabulary lacks. */
    const char *texts[] = {"a calm walk by the river", "caf\xc3\xa9 \xe2\x9c\x93 \x01", "", "  two  spaces ",
                           "\xff\xfe invalid"};
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        size_t len = strlen(texts[t]), cap = emdpo_tokenizer_encode_bound(len), n = 0, out_len = 0;
        int ids[512];
        char back[512];
        CHECK(cap <= 512);
        CHECK_EQ_INT(emdpo_tokenizer_encode(tok, texts[t], len, EMDPO_TOK_ADD_BOS, ids, cap, &n), EMDPO_OK);
        CHECK(n >= 1 && ids[0] == 1);
        CHECK_EQ_INT(emdpo_tokenizer_decode(tok, ids, n, back, sizeof back, &out_len), EMDPO_OK);
        CHECK(out_len == len && memcmp(back, texts[t], len) == 0);
        CHECK_EQ_INT(emdpo_tokenizer_decode(tok, ids, n, NULL, 0, &out_len), len ? EMDPO_ERR_LIMIT : EMDPO_ERR_LIMIT);
        CHECK(out_len == len);
        if (n > 2) {
            size_t need = 0;
            CHECK_EQ_INT(emdpo_tokenizer_encode(tok, texts[t], len, EMDPO_TOK_ADD_BOS, ids, 1, &need), EMDPO_ERR_LIMIT);
            CHECK(need == n);
        }
    }
    int bad[2] = {1, vocab};
    size_t out_len;
    char buf[8];
    CHECK_EQ_INT(emdpo_tokenizer_decode(tok, bad, 2, buf, sizeof buf, &out_len), EMDPO_ERR_INVALID_ARG);
}

static void test_models(const char *prefs) {
    char spec[128];
    snprintf(spec, sizeof spec, "dim=16,layers=1,heads=2,hidden=48,vocab=%d,seq_len=64", vocab);
    emdpo_llama *m = NULL, *h = NULL, *c = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_llama_from_spec(spec, 7, &m, &diag), EMDPO_OK);
    if (!m) exit(1);
    CHECK(emdpo_llama_vocab_size(m) == vocab && emdpo_llama_context_length(m) == 64 && emdpo_llama_dim(m) == 16);
    /* Tied head: embeddings, then per layer two norms, q k v o and the three FFN matrices, then the final norm. */
    CHECK_EQ_INT(emdpo_llama_n_params(m), (size_t)16 * vocab + 2 * 16 + 4 * 16 * 16 + 3 * 16 * 48 + 16);
    CHECK(emdpo_llama_source(m) == NULL);
    CHECK_EQ_INT(emdpo_llama_from_spec("dim=16,layers=1", 7, &h, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(diag.msg, "vocab") != NULL);
    CHECK_EQ_INT(emdpo_llama_from_spec("dim=16,heads=3,vocab=300", 7, &h, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_llama_from_spec("dim=x", 7, &h, &diag), EMDPO_ERR_INVALID_ARG);

    /* Both formats hold the same model: the same scores, bit for bit. */
    CHECK_EQ_INT(emdpo_llama_save(m, api_path("m_hf"), &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_save_llama2c(m, api_path("m.bin"), &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_load(api_path("m_hf"), &h, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_load(api_path("m.bin"), &c, &diag), EMDPO_OK);
    CHECK(h && c && emdpo_llama_same_architecture(m, h) && emdpo_llama_same_architecture(m, c));
    CHECK(h && strcmp(emdpo_llama_source(h), api_path("m_hf")) == 0);
    emdpo_lm_set *set = NULL;
    emdpo_data *d = NULL;
    int ml = 0, mpl = 0;
    CHECK_EQ_INT(emdpo_lm_lengths(m, &ml, &mpl, &diag), EMDPO_OK);
    CHECK(ml == 64 && mpl == 32);
    int too_long = 65, zero = 0;
    CHECK_EQ_INT(emdpo_lm_lengths(m, &too_long, &zero, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_set_read(prefs, tok, ml, mpl, 0, &set, &d, &diag), EMDPO_OK);
    if (!set || !d) exit(1);
    CHECK(emdpo_lm_set_n_groups(set) == 16 && emdpo_lm_set_n_sequences(set) == 32 && emdpo_lm_set_max_length(set) == 64);
    CHECK(emdpo_lm_set_n_truncated(set) == 0 && emdpo_data_n_decisions(d) == 16);
    int64_t first;
    CHECK(emdpo_lm_set_group(set, 3, &first) == 2 && first == 6);
    CHECK(emdpo_lm_set_response_tokens(set, 0) >= 2); /* the response and its EOS */
    double a[32], b[32], e[32];
    CHECK_EQ_INT(emdpo_lm_score(m, set, 5, a), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(h, set, 5, b), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(c, set, 5, e), EMDPO_OK);
    int finite = 1;
    for (int i = 0; i < 32; i++) finite &= isfinite(a[i]) && a[i] < 0;
    CHECK(finite && memcmp(a, b, sizeof a) == 0 && memcmp(a, e, sizeof a) == 0);
    /* Other batches sum in another order: the same to float precision. */
    CHECK_EQ_INT(emdpo_lm_score(c, set, 1, e), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(h, set, 32, b), EMDPO_OK);
    for (int i = 0; i < 32; i++) {
        CHECK_CLOSE(e[i], a[i], 1e-6);
        CHECK_CLOSE(b[i], a[i], 1e-6);
    }
    /* Sequence i of a set made from data is item i. */
    emdpo_lm_set *s2 = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, ml, mpl, &s2), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(m, s2, 5, b), EMDPO_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    emdpo_lm_set_free(s2);
    /* A model with a smaller context refuses sequences it cannot hold. */
    emdpo_llama *small = NULL;
    snprintf(spec, sizeof spec, "dim=16,layers=1,heads=2,vocab=%d,seq_len=4", vocab);
    CHECK_EQ_INT(emdpo_llama_from_spec(spec, 7, &small, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(small, set, 8, b), EMDPO_ERR_LIMIT);
    emdpo_llama_free(small);

    /* Generation: greedy is deterministic, every sample alike; sampling follows its seed. */
    emdpo_sample_opts so;
    emdpo_sample_opts_init(&so);
    CHECK(so.temperature == 1 && so.top_k == 0 && so.top_p == 1 && so.max_tokens == 256 && so.n == 1 && so.seed == 1);
    so.temperature = 0;
    so.max_tokens = 12;
    so.n = 3;
    int prompt[1] = {1}, out[36], n_out[3], stop[3], out2[36], n_out2[3];
    CHECK_EQ_INT(emdpo_lm_generate(m, &so, prompt, 1, out, n_out, stop), EMDPO_OK);
    CHECK(n_out[0] == n_out[1] && n_out[1] == n_out[2] && memcmp(out, out + 12, (size_t)n_out[0] * sizeof *out) == 0);
    CHECK((stop[0] == EMDPO_GEN_EOS && n_out[0] < 12) || (stop[0] == EMDPO_GEN_MAX && n_out[0] == 12));
    so.temperature = 1;
    so.seed = 9;
    CHECK_EQ_INT(emdpo_lm_generate(m, &so, prompt, 1, out, n_out, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_generate(m, &so, prompt, 1, out2, n_out2, NULL), EMDPO_OK);
    CHECK(memcmp(n_out, n_out2, sizeof n_out) == 0 && memcmp(out, out2, sizeof out) == 0);
    so.top_p = 0;
    CHECK_EQ_INT(emdpo_lm_generate(m, &so, prompt, 1, out, n_out, NULL), EMDPO_ERR_INVALID_ARG);
    so.top_p = 1;
    emdpo_generation *g = NULL;
    so.n = 2;
    CHECK_EQ_INT(emdpo_generate_text(api_path("m_hf"), api_path("tok.bin"), "Which", &so, &g, &diag), EMDPO_OK);
    CHECK(g && emdpo_generation_n(g) == 2 && !emdpo_generation_is_mixture(g) && emdpo_generation_member(g, 0) == NULL);
    size_t len = 0;
    CHECK(g && strncmp(emdpo_generation_text(g, 1, &len), "Which", 5) == 0 && len >= 5);
    emdpo_generation_free(g);
    CHECK_EQ_INT(emdpo_generate_text(api_path("none"), api_path("tok.bin"), NULL, &so, &g, &diag), EMDPO_ERR_IO);

    emdpo_lm_set_free(set);
    emdpo_data_free(d);
    emdpo_llama_free(h);
    emdpo_llama_free(c);
    sft = m;
}

/* Trains a copy of sft by DPO for `steps` steps, optionally checkpointing
 * at `save_at`; returns the scores of the set under the result. */
static void train_run(const emdpo_lm_set *set, int64_t steps, int64_t save_at, const char *resume_from, double *logp) {
    emdpo_llama *m = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_llama_load(api_path("m_hf"), &m, &diag), EMDPO_OK);
    emdpo_train_config c;
    emdpo_train_config_init(&c, EMDPO_TRAIN_DPO);
    c.optim.lr = 1e-3;
    c.batch = 3;
    emdpo_trainer *t = NULL;
    double w[16]; /* mostly the lively group's decisions (annotators u0, u2, ...: decisions 0, 1, 4, 5, ...) */
    for (int i = 0; i < 16; i++) w[i] = (i / 2) % 2 ? 0.1 : 1.0;
    CHECK_EQ_INT(emdpo_trainer_create(m, set, w, &c, &t), EMDPO_OK);
    if (resume_from) CHECK_EQ_INT(emdpo_trainer_resume(t, resume_from, &diag), EMDPO_OK);
    else CHECK_EQ_INT(emdpo_trainer_set_reference(t, NULL), EMDPO_OK);
    emdpo_train_metrics met;
    while (emdpo_trainer_steps_done(t) < steps) {
        CHECK_EQ_INT(emdpo_trainer_step(t, &met), EMDPO_OK);
        CHECK(isfinite(met.loss) && met.examples == 3 && met.step == emdpo_trainer_steps_done(t));
        if (met.step == save_at) CHECK_EQ_INT(emdpo_trainer_save(t, api_path("trainer.bin"), &diag), EMDPO_OK);
    }
    CHECK_EQ_INT(emdpo_lm_score(m, set, 8, logp), EMDPO_OK);
    emdpo_trainer_free(t);
    emdpo_llama_free(m);
}

static void test_training(const char *prefs) {
    emdpo_train_config c;
    emdpo_train_config_init(&c, EMDPO_TRAIN_SFT);
    CHECK(c.optim.kind == EMDPO_OPTIM_ADAMW && c.optim.lr == 2e-5 && c.optim.clip == 1 && c.batch == 4);
    emdpo_train_config_init(&c, EMDPO_TRAIN_DPO);
    CHECK(c.optim.kind == EMDPO_OPTIM_RMSPROP && c.optim.lr == 1e-6 && c.optim.clip == 10 && c.loss.beta == 0.1 &&
          c.loss.kind == EMDPO_LOSS_DPO);
    emdpo_optim_config oc;
    emdpo_optim_config_init(&oc, EMDPO_OPTIM_ADAMW);
    CHECK(oc.lr == 1e-3 && oc.beta1 == 0.9 && oc.beta2 == 0.999 && oc.eps == 1e-8);
    CHECK(strcmp(emdpo_loss_name(EMDPO_LOSS_IPO), "ipo") == 0 && strcmp(emdpo_optim_name(EMDPO_OPTIM_ADAMW), "adamw") == 0);

    emdpo_lm_set *set = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_lm_set_read(prefs, tok, 64, 32, 0, &set, NULL, &diag), EMDPO_OK);
    if (!set) return;
    /* Six steps straight, or three, a checkpoint, and three more: the same bits. */
    double straight[32], resumed[32], before[32];
    CHECK_EQ_INT(emdpo_lm_score(sft, set, 8, before), EMDPO_OK);
    train_run(set, 6, 3, NULL, straight);
    train_run(set, 6, -1, api_path("trainer.bin"), resumed);
    CHECK(memcmp(straight, resumed, sizeof straight) == 0);
    /* DPO moved the lively group's chosen responses up against its rejected ones. */
    double margin0 = 0, margin1 = 0;
    for (int g = 0; g < 16; g += 4)
        for (int j = g; j < g + 2; j++) {
            margin0 += before[2 * j] - before[2 * j + 1];
            margin1 += straight[2 * j] - straight[2 * j + 1];
        }
    CHECK_MSG(margin1 > margin0 + 0.1, "the lively group's margin: %g before, %g after", margin0, margin1);
    /* DPO on a group of one, and negative weights, are refused. */
    emdpo_llama *m = NULL;
    emdpo_trainer *t = NULL;
    CHECK_EQ_INT(emdpo_llama_load(api_path("m_hf"), &m, &diag), EMDPO_OK);
    double neg[16] = {-1};
    CHECK_EQ_INT(emdpo_trainer_create(m, set, neg, &c, &t), EMDPO_ERR_INVALID_ARG);
    emdpo_lm_set *sftset = NULL;
    CHECK_EQ_INT(emdpo_lm_set_read(prefs, tok, 64, 32, 1, &sftset, NULL, &diag), EMDPO_OK);
    CHECK(sftset && emdpo_lm_set_n_sequences(sftset) == 16);
    CHECK_EQ_INT(emdpo_trainer_create(m, sftset, NULL, &c, &t), EMDPO_ERR_INVALID_ARG);
    emdpo_lm_set_free(sftset);
    emdpo_llama_free(m);
    emdpo_lm_set_free(set);

    /* A whole SFT run from a fresh model, then resumed further. */
    emdpo_train_opts o;
    emdpo_train_opts_init(&o, EMDPO_TRAIN_SFT);
    CHECK(o.save_every == 100 && o.steps == 0 && o.train.mode == EMDPO_TRAIN_SFT);
    char spec[128];
    snprintf(spec, sizeof spec, "dim=16,layers=1,heads=2,vocab=%d,seq_len=64", vocab);
    o.data = prefs;
    o.config_spec = spec;
    o.tokenizer = api_path("tok.bin");
    o.out = api_path("sft");
    o.log = api_path("sft.log");
    o.steps = 3;
    o.train.optim.lr = 1e-3;
    emdpo_train_job *j = NULL;
    /* The job keeps copies of the paths: the caller's may go at once. */
    char *own_out = strdup(o.out);
    o.out = own_out;
    CHECK_EQ_INT(emdpo_train_job_create(&o, &j, &diag), EMDPO_OK);
    memset(own_out, 'x', strlen(own_out));
    free(own_out);
    o.out = api_path("sft");
    CHECK(j && emdpo_train_job_total_steps(j) == 3 && emdpo_train_job_steps_done(j) == 0 &&
          emdpo_train_job_n_sequences(j) == 16 && emdpo_train_job_max_length(j) == 64);
    CHECK_EQ_INT(emdpo_train_job_run(j, &diag), EMDPO_OK);
    emdpo_train_metrics last;
    emdpo_train_job_last(j, &last);
    CHECK(last.step == 3 && isfinite(last.loss));
    emdpo_train_job_free(j);
    o.resume = 1;
    o.config_spec = NULL;
    o.steps = 5;
    CHECK_EQ_INT(emdpo_train_job_create(&o, &j, &diag), EMDPO_OK);
    CHECK(j && emdpo_train_job_steps_done(j) == 3);
    CHECK_EQ_INT(emdpo_train_job_run(j, &diag), EMDPO_OK);
    CHECK(j && emdpo_train_job_steps_done(j) == 5);
    emdpo_train_job_free(j);
    FILE *fp = fopen(api_path("sft.log"), "r");
    int lines = 0;
    for (int ch; fp && (ch = fgetc(fp)) != EOF;) lines += ch == '\n';
    if (fp) fclose(fp);
    CHECK_EQ_INT(lines, 5);
    o.resume = 0;
    o.config_spec = spec;
    o.model = api_path("m_hf");
    CHECK_EQ_INT(emdpo_train_job_create(&o, &j, &diag), EMDPO_ERR_INVALID_ARG);
}

/* A LoRA DPO run's adapter scored on its base unmerged: not the base's
 * scores, the merged model's to rounding; no adapter is the base itself;
 * an adapter of another shape is refused. */
static void test_adapter_scores(const char *prefs) {
    emdpo_train_opts o;
    emdpo_train_opts_init(&o, EMDPO_TRAIN_DPO);
    o.data = prefs;
    o.model = api_path("m_hf");
    o.tokenizer = api_path("tok.bin");
    o.out = api_path("lora_dpo");
    o.steps = 3;
    o.train.optim.lr = 1e-2;
    emdpo_lora_config_init(&o.lora);
    o.lora.r = 4;
    emdpo_train_job *j = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_train_job_create(&o, &j, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_train_job_run(j, &diag), EMDPO_OK);
    emdpo_train_job_free(j);
    emdpo_llama *m = NULL, *l3 = NULL;
    emdpo_lora_adapter *a = NULL, *other = NULL;
    emdpo_lm_set *set = NULL;
    CHECK_EQ_INT(emdpo_llama_load(api_path("m_hf"), &m, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lora_adapter_read(api_path("lora_dpo"), m, &a, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_set_read(prefs, tok, 64, 32, 0, &set, NULL, &diag), EMDPO_OK);
    if (!m || !a || !set) return;
    double base[32], none[32], with[32], merged[32], far = 0, near = 0;
    CHECK_EQ_INT(emdpo_lm_score(m, set, 8, base), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score_adapter(m, NULL, set, 8, none), EMDPO_OK);
    CHECK(memcmp(base, none, sizeof base) == 0);
    CHECK_EQ_INT(emdpo_lm_score_adapter(m, a, set, 8, with), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lora_adapter_merge(a, m, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(m, set, 8, merged), EMDPO_OK);
    for (int i = 0; i < 32; i++) {
        far = fmax(far, fabs(with[i] - base[i]));
        near = fmax(near, fabs(with[i] - merged[i]));
    }
    CHECK_MSG(far > 1e-3 && near < 1e-5, "adapter against base %g, against merged %g", far, near);
    CHECK_EQ_INT(emdpo_llama_load("tests/fixtures/hf_families/llama3", &l3, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lora_adapter_read("tests/fixtures/lora/llama3_all", l3, &other, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score_adapter(m, other, set, 8, with), EMDPO_ERR_INVALID_ARG);
    emdpo_lora_adapter_free(a);
    emdpo_lora_adapter_free(other);
    emdpo_llama_free(l3);
    emdpo_llama_free(m);
    emdpo_lm_set_free(set);
}

static void test_em(const char *prefs) {
    emdpo_lm_fit_opts o;
    emdpo_lm_fit_opts_init(&o);
    CHECK(o.em.max_iter == 5 && o.em.tol == 0 && o.em.patience == 2 && o.mstep.beta == 0.1 &&
          o.mstep.weight_norm == EMDPO_WEIGHT_NORM_MEAN && o.mstep.epochs == 1);
    emdpo_llama *ref = NULL;
    emdpo_data *d = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_llama_load(api_path("m_hf"), &ref, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_read(prefs, EMDPO_FORMAT_JSONL, &d, &diag), EMDPO_OK);
    if (!ref || !d) return;
    o.k = 2;
    o.em.max_iter = 1;
    o.em.init = EMDPO_INIT_KMEANS_TOKENS;
    o.mstep.steps = 2;
    o.mstep.optim.lr = 1e-3;
    emdpo_fit *f = NULL;
    CHECK_EQ_INT(emdpo_lm_fit(ref, tok, d, &o, &f, &diag), EMDPO_OK);
    if (!f) return;
    CHECK(emdpo_fit_family(f) == EMDPO_FAMILY_LLAMA && emdpo_fit_k(f) == 2 && emdpo_fit_mstep_steps(f) == 2);
    CHECK(emdpo_fit_model(f, 0) && emdpo_fit_model(f, 1) && !emdpo_fit_model(f, 2));
    CHECK(emdpo_fit_policy_path(f, 0) == NULL && strcmp(emdpo_fit_policy_name(f, 1), "type_2") == 0);
    double gamma[16], eta[2];
    CHECK_EQ_INT(emdpo_fit_posterior(f, gamma, 8, 2), EMDPO_OK);
    int rows = 1;
    for (int i = 0; i < 8; i++) rows &= fabs(gamma[2 * i] + gamma[2 * i + 1] - 1) < 1e-12;
    CHECK(rows && emdpo_fit_eta(f, eta, 2) == 0 && fabs(sum(eta, 2) - 1) < 1e-12);
    int npar;
    double aic, bic, icl;
    CHECK_EQ_INT(emdpo_fit_criteria(f, &npar, &aic, &bic, &icl), EMDPO_ERR_UNSUPPORTED);
    emdpo_lm_fit_opts back;
    emdpo_fit_lm_opts(f, &back);
    CHECK(back.k == 2 && back.em.max_iter == 1 && back.mstep.steps == 2);
    CHECK_EQ_INT(emdpo_fit_write(f, api_path("fit"), &diag), EMDPO_OK);
    emdpo_fit *r = NULL;
    CHECK_EQ_INT(emdpo_fit_read(api_path("fit"), &r, &diag), EMDPO_OK);
    CHECK(emdpo_fit_file_is(api_path("fit"), EMDPO_FAMILY_LLAMA));
    if (r) {
        CHECK(emdpo_fit_model(r, 0) == NULL && strstr(emdpo_fit_policy_path(r, 1), "fit/type_2"));
        CHECK(strcmp(emdpo_fit_tokenizer_path(r), api_path("tok.bin")) == 0);
        CHECK(strcmp(emdpo_fit_model_path(r), api_path("m_hf")) == 0);
        CHECK(emdpo_fit_loglik(r) == emdpo_fit_loglik(f));
    }
    o.k = 0;
    emdpo_fit *bad = NULL;
    CHECK_EQ_INT(emdpo_lm_fit(ref, tok, d, &o, &bad, &diag), EMDPO_ERR_INVALID_ARG);

    /* MMRA-AE over the fit's types, exact over the decisions' items. */
    emdpo_lm_aggregate_opts ao;
    emdpo_lm_aggregate_opts_init(&ao);
    emdpo_lm_aggregate *ag = NULL;
    CHECK_EQ_INT(emdpo_lm_aggregate_create(r, &ao, &ag, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_aggregate_run(ag, &diag), EMDPO_OK);
    const emdpo_aggregate *res = emdpo_lm_aggregate_result(ag);
    emdpo_regret_row ae;
    memset(&ae, 0, sizeof ae);
    CHECK(res && emdpo_aggregate_n_rows(res) == 4 && emdpo_aggregate_n_decisions(res) == 16);
    for (int i = 1; res && i < 4; i++)
        CHECK(emdpo_aggregate_row(res, 0)->max_regret <= emdpo_aggregate_row(res, i)->max_regret + 1e-9);
    if (res) ae = *emdpo_aggregate_row(res, 0);
    emdpo_lm_aggregate_opts in_force;
    emdpo_lm_aggregate_settings(ag, &in_force); /* its paths are ag's */
    CHECK(in_force.estimator == EMDPO_ESTIMATOR_EXACT && emdpo_lm_aggregate_returned(ag, NULL) == -1);
    CHECK(in_force.data && strstr(in_force.data, "prefs.jsonl"));
    emdpo_lm_aggregate_free(ag);
    CHECK(access(api_path("fit/mixture.json"), F_OK) == 0);
    ao.method = EMDPO_MMRA_ONPOLICY;
    ao.estimator = EMDPO_ESTIMATOR_EXACT;
    CHECK_EQ_INT(emdpo_lm_aggregate_create(r, &ao, &ag, &diag), EMDPO_ERR_INVALID_ARG);
    /* Options of another method are refused, not ignored. */
    emdpo_lm_aggregate_opts_init(&ao);
    ao.rounds = 3;
    CHECK_EQ_INT(emdpo_lm_aggregate_create(r, &ao, &ag, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK(strncmp(diag.msg, "rounds", 6) == 0 && ag == NULL);
    emdpo_lm_aggregate_opts_init(&ao);
    ao.method = EMDPO_MMRA_LW;
    ao.pooled = api_path("m_hf");
    CHECK_EQ_INT(emdpo_lm_aggregate_create(r, &ao, &ag, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK(strncmp(diag.msg, "pooled", 6) == 0);

    /* The mixture it wrote: the weights of MMRA-AE over the two types. */
    emdpo_mixture *mx = NULL;
    CHECK(emdpo_mixture_is_file(api_path("fit/mixture.json")) && !emdpo_mixture_is_file(api_path("m.bin")));
    CHECK_EQ_INT(emdpo_mixture_open(api_path("fit/mixture.json"), &mx, &diag), EMDPO_OK);
    CHECK(mx && emdpo_mixture_k(mx) == 2 && fabs(emdpo_mixture_weight(mx, 0) + emdpo_mixture_weight(mx, 1) - 1) < 1e-9);
    CHECK(mx && strcmp(emdpo_mixture_member(mx, 0), "type_1") == 0 && emdpo_mixture_model(mx, 1) != NULL);
    emdpo_mixture_free(mx);
    double w[2] = {0.5, 0.6};
    const char *members[2] = {"a", "b"};
    CHECK_EQ_INT(emdpo_mixture_write(api_path("bad.json"), 2, w, members, 0.1, NULL, &diag), EMDPO_ERR_INVALID_ARG);

    /* Regrets: each type's own is 0, a mixture's the weighted sum of its
     * members', and MMRA-AE's mixture has the max regret aggregate found. */
    emdpo_regret_opts ro;
    emdpo_regret_opts_init(&ro);
    CHECK(ro.estimator == EMDPO_ESTIMATOR_SAMPLE && ro.samples == 4);
    ro.estimator = EMDPO_ESTIMATOR_EXACT;
    emdpo_regret *rg = NULL;
    CHECK_EQ_INT(emdpo_regret_create(r, &ro, &rg, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_regret_add(rg, "t1", api_path("fit/type_1"), &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_regret_add(rg, "t1", api_path("fit/type_2"), &diag), EMDPO_ERR_INVALID_ARG);
    /* A mixture of mixtures is refused and leaves nothing behind: its name is free again. */
    char nested[512];
    snprintf(nested, sizeof nested, "{\"kind\": \"mixture\", \"weights\": [1], \"members\": [\"%s\"]}\n",
             api_path("fit/mixture.json"));
    CHECK_EQ_INT(emdpo_regret_add(rg, "nested", api_write("nested.json", nested), &diag), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_regret_n_policies(rg), 1);
    CHECK_EQ_INT(emdpo_regret_add(rg, "t2", api_path("fit/type_2"), &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_regret_add(rg, "mix", api_path("fit/mixture.json"), &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_regret_add_uniform(rg, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_regret_run(rg, &diag), EMDPO_OK);
    CHECK(emdpo_regret_n_policies(rg) == 4 && emdpo_regret_k(rg) == 2 && emdpo_regret_n_decisions(rg) == 16);
    const emdpo_regret_row *t1 = emdpo_regret_policy(rg, 0), *t2 = emdpo_regret_policy(rg, 1);
    const emdpo_regret_row *mix = emdpo_regret_policy(rg, 2), *un = emdpo_regret_policy(rg, 3);
    CHECK(emdpo_regret_policy_path(rg, 3) == NULL && strcmp(un->name, "uniform") == 0);
    CHECK(t1->regret[0] == 0 && t2->regret[1] == 0);
    for (int k = 0; k < 2; k++) {
        CHECK_CLOSE(un->regret[k], 0.5 * t1->regret[k] + 0.5 * t2->regret[k], 1e-12);
        CHECK_CLOSE(mix->regret[k], ae.w[0] * t1->regret[k] + ae.w[1] * t2->regret[k], 1e-9);
    }
    CHECK_CLOSE(mix->max_regret, ae.max_regret, 1e-9);
    CHECK_EQ_INT(emdpo_regret_save(rg, api_path("regret.json"), &diag), EMDPO_OK);
    emdpo_regret_free(rg);

    /* Evaluation by true group of the fit's types and of a vanilla baseline. */
    emdpo_baseline_opts bo;
    emdpo_baseline_opts_init(&bo);
    bo.steps = 2;
    int K = 0;
    CHECK_EQ_INT(emdpo_baseline_run(ref, tok, d, &bo, api_path("vanilla"), NULL, NULL, &K, &diag), EMDPO_OK);
    CHECK(K == 1 && access(api_path("vanilla/baseline.json"), F_OK) == 0);
    bo.method = EMDPO_BASELINE_TRUELABEL;
    CHECK_EQ_INT(emdpo_baseline_run(ref, tok, d, &bo, api_path("truelabel"), NULL, NULL, &K, &diag), EMDPO_OK);
    CHECK_EQ_INT(K, 2);
    emdpo_eval_opts eo;
    emdpo_eval_opts_init(&eo);
    eo.posterior = api_path("fit/posterior.csv");
    const char *dirs[2] = {api_path("fit"), api_path("truelabel")};
    emdpo_eval *ev = NULL;
    CHECK_EQ_INT(emdpo_eval_run(ref, tok, d, dirs, 2, &eo, &ev, &diag), EMDPO_OK);
    if (ev) {
        CHECK(emdpo_eval_n_methods(ev) == 2 && emdpo_eval_n_groups(ev) == 2 && emdpo_eval_n_policies(ev, 1) == 2);
        CHECK(strcmp(emdpo_eval_method_name(ev, 1), "truelabel") == 0 && strcmp(emdpo_eval_group_name(ev, 0), "lively") == 0);
        for (int j = 0; j < 2; j++)
            for (int g = 0; g < 2; g++) {
                int best = emdpo_eval_best(ev, j, g);
                double mm = emdpo_eval_max_margin(ev, j, g);
                CHECK(best >= 0 && mm == emdpo_eval_margin(ev, j, best, g));
                for (int i = 0; i < emdpo_eval_n_policies(ev, j); i++) CHECK(emdpo_eval_margin(ev, j, i, g) <= mm);
                double acc = emdpo_eval_best_accuracy(ev, j, g);
                CHECK(acc >= 0 && acc <= 1);
            }
        int64_t n = 0;
        double ari = emdpo_eval_ari(ev, &n);
        CHECK(n == 8 && ari >= -1 && ari <= 1);
        CHECK_EQ_INT(emdpo_eval_save(ev, api_path("eval.json"), &diag), EMDPO_OK);
    }
    emdpo_eval_free(ev);

    /* Scoring through a mixture: log sum_k w_k pi_k. */
    emdpo_score_opts so;
    emdpo_score_opts_init(&so);
    so.model = api_path("fit/mixture.json");
    so.ref = api_path("m_hf");
    so.tokenizer = api_path("tok.bin");
    so.data = prefs;
    emdpo_scores *sc = NULL;
    CHECK_EQ_INT(emdpo_score_run(&so, &sc, &diag), EMDPO_OK);
    CHECK(sc && emdpo_scores_n_sequences(sc) == 32 && emdpo_scores_max_length(sc) == 64);
    CHECK_EQ_INT(emdpo_scores_save(sc, api_path("scores.csv"), &diag), EMDPO_OK);
    emdpo_scores_free(sc);

    emdpo_fit_free(r);
    emdpo_fit_free(f);
    emdpo_data_free(d);
    emdpo_llama_free(ref);
}

/* A PEFT adapter: read, its numbers, written and read back, merged in
 * memory and by emdpo_merge_run to the same model; another shape refused. */
static void test_adapters(void) {
    emdpo_llama *base = NULL, *merged = NULL, *other = NULL;
    emdpo_lora_adapter *a = NULL, *b = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_llama_load("tests/fixtures/hf_families/llama3", &base, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lora_adapter_read("tests/fixtures/lora/llama3_all", base, &a, &d), EMDPO_OK);
    /* 2 layers x r 4 x (in + out) over the seven projections */
    CHECK(emdpo_lora_adapter_rank(a) == 4 && emdpo_lora_adapter_alpha(a) == 8 && emdpo_lora_adapter_scale(a) == 2 &&
          emdpo_lora_adapter_n_params(a) == 2 * 4 * (6 * 16 + 24 + 16 + 8 + 8 + 16 + 24 + 24 + 16));
    CHECK_EQ_INT(emdpo_lora_adapter_write(a, api_path("adapter"), EMDPO_DTYPE_AUTO, "llama3", &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lora_adapter_read(api_path("adapter"), base, &b, &d), EMDPO_OK);
    CHECK(emdpo_lora_adapter_n_params(b) == emdpo_lora_adapter_n_params(a));
    emdpo_merge_opts o;
    emdpo_merge_opts_init(&o);
    o.model = "tests/fixtures/hf_families/llama3";
    o.adapter = api_path("adapter");
    o.out = api_path("merged");
    CHECK_EQ_INT(emdpo_merge_run(&o, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_load(api_path("merged"), &merged, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lora_adapter_merge(b, base, &d), EMDPO_OK);
    CHECK(emdpo_llama_same_architecture(base, merged));
    CHECK_EQ_INT(emdpo_llama_load("tests/fixtures/hf_families/qwen3", &other, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lora_adapter_merge(a, other, &d), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(d.msg, "another model") || strstr(d.msg, "not this one"));
    o.adapter = "tests/fixtures/lora/none";
    CHECK_EQ_INT(emdpo_merge_run(&o, &d), EMDPO_ERR_IO);
    emdpo_lora_adapter_free(a);
    emdpo_lora_adapter_free(b);
    emdpo_llama_free(base);
    emdpo_llama_free(merged);
    emdpo_llama_free(other);
}

int main(void) {
    api_init();
    test_adapters();
    emdpo_set_threads(2);
    const char *prefs = write_prefs();
    test_vocab(prefs);
    test_models(prefs);
    test_training(prefs);
    test_adapter_scores(prefs);
    test_em(prefs);
    emdpo_llama_free(sft);
    emdpo_tokenizer_free(tok);
    api_done();
    return check_report("test_api_lm");
}
