/* The public API of emdpo/common.h and emdpo/data.h, through the shared
 * library: versions and statuses, building data, its accessors, reading
 * and writing both formats, subsets and splits, and every documented
 * error. */
#include <math.h>

#include "api_util.h"

static void test_common(void) {
    CHECK(strcmp(emdpo_version(), EMDPO_VERSION_STRING) == 0);
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", EMDPO_VERSION_MAJOR, EMDPO_VERSION_MINOR, EMDPO_VERSION_PATCH);
    CHECK(strcmp(v, EMDPO_VERSION_STRING) == 0);
    /* Every status has its own name, and strangers get one too. */
    for (int s = EMDPO_OK; s <= EMDPO_ERR_LIMIT; s++) {
        CHECK(emdpo_status_name(s) != NULL && emdpo_status_name(s)[0]);
        for (int t = EMDPO_OK; t < s; t++) CHECK(strcmp(emdpo_status_name(s), emdpo_status_name(t)) != 0);
    }
    CHECK(emdpo_status_name(-1) != NULL && emdpo_status_name(1000) != NULL);
    CHECK(strcmp(emdpo_format_name(EMDPO_FORMAT_CSV), "csv") == 0 && emdpo_format_name(3) == NULL &&
          emdpo_format_name(-1) == NULL);
    emdpo_set_threads(0); /* keeps the setting */
    emdpo_set_threads(1);
}

/* Two annotators: a (group g1) with a ranking of 3 and a top choice of 2,
 * b (no group) with one top choice of 3; p = 2. */
static emdpo_data *small_data(void) {
    emdpo_data_builder *b = NULL;
    CHECK_EQ_INT(emdpo_data_builder_create(2, &b), EMDPO_OK);
    const char *names[2] = {"f1", "f2"};
    CHECK_EQ_INT(emdpo_data_builder_set_feature_names(b, names), EMDPO_OK);
    double x1[6] = {1, 0, 0, 1, -1, -1}, x2[4] = {0.5, 0.5, 2, 0}, x3[6] = {3, 1, 1, 3, 0, 0};
    const char *t1[3] = {"yes", "no", "maybe"}, *t2[2] = {"x", "y"}, *t3[3] = {"p", "q", "r"};
    CHECK_EQ_INT(emdpo_data_builder_add(b, "a", "g1", "Q1", 3, 2, x1, t1), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "b", NULL, NULL, 3, 1, x3, t3), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "a", "g1", "Q2", 2, 1, x2, t2), EMDPO_OK);
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    return d;
}

/* named: the source keeps feature names (the builder does, JSONL not). */
static void check_small(const emdpo_data *d, int named) {
    CHECK_EQ_INT(emdpo_data_n_annotators(d), 2);
    CHECK_EQ_INT(emdpo_data_n_decisions(d), 3);
    CHECK_EQ_INT(emdpo_data_n_items(d), 8);
    CHECK_EQ_INT(emdpo_data_n_features(d), 2);
    CHECK_EQ_INT(emdpo_data_n_groups(d), 1);
    CHECK_EQ_INT(emdpo_data_has_text(d), 1);
    CHECK_EQ_INT(emdpo_data_max_items(d), 3);
    if (named) CHECK(emdpo_data_feature_name(d, 1) && strcmp(emdpo_data_feature_name(d, 1), "f2") == 0);
    else CHECK(emdpo_data_feature_name(d, 1) == NULL);
    CHECK(emdpo_data_feature_name(d, 2) == NULL && emdpo_data_feature_name(d, -1) == NULL);
    CHECK(strcmp(emdpo_data_group_name(d, 0), "g1") == 0 && emdpo_data_group_name(d, 1) == NULL);
    /* Annotators in first-appearance order; a's decisions keep their order. */
    CHECK(strcmp(emdpo_data_annotator(d, 0), "a") == 0 && strcmp(emdpo_data_annotator(d, 1), "b") == 0);
    CHECK(emdpo_data_annotator(d, 2) == NULL);
    CHECK_EQ_INT(emdpo_data_annotator_group(d, 0), 0);
    CHECK_EQ_INT(emdpo_data_annotator_group(d, 1), -1);
    CHECK_EQ_INT(emdpo_data_annotator_group(d, 7), -1);
    int64_t first = -1;
    CHECK_EQ_INT(emdpo_data_annotator_decisions(d, 0, &first), 2);
    CHECK_EQ_INT(first, 0);
    CHECK_EQ_INT(emdpo_data_annotator_decisions(d, 1, &first), 1);
    CHECK_EQ_INT(first, 2);
    CHECK_EQ_INT(emdpo_data_annotator_decisions(d, 2, NULL), 0);
    CHECK_EQ_INT(emdpo_data_decision_items(d, 1, &first), 2);
    CHECK_EQ_INT(first, 3);
    CHECK_EQ_INT(emdpo_data_decision_items(d, 3, &first), 0);
    CHECK_EQ_INT(emdpo_data_decision_stages(d, 0), 2);
    CHECK_EQ_INT(emdpo_data_decision_stages(d, 2), 1);
    CHECK_EQ_INT(emdpo_data_decision_stages(d, -1), 0);
    CHECK_EQ_INT(emdpo_data_decision_annotator(d, 1), 0);
    CHECK_EQ_INT(emdpo_data_decision_annotator(d, 2), 1);
    CHECK_EQ_INT(emdpo_data_decision_annotator(d, 3), -1);
    CHECK(strcmp(emdpo_data_decision_prompt(d, 1), "Q2") == 0 && emdpo_data_decision_prompt(d, 2) == NULL);
    CHECK(strcmp(emdpo_data_item_text(d, 4), "y") == 0 && emdpo_data_item_text(d, 8) == NULL);
    double x[2];
    CHECK_EQ_INT(emdpo_data_item_features(d, 3, x, 2), EMDPO_OK);
    CHECK(x[0] == 0.5 && x[1] == 0.5);
    CHECK_EQ_INT(emdpo_data_item_features(d, 7, x, 2), EMDPO_OK);
    CHECK(x[0] == 0 && x[1] == 0);
    CHECK_EQ_INT(emdpo_data_item_features(d, 8, x, 2), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_item_features(d, 0, x, 3), EMDPO_ERR_INVALID_ARG);
}

static void test_builder(void) {
    emdpo_data *d = small_data();
    check_small(d, 1);
    CHECK(emdpo_data_source(d) == NULL);

    /* The same data from arrays, decisions in the builder's arrival order. */
    const char *ann[3] = {"a", "b", "a"}, *grp[3] = {"g1", NULL, "g1"}, *pr[3] = {"Q1", NULL, "Q2"};
    int n_items[3] = {3, 3, 2}, n_stages[3] = {2, 1, 1};
    double x[16] = {1, 0, 0, 1, -1, -1, 3, 1, 1, 3, 0, 0, 0.5, 0.5, 2, 0};
    const char *texts[8] = {"yes", "no", "maybe", "p", "q", "r", "x", "y"};
    emdpo_data *e = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_data_from_arrays(2, 3, ann, n_items, n_stages, x, texts, pr, grp, &e, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_n_items(e), 8);
    double xa[2], xb[2];
    for (int64_t i = 0; e && i < 8; i++) {
        CHECK(emdpo_data_item_features(d, i, xa, 2) == 0 && emdpo_data_item_features(e, i, xb, 2) == 0);
        CHECK(xa[0] == xb[0] && xa[1] == xb[1]);
        CHECK(strcmp(emdpo_data_item_text(d, i), emdpo_data_item_text(e, i)) == 0);
    }
    emdpo_data_free(e);

    /* Errors. */
    emdpo_data_builder *b = NULL;
    CHECK_EQ_INT(emdpo_data_builder_create(-1, &b), EMDPO_ERR_INVALID_ARG);
    CHECK(b == NULL);
    CHECK_EQ_INT(emdpo_data_builder_create(1, &b), EMDPO_OK);
    double bad[2] = {1, NAN}, ok[3] = {1, 2, 3};
    CHECK_EQ_INT(emdpo_data_builder_add(b, "a", NULL, NULL, 2, 1, bad, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "a", NULL, NULL, 1, 1, ok, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "a", NULL, NULL, 3, 3, ok, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "a", "g", NULL, 3, 1, ok, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "a", "h", NULL, 3, 1, ok, NULL), EMDPO_ERR_PARSE);
    emdpo_data_builder_free(b);
    CHECK_EQ_INT(emdpo_data_builder_create(0, &b), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &e), EMDPO_ERR_INVALID_ARG);
    CHECK(e == NULL);
    const char *none[1] = {"a"};
    int two[1] = {2};
    CHECK_EQ_INT(emdpo_data_from_arrays(1, 1, none, two, NULL, bad, NULL, NULL, NULL, &e, &diag),
                 EMDPO_ERR_INVALID_ARG);
    CHECK(diag.msg[0] != 0);
    emdpo_data_builder_free(NULL);
    emdpo_data_free(NULL);
    emdpo_data_free(d);
}

static void test_read_write(void) {
    emdpo_data *d = small_data();
    emdpo_diag diag;
    const char *jl = api_path("d.jsonl"), *csv = api_path("d.csv");
    CHECK_EQ_INT(emdpo_data_write(d, jl, EMDPO_FORMAT_AUTO, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_write(d, csv, EMDPO_FORMAT_CSV, &diag), EMDPO_OK);
    emdpo_data *a = NULL, *c = NULL;
    CHECK_EQ_INT(emdpo_data_read(jl, EMDPO_FORMAT_AUTO, &a, &diag), EMDPO_OK);
    if (a) {
        check_small(a, 0);
        CHECK(strcmp(emdpo_data_source(a), jl) == 0);
    }
    /* The long CSV has features and rankings but no text, prompts or groups. */
    CHECK_EQ_INT(emdpo_data_read(csv, EMDPO_FORMAT_CSV, &c, &diag), EMDPO_OK);
    if (c) {
        CHECK_EQ_INT(emdpo_data_n_items(c), 8);
        CHECK_EQ_INT(emdpo_data_decision_stages(c, 0), 2);
        double x[2];
        CHECK(emdpo_data_item_features(c, 6, x, 2) == 0 && x[0] == 1 && x[1] == 3);
    }
    emdpo_data_free(a);
    emdpo_data_free(c);

    /* Malformed input names file and line; a missing file is an I/O error. */
    const char *bad = api_write("bad.jsonl", "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
                                             "{\"prompt\": \"p\", \"chosen\": \"a\"\n");
    a = (emdpo_data *)1;
    CHECK_EQ_INT(emdpo_data_read(bad, EMDPO_FORMAT_JSONL, &a, &diag), EMDPO_ERR_PARSE);
    CHECK(a == NULL && diag.line == 2 && strstr(diag.file, "bad.jsonl"));
    CHECK_EQ_INT(emdpo_data_read(api_path("none.jsonl"), EMDPO_FORMAT_AUTO, &a, &diag), EMDPO_ERR_IO);
    CHECK_EQ_INT(emdpo_data_read(bad, EMDPO_FORMAT_AUTO, &a, NULL), EMDPO_ERR_PARSE);
    const char *odd = api_write("d.txt", "x\n");
    CHECK_EQ_INT(emdpo_data_read(odd, EMDPO_FORMAT_AUTO, &a, &diag), EMDPO_ERR_UNSUPPORTED);
    /* Text-only data cannot go to the feature CSV; nothing is left behind. */
    const char *txt = api_write("t.jsonl", "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n");
    CHECK_EQ_INT(emdpo_data_read(txt, EMDPO_FORMAT_AUTO, &a, &diag), EMDPO_OK);
    CHECK(emdpo_data_write(a, api_path("t.csv"), EMDPO_FORMAT_CSV, &diag) != EMDPO_OK);
    CHECK(access(api_path("t.csv"), F_OK) != 0);
    emdpo_data_free(a);
    emdpo_data_free(d);
}

static void test_subsets(void) {
    emdpo_data_builder *b = NULL;
    CHECK_EQ_INT(emdpo_data_builder_create(1, &b), EMDPO_OK);
    for (int i = 0; i < 50; i++) {
        char name[16];
        snprintf(name, sizeof name, "ann%02d", i);
        double x[2] = {i, -i};
        CHECK_EQ_INT(emdpo_data_builder_add(b, name, i % 2 ? "odd" : "even", NULL, 2, 1, x, NULL), EMDPO_OK);
    }
    emdpo_data *d = NULL, *s = NULL, *tr = NULL, *va = NULL, *tr2 = NULL, *va2 = NULL;
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    int64_t pick[3] = {7, 2, 7};
    CHECK_EQ_INT(emdpo_data_subset(d, pick, 3, &s), EMDPO_OK);
    /* In the order given; the repeat adds ann07's decision again. */
    CHECK(s && emdpo_data_n_annotators(s) == 2 && strcmp(emdpo_data_annotator(s, 0), "ann07") == 0);
    CHECK(s && emdpo_data_annotator_decisions(s, 0, NULL) == 2 && emdpo_data_n_decisions(s) == 3);
    CHECK(s && strcmp(emdpo_data_group_name(s, emdpo_data_annotator_group(s, 1)), "even") == 0);
    emdpo_data_free(s);
    int64_t out[1] = {50};
    CHECK_EQ_INT(emdpo_data_subset(d, out, 1, &s), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_subset(d, pick, 0, &s), EMDPO_ERR_INVALID_ARG);

    /* A split partitions the annotators, round(n * holdout) held out, the
     * same for the same seed, another for another seed. */
    CHECK_EQ_INT(emdpo_data_split(d, 0.2, 7, &tr, &va), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_split(d, 0.2, 7, &tr2, &va2), EMDPO_OK);
    CHECK(tr && va && emdpo_data_n_annotators(va) == 10 && emdpo_data_n_annotators(tr) == 40);
    int same = 1, seen[50] = {0};
    for (int64_t i = 0; va && i < 10; i++) {
        same &= strcmp(emdpo_data_annotator(va, i), emdpo_data_annotator(va2, i)) == 0;
        seen[atoi(emdpo_data_annotator(va, i) + 3)]++;
    }
    for (int64_t i = 0; tr && i < 40; i++) seen[atoi(emdpo_data_annotator(tr, i) + 3)]++;
    int all_once = 1;
    for (int i = 0; i < 50; i++) all_once &= seen[i] == 1;
    CHECK(same && all_once);
    emdpo_data_free(tr2);
    emdpo_data_free(va2);
    CHECK_EQ_INT(emdpo_data_split(d, 0.2, 8, &tr2, &va2), EMDPO_OK);
    int differs = 0;
    for (int64_t i = 0; va2 && i < 10; i++) differs |= strcmp(emdpo_data_annotator(va, i), emdpo_data_annotator(va2, i));
    CHECK(differs);
    emdpo_data_free(tr);
    emdpo_data_free(va);
    emdpo_data_free(tr2);
    emdpo_data_free(va2);
    CHECK_EQ_INT(emdpo_data_split(d, 0.0, 1, &tr, &va), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_split(d, 1.0, 1, &tr, &va), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_split(d, NAN, 1, &tr, &va), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_split(d, 0.001, 1, &tr, &va), EMDPO_ERR_INVALID_ARG);
    emdpo_data_free(d);
}

int main(void) {
    api_init();
    test_common();
    test_builder();
    test_read_write();
    test_subsets();
    api_done();
    return check_report("test_api_data");
}
