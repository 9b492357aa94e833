#include "fitfile/table.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/hash.h"

void emdpo_table_free(emdpo_table *t) {
    if (!t) return;
    for (int c = 0; t->col && c < t->ncol; c++) emdpo_strfree(t->col[c]);
    emdpo_free(t->col, (size_t)t->ncol * sizeof *t->col);
    for (int64_t i = 0; i < t->n; i++) emdpo_strfree(t->annot[i]);
    emdpo_free(t->annot, t->annot_cap * sizeof *t->annot);
    emdpo_free(t->line, t->line_cap * sizeof *t->line);
    emdpo_free(t->v, t->v_cap * sizeof *t->v);
    emdpo_free(t->slots, t->n_slots * sizeof *t->slots);
    emdpo_free(t, sizeof *t);
}

int64_t emdpo_table_find(const emdpo_table *t, const char *id) {
    if (!t->n_slots) return -1;
    size_t mask = t->n_slots - 1;
    for (size_t h = emdpo_hash_str(id) & mask;; h = (h + 1) & mask) {
        int64_t v = t->slots[h];
        if (v < 0 || strcmp(t->annot[v], id) == 0) return v;
    }
}

static int rehash(emdpo_table *t, size_t n_slots) {
    int64_t *s = emdpo_malloc(n_slots * sizeof *s);
    if (!s) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < n_slots; i++) s[i] = -1;
    for (int64_t i = 0; i < t->n; i++) {
        size_t h = emdpo_hash_str(t->annot[i]) & (n_slots - 1);
        while (s[h] >= 0) h = (h + 1) & (n_slots - 1);
        s[h] = i;
    }
    emdpo_free(t->slots, t->n_slots * sizeof *t->slots);
    t->slots = s;
    t->n_slots = n_slots;
    return EMDPO_OK;
}

static int parse_value(const char *s, double lo, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && !*end && !errno && isfinite(*v) && *v >= lo;
}

static int header(emdpo_table *t, const emdpo_csv *r, const char *want, int min_cols, emdpo_diag *diag) {
    if (strcmp(emdpo_csv_field(r, 0), "annotator") != 0 || r->nf - 1 < min_cols)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "expected the header annotator,...");
    t->ncol = r->nf - 1;
    if (!(t->col = emdpo_calloc((size_t)t->ncol, sizeof *t->col))) return EMDPO_ERR_NOMEM;
    for (int c = 0; c < t->ncol; c++)
        if (!(t->col[c] = emdpo_strdup(emdpo_csv_field(r, c + 1)))) return EMDPO_ERR_NOMEM;
    t->wanted = -1;
    if (want) {
        for (int c = 0; c < t->ncol && t->wanted < 0; c++)
            if (strcmp(t->col[c], want) == 0) t->wanted = c;
        if (t->wanted < 0) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "no column '%.60s'", want);
    }
    return EMDPO_OK;
}

static int row(emdpo_table *t, const emdpo_csv *r, double lo, emdpo_diag *diag) {
    if (r->nf != t->ncol + 1)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%d fields, the header has %d", r->nf, t->ncol + 1);
    const char *id = emdpo_csv_field(r, 0);
    if (emdpo_table_find(t, id) >= 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "annotator '%.60s' given twice", id);
    int keep = t->wanted < 0 ? t->ncol : 1;
    size_t at = (size_t)t->n * (size_t)keep;
    if (emdpo_grow((void **)&t->annot, &t->annot_cap, (size_t)t->n + 1, sizeof *t->annot) ||
        emdpo_grow((void **)&t->line, &t->line_cap, (size_t)t->n + 1, sizeof *t->line) ||
        emdpo_grow((void **)&t->v, &t->v_cap, at + (size_t)keep, sizeof *t->v))
        return EMDPO_ERR_NOMEM;
    for (int c = 0; c < t->ncol; c++) {
        if (t->wanted >= 0 && c != t->wanted) continue;
        const char *s = emdpo_csv_field(r, c + 1);
        if (!parse_value(s, lo, &t->v[at++])) {
            if (lo == 0)
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s: expected a finite weight >= 0, not '%.40s'",
                                       t->col[c], s);
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s is not a number: '%.40s'", t->col[c], s);
        }
    }
    if (!(t->annot[t->n] = emdpo_strdup(id))) return EMDPO_ERR_NOMEM;
    t->line[t->n++] = r->rec_line;
    if ((size_t)t->n * 2 > t->n_slots) return rehash(t, t->n_slots ? 2 * t->n_slots : 64);
    size_t h = emdpo_hash_str(id) & (t->n_slots - 1);
    while (t->slots[h] >= 0) h = (h + 1) & (t->n_slots - 1);
    t->slots[h] = t->n - 1;
    return EMDPO_OK;
}

int emdpo_table_read(const char *path, const char *want, int min_cols, double lo, emdpo_table **out,
                     emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open: %s", strerror(errno));
    emdpo_table *t = emdpo_calloc(1, sizeof *t);
    emdpo_csv r;
    emdpo_csv_init_file(&r, fp);
    int got = 0, rc = t ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (int first = 1; !rc && !(rc = emdpo_csv_next(&r, &got, diag)) && got; first = 0) {
        rc = first ? header(t, &r, want, min_cols, diag) : row(t, &r, lo, diag);
        if (rc == EMDPO_ERR_PARSE && diag) diag->line = r.rec_line;
    }
    if (!rc && t->ncol == 0) rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "empty file");
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_set(diag, r.rec_line, "out of memory");
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, r.rec_line, "read error: %s", strerror(errno));
    emdpo_csv_free(&r);
    fclose(fp);
    if (rc) {
        emdpo_table_free(t);
        return rc;
    }
    *out = t;
    return EMDPO_OK;
}
