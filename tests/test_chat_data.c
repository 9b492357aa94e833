/* TRL's data formats through emdpo_data_read_with (src/data/chat_records.c,
 * read_jsonl.c, read_csv.c): conversational records rendered with a chat
 * template as TRL's maybe_apply_chat_template does (generation prompt after
 * a user turn, continue_final_message after an assistant one, completions
 * as what prompt + response adds), implicit prompts split as TRL's
 * extract_prompt splits them (its quirks included), a JSON array of
 * records, gzip, the annotator field, the long CSV's column names, and the
 * errors. Each expectation is worked out by hand from TRL's code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "data/data.h"
#include "emdpo.h"

static char dir[64];

static const char *path_of(const char *name) {
    static char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static const char *write_file(const char *name, const char *text) {
    const char *p = path_of(name);
    FILE *fp = fopen(p, "wb");
    if (!fp) abort();
    fputs(text, fp);
    fclose(fp);
    return p;
}

#define TEMPLATE                                                                                                   \
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"                              \
    "{% if add_generation_prompt %}<assistant>{% endif %}"

/* Reads text as a .jsonl with the template and checks decision 0's prompt
 * and item texts. */
static void expect(const char *what, const char *jsonl, const char *prompt, const char *const *texts, int n) {
    emdpo_read_opts o;
    emdpo_read_opts_init(&o);
    char tp[128];
    snprintf(tp, sizeof tp, "%s", write_file("t.jinja", TEMPLATE));
    o.chat_template = tp;
    emdpo_data *d = NULL;
    emdpo_diag diag;
    int rc = emdpo_data_read_with(write_file("d.jsonl", jsonl), EMDPO_FORMAT_AUTO, &o, &d, &diag);
    CHECK_MSG(rc == EMDPO_OK, "%s: %s", what, diag.msg);
    if (!d) return;
    const char *p = d->dec_prompt ? d->dec_prompt[0] : NULL;
    CHECK_MSG(p && strcmp(p, prompt) == 0, "%s: prompt \"%s\", want \"%s\"", what, p ? p : "(none)", prompt);
    CHECK_MSG(emdpo_dec_n_items(d, 0) == n, "%s: %d items", what, emdpo_dec_n_items(d, 0));
    for (int k = 0; k < n && k < emdpo_dec_n_items(d, 0); k++) {
        const char *t = d->item_text[d->dec_item[0] + k];
        CHECK_MSG(t && strcmp(t, texts[k]) == 0, "%s: item %d \"%s\", want \"%s\"", what, k, t ? t : "(none)",
                  texts[k]);
    }
    emdpo_data_free(d);
}

static void expect_error(const char *what, const char *jsonl, const char *word, int with_template) {
    emdpo_read_opts o;
    emdpo_read_opts_init(&o);
    char tp[128];
    snprintf(tp, sizeof tp, "%s", write_file("t.jinja", TEMPLATE));
    if (with_template) o.chat_template = tp;
    emdpo_data *d = NULL;
    emdpo_diag diag;
    int rc = emdpo_data_read_with(write_file("d.jsonl", jsonl), EMDPO_FORMAT_AUTO, &o, &d, &diag);
    CHECK_MSG(rc == EMDPO_ERR_PARSE && !d && strstr(diag.msg, word) && diag.line == 1, "%s: rc %d line %ld \"%s\"",
              what, rc, diag.line, diag.msg);
    emdpo_data_free(d);
}

#define U(c) "{\"role\": \"user\", \"content\": \"" c "\"}"
#define A(c) "{\"role\": \"assistant\", \"content\": \"" c "\"}"

static void test_conversations(void) {
    const char *ab[] = {"A</assistant>", "B</assistant>"};
    expect("explicit prompt ending with the user", "{\"prompt\": [" U("Q") "], \"chosen\": [" A("A") "], "
           "\"rejected\": [" A("B") "]}\n", "<user>Q</user><assistant>", ab, 2);
    expect("implicit prompt of messages", "{\"chosen\": [" U("Q") ", " A("A") "], \"rejected\": [" U("Q") ", " A("B")
           "]}\n", "<user>Q</user><assistant>", ab, 2);
    /* A string prompt with conversations: TRL ignores it and extracts. */
    expect("a prompt of the other kind", "{\"prompt\": \"ignored\", \"chosen\": [" U("Q") ", " A("A") "], "
           "\"rejected\": [" U("Q") ", " A("B") "]}\n", "<user>Q</user><assistant>", ab, 2);
    /* continue_final_message: the prompt ends where its last assistant
     * message's stripped content last appears. */
    const char *cont[] = {" </assistant><assistant> 4</assistant>", " </assistant><assistant> 5</assistant>"};
    expect("a prompt ending with the assistant", "{\"prompt\": [" U("Q") ", " A("The answer is ") "], \"chosen\": ["
           A(" 4") "], \"rejected\": [" A(" 5") "]}\n", "<user>Q</user><assistant>The answer is", cont, 2);
    const char *three[] = {"A</assistant>", "B</assistant>", "C</assistant>"};
    expect("a list of rejected conversations", "{\"prompt\": [" U("Q") "], \"chosen\": [" A("A") "], \"rejected\": [["
           A("B") "], [" A("C") "]]}\n", "<user>Q</user><assistant>", three, 3);
    expect("a ranking of conversations", "{\"prompt\": [" U("Q") "], \"ranking\": [[" A("A") "], [" A("B") "], ["
           A("C") "]]}\n", "<user>Q</user><assistant>", three, 3);
    expect_error("no template", "{\"prompt\": [" U("Q") "], \"chosen\": [" A("A") "], \"rejected\": [" A("B") "]}\n",
                 "needs a chat template", 0);
    expect_error("a prompt ending with the system", "{\"prompt\": [{\"role\": \"system\", \"content\": \"S\"}], "
                 "\"chosen\": [" A("A") "], \"rejected\": [" A("B") "]}\n", "\"system\"", 1);
    expect_error("mixed kinds", "{\"prompt\": \"P\", \"chosen\": [" A("A") "], \"rejected\": \"B\"}\n", "mix", 1);
    expect_error("content that is not a string", "{\"prompt\": [{\"role\": \"user\", \"content\": [1]}], "
                 "\"chosen\": [" A("A") "], \"rejected\": [" A("B") "]}\n", "\"content\" must be a string", 1);
    expect_error("a role that is not a string", "{\"prompt\": [{\"role\": null, \"content\": \"hi\"}], \"chosen\": ["
                 A("A") "], \"rejected\": [" A("B") "]}\n", "\"role\" must be a string", 1);
    expect_error("nothing shared", "{\"chosen\": [" U("Q") ", " A("A") "], \"rejected\": [" U("R") ", " A("B")
                 "]}\n", "share no prompt", 1);
}

static void test_implicit_strings(void) {
    const char *sky[] = {" blue.", " green."};
    expect("the space before the split goes to the responses",
           "{\"chosen\": \"The sky is blue.\", \"rejected\": \"The sky is green.\"}\n", "The sky is", sky, 2);
    const char *whole[] = {"e", "e"};
    expect("no difference: the loop's last index", "{\"chosen\": \"same\", \"rejected\": \"same\"}\n", "sam", whole, 2);
    /* TRL's idx - 1 when the first characters differ is Python's -1. */
    const char *quirk[] = {" ", "x"};
    expect("TRL's negative index", "{\"chosen\": \"a b \", \"rejected\": \"x\"}\n", "a b", quirk, 2);
    /* Nothing shared: no prompt at all (TRL's empty one). */
    emdpo_read_opts o;
    emdpo_read_opts_init(&o);
    emdpo_data *d = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_data_read_with(write_file("d.jsonl", "{\"chosen\": \"abc\", \"rejected\": \"xyz\"}\n"),
                                      EMDPO_FORMAT_AUTO, &o, &d, &diag), EMDPO_OK);
    CHECK(d && (!d->dec_prompt || !d->dec_prompt[0]) && strcmp(d->item_text[0], "abc") == 0 && strcmp(d->item_text[1], "xyz") == 0);
    emdpo_data_free(d);
    /* The last characters share their first byte, not the character. */
    const char *cp[] = {"\xC3\xA9", "\xC3\xA0"};
    expect("characters, not bytes", "{\"chosen\": \"\xC3\xA9t\xC3\xA9\", \"rejected\": \"\xC3\xA9t\xC3\xA0\"}\n",
           "\xC3\xA9t", cp, 2);
}

static void test_files(void) {
    emdpo_read_opts o;
    emdpo_read_opts_init(&o);
    o.annotator_field = "user_id";
    const char *lines = "{\"user_id\": \"u1\", \"chosen\": \"ab\", \"rejected\": \"ac\"}\n"
                        "{\"user_id\": 7, \"prompt\": \"p\", \"chosen\": \"x\", \"rejected\": \"y\"}\n"
                        "{\"chosen\": \"q\", \"rejected\": \"r\"}\n";
    emdpo_data *a = NULL, *b = NULL, *c = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_data_read_with(write_file("f.jsonl", lines), EMDPO_FORMAT_AUTO, &o, &a, &diag), EMDPO_OK);
    CHECK(a && emdpo_data_n_annotators(a) == 3 && strcmp(a->annot_name[1], "7") == 0);
    /* The same records as one JSON array, and gzip-compressed. */
    write_file("f.json", "[{\"user_id\": \"u1\", \"chosen\": \"ab\", \"rejected\": \"ac\"},\n"
                         " {\"user_id\": 7, \"prompt\": \"p\", \"chosen\": \"x\", \"rejected\": \"y\"},\n"
                         " {\"chosen\": \"q\", \"rejected\": \"r\"}]\n");
    CHECK_EQ_INT(emdpo_data_read_with(path_of("f.json"), EMDPO_FORMAT_AUTO, &o, &b, &diag), EMDPO_OK);
    gzFile gz = gzopen(path_of("f.jsonl.gz"), "wb");
    gzputs(gz, lines);
    gzclose(gz);
    CHECK_EQ_INT(emdpo_data_read_with(path_of("f.jsonl.gz"), EMDPO_FORMAT_AUTO, &o, &c, &diag), EMDPO_OK);
    for (int i = 0; a && b && c && i < 3; i++) {
        CHECK(strcmp(a->annot_name[i], b->annot_name[i]) == 0);
        CHECK(strcmp(a->annot_name[i], c->annot_name[i]) == 0);
        CHECK(strcmp(a->item_text[a->dec_item[i]], b->item_text[b->dec_item[i]]) == 0);
        CHECK(strcmp(a->item_text[a->dec_item[i]], c->item_text[c->dec_item[i]]) == 0);
    }
    emdpo_data_free(a);
    emdpo_data_free(b);
    emdpo_data_free(c);
    /* A record of the array is named by its number, at the line where it
     * begins; a truncated gzip file is a read error. */
    write_file("g.json", "[{\"chosen\": \"a\", \"rejected\": \"b\"},\n\n 3]");
    CHECK_EQ_INT(emdpo_data_read_with(path_of("g.json"), EMDPO_FORMAT_AUTO, &o, &a, &diag), EMDPO_ERR_PARSE);
    CHECK(diag.line == 3 && strstr(diag.msg, "record 2"));
    /* a record without an annotator is its own, named by its number */
    write_file("h.json", "[\n\n{\"chosen\": \"a\", \"rejected\": \"b\"},\n\n {\"chosen\": \"c\", \"rejected\": \"d\"}]");
    emdpo_read_opts plain;
    emdpo_read_opts_init(&plain);
    CHECK_EQ_INT(emdpo_data_read_with(path_of("h.json"), EMDPO_FORMAT_AUTO, &plain, &a, &diag), EMDPO_OK);
    CHECK(a && a->n_annot == 2 && strcmp(a->annot_name[0], "line1") == 0 && strcmp(a->annot_name[1], "line2") == 0);
    emdpo_data_free(a);
    FILE *fp = fopen(path_of("f.jsonl.gz"), "r+b");
    if (!fp || ftruncate(fileno(fp), 20) != 0) abort();
    fclose(fp);
    CHECK_EQ_INT(emdpo_data_read_with(path_of("f.jsonl.gz"), EMDPO_FORMAT_AUTO, &o, &a, &diag), EMDPO_ERR_IO);
    o.annotator_field = "worker_id";
    CHECK_EQ_INT(emdpo_data_read_with(path_of("f.jsonl"), EMDPO_FORMAT_AUTO, &o, &a, &diag), EMDPO_ERR_PARSE);
    CHECK(strstr(diag.msg, "no record has the annotator field \"worker_id\"") != NULL);
    o.annotator_field = "";
    CHECK_EQ_INT(emdpo_data_read_with(path_of("f.jsonl"), EMDPO_FORMAT_AUTO, &o, &a, &diag), EMDPO_ERR_INVALID_ARG);
}

static void test_csv_columns(void) {
    emdpo_read_opts o;
    emdpo_read_opts_init(&o);
    o.csv_id = "person";
    o.csv_task = "q";
    o.csv_alt = "option";
    o.csv_choice = "pick";
    write_file("l.csv", "person,q,option,pick,x1\np1,1,1,1,1\np1,1,2,0,0\np2,1,1,0,1\np2,1,2,1,0\n");
    emdpo_data *d = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_data_read_with(path_of("l.csv"), EMDPO_FORMAT_AUTO, &o, &d, &diag), EMDPO_OK);
    CHECK(d && emdpo_data_n_annotators(d) == 2 && emdpo_data_n_features(d) == 1);
    emdpo_data_free(d);
    write_file("l.csv", "person,q,option,pick,x1\np1,1,1,x,1\np1,1,2,0,0\n");
    CHECK_EQ_INT(emdpo_data_read_with(path_of("l.csv"), EMDPO_FORMAT_AUTO, &o, &d, &diag), EMDPO_ERR_PARSE);
    CHECK(strstr(diag.msg, "column \"pick\"") != NULL && diag.line == 2);
    CHECK_EQ_INT(emdpo_data_read_with(path_of("l.csv"), EMDPO_FORMAT_AUTO, NULL, &d, &diag), EMDPO_ERR_PARSE);
    CHECK(strstr(diag.msg, "missing column \"annotator\"") != NULL);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/emdpo_chatdata_%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return 1;
    test_conversations();
    test_implicit_strings();
    test_files();
    test_csv_columns();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return check_report("test_chat_data");
}
