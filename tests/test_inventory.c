/* Phrase inventories: the built-in table's balance and originality, the MPI
 * loader on the real files (when ../shared is present) and on malformed
 * input, and clean failure at every allocation. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "check.h"
#include "experiments/inventory.h"
#include "failalloc.h"

#define MPI_1K "../shared/data/mpi/mpi_1k.csv"
#define MPI_120 "../shared/data/mpi/mpi_120.csv"

static int is_plain_ascii(const char *s) {
    if (!*s || *s == ' ') return 0;
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e) return 0;
    return s[-1] != ' ';
}

static int64_t find_phrase(const emdpo_inventory *inv, const char *text) {
    for (int64_t i = 0; i < inv->n; i++)
        if (strcmp(inv->text[i], text) == 0) return i;
    return -1;
}

/* Score vector of a phrase compared with the expected O, C, E, A, N values. */
static int scores_are(const emdpo_inventory *inv, const char *text, double o, double c, double e,
                      double a, double n) {
    int64_t i = find_phrase(inv, text);
    if (i < 0) return 0;
    const double *s = inv->score + i * EMDPO_N_TRAITS;
    return s[0] == o && s[1] == c && s[2] == e && s[3] == a && s[4] == n;
}

static void test_builtin_table(void) {
    int n = emdpo_builtin_n_phrases;
    CHECK_MSG(n >= 150, "%d built-in phrases", n);
    int count[EMDPO_N_TRAITS][2] = {{0}};
    for (int i = 0; i < n; i++) {
        const emdpo_builtin_phrase *ph = &emdpo_builtin_phrases[i];
        const char *t = strchr("OCEAN", ph->trait);
        CHECK_MSG(ph->trait && t, "phrase %d has trait '%c'", i, ph->trait);
        CHECK_MSG(ph->key == 1 || ph->key == -1, "phrase %d has key %d", i, ph->key);
        if (ph->trait && t && (ph->key == 1 || ph->key == -1)) count[t - "OCEAN"][ph->key > 0]++;
        CHECK_MSG(is_plain_ascii(ph->text), "phrase %d is not trimmed printable ASCII", i);
        int dup = 0;
        for (int j = 0; j < i; j++) dup += strcasecmp(ph->text, emdpo_builtin_phrases[j].text) == 0;
        CHECK_MSG(dup == 0, "duplicate phrase '%s'", ph->text);
    }
    for (int t = 0; t < EMDPO_N_TRAITS; t++)
        for (int k = 0; k < 2; k++)
            CHECK_MSG(count[t][k] >= 15, "trait %s key %+d has %d phrases", emdpo_trait_names[t],
                      k ? 1 : -1, count[t][k]);

    emdpo_inventory *inv = NULL;
    CHECK_EQ_INT(emdpo_inventory_builtin(&inv), EMDPO_OK);
    if (!inv) return;
    CHECK_EQ_INT(inv->n, n);
    for (int64_t i = 0; i < inv->n; i++) {
        int nonzero = 0, valid = 1;
        for (int t = 0; t < EMDPO_N_TRAITS; t++) {
            double v = inv->score[i * EMDPO_N_TRAITS + t];
            nonzero += v != 0;
            valid &= v == 0 || v == 1 || v == -1;
        }
        CHECK_MSG(nonzero == 1 && valid, "'%s' scores on %d traits", inv->text[i], nonzero);
    }
    CHECK(scores_are(inv, "Try out a new recipe every week", 1, 0, 0, 0, 0));
    CHECK(scores_are(inv, "Show up late to meetings", 0, -1, 0, 0, 0));
    emdpo_inventory_free(inv);
}

static void test_paraphrases(void) {
    for (int i = 0; i < EMDPO_N_PARAPHRASES; i++) {
        CHECK_MSG(emdpo_paraphrases[i] && is_plain_ascii(emdpo_paraphrases[i]), "paraphrase %d", i);
        for (int j = 0; j < i; j++)
            CHECK_MSG(strcasecmp(emdpo_paraphrases[i], emdpo_paraphrases[j]) != 0,
                      "paraphrases %d and %d are equal", j, i);
    }
}

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

static void test_mpi_1k(void) {
    if (!file_exists(MPI_1K)) {
        printf("skip: %s absent\n", MPI_1K);
        return;
    }
    emdpo_inventory *inv = NULL;
    emdpo_diag diag = {{0}, 0, {0}};
    int rc = emdpo_inventory_load_mpi(MPI_1K, &inv, &diag);
    CHECK_MSG(rc == EMDPO_OK, "%s:%ld: %s", diag.file, diag.line, diag.msg);
    if (!inv) return;
    CHECK_EQ_INT(inv->n, 665);
    /* SOURCES.md: E+1 (twice), C-1, A-1. */
    CHECK(scores_are(inv, "Act wild and crazy", 0, -1, 1, -1, 0));
    /* Its C rows are +1 then -1: the tie goes to the first row. */
    CHECK(scores_are(inv, "Often forget to put things back in their proper place", 0, 1, 0, 0, 0));
    /* The one key-0 row gives a neutral phrase, which is kept. */
    CHECK(scores_are(inv, "Feel that too much modesty gets a person in trouble", 0, 0, 0, 0, 0));
    /* Quoted fields: an embedded comma and doubled quotes. */
    CHECK(scores_are(inv, "Are a minister, priest, rabbi or other religious teacher", 0, 0, 0, 1, 0));
    CHECK(scores_are(inv, "Feel guilty when you say \"no.\"", 0, 0, 0, 0, 1));
    CHECK(find_phrase(inv, "Areuse your friends") >= 0);
    int multi = 0, zero = 0;
    for (int64_t i = 0; i < inv->n; i++) {
        int nz = 0;
        for (int t = 0; t < EMDPO_N_TRAITS; t++) nz += inv->score[i * EMDPO_N_TRAITS + t] != 0;
        multi += nz > 1;
        zero += nz == 0;
    }
    CHECK_EQ_INT(zero, 1);
    CHECK_MSG(multi >= 80, "%d phrases score on several traits", multi);
    /* Our built-in phrases are our own: none is an MPI phrase. */
    int copied = 0;
    for (int i = 0; i < emdpo_builtin_n_phrases; i++) {
        for (int64_t j = 0; j < inv->n; j++) {
            if (strcasecmp(emdpo_builtin_phrases[i].text, inv->text[j]) == 0) {
                fprintf(stderr, "built-in phrase '%s' is an MPI phrase\n", inv->text[j]);
                copied++;
            }
        }
    }
    CHECK_EQ_INT(copied, 0);
    emdpo_inventory_free(inv);
}

static void test_mpi_120(void) {
    if (!file_exists(MPI_120)) {
        printf("skip: %s absent\n", MPI_120);
        return;
    }
    emdpo_inventory *inv = NULL;
    emdpo_diag diag = {{0}, 0, {0}};
    int rc = emdpo_inventory_load_mpi(MPI_120, &inv, &diag);
    CHECK_MSG(rc == EMDPO_OK, "%s:%ld: %s", diag.file, diag.line, diag.msg);
    if (!inv) return;
    CHECK_EQ_INT(inv->n, 120);
    int per_trait[EMDPO_N_TRAITS] = {0}, single = 1;
    for (int64_t i = 0; i < inv->n; i++) {
        int nz = 0;
        for (int t = 0; t < EMDPO_N_TRAITS; t++) {
            if (inv->score[i * EMDPO_N_TRAITS + t] != 0) {
                nz++;
                per_trait[t]++;
            }
        }
        single &= nz == 1;
    }
    CHECK(single);
    for (int t = 0; t < EMDPO_N_TRAITS; t++) CHECK_EQ_INT(per_trait[t], 24);
    emdpo_inventory_free(inv);
}

static int parse_str(const char *csv, emdpo_inventory **inv, emdpo_diag *diag) {
    return emdpo_inventory_parse_mpi(csv, strlen(csv), "mem.csv", inv, diag);
}

static void test_votes_and_layout(void) {
    /* LF endings, a final newline, blank lines, a BOM, reordered and extra columns. */
    const char *csv = "\xEF\xBB\xBFkey,label_ocean,text,label_raw\n"
                      "-1,C,Tie goes first,x\n"
                      "1,C,Tie goes first,x\n"
                      "\n"
                      "1,E,Majority wins,x\n"
                      "-1,E,Majority wins,x\n"
                      "-1,E,Majority wins,x\n"
                      "0,A,Three way,x\n"
                      "1,A,Three way,x\n"
                      "-1,A,Three way,x\n"
                      "1,N,Tie goes first,x\n"
                      "0,O,Neutral,x\n"
                      "-1,O,Majority later,x\n"
                      "1,O,Majority later,x\n"
                      "1,O,Majority later,x\n"
                      "\n";
    emdpo_inventory *inv = NULL;
    emdpo_diag diag = {{0}, 0, {0}};
    CHECK_EQ_INT(parse_str(csv, &inv, &diag), EMDPO_OK);
    if (!inv) return;
    CHECK_EQ_INT(inv->n, 5);
    CHECK(strcmp(inv->text[0], "Tie goes first") == 0 && strcmp(inv->text[3], "Neutral") == 0);
    CHECK(scores_are(inv, "Majority later", 1, 0, 0, 0, 0));
    CHECK(scores_are(inv, "Tie goes first", 0, -1, 0, 0, 1));
    CHECK(scores_are(inv, "Majority wins", 0, 0, -1, 0, 0));
    CHECK(scores_are(inv, "Three way", 0, 0, 0, 0, 0));
    CHECK(scores_are(inv, "Neutral", 0, 0, 0, 0, 0));
    emdpo_inventory_free(inv);

    /* CRLF, a quoted field spanning lines, and no final newline. */
    const char *crlf = "text,label_ocean,key\r\n\"Two\r\nlines, \"\"quoted\"\"\",O,1\r\nLast,N,-1";
    inv = NULL;
    CHECK_EQ_INT(parse_str(crlf, &inv, &diag), EMDPO_OK);
    if (!inv) return;
    CHECK_EQ_INT(inv->n, 2);
    CHECK(scores_are(inv, "Two\r\nlines, \"quoted\"", 1, 0, 0, 0, 0));
    CHECK(scores_are(inv, "Last", 0, 0, 0, 0, -1));
    emdpo_inventory_free(inv);
}

/* Writes csv to a temporary file and loads it; the file is removed. */
static int load_tmp(const char *csv, emdpo_inventory **inv, emdpo_diag *diag, char *path, size_t path_n) {
    snprintf(path, path_n, "/tmp/emdpo_inv_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(path);
        return -1;
    }
    fputs(csv, f);
    fclose(f);
    int rc = emdpo_inventory_load_mpi(path, inv, diag);
    unlink(path);
    return rc;
}

static void expect_error(const char *csv, int status, long line, const char *msg_part) {
    emdpo_inventory *inv = NULL;
    emdpo_diag diag = {{0}, -7, {0}};
    char path[64];
    int rc = load_tmp(csv, &inv, &diag, path, sizeof path);
    CHECK_MSG(rc == status, "got %d for %s", rc, msg_part);
    CHECK_MSG(diag.line == line, "line %ld, expected %ld: %s", diag.line, line, diag.msg);
    CHECK_MSG(strstr(diag.msg, msg_part) != NULL, "message '%s' lacks '%s'", diag.msg, msg_part);
    CHECK(strcmp(diag.file, path) == 0);
    CHECK(inv == NULL);
    emdpo_inventory_free(inv);
}

static void test_errors(void) {
    expect_error("label_raw,text,label_ocean\r\nx,Hi,O", EMDPO_ERR_PARSE, 1, "'key'");
    expect_error("label_raw,text,key\r\nx,Hi,1", EMDPO_ERR_PARSE, 1, "'label_ocean'");
    expect_error("text,label_ocean,key\r\nFine,O,1\r\nBad,X,1\r\n", EMDPO_ERR_PARSE, 3, "label_ocean");
    expect_error("text,label_ocean,key\r\nFine,O,1\r\nLower,o,1\r\n", EMDPO_ERR_PARSE, 3, "label_ocean");
    expect_error("text,label_ocean,key\nA,O,1\nB,C,1\nC,E,2\n", EMDPO_ERR_PARSE, 4, "key must be");
    expect_error("text,label_ocean,key\nA,O,1\nB,C,+1\n", EMDPO_ERR_PARSE, 3, "key must be");
    expect_error("text,label_ocean,key\nA,O,1,extra\n", EMDPO_ERR_PARSE, 2, "expected 3 fields, found 4");
    expect_error("text,label_ocean,key\nA,O,1\n\nB,O\n", EMDPO_ERR_PARSE, 4, "expected 3 fields, found 2");
    /* The error is reported on the line where the quote opened. */
    expect_error("text,label_ocean,key\nA,O,1\n\"open,O,1\nB,C,1\nC,E,1", EMDPO_ERR_PARSE, 3, "quoted field 1 is not closed");
    /* A quoted field over two lines shifts the next record's line number. */
    expect_error("text,label_ocean,key\n\"one\ntwo\",O,1\nB,Q,1\n", EMDPO_ERR_PARSE, 4, "label_ocean");
    expect_error("text,label_ocean,key\n\"A\"x,O,1\n", EMDPO_ERR_PARSE, 2, "after the closing quote of field 1");
    expect_error("text,label_ocean,key\nsay \"hi\",O,1\n", EMDPO_ERR_PARSE, 2, "stray quote in unquoted field 1");
    expect_error("text,label_ocean,key\n,O,1\n", EMDPO_ERR_PARSE, 2, "empty text");
    expect_error("text,label_ocean,key\r\n", EMDPO_ERR_PARSE, 2, "no data rows");
    expect_error("", EMDPO_ERR_PARSE, 0, "empty file");

    emdpo_inventory *inv = NULL;
    emdpo_diag diag = {{0}, -7, {0}};
    CHECK_EQ_INT(emdpo_inventory_load_mpi("/nonexistent/dir/mpi.csv", &inv, &diag), EMDPO_ERR_IO);
    CHECK(inv == NULL);
    CHECK(strcmp(diag.file, "/nonexistent/dir/mpi.csv") == 0 && diag.line == 0);
    /* diag is optional. */
    CHECK_EQ_INT(emdpo_inventory_load_mpi("/nonexistent/dir/mpi.csv", &inv, NULL), EMDPO_ERR_IO);
    CHECK_EQ_INT(parse_str("text,label_ocean,key\nA,Z,1\n", &inv, NULL), EMDPO_ERR_PARSE);
}

static void test_alloc_failures(void) {
    const char *csv = "label_raw,text,label_ocean,key\r\n"
                      "r,\"Quoted, text\",O,1\r\n"
                      "r,Plain,C,-1\r\n"
                      "r,Plain,C,1\r\n"
                      "r,Plain,C,-1\r\n"
                      "r,Other,N,0";
    char path[] = "/tmp/emdpo_inv_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, csv, strlen(csv)) == (ssize_t)strlen(csv));
    close(fd);
    long done_at = -1;
    for (long k = 0; k < 100000 && done_at < 0; k++) {
        failalloc_install(k, 0);
        emdpo_inventory *inv = NULL, *builtin = NULL;
        int rc = emdpo_inventory_load_mpi(path, &inv, NULL);
        int rc2 = emdpo_inventory_builtin(&builtin);
        int good = !rc && inv && inv->n == 3 && scores_are(inv, "Plain", 0, -1, 0, 0, 0);
        emdpo_inventory_free(inv);
        emdpo_inventory_free(builtin);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        CHECK_MSG((rc == EMDPO_OK && good) || rc == EMDPO_ERR_NOMEM, "fail_at %ld rc %d", k, rc);
        CHECK_MSG(rc2 == EMDPO_OK || rc2 == EMDPO_ERR_NOMEM, "fail_at %ld builtin rc %d", k, rc2);
        CHECK_MSG(live == 0, "fail_at %ld leaks %ld blocks", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: %d frees with a wrong size", k, size_err);
        if (count <= k) {
            done_at = k;
            CHECK(rc == EMDPO_OK && rc2 == EMDPO_OK);
        }
    }
    CHECK(done_at > 200);
    unlink(path);
}

/* The balanced subset: every (trait, key) cell gets its share, phrases
 * are the inventory's in order within a cell, and bad sizes are refused. */
static void test_subset(void) {
    emdpo_inventory *all = NULL, *sub = NULL;
    CHECK_EQ_INT(emdpo_inventory_builtin(&all), EMDPO_OK);
    if (!all) return;
    CHECK_EQ_INT(emdpo_inventory_subset(all, 0, &sub), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_inventory_subset(all, all->n + 1, &sub), EMDPO_ERR_INVALID_ARG);
    CHECK(sub == NULL);
    CHECK_EQ_INT(emdpo_inventory_subset(all, 20, &sub), EMDPO_OK);
    if (sub) {
        CHECK_EQ_INT(sub->n, 20);
        int per_cell[EMDPO_N_TRAITS][2] = {{0}};
        int64_t last_index[EMDPO_N_TRAITS][2];
        int ordered = 1;
        for (int t = 0; t < EMDPO_N_TRAITS; t++) last_index[t][0] = last_index[t][1] = -1;
        for (int64_t i = 0; i < sub->n; i++) {
            int trait = -1;
            for (int t = 0; t < EMDPO_N_TRAITS; t++)
                if (sub->score[i * EMDPO_N_TRAITS + t] != 0) trait = t;
            if (trait < 0) continue;
            int key = sub->score[i * EMDPO_N_TRAITS + trait] > 0;
            per_cell[trait][key]++;
            int64_t at = -1;
            for (int64_t j = 0; j < all->n && at < 0; j++)
                if (strcmp(all->text[j], sub->text[i]) == 0) at = j;
            if (at <= last_index[trait][key]) ordered = 0;
            last_index[trait][key] = at;
        }
        for (int t = 0; t < EMDPO_N_TRAITS; t++) {
            CHECK_EQ_INT(per_cell[t][0], 2);
            CHECK_EQ_INT(per_cell[t][1], 2);
        }
        CHECK(ordered);
    }
    emdpo_inventory_free(sub);
    sub = NULL;
    /* The whole inventory is a permutation of it. */
    CHECK_EQ_INT(emdpo_inventory_subset(all, all->n, &sub), EMDPO_OK);
    if (sub) {
        int all_found = 1;
        for (int64_t i = 0; i < all->n; i++) {
            int found = 0;
            for (int64_t j = 0; j < sub->n && !found; j++) found = strcmp(all->text[i], sub->text[j]) == 0;
            all_found &= found;
        }
        CHECK(all_found);
    }
    emdpo_inventory_free(sub);
    emdpo_inventory_free(all);
}

int main(void) {
    test_subset();
    test_builtin_table();
    test_paraphrases();
    test_mpi_1k();
    test_mpi_120();
    test_votes_and_layout();
    test_errors();
    test_alloc_failures();
    return check_report("test_inventory");
}
