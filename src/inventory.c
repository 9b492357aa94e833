#include "inventory.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

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

static int set_diag(emdpo_diag *diag, int rc, const char *file, long line, const char *fmt, ...) {
    if (!diag) return rc;
    snprintf(diag->file, sizeof diag->file, "%s", file ? file : "");
    diag->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- CSV records ------------------------------------------------------ */

typedef struct csv_reader {
    const char *p, *end;
    long line;          /* physical line of p, 1-based */
    char *buf;          /* field bytes of the current record, each NUL-terminated */
    size_t buf_len, buf_cap;
    size_t *off;        /* (nf) start of each field in buf */
    size_t off_cap;
    int nf;
    long rec_line;      /* line where the current record starts */
    const char *name;
    emdpo_diag *diag;
} csv_reader;

static int csv_put(csv_reader *r, char c) {
    if (emdpo_grow((void **)&r->buf, &r->buf_cap, r->buf_len + 1, 1)) return EMDPO_ERR_NOMEM;
    r->buf[r->buf_len++] = c;
    return EMDPO_OK;
}

/* A record ends at "\n", "\r\n", or a "\r" that is the last byte. */
static int csv_at_eol(const csv_reader *r) {
    return r->p < r->end && (*r->p == '\n' || (*r->p == '\r' && (r->p + 1 == r->end || r->p[1] == '\n')));
}

static void csv_skip_eol(csv_reader *r) {
    if (*r->p == '\r') r->p++;
    if (r->p < r->end && *r->p == '\n') {
        r->p++;
        r->line++;
    }
}

static const char *csv_field(const csv_reader *r, int i) { return r->buf + r->off[i]; }

#define CSV_END (-1) /* csv_next: no record left; distinct from every status */

/* Reads the next non-blank record: a status, or CSV_END. */
static int csv_next(csv_reader *r) {
    while (csv_at_eol(r)) csv_skip_eol(r);
    if (r->p >= r->end) return CSV_END;
    r->rec_line = r->line;
    r->buf_len = 0;
    r->nf = 0;
    for (;;) {
        if (emdpo_grow((void **)&r->off, &r->off_cap, (size_t)r->nf + 1, sizeof(size_t)))
            return EMDPO_ERR_NOMEM;
        r->off[r->nf++] = r->buf_len;
        if (r->p < r->end && *r->p == '"') {
            long open_line = r->line;
            r->p++;
            for (;;) {
                if (r->p >= r->end)
                    return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, open_line,
                                    "unterminated quoted field");
                char c = *r->p++;
                if (c == '"') {
                    if (r->p < r->end && *r->p == '"') {
                        r->p++;
                    } else {
                        break;
                    }
                } else if (c == '\n') {
                    r->line++;
                }
                if (csv_put(r, c)) return EMDPO_ERR_NOMEM;
            }
            if (r->p < r->end && *r->p != ',' && !csv_at_eol(r))
                return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, r->line,
                                "unexpected character after a closing quote");
        } else {
            while (r->p < r->end && *r->p != ',' && !csv_at_eol(r)) {
                if (*r->p == '"')
                    return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, r->line,
                                    "quote inside an unquoted field");
                if (csv_put(r, *r->p++)) return EMDPO_ERR_NOMEM;
            }
        }
        if (csv_put(r, '\0')) return EMDPO_ERR_NOMEM;
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end) csv_skip_eol(r);
        return EMDPO_OK;
    }
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

static uint64_t hash_text(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

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
        size_t h = hash_text(t->text[i]) & (n_slots - 1);
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
    size_t h = hash_text(s) & (t->n_slots - 1);
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

static int find_column(const csv_reader *r, const char *name) {
    for (int i = 0; i < r->nf; i++)
        if (strcmp(csv_field(r, i), name) == 0) return i;
    return -1;
}

static int parse_rows(csv_reader *r, phrase_table *t) {
    int rc = csv_next(r);
    if (rc == CSV_END) return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, 0, "empty file: no header");
    if (rc) return rc;
    static const char *const required[3] = {"text", "label_ocean", "key"};
    int col[3];
    for (int c = 0; c < 3; c++) {
        if ((col[c] = find_column(r, required[c])) < 0)
            return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, r->rec_line,
                            "header lacks the column '%s'", required[c]);
    }
    int header_nf = r->nf;
    int64_t row = 0;
    while ((rc = csv_next(r)) == EMDPO_OK) {
        if (r->nf != header_nf)
            return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, r->rec_line,
                            "expected %d fields, found %d", header_nf, r->nf);
        const char *text = csv_field(r, col[0]);
        const char *trait = csv_field(r, col[1]);
        const char *key = csv_field(r, col[2]);
        if (!text[0]) return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, r->rec_line, "empty text");
        int ti = trait_index(trait);
        if (ti < 0)
            return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, r->rec_line,
                            "label_ocean must be one of O, C, E, A, N, not '%.40s'", trait);
        int k;
        if (strcmp(key, "1") == 0) {
            k = 1;
        } else if (strcmp(key, "-1") == 0) {
            k = -1;
        } else if (strcmp(key, "0") == 0) {
            k = 0;
        } else {
            return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, r->rec_line,
                            "key must be 1, -1 or 0, not '%.40s'", key);
        }
        size_t idx;
        if (phrase_table_intern(t, text, &idx)) return EMDPO_ERR_NOMEM;
        trait_votes *v = &t->votes[idx * EMDPO_N_TRAITS + (size_t)ti];
        if (!v->count[k + 1]) v->first[k + 1] = row;
        v->count[k + 1]++;
        row++;
    }
    if (rc != CSV_END) return rc;
    if (!row) return set_diag(r->diag, EMDPO_ERR_PARSE, r->name, r->line, "no data rows");
    return EMDPO_OK;
}

int emdpo_inventory_parse_mpi(const char *buf, size_t len, const char *name, emdpo_inventory **out,
                              emdpo_diag *diag) {
    *out = NULL;
    csv_reader r = {.p = buf, .end = buf + len, .line = 1, .name = name, .diag = diag};
    /* A UTF-8 byte order mark would otherwise become part of the first column name. */
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) r.p += 3;
    phrase_table t = {0};
    int rc = parse_rows(&r, &t);
    emdpo_free(r.buf, r.buf_cap);
    emdpo_free(r.off, r.off_cap * sizeof(size_t));
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
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return set_diag(diag, EMDPO_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = EMDPO_OK;
    for (;;) {
        if (emdpo_grow((void **)&buf, &cap, len + 65536, 1)) {
            rc = EMDPO_ERR_NOMEM;
            break;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) rc = set_diag(diag, EMDPO_ERR_IO, path, 0, "read error");
            break;
        }
    }
    fclose(f);
    if (!rc) rc = emdpo_inventory_parse_mpi(buf, len, path, out, diag);
    emdpo_free(buf, cap);
    return rc;
}
