/* Mixture policies (lm_mixture.h): mixture.json parsing, with every
 * malformed case named in diag; a round trip through lm_mmra.h's writer;
 * member loading and the shared-vocabulary check; the log-sum-exp of
 * member log-probabilities (zero weights, underflow, one member bit for
 * bit); member draws against the weights; generation that does not depend
 * on the thread count; regrets of mixtures from member columns; and every
 * allocation failure of parse and generate. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/engine/lm_sample.h"
#include "lm/io/llama2c.h"
#include "lm/lm_mixture.h"
#include "lm/mmra/lm_mmra.h"

#define V 40

static emdpo_mixture *parse(const char *text, const char *path, int *rc, emdpo_diag *diag) {
    emdpo_mixture *m = NULL;
    *rc = emdpo_mixture_parse(text, strlen(text), path, &m, diag);
    return m;
}

static void test_parse(void) {
    emdpo_diag diag;
    int rc;
    emdpo_mixture *m = parse("{\"kind\": \"mixture\", \"weights\": [0.25, 0, 0.75],\n"
                                " \"members\": [\"type_1\", \"/abs/t2\", \"sub/t3\"], \"beta\": 0.5,\n"
                                " \"reference\": \"../sft\", \"note\": [1]}",
                                "runs/fit/mixture.json", &rc, &diag);
    CHECK_EQ_INT(rc, EMDPO_OK);
    if (m) {
        CHECK_EQ_INT(m->K, 3);
        CHECK(m->w[0] == 0.25 && m->w[1] == 0.0 && m->w[2] == 0.75);
        CHECK(strcmp(m->member[0], "type_1") == 0 && strcmp(m->path[0], "runs/fit/type_1") == 0);
        CHECK(strcmp(m->path[1], "/abs/t2") == 0 && strcmp(m->path[2], "runs/fit/sub/t3") == 0);
        CHECK(m->beta == 0.5 && m->reference && strcmp(m->reference, "runs/fit/../sft") == 0);
        CHECK(m->model && !m->model[0]);
    }
    emdpo_mixture_free(m);
    /* No directory in the file name: members stay as written; beta and
     * reference are optional. */
    m = parse("{\"kind\": \"mixture\", \"weights\": [1], \"members\": [\"a.bin\"]}", "mix.json", &rc, &diag);
    CHECK_EQ_INT(rc, EMDPO_OK);
    if (m) CHECK(m->K == 1 && strcmp(m->path[0], "a.bin") == 0 && isnan(m->beta) && !m->reference);
    emdpo_mixture_free(m);
    /* Within 1e-9 of 1 is accepted. */
    m = parse("{\"kind\": \"mixture\", \"weights\": [0.5, 0.5000000005], \"members\": [\"a\", \"b\"]}", "m.json",
              &rc, &diag);
    CHECK_EQ_INT(rc, EMDPO_OK);
    emdpo_mixture_free(m);

    static const struct {
        const char *text, *why;
        long line;
    } bad[] = {
        {"{\"weights\": [1], \"members\": [\"a\"]}", "\"kind\"", 0},
        {"{\"kind\": \"policy\", \"weights\": [1], \"members\": [\"a\"]}", "\"kind\"", 0},
        {"{\"kind\": \"mixture\", \"members\": [\"a\"]}", "\"weights\"", 0},
        {"{\"kind\": \"mixture\", \"weights\": [], \"members\": []}", "\"weights\"", 0},
        {"{\"kind\": \"mixture\", \"weights\": 1, \"members\": [\"a\"]}", "\"weights\"", 0},
        {"{\"kind\": \"mixture\", \"weights\": [1]}", "\"members\"", 0},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.5], \"members\": [\"a\"]}", "\"members\"", 0},
        {"{\"kind\": \"mixture\", \"weights\": [1.5, -0.5], \"members\": [\"a\", \"b\"]}", "weight 2", 0},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, \"0.5\"], \"members\": [\"a\", \"b\"]}", "weight 2", 0},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.6], \"members\": [\"a\", \"b\"]}", "sum to 1.1", 0},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.500000002], \"members\": [\"a\", \"b\"]}", "not 1", 0},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.5], \"members\": [\"a\", \"\"]}", "member 2", 0},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.5], \"members\": [3, \"b\"]}", "member 1", 0},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.5], \"members\": [\"a\\u0000b\", \"b\"]}", "member 1", 0},
        {"{\"kind\": \"mixture\", \"weights\": [1], \"members\": [\"a\"], \"beta\": 0}", "\"beta\"", 0},
        {"{\"kind\": \"mixture\", \"weights\": [1], \"members\": [\"a\"], \"reference\": 1}", "\"reference\"", 0},
        {"[1, 2]", "not a JSON object", 0},
        {"{\"kind\": \"mixture\",\n \"weights\": [1],\n \"members\": [\"a\"],}", "not valid JSON", 3},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = parse(bad[i].text, "dir/bad.json", &rc, &diag);
        CHECK_MSG(rc == EMDPO_ERR_PARSE && !m, "case %zu: rc %d", i, rc);
        CHECK_MSG(strcmp(diag.file, "dir/bad.json") == 0 && strstr(diag.msg, bad[i].why), "case %zu: %s", i,
                  diag.msg);
        CHECK_MSG(diag.line == bad[i].line, "case %zu: line %ld", i, diag.line);
        emdpo_mixture_free(m);
    }
    CHECK_EQ_INT(emdpo_mixture_read("/nonexistent/mixture.json", &m, &diag), EMDPO_ERR_IO);
    CHECK(!m && strcmp(diag.file, "/nonexistent/mixture.json") == 0);
}

/* Random weights: near-uniform next-token distributions, so that samples
 * vary. */
static emdpo_llama *make_model(uint64_t seed, int vocab, int seq_len) {
    emdpo_llama_config c = {.dim = 16, .hidden_dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                            .vocab_size = vocab, .max_seq_len = seq_len, .tied = 0, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f};
    emdpo_llama *m = NULL;
    if (emdpo_llama_create(&c, &m)) return NULL;
    emdpo_llama_init(m, seed);
    return m;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) abort();
    fputs(text, fp);
    fclose(fp);
}

/* Files in a fresh directory: the writer's output reads back; members
 * load, relative to the file; mixtures as members, missing members and
 * members of another vocabulary are refused with the member named. */
static void test_files(void) {
    char dir[] = "/tmp/emdpo_mixture_XXXXXX", path[256], p2[256], p3[256];
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    emdpo_llama *a = make_model(1, V, 32), *b = make_model(2, V, 32), *c = make_model(3, V + 1, 32);
    snprintf(path, sizeof path, "%s/a.bin", dir);
    snprintf(p2, sizeof p2, "%s/b.bin", dir);
    snprintf(p3, sizeof p3, "%s/c.bin", dir);
    CHECK(a && b && c && !emdpo_llama2c_save(a, path, NULL) && !emdpo_llama2c_save(b, p2, NULL) &&
          !emdpo_llama2c_save(c, p3, NULL));
    CHECK(!emdpo_mixture_is_file(path) && !emdpo_mixture_is_file(dir));

    double w[2] = {0.3, 0.7};
    const char *members[2] = {"a.bin", p2};
    snprintf(path, sizeof path, "%s/mixture.json", dir);
    CHECK_EQ_INT(emdpo_mixture_write(path, 2, w, members, 0.25, "a.bin", NULL), EMDPO_OK);
    CHECK(emdpo_mixture_is_file(path));
    emdpo_mixture *m = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_mixture_read(path, &m, &diag), EMDPO_OK);
    if (m) {
        CHECK(m->K == 2 && m->w[0] == 0.3 && m->w[1] == 0.7 && m->beta == 0.25);
        CHECK(strncmp(m->path[0], dir, strlen(dir)) == 0 && strcmp(m->path[1], p2) == 0);
        CHECK_EQ_INT(emdpo_mixture_load(m, &diag), EMDPO_OK);
        CHECK(m->model[0] && m->model[1] &&
              memcmp(m->model[1]->param_buf, b->param_buf, b->num_params * sizeof(float)) == 0);
    }
    emdpo_mixture_free(m);

    static const char *const cases[][2] = {
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.5], \"members\": [\"a.bin\", \"mixture.json\"]}",
         "mixture.json"},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.5], \"members\": [\"a.bin\", \"none.bin\"]}", "none.bin"},
        {"{\"kind\": \"mixture\", \"weights\": [0.5, 0.5], \"members\": [\"a.bin\", \"c.bin\"]}", "c.bin"},
    };
    const int want[3] = {EMDPO_ERR_UNSUPPORTED, EMDPO_ERR_IO, EMDPO_ERR_INVALID_ARG};
    snprintf(path, sizeof path, "%s/bad.json", dir);
    for (int i = 0; i < 3; i++) {
        write_text(path, cases[i][0]);
        CHECK_EQ_INT(emdpo_mixture_read(path, &m, &diag), EMDPO_OK);
        if (!m) continue;
        CHECK_EQ_INT(emdpo_mixture_load(m, &diag), want[i]);
        CHECK_MSG(strstr(diag.file, cases[i][1]) != NULL, "case %d: %s: %s", i, diag.file, diag.msg);
        CHECK(!m->model[0] && !m->model[1]);
        emdpo_mixture_free(m);
    }
    CHECK(strstr(diag.msg, "member 2 has vocabulary 41"));
    const emdpo_llama *same[2] = {a, b}, *mixed[3] = {a, b, c};
    CHECK_EQ_INT(emdpo_mixture_check(same, 2, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_mixture_check(mixed, 3, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_llama *d = make_model(2, V, 16);
    const emdpo_llama *shorter[2] = {a, d};
    CHECK_EQ_INT(emdpo_mixture_check(shorter, 2, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_llama_free(d);
    const char *names[] = {"a.bin", "b.bin", "c.bin", "mixture.json", "bad.json"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        remove(path);
    }
    rmdir(dir);
    emdpo_llama_free(a);
    emdpo_llama_free(b);
    emdpo_llama_free(c);
}

static void test_logp(void) {
    /* Member 2 has weight 0: its NaN must not be read. */
    double w[3] = {0.2, 0.0, 0.8}, lp[3 * 2] = {-3.0, -1000.0, NAN, NAN, -5.0, -1001.0}, out[2];
    emdpo_mixture_logp(3, w, 2, lp, out);
    CHECK_CLOSE(out[0], log(0.2 * exp(-3.0) + 0.8 * exp(-5.0)), 1e-15);
    /* Far below exp's range, still exact: -1000 + log(0.2 + 0.8 e^-1). */
    CHECK_CLOSE(out[1], -1000.0 + log(0.2 + 0.8 * exp(-1.0)), 1e-15);
    /* One member of weight 1 gives its own bits. */
    double one[3] = {0.0, 1.0, 0.0}, l3[3 * 2] = {NAN, NAN, -7.123456789012345, -0.1, NAN, NAN};
    emdpo_mixture_logp(3, one, 2, l3, out);
    CHECK(out[0] == l3[2] && out[1] == l3[3]);
    /* A response no member can produce. */
    double none[2] = {-INFINITY, -INFINITY}, half[2] = {0.5, 0.5};
    emdpo_mixture_logp(2, half, 1, none, out);
    CHECK(out[0] == -INFINITY);
    /* Identical members: the mixture is the member. */
    double twin[2] = {-2.5, -2.5};
    emdpo_mixture_logp(2, half, 1, twin, out);
    CHECK_CLOSE(out[0], -2.5, 1e-15);
}

static void test_draw(void) {
    enum { N = 200000 };
    static int mem[N], again[N];
    double w[4] = {0.1, 0.0, 0.6, 0.3};
    long count[4] = {0};
    emdpo_mixture_draw(4, w, 5, N, mem);
    for (int i = 0; i < N; i++) count[mem[i]]++;
    CHECK_EQ_INT(count[1], 0);
    for (int k = 0; k < 4; k++) {
        double f = (double)count[k] / N, sd = sqrt(w[k] * (1 - w[k]) / N);
        CHECK_MSG(fabs(f - w[k]) <= 4.5 * sd, "member %d: frequency %.5f, weight %.2f", k + 1, f, w[k]);
    }
    /* Sample i's member depends on the seed and i alone. */
    emdpo_mixture_draw(4, w, 5, 100, again);
    CHECK(memcmp(mem, again, 100 * sizeof *mem) == 0);
    emdpo_mixture_draw(4, w, 6, 100, again);
    CHECK(memcmp(mem, again, 100 * sizeof *mem) != 0);
}

#define NS 48
#define MAXNEW 6

typedef struct gen_out {
    int member[NS], out[NS * MAXNEW], n_out[NS], stop[NS];
} gen_out;

static int generate(const emdpo_llama *const *models, const double *w, uint64_t seed, gen_out *g) {
    static const int p1[3] = {1, 7, 9}, p2[1] = {1};
    const int *prompts[NS];
    int plen[NS];
    for (int i = 0; i < NS; i++) {
        prompts[i] = i % 3 ? p1 : p2;
        plen[i] = i % 3 ? 3 : 1;
    }
    emdpo_sampler *s = NULL;
    int rc = emdpo_sampler_create(V, 1.0f, 0, 1.0f, &s);
    memset(g, 0, sizeof *g);
    if (!rc)
        rc = emdpo_mixture_generate(models, 2, w, s, seed, prompts, plen, NS, MAXNEW, 32, g->member, g->out,
                                       g->n_out, g->stop);
    emdpo_sampler_free(s);
    return rc;
}

/* The tokens of sample i (its first n_out). */
static int same_tokens(const gen_out *g, int i, const gen_out *h, int j) {
    return g->n_out[i] == h->n_out[j] &&
           memcmp(g->out + i * MAXNEW, h->out + j * MAXNEW, (size_t)g->n_out[i] * sizeof(int)) == 0;
}

static void test_generate(void) {
    emdpo_llama *a = make_model(11, V, 32), *b = make_model(12, V, 32);
    CHECK(a && b);
    if (!a || !b) return;
    const emdpo_llama *ab[2] = {a, b}, *aa[2] = {a, a};
    double w[2] = {0.4, 0.6};
    static gen_out g1, g2, g3;
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK_EQ_INT(generate(ab, w, 3, &g1), EMDPO_OK);
    omp_set_num_threads(2);
    CHECK_EQ_INT(generate(ab, w, 3, &g2), EMDPO_OK);
    omp_set_num_threads(saved);
    CHECK(memcmp(&g1, &g2, sizeof g1) == 0);
    int seen[2] = {0, 0}, drawn[NS];
    emdpo_mixture_draw(2, w, 3, NS, drawn);
    CHECK(memcmp(drawn, g1.member, sizeof drawn) == 0);
    for (int i = 0; i < NS; i++) {
        seen[g1.member[i]]++;
        CHECK(g1.n_out[i] >= 0 && g1.n_out[i] <= MAXNEW);
        for (int t = 0; t < g1.n_out[i]; t++) {
            int tk = g1.out[i * MAXNEW + t];
            CHECK(tk >= 0 && tk < V && tk != 1 && tk != 2);
        }
    }
    CHECK(seen[0] > 0 && seen[1] > 0);
    CHECK_EQ_INT(generate(ab, w, 4, &g3), EMDPO_OK);
    CHECK(memcmp(&g1, &g3, sizeof g1) != 0);

    /* Two copies of one model: the members draw from different streams, so
     * the j-th samples of the two members, where they continue the same
     * prompt, differ as independent samples do. */
    double half[2] = {0.5, 0.5};
    CHECK_EQ_INT(generate(aa, half, 3, &g3), EMDPO_OK);
    int pos[2][NS], cnt[2] = {0, 0}, pairs = 0, equal = 0;
    for (int i = 0; i < NS; i++) pos[g3.member[i]][cnt[g3.member[i]]++] = i;
    for (int j = 0; j < cnt[0] && j < cnt[1]; j++) {
        int i0 = pos[0][j], i1 = pos[1][j];
        if ((i0 % 3 == 0) != (i1 % 3 == 0)) continue;
        pairs++;
        equal += same_tokens(&g3, i0, &g3, i1);
    }
    CHECK_MSG(pairs >= 4 && equal <= pairs / 4, "%d of %d pairs are equal", equal, pairs);

    /* All weight on one member. */
    double only[2] = {0.0, 1.0}, zero[2] = {0.0, 0.0}, neg[2] = {-0.5, 1.5};
    CHECK_EQ_INT(generate(ab, only, 3, &g3), EMDPO_OK);
    int all = 1;
    for (int i = 0; i < NS; i++) all &= g3.member[i] == 1;
    CHECK(all);
    CHECK_EQ_INT(generate(ab, zero, 3, &g3), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(generate(ab, neg, 3, &g3), EMDPO_ERR_INVALID_ARG);
    emdpo_llama_free(a);
    emdpo_llama_free(b);
}

static void test_regret(void) {
    /* K = 2 types, M = 3 columns (the types, then one more policy). */
    double L[2 * 3] = {1.0, 0.25, 0.5, -0.5, 2.0, 1.5}, se[2 * 3] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
    double e0[3] = {1, 0, 0}, e1[3] = {0, 1, 0}, e2[3] = {0, 0, 1}, u[3] = {0.5, 0.5, 0}, r[2], s[2];
    double r0[2], r1[2], s0[2], s1[2];
    emdpo_mixture_regret(2, 3, L, se, e0, r0, s0);
    emdpo_mixture_regret(2, 3, L, se, e1, r1, s1);
    CHECK(r0[0] == 0.0 && s0[0] == 0.0 && r1[1] == 0.0 && s1[1] == 0.0);
    CHECK(r0[1] == 2.5 && r1[0] == 0.75);
    CHECK_CLOSE(s0[1], sqrt(0.4 * 0.4 + 0.5 * 0.5), 1e-15);
    emdpo_mixture_regret(2, 3, L, se, u, r, s);
    CHECK_CLOSE(r[0], 0.5 * r0[0] + 0.5 * r1[0], 1e-15);
    CHECK_CLOSE(r[1], 0.5 * r0[1] + 0.5 * r1[1], 1e-15);
    /* Over the types' columns alone it is lm_mmra.h's standard error. */
    double LK[4] = {1.0, 0.25, -0.5, 2.0}, seK[4] = {0.1, 0.2, 0.4, 0.5}, wk[2] = {0.3, 0.7}, want[2];
    emdpo_mixture_regret(2, 2, LK, seK, wk, r, s);
    emdpo_lm_mmra_mixture_se(2, 2, seK, wk, want);
    CHECK(s[0] == want[0] && s[1] == want[1]);
    /* The third column alone; a NaN error of an unused column is ignored. */
    se[1] = NAN;
    emdpo_mixture_regret(2, 3, L, se, e2, r, s);
    CHECK(r[0] == 0.5 && r[1] == 0.5);
    CHECK_CLOSE(s[0], sqrt(0.01 + 0.09), 1e-15);
    emdpo_mixture_regret(2, 3, L, NULL, e2, r, NULL);
    CHECK(r[0] == 0.5);
}

static const char sweep_text[] = "{\"kind\": \"mixture\", \"weights\": [0.5, 0.5], \"members\": [\"a\", \"/b\"], "
                                 "\"reference\": \"r\"}";

static int sweep_once(const emdpo_llama *const *models) {
    emdpo_mixture *m = NULL;
    int rc = emdpo_mixture_parse(sweep_text, sizeof sweep_text - 1, "d/m.json", &m, NULL);
    emdpo_mixture_free(m);
    if (rc) return rc;
    static gen_out g;
    double w[2] = {0.5, 0.5};
    return generate(models, w, 3, &g);
}

static void test_alloc_failures(void) {
    emdpo_llama *a = make_model(11, V, 32), *b = make_model(12, V, 32);
    const emdpo_llama *ab[2] = {a, b};
    long n_ok = -1;
    for (long k = 0; a && b && k < 10000; k++) {
        failalloc_install(k, 0);
        int rc = sweep_once(ab);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "fail_at %ld rc %d", k, rc);
        CHECK_MSG(live == 0, "fail_at %ld leaks %ld blocks", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: %d frees with a wrong size", k, size_err);
        if (count <= k) {
            n_ok = k;
            CHECK_EQ_INT(rc, EMDPO_OK);
            break;
        }
    }
    CHECK(n_ok >= 10);
    emdpo_llama_free(a);
    emdpo_llama_free(b);
}

int main(void) {
    test_parse();
    test_files();
    test_logp();
    test_draw();
    test_generate();
    test_regret();
    test_alloc_failures();
    return check_report("test_lm_mixture");
}
