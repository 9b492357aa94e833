#include "experiments/inventory.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/hash.h"

void emdpo_inventory_free(emdpo_inventory *inv) {
    if (!inv) return;
    size_t n = (size_t)inv->n;
    if (inv->text)
        for (size_t i = 0; i < n; i++) emdpo_strfree(inv->text[i]);
    emdpo_free(inv->text, n * sizeof(char *));
    emdpo_free(inv->score, n * EMDPO_N_TRAITS * sizeof(double));
    emdpo_free(inv, sizeof *inv);
}

/* An inventory of n phrases with NULL texts and zero scores; n >= 1. */
static int inventory_alloc(size_t n, emdpo_inventory **out) {
    emdpo_inventory *inv = emdpo_calloc(1, sizeof *inv);
    if (!inv) return EMDPO_ERR_NOMEM;
    inv->text = emdpo_calloc(n, sizeof(char *));
    inv->score = emdpo_calloc(n * EMDPO_N_TRAITS, sizeof(double));
    if (!inv->text || !inv->score) {
        emdpo_free(inv->text, n * sizeof(char *));
        emdpo_free(inv->score, n * EMDPO_N_TRAITS * sizeof(double));
        emdpo_free(inv, sizeof *inv);
        return EMDPO_ERR_NOMEM;
    }
    inv->n = (int64_t)n;
    *out = inv;
    return EMDPO_OK;
}

static int trait_index(const char *s) {
    if (!s[0] || s[1]) return -1;
    for (int t = 0; t < EMDPO_N_TRAITS; t++)
        if (s[0] == emdpo_trait_names[t][0]) return t;
    return -1;
}

int emdpo_inventory_builtin(emdpo_inventory **out) {
    if (!out) return EMDPO_ERR_INVALID_ARG;
    *out = NULL;
    size_t n = (size_t)emdpo_builtin_n_phrases;
    emdpo_inventory *inv;
    int rc = inventory_alloc(n, &inv);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        const emdpo_builtin_phrase *ph = &emdpo_builtin_phrases[i];
        char trait[2] = {ph->trait, 0};
        if (!(inv->text[i] = emdpo_strdup(ph->text))) {
            emdpo_inventory_free(inv);
            return EMDPO_ERR_NOMEM;
        }
        inv->score[i * EMDPO_N_TRAITS + trait_index(trait)] = ph->key;
    }
    *out = inv;
    return EMDPO_OK;
}

#define N_CELLS (2 * EMDPO_N_TRAITS + 1)

/* The (trait, key) cell of a phrase: 2t for key -1 on trait t, 2t + 1 for
 * +1, N_CELLS - 1 when every score is 0. The largest |score| decides; the
 * first trait wins ties. */
static int phrase_cell(const double *score) {
    int best = -1;
    for (int t = 0; t < EMDPO_N_TRAITS; t++)
        if (score[t] != 0 && (best < 0 || fabs(score[t]) > fabs(score[best]))) best = t;
    return best < 0 ? N_CELLS - 1 : 2 * best + (score[best] > 0);
}

int emdpo_inventory_subset(const emdpo_inventory *inv, int64_t n, emdpo_inventory **out) {
    if (!out) return EMDPO_ERR_INVALID_ARG;
    *out = NULL;
    if (!inv || n < 1 || n > inv->n) return EMDPO_ERR_INVALID_ARG;
    size_t total = (size_t)inv->n;
    int *cell = emdpo_malloc(total * sizeof *cell);
    emdpo_inventory *sub = NULL;
    int rc = cell ? inventory_alloc((size_t)n, &sub) : EMDPO_ERR_NOMEM;
    if (rc) {
        emdpo_free(cell, total * sizeof *cell);
        return rc;
    }
    for (size_t i = 0; i < total; i++) cell[i] = phrase_cell(inv->score + i * EMDPO_N_TRAITS);
    size_t next[N_CELLS] = {0}; /* per cell: where its scan resumes */
    int64_t taken = 0;
    while (!rc && taken < n) {
        for (int c = 0; c < N_CELLS && !rc && taken < n; c++) {
            size_t i = next[c];
            while (i < total && cell[i] != c) i++;
            next[c] = i + 1;
            if (i >= total) continue;
            if (!(sub->text[taken] = emdpo_strdup(inv->text[i]))) rc = EMDPO_ERR_NOMEM;
            else memcpy(sub->score + taken * EMDPO_N_TRAITS, inv->score + i * EMDPO_N_TRAITS,
                        EMDPO_N_TRAITS * sizeof(double));
            taken++;
        }
    }
    emdpo_free(cell, total * sizeof *cell);
    if (rc) {
        emdpo_inventory_free(sub);
        return rc;
    }
    *out = sub;
    return EMDPO_OK;
}

/* ---- Grouping rows into phrases ---------------------------------------- */

/* How the rows of one phrase voted on one trait; keys indexed key + 1. */
typedef struct trait_votes {
    int64_t count[3];
    int64_t first[3]; /* row number of the first vote for each key */
} trait_votes;

typedef struct phrase_table {
    char **text;            /* (n) */
    trait_votes *votes;     /* (n, EMDPO_N_TRAITS) */
    size_t n, text_cap, votes_cap;
    int64_t *slots;         /* open addressing over text; -1 empty */
    size_t n_slots;
} phrase_table;

static void phrase_table_free(phrase_table *t) {
    for (size_t i = 0; i < t->n; i++) emdpo_strfree(t->text[i]);
    emdpo_free(t->text, t->text_cap * sizeof(char *));
    emdpo_free(t->votes, t->votes_cap * sizeof(trait_votes));
    emdpo_free(t->slots, t->n_slots * sizeof(int64_t));
}

static int phrase_table_rehash(phrase_table *t, size_t n_slots) {
    int64_t *slots = emdpo_malloc(n_slots * sizeof(int64_t));
    if (!slots) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < n_slots; i++) slots[i] = -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = emdpo_hash_str(t->text[i]) & (n_slots - 1);
        while (slots[h] >= 0) h = (h + 1) & (n_slots - 1);
        slots[h] = (int64_t)i;
    }
    emdpo_free(t->slots, t->n_slots * sizeof(int64_t));
    t->slots = slots;
    t->n_slots = n_slots;
    return EMDPO_OK;
}

/* Index of the phrase with this text, added (with no votes) when new. */
static int phrase_table_intern(phrase_table *t, const char *s, size_t *idx) {
    if ((t->n + 1) * 2 > t->n_slots && phrase_table_rehash(t, t->n_slots ? t->n_slots * 2 : 256))
        return EMDPO_ERR_NOMEM;
    size_t h = emdpo_hash_str(s) & (t->n_slots - 1);
    for (; t->slots[h] >= 0; h = (h + 1) & (t->n_slots - 1)) {
        if (strcmp(t->text[t->slots[h]], s) == 0) {
            *idx = (size_t)t->slots[h];
            return EMDPO_OK;
        }
    }
    if (emdpo_grow((void **)&t->text, &t->text_cap, t->n + 1, sizeof(char *)) ||
        emdpo_grow((void **)&t->votes, &t->votes_cap, (t->n + 1) * EMDPO_N_TRAITS, sizeof(trait_votes)))
        return EMDPO_ERR_NOMEM;
    char *copy = emdpo_strdup(s);
    if (!copy) return EMDPO_ERR_NOMEM;
    t->text[t->n] = copy;
    memset(&t->votes[t->n * EMDPO_N_TRAITS], 0, EMDPO_N_TRAITS * sizeof(trait_votes));
    t->slots[h] = (int64_t)t->n;
    *idx = t->n++;
    return EMDPO_OK;
}

/* Majority key; a tie goes to the tied key whose first row came first. */
static double resolve_votes(const trait_votes *v) {
    int best = -1;
    for (int k = 0; k < 3; k++) {
        if (!v->count[k]) continue;
        if (best < 0 || v->count[k] > v->count[best] ||
            (v->count[k] == v->count[best] && v->first[k] < v->first[best]))
            best = k;
    }
    return best < 0 ? 0.0 : (double)(best - 1);
}

static int parse_rows(emdpo_csv *r, const char *name, emdpo_diag *diag, phrase_table *t) {
    int got, rc = emdpo_csv_next(r, &got, diag);
    if (rc) return rc;
    if (!got) return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, 0, "empty file: no header");
    static const char *const required[3] = {"text", "label_ocean", "key"};
    int col[3];
    for (int c = 0; c < 3; c++) {
        if ((col[c] = emdpo_csv_column(r, required[c])) < 0)
            return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r->rec_line, "header lacks the column '%s'",
                                 required[c]);
    }
    int header_nf = r->nf;
    int64_t row = 0;
    while (!(rc = emdpo_csv_next(r, &got, diag)) && got) {
        if (r->nf != header_nf)
            return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r->rec_line, "expected %d fields, found %d",
                                 header_nf, r->nf);
        const char *text = emdpo_csv_field(r, col[0]);
        const char *trait = emdpo_csv_field(r, col[1]);
        const char *key = emdpo_csv_field(r, col[2]);
        if (!text[0]) return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r->rec_line, "empty text");
        int ti = trait_index(trait);
        if (ti < 0)
            return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r->rec_line,
                                 "label_ocean must be one of O, C, E, A, N, not '%.40s'", trait);
        int k;
        if (strcmp(key, "1") == 0) {
            k = 1;
        } else if (strcmp(key, "-1") == 0) {
            k = -1;
        } else if (strcmp(key, "0") == 0) {
            k = 0;
        } else {
            return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r->rec_line, "key must be 1, -1 or 0, not '%.40s'",
                                 key);
        }
        size_t idx;
        if (phrase_table_intern(t, text, &idx)) return EMDPO_ERR_NOMEM;
        trait_votes *v = &t->votes[idx * EMDPO_N_TRAITS + (size_t)ti];
        if (!v->count[k + 1]) v->first[k + 1] = row;
        v->count[k + 1]++;
        row++;
    }
    if (rc) return rc;
    if (!row) return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r->line, "no data rows");
    return EMDPO_OK;
}

int emdpo_inventory_parse_mpi(const char *buf, size_t len, const char *name, emdpo_inventory **out,
                              emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, name);
    emdpo_csv r;
    emdpo_csv_init_buf(&r, buf, len);
    phrase_table t = {0};
    int rc = parse_rows(&r, name, diag, &t);
    emdpo_csv_free(&r);
    emdpo_inventory *inv = NULL;
    if (!rc) rc = inventory_alloc(t.n, &inv);
    if (rc) {
        phrase_table_free(&t);
        return rc;
    }
    for (size_t i = 0; i < t.n; i++) {
        inv->text[i] = t.text[i];
        for (int tr = 0; tr < EMDPO_N_TRAITS; tr++)
            inv->score[i * EMDPO_N_TRAITS + (size_t)tr] = resolve_votes(&t.votes[i * EMDPO_N_TRAITS + (size_t)tr]);
    }
    t.n = 0; /* the texts now belong to inv */
    phrase_table_free(&t);
    *out = inv;
    return EMDPO_OK;
}

int emdpo_inventory_load_mpi(const char *path, emdpo_inventory **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no inventory path");
    char *buf;
    size_t len;
    int rc = emdpo_file_read(path, &buf, &len, diag);
    if (rc) return rc;
    rc = emdpo_inventory_parse_mpi(buf, len, path, out, diag);
    emdpo_free(buf, len + 1);
    return rc;
}

int64_t emdpo_inventory_n(const emdpo_inventory *inv) { return inv ? inv->n : 0; }
