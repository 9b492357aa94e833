/* Reading and writing preference data: JSONL and long CSV parsed from temp
 * files, exact round trips, every malformed case rejected at the right line,
 * failed writes leaving no file, and clean failure at every allocation. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "data/data.h"
#include "emdpo.h"
#include "failalloc.h"

static char g_dir[64];

static void path_of(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", g_dir, name); }

static void write_file(const char *name, const char *content, size_t len) {
    char path[256];
    path_of(path, sizeof path, name);
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        exit(1);
    }
    fwrite(content, 1, len, fp);
    fclose(fp);
}

static void read_file(const char *name, char *buf, size_t size) {
    char path[256];
    path_of(path, sizeof path, name);
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(buf, 1, size - 1, fp) : 0;
    buf[n] = 0;
    if (fp) fclose(fp);
}

static int file_exists(const char *name) {
    char path[256];
    path_of(path, sizeof path, name);
    return access(path, F_OK) == 0;
}

static int count_files(void) {
    DIR *dir = opendir(g_dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));) n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

/* Writes content to name and reads it back, expecting success. */
static emdpo_data *load(const char *name, const char *content) {
    char path[256];
    path_of(path, sizeof path, name);
    write_file(name, content, strlen(content));
    emdpo_data *d = NULL;
    emdpo_diag diag;
    int rc = emdpo_data_read(path, EMDPO_FORMAT_AUTO, &d, &diag);
    CHECK_MSG(rc == EMDPO_OK, "%s: rc %d, line %ld: %s", name, rc, diag.line, diag.msg);
    return d;
}

/* Expects content to be rejected as a parse error at line with a message
 * containing phrase. */
static void reject_at(int src_line, const char *name, const char *content, size_t len, long line,
                      const char *phrase) {
    char path[256];
    path_of(path, sizeof path, name);
    write_file(name, content, len);
    emdpo_data *d = (emdpo_data *)1;
    emdpo_diag diag;
    int rc = emdpo_data_read(path, EMDPO_FORMAT_AUTO, &d, &diag);
    CHECK_MSG(rc == EMDPO_ERR_PARSE, "test line %d: rc %d", src_line, rc);
    CHECK_MSG(d == NULL, "test line %d", src_line);
    CHECK_MSG(diag.line == line, "test line %d: diag line %ld, expected %ld (%s)", src_line, diag.line, line,
              diag.msg);
    CHECK_MSG(strstr(diag.msg, phrase) != NULL, "test line %d: \"%s\" lacks \"%s\"", src_line, diag.msg,
              phrase);
    CHECK_MSG(strcmp(diag.file, path) == 0, "test line %d: file %s", src_line, diag.file);
    remove(path);
}

#define REJECT_JSONL(content, line, phrase)                                                                  \
    reject_at(__LINE__, "bad.jsonl", content, strlen(content), line, phrase)
#define REJECT_CSV(content, line, phrase)                                                                    \
    reject_at(__LINE__, "bad.csv", content, strlen(content), line, phrase)

static const char *group_of(const emdpo_data *d, int64_t annot) {
    return d->annot_group[annot] >= 0 ? d->group_name[d->annot_group[annot]] : NULL;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* Everything equal, features bitwise; feature names only when asked. */
static void check_same(const emdpo_data *a, const emdpo_data *b, int names) {
    if (!a || !b) {
        CHECK(a && b);
        return;
    }
    CHECK_EQ_INT(a->n_annot, b->n_annot);
    CHECK_EQ_INT(a->n_dec, b->n_dec);
    CHECK_EQ_INT(a->n_items, b->n_items);
    CHECK_EQ_INT(a->p, b->p);
    CHECK_EQ_INT(a->n_groups, b->n_groups);
    if (a->n_annot != b->n_annot || a->n_dec != b->n_dec || a->n_items != b->n_items || a->p != b->p ||
        a->n_groups != b->n_groups)
        return;
    size_t na = (size_t)a->n_annot, nd = (size_t)a->n_dec, ni = (size_t)a->n_items;
    CHECK(memcmp(a->annot_dec, b->annot_dec, (na + 1) * sizeof(int64_t)) == 0);
    CHECK(memcmp(a->dec_item, b->dec_item, (nd + 1) * sizeof(int64_t)) == 0);
    CHECK(memcmp(a->dec_stages, b->dec_stages, nd * sizeof(int32_t)) == 0);
    CHECK(memcmp(a->annot_group, b->annot_group, na * sizeof(int32_t)) == 0);
    if (a->p) CHECK(memcmp(a->x, b->x, ni * (size_t)a->p * sizeof(double)) == 0);
    for (size_t i = 0; i < na; i++) CHECK(strcmp(a->annot_name[i], b->annot_name[i]) == 0);
    for (int g = 0; g < a->n_groups; g++) CHECK(strcmp(a->group_name[g], b->group_name[g]) == 0);
    CHECK(!a->dec_prompt == !b->dec_prompt);
    CHECK(!a->item_text == !b->item_text);
    for (size_t j = 0; a->dec_prompt && b->dec_prompt && j < nd; j++)
        CHECK(same_str(a->dec_prompt[j], b->dec_prompt[j]));
    for (size_t k = 0; a->item_text && b->item_text && k < ni; k++)
        CHECK(same_str(a->item_text[k], b->item_text[k]));
    if (names) {
        CHECK(!a->feature_name == !b->feature_name);
        for (int q = 0; a->feature_name && b->feature_name && q < a->p; q++)
            CHECK(strcmp(a->feature_name[q], b->feature_name[q]) == 0);
    }
}

/* ---- JSONL reading ----------------------------------------------------- */

static void test_jsonl_features(void) {
    emdpo_data *d = load(
        "f.jsonl", "{\"annotator\":\"u1\",\"prompt\":\"p1\",\"chosen\":{\"features\":[1,2]},\"rejected\":{"
                   "\"features\":[3,4]},\"group\":\"A\"}\n"
                   "{\"annotator\":\"u2\",\"chosen\":{\"features\":[5,6]},\"rejected\":[{\"features\":[7,8]},"
                   "{\"features\":[9,10]}]}\r\n"
                   "\n"
                   "  \t\r\n"
                   "{\"annotator\":\"u1\",\"ranking\":[{\"features\":[11,12]},{\"features\":[13,14]},{"
                   "\"features\":[15,16]}],\"group\":\"A\"}\n"
                   "{\"annotator\":17,\"group\":3,\"ranking\":[{\"features\":[1,1]},{\"features\":[2,2]}],"
                   "\"rejected\":[{\"features\":[3,3]},{\"features\":[4,4]}]}\n"
                   "{\"chosen\":{\"features\":[-0.5,1e-3]},\"rejected\":{\"features\":[0,0]},\"extra\":{"
                   "\"x\":[1,2]},\"score\":9}");
    if (!d) return;
    CHECK_EQ_INT(d->p, 2);
    CHECK_EQ_INT(d->n_annot, 4);
    CHECK_EQ_INT(d->n_dec, 5);
    CHECK_EQ_INT(d->n_items, 14);
    CHECK(strcmp(d->annot_name[0], "u1") == 0 && strcmp(d->annot_name[1], "u2") == 0);
    CHECK(strcmp(d->annot_name[2], "17") == 0);
    CHECK(strcmp(d->annot_name[3], "line7") == 0); /* no annotator: its own, named by line */
    CHECK_EQ_INT(d->annot_dec[1], 2);
    /* u1: a pair, then a full ranking of 3 (two stages). */
    CHECK_EQ_INT(d->dec_stages[0], 1);
    CHECK_EQ_INT(d->dec_stages[1], 2);
    CHECK_EQ_INT(emdpo_dec_n_items(d, 1), 3);
    CHECK(d->x[0] == 1 && d->x[3] == 4 && d->x[4] == 11 && d->x[9] == 16);
    /* u2: chosen then two rejected. */
    CHECK_EQ_INT(emdpo_dec_n_items(d, 2), 3);
    CHECK_EQ_INT(d->dec_stages[2], 1);
    CHECK(d->x[2 * d->dec_item[2] + 4] == 9);
    /* 17: two ranked on top of two unranked. */
    CHECK_EQ_INT(emdpo_dec_n_items(d, 3), 4);
    CHECK_EQ_INT(d->dec_stages[3], 2);
    CHECK(d->x[2 * d->dec_item[4]] == -0.5 && d->x[2 * d->dec_item[4] + 1] == 1e-3);
    CHECK(same_str(group_of(d, 0), "A") && group_of(d, 1) == NULL && same_str(group_of(d, 2), "3"));
    CHECK(d->dec_prompt && same_str(d->dec_prompt[0], "p1") && d->dec_prompt[1] == NULL);
    for (int64_t k = 0; d->item_text && k < d->n_items; k++) CHECK(d->item_text[k] == NULL);
    CHECK(d->feature_name == NULL);
    emdpo_data_free(d);
}

static void test_jsonl_text(void) {
    /* TRL preference rows: no annotator, prompt/chosen/rejected strings. */
    emdpo_data *d = load("t.json",
        "\xEF\xBB\xBF{\"prompt\":\"Q1\",\"chosen\":\"good\",\"rejected\":\"bad\"}\r\n"
        "{\"prompt\":\"Q\\u00e9\",\"chosen\":\"a\\nb\",\"rejected\":[\"c\",\"d\"],\"annotator\":\"x\"}\r\n");
    if (!d) return;
    CHECK_EQ_INT(d->p, 0);
    CHECK(d->x == NULL);
    CHECK_EQ_INT(d->n_annot, 2);
    CHECK(strcmp(d->annot_name[0], "line1") == 0 && strcmp(d->annot_name[1], "x") == 0);
    CHECK(d->item_text && same_str(d->item_text[0], "good") && same_str(d->item_text[1], "bad"));
    CHECK(d->item_text && same_str(d->item_text[2], "a\nb") && same_str(d->item_text[4], "d"));
    CHECK(d->dec_prompt && same_str(d->dec_prompt[1], "Q\xC3\xA9"));
    emdpo_data_free(d);

    /* Feature items may carry their text. */
    d = load("ft.jsonl", "{\"chosen\":{\"features\":[1],\"text\":\"hi\"},\"rejected\":{\"features\":[2]}}\n"
                         "{\"chosen\":{\"features\":[3],\"text\":null},\"rejected\":{\"features\":[4]}}\n");
    if (!d) return;
    CHECK_EQ_INT(d->p, 1);
    CHECK(d->item_text && same_str(d->item_text[0], "hi") && d->item_text[1] == NULL &&
          d->item_text[2] == NULL);
    CHECK(d->x[2] == 3);
    emdpo_data_free(d);
}

static void test_jsonl_errors(void) {
    const char *ok =
        "{\"annotator\":\"u1\",\"chosen\":{\"features\":[1,2]},\"rejected\":{\"features\":[3,4]}}\n";
    char buf[1024];
#define AFTER_OK(line) (snprintf(buf, sizeof buf, "%s\n%s", ok, line), buf) /* the bad line is line 3 */
    REJECT_JSONL(AFTER_OK("{\"annotator\":\"u1\" \"chosen\":1}"), 3,
                 "line is not valid JSON: expected ',' or '}' at column 19");
    REJECT_JSONL(AFTER_OK("{\"a\":1,}"), 3, "trailing comma");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"features\":[1,1e999]},\"rejected\":{\"features\":[1,2]}}"), 3,
                 "out of range");
    REJECT_JSONL(AFTER_OK("[1,2]"), 3, "line is a JSON array, expected an object");
    REJECT_JSONL(AFTER_OK("{\"annotator\":\"u1\",\"rejected\":{\"features\":[3,4]}}"), 3,
                 "missing field \"chosen\" (or \"ranking\")");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"features\":[3,4]}}"), 3, "missing field \"rejected\"");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"features\":[3,4]},\"rejected\":[]}"), 3,
                 "\"rejected\" is an empty list");
    REJECT_JSONL(AFTER_OK("{\"ranking\":[{\"features\":[3,4]}]}"), 3, "needs at least two");
    REJECT_JSONL(AFTER_OK("{\"ranking\":[],\"rejected\":{\"features\":[3,4]}}"), 3,
                 "\"ranking\" is an empty list");
    REJECT_JSONL(AFTER_OK("{\"ranking\":{\"features\":[3,4]}}"), 3, "\"ranking\" must be a list");
    REJECT_JSONL(
        AFTER_OK("{\"chosen\":{\"features\":[1,2]},\"ranking\":[{\"features\":[3,4]},{\"features\":[3,4]}]}"),
        3, "cannot both");
    REJECT_JSONL(AFTER_OK("{\"chosen\":[{\"features\":[1,2]}],\"rejected\":{\"features\":[3,4]}}"), 3,
                 "must be one response");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"features\":[1,2]},\"rejected\":[{\"features\":[3,\"4\"]}]}"), 3,
                 "feature 2 of item 2 is not a finite number");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"features\":[null,2]},\"rejected\":{\"features\":[3,4]}}"), 3,
                 "feature 1 of item 1 is not a finite number");
    REJECT_JSONL(
        AFTER_OK(
            "{\"chosen\":{\"features\":[1,2]},\"rejected\":[{\"features\":[3,4]},{\"features\":[1,2,3]}]}"),
        3, "item 3 has 3 features, expected 2 (as on line 1)");
    REJECT_JSONL(AFTER_OK("{\"chosen\":\"a\",\"rejected\":\"b\"}"), 3,
                 "item 1 is text, but the responses on line 1 have features");
    REJECT_JSONL(
        "{\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"chosen\":\"a\",\"rejected\":{\"features\":[1]}}\n", 2,
        "item 2 has features, but the responses on line 1 are text");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"features\":[1,2]},\"rejected\":[7]}"), 3,
                 "item 2 must be a string or an object with \"features\", not number");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"features\":[]},\"rejected\":{\"features\":[3,4]}}"), 3,
                 "item 1 has an empty \"features\" list");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"text\":\"a\"},\"rejected\":{\"features\":[3,4]}}"), 3,
                 "item 1 has no \"features\" list");
    REJECT_JSONL(AFTER_OK("{\"chosen\":{\"features\":[1,2],\"text\":3},\"rejected\":{\"features\":[3,4]}}"),
                 3, "text of item 1 must be a string");
    REJECT_JSONL(
        AFTER_OK("{\"annotator\":[1],\"chosen\":{\"features\":[1,2]},\"rejected\":{\"features\":[3,4]}}"), 3,
        "\"annotator\" must be a string or an integer, not array");
    REJECT_JSONL(
        AFTER_OK("{\"annotator\":1.5,\"chosen\":{\"features\":[1,2]},\"rejected\":{\"features\":[3,4]}}"), 3,
        "\"annotator\" must be a string or an integer");
    REJECT_JSONL(
        AFTER_OK("{\"annotator\":\"\",\"chosen\":{\"features\":[1,2]},\"rejected\":{\"features\":[3,4]}}"), 3,
        "\"annotator\" is an empty string");
    REJECT_JSONL(
        AFTER_OK("{\"group\":true,\"chosen\":{\"features\":[1,2]},\"rejected\":{\"features\":[3,4]}}"), 3,
        "\"group\" must be a string or an integer, not boolean");
    REJECT_JSONL(AFTER_OK("{\"prompt\":1,\"chosen\":{\"features\":[1,2]},\"rejected\":{\"features\":[3,4]}}"),
                 3, "\"prompt\" must be a string");
    REJECT_JSONL(AFTER_OK("{\"chosen\":\"a\\u0000b\",\"rejected\":\"b\"}"), 3, "\\u0000");
    /* The same annotator must keep one group. */
    REJECT_JSONL("{\"annotator\":\"u3\",\"group\":\"A\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
                 "{\"annotator\":\"u9\",\"group\":\"B\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
                 "{\"annotator\":\"u3\",\"group\":\"B\",\"chosen\":\"a\",\"rejected\":\"b\"}\n",
                 3, "annotator \"u3\" has group \"B\" here but a different group");
    REJECT_JSONL("{\"annotator\":\"u3\",\"group\":\"A\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
                 "{\"annotator\":\"u3\",\"chosen\":\"a\",\"rejected\":\"b\"}\n",
                 2, "annotator \"u3\" has no group here");
    REJECT_JSONL("", 0, "no decisions in file");
    REJECT_JSONL("\n  \r\n\n", 0, "no decisions in file");
    /* A NUL byte in a line is not JSON whitespace. */
    reject_at(__LINE__, "nul.jsonl", "{\"chosen\":\"a\",\"rejected\":\"b\"}\0\n", 31, 1,
              "unexpected data after the value at column 30");
#undef AFTER_OK
}

static void test_open_errors(void) {
    char path[256];
    emdpo_data *d = (emdpo_data *)1;
    emdpo_diag diag;
    path_of(path, sizeof path, "missing.jsonl");
    CHECK_EQ_INT(emdpo_data_read(path, EMDPO_FORMAT_AUTO, &d, &diag), EMDPO_ERR_IO);
    CHECK(d == NULL);
    CHECK_MSG(strstr(diag.msg, "No such file") != NULL, "%s", diag.msg);
    CHECK(strcmp(diag.file, path) == 0);
    path_of(path, sizeof path, "data.txt");
    CHECK_EQ_INT(emdpo_data_read(path, EMDPO_FORMAT_AUTO, &d, &diag), EMDPO_ERR_UNSUPPORTED);
    CHECK(strstr(diag.msg, ".jsonl") != NULL);
    /* An explicit format overrides the extension. */
    write_file("data.txt", "{\"chosen\":\"a\",\"rejected\":\"b\"}", 29);
    CHECK_EQ_INT(emdpo_data_read(path, EMDPO_FORMAT_JSONL, &d, &diag), EMDPO_OK);
    CHECK(d && d->n_dec == 1);
    emdpo_data_free(d);
    remove(path);
    /* Upper-case extensions and a NULL diag are fine. */
    write_file("UP.JSONL", "{\"chosen\":\"a\",\"rejected\":\"b\"}", 29);
    path_of(path, sizeof path, "UP.JSONL");
    CHECK_EQ_INT(emdpo_data_read(path, EMDPO_FORMAT_AUTO, &d, NULL), EMDPO_OK);
    emdpo_data_free(d);
    remove(path);
    /* A directory opens but cannot be read. */
    snprintf(path, sizeof path, "%s/sub.csv", g_dir);
    CHECK(mkdir(path, 0700) == 0);
    CHECK_EQ_INT(emdpo_data_read(path, EMDPO_FORMAT_AUTO, &d, &diag), EMDPO_ERR_IO);
    CHECK(d == NULL);
    rmdir(path);
}

/* ---- CSV reading ------------------------------------------------------- */

static void test_csv_basic(void) {
    emdpo_data *d = load("basic.csv",
        "\xEF\xBB\xBF" "annotator,task,alt,chosen,group,\"price, usd\",speed\r\n"
        "u1,1,1,0,A,1.5,2\r\n"
        "u1,1,2,1,A,2.5,3\r\n"
        "u1,1,3,0,A, 3.5 ,4\r\n"
        "\"u \"\"2\"\"\",t9,1,1,,10,20\r\n"
        "\"u \"\"2\"\"\",t9,2,0,,-1e-3,40\r\n"
        "u1,2,1,0,\"A\",5,5\r\n"
        "u1,2,2,1,A,6,6\r\n"
        "\r\n"
        "\r\n");
    if (!d) return;
    CHECK_EQ_INT(d->p, 2);
    CHECK(d->feature_name && same_str(d->feature_name[0], "price, usd") &&
          same_str(d->feature_name[1], "speed"));
    CHECK_EQ_INT(d->n_annot, 2);
    CHECK_EQ_INT(d->n_dec, 3);
    CHECK(same_str(d->annot_name[0], "u1") && same_str(d->annot_name[1], "u \"2\""));
    /* The chosen alternative comes first, the rest in row order. */
    const double x0[6] = {2.5, 3, 1.5, 2, 3.5, 4};
    CHECK(memcmp(d->x, x0, sizeof x0) == 0);
    CHECK_EQ_INT(d->dec_stages[0], 1);
    CHECK(d->x[2 * d->dec_item[1]] == 6 && d->x[2 * d->dec_item[1] + 2] == 5);
    CHECK(d->x[2 * d->dec_item[2] + 2] == -1e-3);
    CHECK(same_str(group_of(d, 0), "A") && group_of(d, 1) == NULL);
    CHECK(d->dec_prompt == NULL && d->item_text == NULL);
    emdpo_data_free(d);
}

static void test_csv_rankings(void) {
    /* Columns in any order; no group column; no final newline. */
    emdpo_data *d = load("rank.csv",
        "chosen,x,alt,annotator,task\n"
        "3,30,1,a,1\n2,20,2,a,1\n1,10,3,a,1\n4,40,4,a,1\n" /* full ranking of 4: 3 stages */
        "0,0,1,a,2\n2,2,2,a,2\n0,0.5,3,a,2\n1,1,4,a,2\n"   /* top two of 4 */
        "2,2,1,b,1\n1,1,2,b,1\n0,0,3,b,1\n"                 /* top two of 3: a full ranking too */
        "0,0,1,b,2\n1,1,2,b,2");
    if (!d) return;
    CHECK_EQ_INT(d->n_dec, 4);
    CHECK(d->feature_name && same_str(d->feature_name[0], "x"));
    const int32_t stages[4] = {3, 2, 2, 1};
    CHECK(memcmp(d->dec_stages, stages, sizeof stages) == 0);
    const double x[13] = {10, 20, 30, 40, 1, 2, 0, 0.5, 1, 2, 0, 1, 0};
    CHECK(memcmp(d->x, x, sizeof x) == 0);
    emdpo_data_free(d);
}

static void test_csv_errors(void) {
    const char *h = "annotator,task,alt,chosen,x1,x2\n";
    char buf[1024];
#define WITH_HEADER(rows) (snprintf(buf, sizeof buf, "%s%s", h, rows), buf)
    REJECT_CSV("annotator,task,chosen,x1\nu,1,1,0\n", 1, "missing column \"alt\"");
    REJECT_CSV("annotator,task,alt,chosen,group\nu,1,1,1,A\n", 1, "no feature columns");
    REJECT_CSV(",annotator,task,alt,chosen,x\n", 1, "column 1 of the header has no name");
    REJECT_CSV("annotator,task,alt,chosen,x,x\n", 1, "column \"x\" appears twice");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,0,0\n"), 3, "row has 5 fields, expected 6");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,0,0,0,\n"), 3, "row has 7 fields, expected 6");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,0,0,0\nu,1,3,1,0,0\n"), 4,
               "two alternatives chosen (lines 2 and 4)");
    REJECT_CSV(WITH_HEADER("v,1,1,1,0,0\nv,1,2,0,0,0\nu,1,1,0,0,0\nu,1,2,0,0,0\nw,1,1,1,0,0\n"), 4,
               "no alternative chosen in task \"1\" of annotator \"u\"");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,0,0,0\nu,2,1,1,0,0\n"), 4, "has only one alternative");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,0,0,0\nu,2,1,1,0,0\nu,2,2,0,0,0\nu,1,3,0,0,0\n"), 6,
               "task \"1\" of annotator \"u\" resumes here after other rows (it began on line 2)");
    REJECT_CSV(WITH_HEADER("u,1,1,1,abc,0\nu,1,2,0,0,0\n"), 2, "column \"x1\": \"abc\" is not a number");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,0,0,\n"), 3, "column \"x2\": empty feature value");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,0,0,1.5x\n"), 3, "column \"x2\": \"1.5x\" is not a number");
    REJECT_CSV(WITH_HEADER("u,1,1,1,inf,0\nu,1,2,0,0,0\n"), 2,
               "column \"x1\": \"inf\" is not a finite number");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,0,nan,0\n"), 3,
               "column \"x1\": \"nan\" is not a finite number");
    REJECT_CSV(WITH_HEADER("u,1,1,1,1e999,0\nu,1,2,0,0,0\n"), 2, "not a finite number");
    REJECT_CSV(WITH_HEADER("u,1,1,1.0,0,0\nu,1,2,0,0,0\n"), 2,
               "expected a non-negative integer, got \"1.0\"");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,-1,0,0\n"), 3, "expected a non-negative integer");
    REJECT_CSV(WITH_HEADER("u,1,1,,0,0\nu,1,2,0,0,0\n"), 2, "expected a non-negative integer");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,2,0,0\nu,1,3,2,0,0\n"), 4,
               "rank 2 given twice (lines 3 and 4)");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,3,0,0\nu,1,3,0,0,0\n"), 2, "rank 2 missing");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu,1,2,99999999999,0,0\n"), 3, "exceeds the 2 alternatives");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\n\"u,1,2,0,0,0\n"), 3, "quoted field 1 is not closed");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\nu\"v,1,2,0,0,0\n"), 3, "stray quote in unquoted field 1");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\n\"u\"v,1,2,0,0,0\n"), 3, "after the closing quote of field 1");
    REJECT_CSV(WITH_HEADER("u,1,1,1,0,0\n,1,2,0,0,0\n"), 3, "column \"annotator\" is empty");
    REJECT_CSV(WITH_HEADER("u,,1,1,0,0\n"), 2, "column \"task\" is empty");
    REJECT_CSV("annotator,task,alt,chosen,group,x\nu,1,1,1,A,0\nu,1,2,0,B,0\n", 3,
               "annotator \"u\" has group \"A\" on an earlier line and group \"B\" here");
    REJECT_CSV("annotator,task,alt,chosen,group,x\nu,1,1,1,A,0\nu,1,2,0,,0\n", 3,
               "annotator \"u\" has group \"A\" on an earlier line and no group here");
    REJECT_CSV("annotator,task,alt,chosen,group,x\nu,1,1,1,A,0\nu,1,2,0,A,0\nv,1,1,1,B,0\nv,1,2,0,B,0\n"
               "u,2,1,1,B,0\nu,2,2,0,B,0\n",
               6, "annotator \"u\" has group \"B\" here but a different group");
    REJECT_CSV(h, 0, "no decisions in file");
    REJECT_CSV("", 0, "no decisions in file");
    reject_at(__LINE__, "nul.csv", "annotator,task,alt,chosen,x\nu,1,1,1,0\0\n", 40, 2, "NUL byte");
#undef WITH_HEADER
}

/* ---- Round trips ------------------------------------------------------- */

/* Awkward doubles: signed zero, subnormals, extremes, non-terminating binary
 * fractions. */
static double awkward(int k) {
    static const double special[] = {0.1,
                                     -0.0,
                                     5e-324,
                                     2.2250738585072014e-308,
                                     1.7976931348623157e308,
                                     -1.0 / 3.0,
                                     123456789.123456789,
                                     1e-300,
                                     0.7,
                                     -2.5,
                                     1e22,
                                     3.141592653589793};
    int n = (int)(sizeof special / sizeof special[0]);
    return k % 3 == 0 ? special[(k / 3) % n] : sin(k * 1.7) * pow(10.0, (double)(k % 17) - 8.0);
}

static emdpo_data *make_feature_data(int with_names) {
    static const struct {
        const char *annot, *group;
        int n, stages;
    } decs[] = {{"a1", "G1", 2, 1}, {"a2", NULL, 4, 3},        {"a1", "G1", 5, 2},
                {"a 3, \"q\"", "G2", 3, 1}, {"a2", NULL, 3, 2}, {"a4", "G1", 6, 4}};
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(3, &b)) return NULL;
    const char *names[3] = {"price", "speed, km/h", "q\"uote"};
    if (with_names) CHECK_EQ_INT(emdpo_data_builder_set_feature_names(b, names), EMDPO_OK);
    double x[18];
    int k = 0;
    for (size_t j = 0; j < sizeof decs / sizeof decs[0]; j++) {
        for (int q = 0; q < decs[j].n * 3; q++) x[q] = awkward(k++);
        CHECK_EQ_INT(
            emdpo_data_builder_add(b, decs[j].annot, decs[j].group, NULL, decs[j].n, decs[j].stages, x, NULL),
            EMDPO_OK);
    }
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    return d;
}

static emdpo_data *reread(const char *name, emdpo_format fmt) {
    char path[256];
    path_of(path, sizeof path, name);
    emdpo_data *d = NULL;
    emdpo_diag diag;
    CHECK_MSG(emdpo_data_read(path, fmt, &d, &diag) == EMDPO_OK, "%s line %ld: %s", name, diag.line,
              diag.msg);
    return d;
}

static void roundtrip(const emdpo_data *d, const char *name, int names) {
    char path[256];
    path_of(path, sizeof path, name);
    emdpo_diag diag;
    int rc = emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag);
    CHECK_MSG(rc == EMDPO_OK, "%s: %s", name, diag.msg);
    emdpo_data *e = reread(name, EMDPO_FORMAT_AUTO);
    check_same(d, e, names);
    emdpo_data_free(e);
}

static void test_roundtrip_features(void) {
    emdpo_data *d = make_feature_data(1);
    if (!d) return;
    roundtrip(d, "rt.csv", 1);
    roundtrip(d, "rt.jsonl", 0);
    char path[256];
    path_of(path, sizeof path, "rt.jsonl");
    emdpo_data *e = reread("rt.jsonl", EMDPO_FORMAT_AUTO);
    CHECK(e && e->feature_name == NULL); /* JSONL carries no feature names */
    emdpo_data_free(e);
    /* The JSONL form is what the format documents. */
    char text[8192];
    read_file("rt.jsonl", text, sizeof text);
    CHECK(starts_with(text, "{\"annotator\":\"a1\",\"group\":\"G1\",\"chosen\":{\"features\":[0.1,"));
    CHECK(strstr(text, "\"ranking\":[") && strstr(text, "],\"rejected\":["));
    /* a2's first decision is a full ranking of 4: one list, no "rejected". */
    char *a2 = strstr(text, "{\"annotator\":\"a2\",\"ranking\":[");
    char *eol = a2 ? strchr(a2, '\n') : NULL;
    if (eol) *eol = 0;
    CHECK(a2 && eol && !strstr(a2, "rejected"));
    /* An explicit format wins over the extension. */
    path_of(path, sizeof path, "rt.dat");
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_CSV, NULL), EMDPO_OK);
    e = reread("rt.dat", EMDPO_FORMAT_CSV);
    check_same(d, e, 1);
    emdpo_data_free(e);
    remove(path);
    emdpo_data_free(d);

    /* Without names the CSV writer invents x1..xp. */
    d = make_feature_data(0);
    if (!d) return;
    roundtrip(d, "rt2.csv", 0);
    e = reread("rt2.csv", EMDPO_FORMAT_AUTO);
    CHECK(e && e->feature_name && same_str(e->feature_name[0], "x1") && same_str(e->feature_name[2], "x3"));
    emdpo_data_free(e);
    read_file("rt2.csv", text, sizeof text);
    CHECK(starts_with(text, "annotator,task,alt,chosen,group,x1,x2,x3\na1,1,1,1,G1,0.1,"));
    CHECK(strstr(text, "\n\"a 3, \"\"q\"\"\",1,1,1,G2,") != NULL);
    emdpo_data_free(d);
}

static void test_roundtrip_text(void) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(0, &b)) return;
    const char *t1[3] = {"good \"one\"\n\ttab", "caf\xC3\xA9", "\xF0\x9F\x98\x80 \x01 back\\slash"};
    const char *t2[4] = {"a,b", "", "c", "d"};
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u1", "G", "Why?\r\n", 3, 1, NULL, t1), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u2", NULL, NULL, 4, 3, NULL, t2), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u1", "G", "", 4, 2, NULL, t2), EMDPO_OK);
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    roundtrip(d, "text.jsonl", 1);

    /* CSV holds no text: refused before any file exists. */
    int before = count_files();
    char path[256];
    emdpo_diag diag;
    path_of(path, sizeof path, "text.csv");
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_UNSUPPORTED);
    CHECK(strstr(diag.msg, "feature data only") != NULL);
    CHECK_EQ_INT(count_files(), before);
    emdpo_data_free(d);

    /* Feature data with text on some items and prompts. */
    if (emdpo_data_builder_create(1, &b)) return;
    const char *t3[3] = {NULL, "has text", NULL};
    double x[3] = {1, 2, 3};
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u1", NULL, "p", 3, 2, x, t3), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u1", NULL, NULL, 2, 1, x, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    roundtrip(d, "ftext.jsonl", 1);
    emdpo_data_free(d);
}

/* A write that fails part-way leaves neither the target nor a temp file,
 * and an existing target keeps its old content. */
static void test_failed_writes(void) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(0, &b)) return;
    const char *ok[2] = {"a", "b"}, *bad_utf8[2] = {"a", "b\xC3"}, *missing[2] = {"a", NULL};
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u1", NULL, NULL, 2, 1, NULL, ok), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u2", NULL, NULL, 2, 1, NULL, bad_utf8), EMDPO_OK);
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    char path[256];
    emdpo_diag diag;
    int before = count_files();
    path_of(path, sizeof path, "fail.jsonl");
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(diag.msg, "not valid UTF-8") != NULL);
    CHECK(!file_exists("fail.jsonl"));
    CHECK_EQ_INT(count_files(), before);

    write_file("fail.jsonl", "old\n", 4);
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_INVALID_ARG);
    char text[64];
    read_file("fail.jsonl", text, sizeof text);
    CHECK(strcmp(text, "old\n") == 0);
    CHECK_EQ_INT(count_files(), before + 1);
    remove(path);
    emdpo_data_free(d);

    if (emdpo_data_builder_create(0, &b)) return;
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u1", NULL, NULL, 2, 1, NULL, ok), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u1", NULL, NULL, 2, 1, NULL, missing), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_UNSUPPORTED);
    CHECK(strstr(diag.msg, "item 2 of decision 2 has neither features nor text") != NULL);
    CHECK_EQ_INT(count_files(), before);
    emdpo_data_free(d);

    /* Names the CSV reader would misread are refused up front. */
    if (emdpo_data_builder_create(1, &b)) return;
    const char *names[1] = {"group"};
    double x[2] = {1, 2};
    CHECK_EQ_INT(emdpo_data_builder_set_feature_names(b, names), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_add(b, "u1", NULL, NULL, 2, 1, x, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    path_of(path, sizeof path, "names.csv");
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_UNSUPPORTED);
    CHECK(strstr(diag.msg, "feature name \"group\"") != NULL);
    CHECK_EQ_INT(count_files(), before);
    /* Non-finite features cannot be written in either format. */
    d->x[1] = NAN;
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_INVALID_ARG);
    path_of(path, sizeof path, "nan.jsonl");
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(diag.msg, "not finite") != NULL);
    CHECK_EQ_INT(count_files(), before);
    /* A directory that does not exist. */
    d->x[1] = 0;
    snprintf(path, sizeof path, "%s/no/such/dir.jsonl", g_dir);
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_IO);
    CHECK(strstr(diag.msg, "cannot create") != NULL);
    path_of(path, sizeof path, "x.txt");
    CHECK_EQ_INT(emdpo_data_write(d, path, EMDPO_FORMAT_AUTO, &diag), EMDPO_ERR_UNSUPPORTED);
    CHECK_EQ_INT(count_files(), before);
    emdpo_data_free(d);
}

/* ---- Allocation failures ----------------------------------------------- */

static void sweep(const char *name, const char *content, int64_t n_dec) {
    char path[256];
    path_of(path, sizeof path, name);
    write_file(name, content, strlen(content));
    long n_ok = -1;
    for (long k = 0; k < 100000; k++) {
        failalloc_install(k, 0);
        emdpo_data *d = NULL;
        emdpo_diag diag;
        int rc = emdpo_data_read(path, EMDPO_FORMAT_AUTO, &d, &diag);
        int64_t got = d ? d->n_dec : -1;
        emdpo_data_free(d);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "%s fail_at %ld rc %d: %s", name, k, rc, diag.msg);
        CHECK_MSG(live == 0, "%s fail_at %ld leaks %ld blocks", name, k, live);
        CHECK_MSG(size_err == 0, "%s fail_at %ld: %d frees with a wrong size", name, k, size_err);
        CHECK(strcmp(diag.file, path) == 0);
        if (rc == EMDPO_ERR_NOMEM) {
            CHECK(d == NULL || got == -1);
            CHECK_MSG(strcmp(diag.msg, "out of memory") == 0 && diag.line >= 0 && diag.line <= 8,
                      "%s line %ld", diag.msg, diag.line);
        }
        if (count <= k) {
            n_ok = k;
            CHECK_EQ_INT(rc, EMDPO_OK);
            CHECK_EQ_INT(got, n_dec);
            CHECK(diag.msg[0] == 0);
            break;
        }
    }
    CHECK_MSG(n_ok > 20, "%s: only %ld allocations", name, n_ok);
    remove(path);
}

static void test_alloc_failures(void) {
    sweep("sweep.jsonl",
          "{\"annotator\":\"u1\",\"prompt\":\"p\",\"chosen\":{\"features\":[1,2],\"text\":\"t\"},"
          "\"rejected\":[{\"features\":[3,4]},{\"features\":[5,6]}],\"group\":\"A\"}\n"
          "\n"
          "{\"annotator\":7,\"ranking\":[{\"features\":[1,2]},{\"features\":[3,4]},{\"features\":[5,6]}]}\n"
          "{\"chosen\":{\"features\":[1,2]},\"rejected\":{\"features\":[3,4]}}\n"
          "{\"annotator\":\"u1\",\"ranking\":[{\"features\":[1,2]}],\"rejected\":[{\"features\":[3,4]},{"
          "\"features\":[5,6]}],\"group\":\"A\"}\n",
          4);
    sweep("sweep.csv",
          "annotator,task,alt,chosen,group,x,y\n"
          "u1,1,1,0,A,1,2\nu1,1,2,1,A,3,4\nu1,1,3,0,A,5,6\n"
          "u2,1,1,2,,1,2\nu2,1,2,1,,3,4\n"
          "u1,2,1,1,A,1,2\nu1,2,2,0,A,3,4\n",
          3);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/emdpo_test_io_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_jsonl_features();
    test_jsonl_text();
    test_jsonl_errors();
    test_open_errors();
    test_csv_basic();
    test_csv_rankings();
    test_csv_errors();
    test_roundtrip_features();
    test_roundtrip_text();
    test_failed_writes();
    test_alloc_failures();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_report("test_io");
}
