/* The dataset builder: grouping by annotator, offsets, subsets, and clean
 * failure at every allocation. */
#include <string.h>

#include "check.h"
#include "data/data.h"
#include "failalloc.h"

static int build_small(emdpo_data **out) {
    emdpo_data_builder *b;
    int rc = emdpo_data_builder_create(2, &b);
    if (rc) return rc;
    const char *names[2] = {"price", "speed"};
    double x3[6] = {1, 2, 3, 4, 5, 6}, x2[4] = {7, 8, 9, 10};
    const char *texts[3] = {"a", "b", NULL};
    if ((rc = emdpo_data_builder_set_feature_names(b, names)) ||
        (rc = emdpo_data_builder_add(b, "u1", "G1", "p1", 3, 1, x3, texts)) ||
        (rc = emdpo_data_builder_add(b, "u2", NULL, NULL, 2, 1, x2, NULL)) ||
        (rc = emdpo_data_builder_add(b, "u1", "G1", NULL, 3, 2, x3, NULL)) ||
        (rc = emdpo_data_builder_add(b, "u3", "G2", "p4", 2, 1, x2, NULL))) {
        emdpo_data_builder_free(b);
        return rc;
    }
    return emdpo_data_builder_finish(b, out);
}

static void test_grouping(void) {
    emdpo_data *d = NULL;
    CHECK_EQ_INT(build_small(&d), EMDPO_OK);
    if (!d) return;
    CHECK_EQ_INT(d->n_annot, 3);
    CHECK_EQ_INT(d->n_dec, 4);
    CHECK_EQ_INT(d->n_items, 10);
    CHECK(strcmp(d->annot_name[0], "u1") == 0 && strcmp(d->annot_name[1], "u2") == 0);
    /* u1's two decisions come first, in arrival order. */
    CHECK_EQ_INT(d->annot_dec[1], 2);
    CHECK_EQ_INT(d->dec_stages[0], 1);
    CHECK_EQ_INT(d->dec_stages[1], 2);
    CHECK_EQ_INT(emdpo_dec_n_items(d, 2), 2);
    CHECK(d->x[2 * d->dec_item[2]] == 7.0);
    CHECK(d->x[2 * d->dec_item[1] + 5] == 6.0);
    CHECK(d->item_text && strcmp(d->item_text[1], "b") == 0 && d->item_text[3] == NULL);
    CHECK(d->dec_prompt && strcmp(d->dec_prompt[0], "p1") == 0 && strcmp(d->dec_prompt[3], "p4") == 0);
    CHECK_EQ_INT(d->n_groups, 2);
    CHECK_EQ_INT(d->annot_group[1], -1);
    CHECK(strcmp(d->feature_name[1], "speed") == 0);

    int64_t pick[2] = {2, 0};
    emdpo_data *s = NULL;
    CHECK_EQ_INT(emdpo_data_subset(d, pick, 2, &s), EMDPO_OK);
    if (s) {
        CHECK_EQ_INT(s->n_annot, 2);
        CHECK(strcmp(s->annot_name[0], "u3") == 0);
        CHECK_EQ_INT(s->n_dec, 3);
        CHECK(strcmp(s->group_name[s->annot_group[0]], "G2") == 0);
    }
    emdpo_data_free(s);
    emdpo_data_free(d);
}

static void test_group_conflict(void) {
    emdpo_data_builder *b;
    double x[4] = {0, 0, 0, 0};
    CHECK_EQ_INT(emdpo_data_builder_create(2, &b), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u", "A", NULL, 2, 1, x, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u", "B", NULL, 2, 1, x, NULL), EMDPO_ERR_PARSE);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u", "A", NULL, 2, 2, x, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_builder_count(b, "u"), 1);
    emdpo_data_builder_free(b);
}

static void test_alloc_failures(void) {
    long n_ok = -1;
    for (long k = 0; k < 10000; k++) {
        failalloc_install(k, 0);
        emdpo_data *d = NULL;
        int rc = build_small(&d);
        emdpo_data_free(d);
        long live = failalloc_live();
        int size_err = failalloc_size_errors();
        long count = failalloc_count();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "fail_at %ld rc %d", k, rc);
        CHECK_MSG(live == 0, "fail_at %ld leaks %ld blocks", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: %d frees with a wrong size", k, size_err);
        if (count <= k) { /* the failure point was never reached: done */
            n_ok = k;
            CHECK_EQ_INT(rc, EMDPO_OK);
            break;
        }
    }
    CHECK(n_ok > 10);
}

int main(void) {
    test_grouping();
    test_group_conflict();
    test_alloc_failures();
    return check_report("test_data");
}
