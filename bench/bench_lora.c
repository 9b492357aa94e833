/* LoRA on a SmolLM2-135M-shaped model (bench/st_model.py's random bf16
 * checkpoint: dim 576, 30 layers, 9 heads, 3 kv heads, hidden 1536, vocab
 * 49152, tied) with 4 preference pairs of T = 256 tokens and adapters of
 * rank 16, alpha 32 on all seven projections, with the base frozen in bf16
 * (emdpo_llama_load_frozen) or loaded to float32 (emdpo_llama_load). Run
 * each mode in its own process, so that its peak RSS is its own.
 *
 *   bench_lora dpo DIR bf16|f32 STEPS [ckpt]
 *                                       one LoRA DPO run through the trainer
 *                                       (lm_train.h): load, reference pass, one
 *                                       untimed warm-up step, STEPS timed steps of
 *                                       the 4 pairs (batch 4, accum 1); prints the
 *                                       times and the peak RSS (getrusage maxrss);
 *                                       ckpt: with activation checkpointing
 *   bench_lora fwd DIR bf16|f32 REPS    the training forward of the 8 sequences
 *                                       with and without the adapter, alternating:
 *                                       the adapter's share of a pass
 *   bench_lora data FILE                the pairs as JSONL, for the CLI (emdpo dpo,
 *                                       emdpo fit: bench/run.sh lora-mem)
 *   bench_lora sizes                    the engine's buffer sizes at this shape (MiB)
 *
 * Data: 4 annotators with one pair each; BOS + a 63-token prompt, then a
 * 191-token response + EOS: every sequence is 256 tokens. The tokenizer is
 * the checkpoint's tokenizer.bin, whose letters are byte pieces (one token
 * per character, plus SentencePiece's dummy-prefix space). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/rng.h"
#include "base/threads.h"
#include "emdpo.h"
#include "emdpo/lm.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/engine/lora.h"
#include "lm/io/lm_batch.h"
#include "lm/lm_train.h"

enum { PAIRS = 4, PROMPT_CHARS = 62, RESPONSE_CHARS = 190, T_SEQ = 256, MAX_PROMPT = 128 };

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* Minor page faults so far: fresh pages the kernel had to zero. */
static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* System CPU seconds so far (mostly that zeroing, here). */
static double sys_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_stime.tv_sec + 1e-6 * ru.ru_stime.tv_usec;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void lora_config(emdpo_lora_config *lc) {
    emdpo_lora_config_init(lc); /* r 16, alpha 32, dropout 0, all seven projections */
}

static void random_text(emdpo_rng *r, char *s, int n) {
    for (int i = 0; i < n; i++) s[i] = (char)('a' + emdpo_rng_below(r, 26));
    s[n] = '\0';
}

/* PAIRS annotators, one pair each, every sequence T_SEQ tokens. */
static emdpo_data *pairs_data(void) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(0, &b)) return NULL;
    emdpo_rng r;
    emdpo_rng_seed(&r, 17, 0);
    char prompt[PROMPT_CHARS + 1], y1[RESPONSE_CHARS + 1], y2[RESPONSE_CHARS + 1], name[16];
    for (int i = 0; i < PAIRS; i++) {
        random_text(&r, prompt, PROMPT_CHARS);
        random_text(&r, y1, RESPONSE_CHARS);
        random_text(&r, y2, RESPONSE_CHARS);
        const char *texts[2] = {y1, y2};
        snprintf(name, sizeof name, "a%d", i);
        if (emdpo_data_builder_add(b, name, NULL, prompt, 2, 1, NULL, texts)) {
            emdpo_data_builder_free(b);
            return NULL;
        }
    }
    emdpo_data *d = NULL;
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

static int load_base(const char *dir, const char *dtype, emdpo_llama **m, emdpo_tokenizer **tok) {
    emdpo_diag diag;
    char path[4096];
    int frozen = strcmp(dtype, "bf16") == 0;
    if (!frozen && strcmp(dtype, "f32") != 0) {
        fprintf(stderr, "bench_lora: base dtype '%s': bf16 or f32\n", dtype);
        return 2;
    }
    int rc = frozen ? emdpo_llama_load_frozen(dir, m, &diag) : emdpo_llama_load(dir, m, &diag);
    if (rc || (frozen && !emdpo_llama_is_frozen(*m))) {
        fprintf(stderr, "bench_lora: %s: %s\n", dir, rc ? diag.msg : "not held in bf16");
        return 1;
    }
    snprintf(path, sizeof path, "%s/tokenizer.bin", dir);
    if (emdpo_tokenizer_load(path, (*m)->config.vocab_size, tok, &diag)) {
        fprintf(stderr, "bench_lora: %s: %s\n", path, diag.msg);
        return 1;
    }
    return 0;
}

/* Every sequence of the set is T_SEQ tokens, uncut. */
static int check_set(const emdpo_lm_set *s) {
    for (int64_t i = 0; i < s->n_seq; i++)
        if (emdpo_lm_seq_len(s, i) != T_SEQ || s->seq_start[i] != PROMPT_CHARS + 2) {
            fprintf(stderr, "bench_lora: sequence %lld has %d tokens, response from %d (want %d, %d)\n",
                    (long long)i, emdpo_lm_seq_len(s, i), s->seq_start[i], T_SEQ, PROMPT_CHARS + 2);
            return 1;
        }
    return s->n_truncated != 0;
}

static int bench_dpo(const char *dir, const char *dtype, int steps, int ckpt) {
    emdpo_llama *m = NULL;
    emdpo_tokenizer *tok = NULL;
    double l0 = now();
    int rc = load_base(dir, dtype, &m, &tok);
    if (rc) return rc;
    double load_s = now() - l0, sys_load = sys_s(), rss_loaded = peak_rss_mb();
    emdpo_data *d = pairs_data();
    emdpo_lm_set *s = NULL;
    if (!d || emdpo_lm_set_from_data(d, tok, T_SEQ, MAX_PROMPT, &s) || check_set(s)) return 1;
    emdpo_lora_config lc;
    lora_config(&lc);
    emdpo_lora *lo = NULL;
    if (emdpo_lora_create(&m->config, &lc, &lo)) return 1;
    emdpo_lora_init(lo, 1);
    emdpo_train_config tc;
    emdpo_train_config_init(&tc, EMDPO_TRAIN_DPO); /* RMSprop, beta 0.1, batch 4 (the 4 pairs), accum 1 */
    tc.grad_checkpoint = ckpt;
    emdpo_trainer *t = NULL;
    if (emdpo_trainer_create_lora(m, lo, s, NULL, &tc, &t)) return 1;
    double t0 = now();
    double sys0 = sys_s();
    if (emdpo_trainer_set_reference(t, NULL)) return 1;
    double ref_s = now() - t0, sys_ref = sys_s() - sys0;
    double ts[64], tc_s[64];
    steps = steps < 1 ? 1 : steps > 64 ? 64 : steps;
    emdpo_train_metrics met, first = {0};
    long f0 = 0;
    for (int k = -1; k < steps; k++) {
        if (k == 0) f0 = minor_faults();
        double w0 = now(), c0 = cpu_now();
        if (emdpo_trainer_step(t, &met)) return 1;
        if (k < 0) first = met;
        if (k >= 0) ts[k] = now() - w0, tc_s[k] = cpu_now() - c0;
    }
    double faults = (double)(minor_faults() - f0) / steps;
    double med = median(ts, steps), cmed = median(tc_s, steps);
    printf("RESULT mode=dpo base=%s ckpt=%d params=%zu adapter=%zu batch=%d accum=%d seqs=%d T=%d threads=%d load_s=%.2f "
           "load_sys_s=%.2f ref_s=%.3f ref_sys_s=%.2f "
           "median_s=%.4f min_s=%.4f cpu_s=%.4f tok_per_s=%.0f faults_per_step=%.0f sys_s=%.2f faults=%ld "
           "loss0=%.6f loss=%.6f rss_loaded_mb=%.0f peak_rss_mb=%.0f\n",
           dtype, ckpt, emdpo_llama_num_params(&m->config), lo->n, tc.batch, tc.accum, 2 * PAIRS, T_SEQ,
           emdpo_max_threads(), load_s, sys_load, ref_s, sys_ref, med, ts[0], cmed, 2 * PAIRS * T_SEQ / med, faults, sys_s(), minor_faults(),
           first.loss, met.loss, rss_loaded, peak_rss_mb());
    emdpo_trainer_free(t);
    emdpo_lora_free(lo);
    emdpo_lm_set_free(s);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(m);
    return 0;
}

/* The same pairs as JSONL for the CLI (emdpo dpo, emdpo fit). */
static int bench_data(const char *path) {
    emdpo_data *d = pairs_data();
    FILE *fp = fopen(path, "w");
    if (!d || !fp) return 1;
    for (int64_t j = 0; j < emdpo_data_n_decisions(d); j++) {
        int64_t i = 0;
        emdpo_data_decision_items(d, j, &i);
        fprintf(fp, "{\"annotator\": \"a%lld\", \"prompt\": \"%s\", \"chosen\": \"%s\", \"rejected\": \"%s\"}\n",
                (long long)j, emdpo_data_decision_prompt(d, j), emdpo_data_item_text(d, i),
                emdpo_data_item_text(d, i + 1));
    }
    emdpo_data_free(d);
    return fclose(fp) != 0;
}

/* The adapter's share of a forward: the training forward of the 8
 * sequences with the adapter and without it (the base alone), alternating,
 * on one activation buffer. */
static int bench_fwd(const char *dir, const char *dtype, int reps) {
    emdpo_llama *m = NULL;
    emdpo_tokenizer *tok = NULL;
    int rc = load_base(dir, dtype, &m, &tok);
    if (rc) return rc;
    emdpo_lora_config lc;
    lora_config(&lc);
    emdpo_lora *lo = NULL;
    emdpo_llama_acts *a = NULL;
    int B = 2 * PAIRS, N = B * T_SEQ;
    int *tokens = malloc((size_t)N * sizeof *tokens);
    if (!tokens || emdpo_lora_create(&m->config, &lc, &lo) ||
        emdpo_llama_acts_create_lora(&m->config, lc.r, B, T_SEQ, 1, &a))
        return 1;
    emdpo_lora_init(lo, 1);
    emdpo_rng r;
    emdpo_rng_seed(&r, 3, 0);
    for (int i = 0; i < N; i++) tokens[i] = 3 + (int)emdpo_rng_below(&r, (uint64_t)m->config.vocab_size - 3);
    double tb[64], tl[64];
    reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
    for (int k = -1; k < reps; k++) { /* one warm-up pair */
        double t0 = now();
        if (emdpo_llama_forward_lora(m, NULL, a, tokens, NULL, B, T_SEQ)) return 1;
        double t1 = now();
        if (emdpo_llama_forward_lora(m, lo, a, tokens, NULL, B, T_SEQ)) return 1;
        if (k >= 0) tb[k] = t1 - t0, tl[k] = now() - t1;
    }
    double mb = median(tb, reps), ml = median(tl, reps);
    printf("RESULT mode=fwd base=%s seqs=%d T=%d threads=%d base_s=%.4f lora_s=%.4f lora_share=%.3f\n", dtype, B,
           T_SEQ, emdpo_max_threads(), mb, ml, (ml - mb) / ml);
    free(tokens);
    emdpo_llama_acts_free(a);
    emdpo_lora_free(lo);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(m);
    return 0;
}

static double acts_mib(const emdpo_llama_acts *a) {
    return (a->buf_n * 4.0 + a->kbuf_n * 4.0 + a->ibuf_n * 4.0) / 1048576.0;
}

/* What each piece takes at this shape, from the engine's own sizes. */
static int bench_sizes(void) {
    emdpo_llama_config c = {.dim = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .hidden_dim = 1536,
                            .vocab_size = 49152, .max_seq_len = 8192, .tied = 1, .norm_eps = 1e-5f,
                            .rope_theta = 100000.0f};
    emdpo_lora_config lc;
    lora_config(&lc);
    size_t np = emdpo_llama_num_params(&c), na = emdpo_lora_num_params(&c, &lc);
    emdpo_llama_acts *tr = NULL, *ck = NULL, *sc = NULL;
    if (emdpo_llama_acts_create_lora(&c, lc.r, 2 * PAIRS, T_SEQ, EMDPO_ACTS_TRAIN, &tr) ||
        emdpo_llama_acts_create_lora(&c, lc.r, 2 * PAIRS, T_SEQ, EMDPO_ACTS_TRAIN_CKPT, &ck) ||
        emdpo_llama_acts_create_lora(&c, lc.r, 2 * PAIRS, T_SEQ, EMDPO_ACTS_INFER, &sc))
        return 1;
    double mib = 1.0 / 1048576.0, BTV = 2.0 * PAIRS * T_SEQ * c.vocab_size * 4 * mib;
    double att = (double)c.n_layers * 2 * PAIRS * c.n_heads * T_SEQ * T_SEQ * 4 * mib;
    printf("RESULT mode=sizes params=%zu base_f32_mib=%.1f base_bf16_mib=%.1f adapter_floats=%zu adapter_mib=%.1f "
           "train_acts_mib=%.1f of_which_logits_mib=%.1f of_which_att_mib=%.1f ckpt_train_acts_mib=%.1f "
           "score_acts_mib=%.1f trainer_adapter_state_mib=%.1f\n",
           np, np * 4 * mib, np * 2 * mib, na, na * 4 * mib, acts_mib(tr), BTV, att, acts_mib(ck), acts_mib(sc),
           3 * na * 4 * mib);
    emdpo_llama_acts_free(tr);
    emdpo_llama_acts_free(ck);
    emdpo_llama_acts_free(sc);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "dpo") == 0)
        return bench_dpo(argv[2], argv[3], atoi(argv[4]), argc >= 6 && strcmp(argv[5], "ckpt") == 0);
    if (argc >= 3 && strcmp(argv[1], "data") == 0) return bench_data(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "fwd") == 0) return bench_fwd(argv[2], argv[3], atoi(argv[4]));
    if (argc >= 2 && strcmp(argv[1], "sizes") == 0) return bench_sizes();
    fprintf(stderr, "usage: bench_lora dpo DIR bf16|f32 STEPS [ckpt] | bench_lora fwd DIR bf16|f32 REPS | "
                    "bench_lora data FILE | bench_lora sizes\n");
    return 2;
}
