/* emdpo simulate --dataset goqa: preference data whose latent types are
 * countries answering GlobalOpinionQA-style survey questions (the paper's
 * section 5.1 / appendix D.1 setting). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "cli.h"
#include "experiments/goqa.h"

#define CMD "simulate"
#define COUNTRY_BUF 1024

typedef struct goqa_args {
    const char *dataset, *bank, *bank_file, *countries, *weights, *est, *out, *format;
    const char *test_out, *list_questions;
    int64_t annotators, test_annotators;
    int questions, rejected, low_confidence, merge_gb, strict, list_options;
    uint64_t seed;
} goqa_args;

/* Splits "a,b,c" into names (pointing into buf). Returns the count or -1. */
static int split_countries(const char *s, char *buf, const char **names) {
    if (strlen(s) >= COUNTRY_BUF) return -1;
    strcpy(buf, s);
    int n = 0;
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        if (!*p || n == EMDPO_GOQA_MAX_COUNTRIES) return -1;
        names[n++] = p;
        if (!comma) return n;
        p = comma + 1;
    }
}

static const char *source_name(emdpo_goqa_source s) {
    switch (s) {
    case EMDPO_GOQA_INDEX: return "index";
    case EMDPO_GOQA_SUBSET: return "subset";
    case EMDPO_GOQA_CSV: return "csv";
    default: return "builtin";
    }
}

/* One JSON line per question used: what a run's types were built from. */
static int write_question_list(const char *path, const emdpo_goqa_bank *bank) {
    emdpo_afile af;
    memset(&af, 0, sizeof af);
    if (emdpo_afile_open(&af, path)) {
        fprintf(stderr, "emdpo %s: %s: cannot create: %s\n", CMD, path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    for (int64_t i = 0; i < bank->n; i++) {
        const emdpo_goqa_question *q = &bank->q[i];
        fprintf(af.fp, "{\"origin\": %" PRId64 ", \"question\": ", q->origin);
        cli_json_str(af.fp, q->text);
        fputs(", \"options\": [", af.fp);
        for (int j = 0; j < q->n_options; j++) {
            if (j) fputs(", ", af.fp);
            cli_json_str(af.fp, q->options[j]);
        }
        fputs("], \"dists\": {", af.fp);
        for (int c = 0; c < bank->n_countries; c++) {
            if (c) fputs(", ", af.fp);
            cli_json_str(af.fp, bank->countries[c]);
            fputs(": {\"p\": ", af.fp);
            cli_json_nums(af.fp, q->dist + (size_t)c * (size_t)q->n_options, q->n_options);
            fputs(", \"est_method\": ", af.fp);
            cli_json_str(af.fp, q->method ? q->method[c] : NULL);
            fputc('}', af.fp);
        }
        fputs("}}\n", af.fp);
    }
    if (emdpo_afile_commit(&af)) {
        fprintf(stderr, "emdpo %s: %s: write failed\n", CMD, path);
        return CLI_EXIT_FAIL;
    }
    return 0;
}

static int load_bank(const goqa_args *a, const emdpo_goqa_opts *o, emdpo_goqa_bank **bank) {
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc;
    if (strcmp(a->bank, "builtin") == 0) {
        if (a->bank_file) return cli_usage_error(CMD, "--bank-file needs --bank index, subset or csv");
        rc = emdpo_goqa_builtin(o, bank);
        if (rc == EMDPO_ERR_INVALID_ARG)
            return cli_usage_error(CMD, "the built-in bank's countries are %s, %s, %s and %s",
                                   emdpo_goqa_builtin_countries[0], emdpo_goqa_builtin_countries[1],
                                   emdpo_goqa_builtin_countries[2], emdpo_goqa_builtin_countries[3]);
    } else {
        if (!a->bank_file) return cli_usage_error(CMD, "--bank %s needs --bank-file", a->bank);
        if (strcmp(a->bank, "index") == 0) rc = emdpo_goqa_load_index(a->bank_file, o, bank, &diag);
        else if (strcmp(a->bank, "subset") == 0) rc = emdpo_goqa_load_subset(a->bank_file, o, bank, &diag);
        else if (strcmp(a->bank, "csv") == 0) rc = emdpo_goqa_load_csv(a->bank_file, o, bank, &diag);
        else return cli_usage_error(CMD, "--bank must be builtin, index, subset or csv");
    }
    if (rc == EMDPO_ERR_INVALID_ARG) return cli_usage_error(CMD, "--countries: duplicate or empty names");
    if (rc) {
        if (!diag.file[0] && a->bank_file) snprintf(diag.file, sizeof diag.file, "%s", a->bank_file);
        return cli_fail(CMD, rc, &diag, "cannot read the question bank");
    }
    return 0;
}

/* Simulates one split and writes it. */
static int run_split(const emdpo_goqa_bank *bank, emdpo_goqa_spec *spec, const char *path, int fmt, const char *what) {
    emdpo_data *d = NULL;
    int rc = emdpo_goqa_simulate(bank, spec, &d, NULL);
    if (rc == EMDPO_ERR_INVALID_ARG)
        return cli_usage_error(CMD, "fewer than --questions %d of the %" PRId64 " questions have more than %d options",
                               spec->questions, bank->n, spec->rejected);
    if (rc == EMDPO_ERR_LIMIT) return cli_usage_error(CMD, "--annotators x --questions is too large");
    if (rc) return cli_fail(CMD, rc, NULL, "simulation failed");
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    rc = emdpo_data_write(d, path, (emdpo_format)fmt, &diag);
    if (rc) {
        if (!diag.file[0]) snprintf(diag.file, sizeof diag.file, "%s", path);
        rc = cli_fail(CMD, rc, &diag, "cannot write data");
    } else {
        printf("wrote %s (%s): annotators a%" PRId64 "..a%" PRId64 ", %lld decisions of %d options\n", path, what,
               spec->first_annotator + 1, spec->first_annotator + spec->n_annotators, (long long)d->n_dec,
               1 + spec->rejected);
    }
    emdpo_data_free(d);
    return rc;
}

int cli_simulate_goqa(int argc, char **argv) {
    goqa_args a;
    memset(&a, 0, sizeof a);
    a.bank = "builtin";
    a.est = "exact";
    a.annotators = 1500;
    a.questions = 32;
    a.rejected = 1;
    a.seed = 1;
    cli_opt opts[] = {
        {"dataset", CLI_STR, &a.dataset, "NAME", "goqa (country opinions)", 1, 0},
        {"out", CLI_STR, &a.out, "FILE", "training data (.jsonl or .csv)", 1, 0},
        {"format", CLI_STR, &a.format, "FMT", "jsonl, csv or auto (by extension)", 0, 0},
        {"bank", CLI_STR, &a.bank, "SRC", "question bank: builtin, index, subset or csv (builtin)", 0, 0},
        {"bank-file", CLI_STR, &a.bank_file, "FILE", "the bank's file for index, subset or csv", 0, 0},
        {"countries", CLI_STR, &a.countries, "LIST",
         "types, comma-separated (Britain,Indonesia,Mexico,Pakistan; builtin: Arden,Belmora,Calvia,Dastra)", 0, 0},
        {"weights", CLI_STR, &a.weights, "LIST", "country proportions (.15,.20,.30,.35 for four; else equal)", 0, 0},
        {"merge-great-britain", CLI_FLAG, &a.merge_gb, NULL, "use Great Britain (WVS) where a question lacks Britain (Pew)", 0, 0},
        {"est-methods", CLI_STR, &a.est, "SET",
         "index estimates: exact (unique, no_truncation_detected) or all (+ ambiguous_prior, asis_no_hyp) (exact)", 0, 0},
        {"low-confidence", CLI_FLAG, &a.low_confidence, NULL, "index: also accept estimates for 14+ options", 0, 0},
        {"strict", CLI_FLAG, &a.strict, NULL, "a question lacking a country is an error, not skipped", 0, 0},
        {"annotators", CLI_I64, &a.annotators, "N", "training annotators (1500)", 0, 0},
        {"questions", CLI_INT, &a.questions, "Q", "questions per annotator, without replacement (32)", 0, 0},
        {"rejected", CLI_INT, &a.rejected, "R", "rejected options per decision (1: binary)", 0, 0},
        {"list-options", CLI_FLAG, &a.list_options, NULL, "list the options in each prompt", 0, 0},
        {"test-annotators", CLI_I64, &a.test_annotators, "N", "also simulate N test annotators (needs --test-out)", 0, 0},
        {"test-out", CLI_STR, &a.test_out, "FILE", "test data file", 0, 0},
        {"list-questions", CLI_STR, &a.list_questions, "FILE", "write the questions and distributions used (JSONL)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "random seed (1)", 0, 0},
    };
    cli_cmd cmd = {"simulate --dataset goqa", "Generate preference data from country opinions (GlobalOpinionQA style).",
                   "Each annotator draws a country c ~ weights and answers --questions distinct questions:\n"
                   "the chosen option ~ the country's answer distribution, the rejected option(s) uniformly\n"
                   "from the rest. Prompt = the question; responses = option texts; group = the country.\n"
                   "Test annotators continue the numbering (a<N+1>...) with their own random streams, so\n"
                   "they are independent of the training set. The paper's GPT-4 rephrasings are not\n"
                   "reproduced: every prompt is the question text. Britain (Pew) and Great Britain (WVS)\n"
                   "are distinct countries unless --merge-great-britain.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (strcmp(a.dataset, "goqa") != 0) return cli_usage_error(CMD, "--dataset must be goqa here");
    if (a.annotators < 1) return cli_usage_error(CMD, "--annotators must be >= 1");
    if (a.questions < 1) return cli_usage_error(CMD, "--questions must be >= 1");
    if (a.rejected < 1) return cli_usage_error(CMD, "--rejected must be >= 1");
    if (a.test_annotators < 0) return cli_usage_error(CMD, "--test-annotators must be >= 0");
    if ((a.test_annotators > 0) != (a.test_out != NULL))
        return cli_usage_error(CMD, "--test-annotators and --test-out go together");
    int fmt = cli_format(a.format);
    if (fmt < 0) return cli_usage_error(CMD, "--format must be jsonl, csv or auto");
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    char cbuf[COUNTRY_BUF];
    const char *names[EMDPO_GOQA_MAX_COUNTRIES];
    if (a.countries) {
        int n = split_countries(a.countries, cbuf, names);
        if (n < 1) return cli_usage_error(CMD, "--countries: 1 to %d non-empty comma-separated names", EMDPO_GOQA_MAX_COUNTRIES);
        o.countries = names;
        o.n_countries = n;
    }
    if (strcmp(a.est, "exact") == 0) o.est = EMDPO_GOQA_EST_EXACT;
    else if (strcmp(a.est, "all") == 0) o.est = EMDPO_GOQA_EST_ALL;
    else return cli_usage_error(CMD, "--est-methods must be exact or all");
    o.low_confidence = a.low_confidence;
    o.merge_great_britain = a.merge_gb;
    o.strict = a.strict;

    emdpo_goqa_bank *bank = NULL;
    if ((rc = load_bank(&a, &o, &bank))) return rc;
    double w[EMDPO_GOQA_MAX_COUNTRIES];
    emdpo_goqa_spec spec;
    emdpo_goqa_spec_init(&spec);
    if (a.weights) {
        int n = cli_parse_doubles(a.weights, w, EMDPO_GOQA_MAX_COUNTRIES), good = n == bank->n_countries;
        double s = 0;
        for (int c = 0; c < n; c++) {
            good &= w[c] >= 0;
            s += w[c];
        }
        if (!good || !(s > 0)) {
            rc = cli_usage_error(CMD, "--weights needs %d non-negative numbers, not all 0", bank->n_countries);
            goto done;
        }
        spec.weights = w;
    }
    printf("goqa: %" PRId64 " questions from the %s bank%s%s: %" PRId64 " records, %" PRId64
           " distinct questions, %" PRId64 " with all of ",
           bank->n, source_name(bank->source), a.bank_file ? " " : "", a.bank_file ? a.bank_file : "",
           bank->n_records, bank->n_questions, bank->n_present);
    for (int c = 0; c < bank->n_countries; c++) printf("%s%s", c ? "," : "", bank->countries[c]);
    if (bank->source == EMDPO_GOQA_INDEX)
        printf(", %" PRId64 " dropped by --est-methods %s%s", bank->n_filtered, a.est,
               a.low_confidence ? " (low-confidence accepted)" : "");
    printf("\n");
    if (a.list_questions && (rc = write_question_list(a.list_questions, bank))) goto done;
    spec.n_annotators = a.annotators;
    spec.questions = a.questions;
    spec.rejected = a.rejected;
    spec.list_options = a.list_options;
    spec.seed = a.seed;
    if ((rc = run_split(bank, &spec, a.out, fmt, "train"))) goto done;
    if (a.test_annotators > 0) {
        spec.first_annotator = a.annotators;
        spec.n_annotators = a.test_annotators;
        rc = run_split(bank, &spec, a.test_out, fmt, "test");
    }
done:
    emdpo_goqa_bank_free(bank);
    return rc;
}
