/* The question bank's storage: making, filling and freeing a bank
 * (experiments/goqa.h), below both the built-in bank (goqa.c) and the
 * file loaders (goqa_files.c). */
#include "experiments/goqa.h"

#include <string.h>

#include "base/alloc.h"

const char *const emdpo_goqa_paper_countries[4] = {"Britain", "Indonesia", "Mexico", "Pakistan"};
const char *const emdpo_goqa_builtin_countries[4] = {"Arden", "Belmora", "Calvia", "Dastra"};

static void question_clear(emdpo_goqa_question *q, int n_countries) {
    emdpo_strfree(q->text);
    if (q->options)
        for (int j = 0; j < q->n_options; j++) emdpo_strfree(q->options[j]);
    emdpo_free(q->options, (size_t)q->n_options * sizeof(char *));
    emdpo_free(q->dist, (size_t)n_countries * (size_t)q->n_options * sizeof(double));
    if (q->method)
        for (int c = 0; c < n_countries; c++) emdpo_strfree(q->method[c]);
    emdpo_free(q->method, (size_t)n_countries * sizeof(char *));
}

void emdpo_goqa_bank_free(emdpo_goqa_bank *bank) {
    if (!bank) return;
    for (int64_t i = 0; i < bank->n; i++) question_clear(&bank->q[i], bank->n_countries);
    emdpo_free(bank->q, bank->q_cap * sizeof(emdpo_goqa_question));
    if (bank->countries)
        for (int c = 0; c < bank->n_countries; c++) emdpo_strfree(bank->countries[c]);
    emdpo_free(bank->countries, (size_t)bank->n_countries * sizeof(char *));
    emdpo_free(bank, sizeof *bank);
}

void emdpo_goqa_opts_init(emdpo_goqa_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->est = EMDPO_GOQA_EST_EXACT;
}

int emdpo_goqa_bank_new(emdpo_goqa_source source, const emdpo_goqa_opts *o, emdpo_goqa_bank **out) {
    *out = NULL;
    const char *const *names = o->countries;
    int n = o->n_countries;
    if (!names) {
        names = source == EMDPO_GOQA_BUILTIN ? emdpo_goqa_builtin_countries : emdpo_goqa_paper_countries;
        n = 4;
    }
    if (n < 1 || n > EMDPO_GOQA_MAX_COUNTRIES) return EMDPO_ERR_INVALID_ARG;
    for (int c = 0; c < n; c++) {
        if (!names[c] || !names[c][0]) return EMDPO_ERR_INVALID_ARG;
        for (int d = 0; d < c; d++)
            if (strcmp(names[c], names[d]) == 0) return EMDPO_ERR_INVALID_ARG;
    }
    emdpo_goqa_bank *b = emdpo_calloc(1, sizeof *b);
    if (!b) return EMDPO_ERR_NOMEM;
    b->source = source;
    if (!(b->countries = emdpo_calloc((size_t)n, sizeof(char *)))) {
        emdpo_free(b, sizeof *b);
        return EMDPO_ERR_NOMEM;
    }
    b->n_countries = n;
    for (int c = 0; c < n; c++) {
        if (!(b->countries[c] = emdpo_strdup(names[c]))) {
            emdpo_goqa_bank_free(b);
            return EMDPO_ERR_NOMEM;
        }
    }
    *out = b;
    return 0;
}

int emdpo_goqa_bank_add(emdpo_goqa_bank *b, const char *text, int k, const char *const *options,
                    const double *const *dist, const char *const *methods, int64_t origin) {
    if (emdpo_grow((void **)&b->q, &b->q_cap, (size_t)b->n + 1, sizeof(emdpo_goqa_question)))
        return EMDPO_ERR_NOMEM;
    emdpo_goqa_question *q = &b->q[b->n];
    memset(q, 0, sizeof *q);
    int nc = b->n_countries;
    q->origin = origin;
    q->n_options = k;
    q->text = emdpo_strdup(text);
    q->options = emdpo_calloc((size_t)k, sizeof(char *));
    q->dist = emdpo_malloc((size_t)nc * (size_t)k * sizeof(double));
    if (methods) q->method = emdpo_calloc((size_t)nc, sizeof(char *));
    int rc = !q->text || !q->options || !q->dist || (methods && !q->method) ? EMDPO_ERR_NOMEM : 0;
    for (int j = 0; !rc && j < k; j++)
        if (!(q->options[j] = emdpo_strdup(options[j]))) rc = EMDPO_ERR_NOMEM;
    for (int c = 0; !rc && methods && c < nc; c++)
        if (!(q->method[c] = emdpo_strdup(methods[c]))) rc = EMDPO_ERR_NOMEM;
    if (rc) {
        question_clear(q, nc);
        return rc;
    }
    for (int c = 0; c < nc; c++) {
        double s = 0;
        for (int j = 0; j < k; j++) s += dist[c][j];
        for (int j = 0; j < k; j++) q->dist[(size_t)c * (size_t)k + (size_t)j] = dist[c][j] / s;
    }
    b->n++;
    return 0;
}

int emdpo_goqa_opts_resolve(const emdpo_goqa_opts **o, emdpo_goqa_opts *def) {
    if (!*o) {
        emdpo_goqa_opts_init(def);
        *o = def;
    }
    return (*o)->est == EMDPO_GOQA_EST_EXACT || (*o)->est == EMDPO_GOQA_EST_ALL ? EMDPO_OK : EMDPO_ERR_INVALID_ARG;
}
