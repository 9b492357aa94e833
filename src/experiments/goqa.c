/* The built-in bank, the simulator and what emdpo/experimental.h offers of a bank (experiments/goqa.h). */
#include "experiments/goqa.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/json_write.h"
#include "base/rng.h"

/* ---- Built-in bank -------------------------------------------------------- */

static const char *const builtin_option_sets[][6] = {
    {"Strongly agree", "Somewhat agree", "Somewhat disagree", "Strongly disagree", NULL},
    {"Very important", "Somewhat important", "Not important", NULL},
    {"Yes", "No", "Not sure", NULL},
    {"Spend more", "Keep spending the same", "Spend less", NULL},
    {"Very good", "Somewhat good", "Neither good nor bad", "Somewhat bad", "Very bad", NULL},
    {"A great deal", "A fair amount", "Not very much", "Not at all", NULL},
    {"Every day", "A few times a week", "A few times a month", "Rarely", "Never", NULL},
    {"Better", "About the same", "Worse", NULL},
};

typedef struct builtin_question {
    const char *text;
    int set;
} builtin_question;

static const builtin_question builtin_questions[] = {
    {"Towns should keep their historic buildings even when repairs are costly.", 0},
    {"Children should learn a second language in primary school.", 0},
    {"Shops should be closed on one day of the week.", 0},
    {"People should be free to work from home if their job allows it.", 0},
    {"Public parks should stay open through the night.", 0},
    {"The voting age should be lowered to sixteen.", 0},
    {"Neighbours have a duty to look after each other's children.", 0},
    {"Music in restaurants should be kept quiet.", 0},
    {"Every adult should learn to swim.", 0},
    {"Cities should ban cars from their central streets.", 0},
    {"How important is it that elders are consulted on family decisions?", 1},
    {"How important is it to eat dinner together as a family?", 1},
    {"How important is it that your job is close to where you grew up?", 1},
    {"How important is religion in choosing a marriage partner?", 1},
    {"How important is it to own the home you live in?", 1},
    {"Should national holidays be moved to the nearest Monday?", 2},
    {"Should schools require uniforms?", 2},
    {"Should tipping in restaurants be replaced by higher wages?", 2},
    {"Would you accept a lower salary for a shorter working week?", 2},
    {"Should mobile phones be banned in classrooms?", 2},
    {"What should the government do about spending on rural roads?", 3},
    {"What should the government do about spending on public libraries?", 3},
    {"What should the government do about spending on the army?", 3},
    {"What should the government do about spending on space research?", 3},
    {"What should the government do about spending on national sport teams?", 3},
    {"Is the growing number of tourists good or bad for your country?", 4},
    {"Is it good or bad that more people now live alone?", 4},
    {"Is it good or bad that young people move abroad to study?", 4},
    {"Are online shops good or bad for your town?", 4},
    {"Is it good or bad that people marry later in life than before?", 4},
    {"How much do you trust newspapers?", 5},
    {"How much do you trust the police?", 5},
    {"How much do you trust large companies?", 5},
    {"How much do you trust scientists?", 5},
    {"How often do you talk with your neighbours?", 6},
    {"How often do you take part in a religious service?", 6},
    {"How often do you cook a meal from fresh ingredients?", 6},
    {"Compared with your parents at your age, is your standard of living better or worse?", 7},
    {"Will life for the next generation be better or worse than yours?", 7},
    {"Compared with five years ago, is your town a better or worse place to live?", 7},
};

#define BUILTIN_N ((int)(sizeof builtin_questions / sizeof builtin_questions[0]))
#define BUILTIN_MAX_OPTIONS 5

/* Made-up distributions: country c peaks on option (3q + c) mod k and falls
 * off geometrically with distance at its own rate, so the four countries
 * favour different options (or, when k = 3 puts two on the same peak, hold
 * it with clearly different certainty). */
static void builtin_dist(int q, int k, int c, double *out) {
    static const double sharpness[4] = {1.5, 1.0, 2.0, 0.6};
    int peak = (3 * q + c) % k;
    double s = 0;
    for (int j = 0; j < k; j++) s += out[j] = exp(-sharpness[c] * abs(j - peak));
    for (int j = 0; j < k; j++) out[j] /= s;
}

int emdpo_goqa_builtin(const emdpo_goqa_opts *o, emdpo_goqa_bank **out) {
    *out = NULL;
    emdpo_goqa_opts def;
    if (emdpo_goqa_opts_resolve(&o, &def)) return EMDPO_ERR_INVALID_ARG;
    int idx[EMDPO_GOQA_MAX_COUNTRIES];
    for (int c = 0; o->countries && c < o->n_countries && c < EMDPO_GOQA_MAX_COUNTRIES; c++) {
        idx[c] = -1;
        for (int d = 0; d < 4; d++)
            if (o->countries[c] && strcmp(o->countries[c], emdpo_goqa_builtin_countries[d]) == 0) idx[c] = d;
        if (idx[c] < 0) return EMDPO_ERR_INVALID_ARG;
    }
    emdpo_goqa_bank *b;
    int rc = emdpo_goqa_bank_new(EMDPO_GOQA_BUILTIN, o, &b);
    if (rc) return rc;
    if (!o->countries)
        for (int c = 0; c < 4; c++) idx[c] = c;
    double rows[EMDPO_GOQA_MAX_COUNTRIES][BUILTIN_MAX_OPTIONS];
    const double *dist[EMDPO_GOQA_MAX_COUNTRIES];
    for (int q = 0; q < BUILTIN_N; q++) {
        const char *const *opts = builtin_option_sets[builtin_questions[q].set];
        int k = 0;
        while (opts[k]) k++;
        for (int c = 0; c < b->n_countries; c++) {
            builtin_dist(q, k, idx[c], rows[c]);
            dist[c] = rows[c];
        }
        if ((rc = emdpo_goqa_bank_add(b, builtin_questions[q].text, k, opts, dist, NULL, q + 1))) {
            emdpo_goqa_bank_free(b);
            return rc;
        }
    }
    b->n_records = b->n_questions = b->n_present = BUILTIN_N;
    *out = b;
    return 0;
}

/* ---- Simulation ---------------------------------------------------------- */

void emdpo_goqa_spec_init(emdpo_goqa_spec *spec) {
    if (!spec) return;
    memset(spec, 0, sizeof *spec);
    spec->n_annotators = 1500;
    spec->questions = 32;
    spec->rejected = 1;
    spec->seed = 1;
}

/* "text\n\nOptions:\n1. a\n2. b" */
static char *prompt_with_options(const emdpo_goqa_question *q, size_t *size) {
    size_t n = strlen(q->text) + 16;
    for (int j = 0; j < q->n_options; j++) n += strlen(q->options[j]) + 16;
    char *s = emdpo_malloc(n);
    if (!s) return NULL;
    size_t used = (size_t)snprintf(s, n, "%s\n\nOptions:", q->text);
    for (int j = 0; j < q->n_options; j++) used += (size_t)snprintf(s + used, n - used, "\n%d. %s", j + 1, q->options[j]);
    *size = n;
    return s;
}

int emdpo_goqa_simulate(const emdpo_goqa_bank *bank, const emdpo_goqa_spec *spec, emdpo_data **out, int32_t *country,
                        emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!bank || !spec || spec->n_annotators < 1 || spec->first_annotator < 0 || spec->questions < 1 ||
        spec->rejected < 1 || bank->n_countries < 1 || bank->n_countries > EMDPO_GOQA_MAX_COUNTRIES)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "annotators, questions and rejected must be >= 1 and first_annotator >= 0");
    if (spec->n_annotators > INT64_MAX / spec->questions / ((int64_t)spec->rejected + 1) ||
        spec->first_annotator > INT64_MAX - spec->n_annotators)
        return emdpo_diag_fail(diag, EMDPO_ERR_LIMIT, "annotators x questions is too large");
    int nc = bank->n_countries;
    double w[EMDPO_GOQA_MAX_COUNTRIES], wsum = 0;
    static const double paper[4] = {0.15, 0.20, 0.30, 0.35};
    for (int c = 0; c < nc; c++) {
        w[c] = spec->weights ? spec->weights[c] : nc == 4 ? paper[c] : 1.0;
        if (!(w[c] >= 0) || !isfinite(w[c]))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "weights needs %d non-negative numbers, not all 0", nc);
        wsum += w[c];
    }
    if (!(wsum > 0))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "weights needs %d non-negative numbers, not all 0", nc);
    /* Questions that can show one chosen and `rejected` other options. */
    int64_t n_elig = 0;
    int max_k = 2;
    for (int64_t i = 0; i < bank->n; i++) {
        n_elig += bank->q[i].n_options > spec->rejected;
        if (bank->q[i].n_options > max_k) max_k = bank->q[i].n_options;
    }
    if (n_elig < spec->questions)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "questions %d: only %" PRId64 " of the %" PRId64 " questions have more than %d options",
                               spec->questions, n_elig, bank->n, spec->rejected);
    int64_t *elig = emdpo_malloc((size_t)n_elig * sizeof(int64_t));
    int64_t *perm = emdpo_malloc((size_t)n_elig * sizeof(int64_t));
    int *opt = emdpo_malloc((size_t)max_k * sizeof(int));
    const char **texts = emdpo_malloc((size_t)max_k * sizeof(char *));
    char **prompts = spec->list_options ? emdpo_calloc((size_t)bank->n, sizeof(char *)) : NULL;
    size_t *prompt_size = spec->list_options ? emdpo_calloc((size_t)bank->n, sizeof(size_t)) : NULL;
    emdpo_data_builder *b = NULL;
    int rc = !elig || !perm || !opt || !texts || (spec->list_options && (!prompts || !prompt_size)) ? EMDPO_ERR_NOMEM : 0;
    if (!rc) rc = emdpo_data_builder_create(0, &b);
    if (!rc) rc = emdpo_data_builder_reserve(b, spec->n_annotators * spec->questions,
                                        spec->n_annotators * spec->questions * (1 + spec->rejected));
    for (int64_t i = 0, e = 0; !rc && i < bank->n; i++) {
        if (bank->q[i].n_options <= spec->rejected) continue;
        elig[e++] = i;
        if (prompts && !(prompts[i] = prompt_with_options(&bank->q[i], &prompt_size[i]))) rc = EMDPO_ERR_NOMEM;
    }
    for (int64_t a = 0; !rc && a < spec->n_annotators; a++) {
        int64_t id = spec->first_annotator + a;
        emdpo_rng rng;
        emdpo_rng_seed(&rng, spec->seed, (uint64_t)id);
        int c = emdpo_rng_categorical(&rng, w, nc);
        if (country) country[a] = c;
        char name[32];
        snprintf(name, sizeof name, "a%" PRId64, id + 1);
        memcpy(perm, elig, (size_t)n_elig * sizeof(int64_t));
        for (int t = 0; !rc && t < spec->questions; t++) {
            /* Partial Fisher-Yates: perm[0..t] are the questions drawn so far. */
            int64_t pick = t + (int64_t)emdpo_rng_below(&rng, (uint64_t)(n_elig - t));
            int64_t qi = perm[pick];
            perm[pick] = perm[t];
            perm[t] = qi;
            const emdpo_goqa_question *q = &bank->q[qi];
            int k = q->n_options;
            int chosen = emdpo_rng_categorical(&rng, q->dist + (size_t)c * (size_t)k, k);
            /* opt[0] = chosen; the rest are the others, of which the first
             * `rejected` are then drawn uniformly without replacement. */
            opt[0] = chosen;
            for (int j = 0, m = 1; j < k; j++)
                if (j != chosen) opt[m++] = j;
            for (int r = 1; r <= spec->rejected; r++) {
                int s = r + (int)emdpo_rng_below(&rng, (uint64_t)(k - r));
                int tmp = opt[r];
                opt[r] = opt[s];
                opt[s] = tmp;
            }
            for (int r = 0; r <= spec->rejected; r++) texts[r] = q->options[opt[r]];
            rc = emdpo_data_builder_add(b, name, bank->countries[c], prompts ? prompts[qi] : q->text, 1 + spec->rejected, 1,
                                   NULL, texts);
        }
    }
    if (prompts && prompt_size)
        for (int64_t i = 0; i < bank->n; i++) emdpo_free(prompts[i], prompt_size[i]);
    emdpo_free(prompts, spec->list_options ? (size_t)bank->n * sizeof(char *) : 0);
    emdpo_free(prompt_size, spec->list_options ? (size_t)bank->n * sizeof(size_t) : 0);
    emdpo_free(elig, (size_t)n_elig * sizeof(int64_t));
    emdpo_free(perm, (size_t)n_elig * sizeof(int64_t));
    emdpo_free(opt, (size_t)max_k * sizeof(int));
    emdpo_free(texts, (size_t)max_k * sizeof(char *));
    if (rc) {
        emdpo_data_builder_free(b);
        return emdpo_diag_fail(diag, rc, "simulation failed: %s", emdpo_status_name(rc));
    }
    rc = emdpo_data_builder_finish(b, out);
    return rc ? emdpo_diag_fail(diag, rc, "simulation failed: %s", emdpo_status_name(rc)) : EMDPO_OK;
}

/* ---- What emdpo/experimental.h offers of a bank --------------------------- */

const char *emdpo_goqa_source_name(int s) {
    switch (s) {
    case EMDPO_GOQA_BUILTIN: return "builtin";
    case EMDPO_GOQA_INDEX: return "index";
    case EMDPO_GOQA_SUBSET: return "subset";
    case EMDPO_GOQA_CSV: return "csv";
    default: return NULL;
    }
}

const char *emdpo_goqa_est_name(int e) {
    return e == EMDPO_GOQA_EST_EXACT ? "exact" : e == EMDPO_GOQA_EST_ALL ? "all" : NULL;
}

const char *emdpo_goqa_builtin_country(int i) { return i >= 0 && i < 4 ? emdpo_goqa_builtin_countries[i] : NULL; }

int emdpo_goqa_bank_load(emdpo_goqa_source source, const char *path, const emdpo_goqa_opts *o, emdpo_goqa_bank **out,
                         emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    int rc;
    if (source == EMDPO_GOQA_BUILTIN) {
        if (path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "a bank file needs the source index, subset or csv");
        rc = emdpo_goqa_builtin(o, out);
        if (rc == EMDPO_ERR_INVALID_ARG)
            return emdpo_diag_fail(diag, rc, "the built-in bank's countries are %s, %s, %s and %s",
                                   emdpo_goqa_builtin_countries[0], emdpo_goqa_builtin_countries[1],
                                   emdpo_goqa_builtin_countries[2], emdpo_goqa_builtin_countries[3]);
        return rc ? emdpo_diag_fail(diag, rc, "out of memory") : EMDPO_OK;
    }
    if (!emdpo_goqa_source_name(source)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown bank source");
    if (!path)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "bank %s needs a bank file", emdpo_goqa_source_name(source));
    rc = source == EMDPO_GOQA_INDEX    ? emdpo_goqa_load_index(path, o, out, diag)
         : source == EMDPO_GOQA_SUBSET ? emdpo_goqa_load_subset(path, o, out, diag)
                                       : emdpo_goqa_load_csv(path, o, out, diag);
    if (rc == EMDPO_ERR_INVALID_ARG) return emdpo_diag_fail(diag, rc, "countries: duplicate or empty names");
    emdpo_diag_default_file(diag, path);
    return rc;
}

int emdpo_goqa_bank_source(const emdpo_goqa_bank *b) { return b ? (int)b->source : -1; }
int64_t emdpo_goqa_bank_n(const emdpo_goqa_bank *b) { return b ? b->n : 0; }
int64_t emdpo_goqa_bank_n_records(const emdpo_goqa_bank *b) { return b ? b->n_records : 0; }
int64_t emdpo_goqa_bank_n_questions(const emdpo_goqa_bank *b) { return b ? b->n_questions : 0; }
int64_t emdpo_goqa_bank_n_present(const emdpo_goqa_bank *b) { return b ? b->n_present : 0; }
int64_t emdpo_goqa_bank_n_filtered(const emdpo_goqa_bank *b) { return b ? b->n_filtered : 0; }
int emdpo_goqa_bank_n_countries(const emdpo_goqa_bank *b) { return b ? b->n_countries : 0; }
const char *emdpo_goqa_bank_country(const emdpo_goqa_bank *b, int c) {
    return b && c >= 0 && c < b->n_countries ? b->countries[c] : NULL;
}

/* One JSON line per question used: what a run's types were built from. */
static void write_questions(FILE *fp, const void *ctx) {
    const emdpo_goqa_bank *bank = ctx;
    for (int64_t i = 0; i < bank->n; i++) {
        const emdpo_goqa_question *q = &bank->q[i];
        fprintf(fp, "{\"origin\": %" PRId64 ", \"question\": ", q->origin);
        emdpo_json_str(fp, q->text);
        fputs(", \"options\": [", fp);
        for (int j = 0; j < q->n_options; j++) {
            if (j) fputs(", ", fp);
            emdpo_json_str(fp, q->options[j]);
        }
        fputs("], \"dists\": {", fp);
        for (int c = 0; c < bank->n_countries; c++) {
            if (c) fputs(", ", fp);
            emdpo_json_str(fp, bank->countries[c]);
            fputs(": {\"p\": ", fp);
            emdpo_json_nums(fp, q->dist + (size_t)c * (size_t)q->n_options, q->n_options);
            fputs(", \"est_method\": ", fp);
            emdpo_json_str(fp, q->method ? q->method[c] : NULL);
            fputc('}', fp);
        }
        fputs("}}\n", fp);
    }
}

int emdpo_goqa_bank_write_questions(const emdpo_goqa_bank *b, const char *path, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!b || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no bank or path");
    return emdpo_afile_write(path, write_questions, b, diag);
}
