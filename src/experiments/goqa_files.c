/* The GlobalOpinionQA files that fill a question bank (experiments/goqa.h):
 * the reconstructed index and the subset file (JSONL) and the original CSV,
 * whose columns are Python literals (base/pylit.h). */
#include "experiments/goqa.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/lines.h"
#include "base/pylit.h"
#include "base/utf8.h"

/* What a country's distribution is worth: usable, absent (a NaN, which the
 * original data uses for "not asked"), or bad. */
enum { DIST_OK, DIST_ABSENT, DIST_NEGATIVE, DIST_ZERO, DIST_INFINITE };

static int dist_check(const double *v, int k) {
    double s = 0;
    for (int j = 0; j < k; j++)
        if (isnan(v[j])) return DIST_ABSENT;
    for (int j = 0; j < k; j++) {
        if (isinf(v[j])) return DIST_INFINITE;
        if (v[j] < 0) return DIST_NEGATIVE;
        s += v[j];
    }
    return s > 0 ? DIST_OK : DIST_ZERO;
}

static const char *dist_problem(int check) {
    return check == DIST_NEGATIVE ? "has a negative probability"
           : check == DIST_ZERO   ? "sums to 0"
                                  : "has an infinite value";
}

/* Which name to look a requested country up under: Britain falls back to
 * Great Britain when merging and the record lacks Britain. */
static const char *fallback_name(const emdpo_goqa_opts *o, const char *country) {
    return o->merge_great_britain && strcmp(country, "Britain") == 0 ? "Great Britain" : NULL;
}

/* Options as text: numbers like Python's repr minus a trailing ".0". */
static void format_number(double x, char *buf, size_t n) {
    if (x == floor(x) && fabs(x) < 1e15)
        snprintf(buf, n, "%.0f", x);
    else
        snprintf(buf, n, "%.17g", x);
}

/* ---- Shared pieces of the file loaders ---------------------------------- */

/* Option texts of a JSON array of strings and numbers, into owned strings. */
typedef struct option_list {
    char **s;
    int n;
} option_list;

static void option_list_free(option_list *ol) {
    if (ol->s)
        for (int j = 0; j < ol->n; j++) emdpo_strfree(ol->s[j]);
    emdpo_free(ol->s, (size_t)ol->n * sizeof(char *));
    ol->s = NULL;
    ol->n = 0;
}

static int option_list_alloc(option_list *ol, size_t n) {
    ol->n = 0;
    ol->s = NULL;
    if (n > 100000) return EMDPO_ERR_LIMIT;
    if (n && !(ol->s = emdpo_calloc(n, sizeof(char *)))) return EMDPO_ERR_NOMEM;
    ol->n = (int)n;
    return 0;
}

/* Options from a JSON array. */
static int json_options(const emdpo_json *arr, option_list *ol, const char **why) {
    *why = NULL;
    ol->s = NULL; /* empty, so that the caller may free it whatever happens */
    ol->n = 0;
    if (!arr || arr->type != EMDPO_JSON_ARRAY) {
        *why = "'options' must be an array";
        return EMDPO_ERR_PARSE;
    }
    int rc = option_list_alloc(ol, arr->len);
    if (rc) {
        if (rc == EMDPO_ERR_LIMIT) *why = "too many options";
        return rc == EMDPO_ERR_LIMIT ? EMDPO_ERR_PARSE : rc;
    }
    for (size_t j = 0; j < arr->len; j++) {
        const emdpo_json *e = &arr->u.elems[j];
        char num[64];
        const char *s;
        if (e->type == EMDPO_JSON_STRING) {
            if (strlen(e->u.str) != e->len) {
                *why = "an option holds a NUL character";
                return EMDPO_ERR_PARSE;
            }
            s = e->u.str;
        } else if (e->type == EMDPO_JSON_NUMBER) {
            format_number(e->num, num, sizeof num);
            s = num;
        } else {
            *why = "options must be strings or numbers";
            return EMDPO_ERR_PARSE;
        }
        if (!(ol->s[j] = emdpo_strdup(s))) return EMDPO_ERR_NOMEM;
    }
    return 0;
}

/* A JSON array of k numbers into v. */
static int json_probs(const emdpo_json *arr, int k, double *v) {
    if (!arr || arr->type != EMDPO_JSON_ARRAY || arr->len != (size_t)k) return -1;
    for (int j = 0; j < k; j++) {
        if (arr->u.elems[j].type != EMDPO_JSON_NUMBER) return -1;
        v[j] = arr->u.elems[j].num;
    }
    return 0;
}

static const char *json_str(const emdpo_json *obj, const char *key) {
    const emdpo_json *v = emdpo_json_get(obj, key);
    return v && v->type == EMDPO_JSON_STRING && strlen(v->u.str) == v->len ? v->u.str : NULL;
}

/* ---- The reconstructed index ---------------------------------------------- */

/* 1: accept, 0: refuse, -1: not an est_method the index defines. */
static int method_accepted(const emdpo_goqa_opts *o, const char *m) {
    static const char suffix[] = "+K_ge_14_low_confidence";
    size_t n = strlen(m), base = n;
    const char *plus = strchr(m, '+');
    int low = 0;
    if (plus) {
        if (strcmp(plus, suffix) != 0) return -1;
        base = (size_t)(plus - m);
        low = 1;
    }
    static const char *const names[] = {"unique", "no_truncation_detected", "ambiguous_prior",
                                        "asis_no_hyp", "fit_failed", "ambiguous_top"};
    int which = -1;
    for (int i = 0; i < 6; i++)
        if (strlen(names[i]) == base && memcmp(m, names[i], base) == 0) which = i;
    if (which < 0) return -1;
    if (low && !o->low_confidence) return 0;
    if (which < 2) return 1;
    return which < 4 && o->est == EMDPO_GOQA_EST_ALL;
}

typedef struct index_ctx {
    const emdpo_goqa_opts *o;
    emdpo_goqa_bank *b;
    emdpo_json_doc *doc;
    double *rows;   /* (n_countries, rows_k) */
    size_t rows_k;
    const char *name;
    emdpo_diag *diag;
} index_ctx;

static int index_line(index_ctx *x, const char *line, size_t len, long lineno) {
    const emdpo_json *root;
    emdpo_json_error jerr;
    int rc = emdpo_json_parse(x->doc, line, len, &root, &jerr);
    if (rc == EMDPO_ERR_PARSE)
        return emdpo_diag_at(x->diag, rc, x->name, lineno, "%s (byte %zu)", jerr.msg, jerr.offset + 1);
    if (rc) return rc;
    if (root->type != EMDPO_JSON_OBJECT) return emdpo_diag_at(x->diag, EMDPO_ERR_PARSE, x->name, lineno, "not a JSON object");
    const char *text = json_str(root, "question");
    const emdpo_json *row = emdpo_json_get(root, "row");
    const emdpo_json *dists = emdpo_json_get(root, "dists");
    if (!text) return emdpo_diag_at(x->diag, EMDPO_ERR_PARSE, x->name, lineno, "'question' must be a string");
    if (!row || row->type != EMDPO_JSON_NUMBER || !row->is_int)
        return emdpo_diag_at(x->diag, EMDPO_ERR_PARSE, x->name, lineno, "'row' must be an integer");
    if (!dists || dists->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_at(x->diag, EMDPO_ERR_PARSE, x->name, lineno, "'dists' must be an object");
    option_list ol;
    const char *why;
    if ((rc = json_options(emdpo_json_get(root, "options"), &ol, &why))) {
        option_list_free(&ol);
        return why ? emdpo_diag_at(x->diag, rc, x->name, lineno, "%s", why) : rc;
    }
    x->b->n_records++;
    x->b->n_questions++;
    int nc = x->b->n_countries, k = ol.n, present = 1, accepted = 1;
    /* One row per requested country plus a scratch row (never 0 bytes). */
    size_t need = k > 0 ? (size_t)k : 1;
    if (need > x->rows_k) {
        double *r = emdpo_realloc(x->rows, (size_t)(nc + 1) * x->rows_k * sizeof(double),
                                  (size_t)(nc + 1) * need * sizeof(double));
        if (!r) {
            option_list_free(&ol);
            return EMDPO_ERR_NOMEM;
        }
        x->rows = r;
        x->rows_k = need;
    }
    /* Every country's estimate is checked, requested or not, so that bad data never passes silently. */
    for (size_t i = 0; i < dists->len; i++) {
        const emdpo_json *d = &dists->u.members[i].value;
        const char *m = json_str(d, "est_method");
        const emdpo_json *est = emdpo_json_get(d, "est");
        double *r = x->rows + (size_t)nc * (size_t)k;
        const char *bad = NULL;
        int chk;
        if (d->type != EMDPO_JSON_OBJECT || !m) bad = "needs a string 'est_method'";
        else if (method_accepted(x->o, m) < 0) bad = "has an unknown 'est_method'";
        else if (!est) bad = "lacks 'est'";
        else if (est->type == EMDPO_JSON_NULL) continue;
        else if (json_probs(est, k, r)) bad = "'est' must be null or one number per option";
        else if ((chk = dist_check(r, k)) != DIST_OK) bad = dist_problem(chk);
        if (bad) {
            option_list_free(&ol);
            return emdpo_diag_at(x->diag, EMDPO_ERR_PARSE, x->name, lineno, "'%s': the estimate %s",
                            dists->u.members[i].key, bad);
        }
    }
    const double *dist[EMDPO_GOQA_MAX_COUNTRIES];
    const char *methods[EMDPO_GOQA_MAX_COUNTRIES];
    for (int c = 0; c < nc && present; c++) {
        const char *name = x->b->countries[c], *alt = fallback_name(x->o, name);
        const emdpo_json *d = emdpo_json_get(dists, name);
        if (!d && alt) d = emdpo_json_get(dists, alt);
        if (!d) {
            present = 0;
            if (x->o->strict) {
                option_list_free(&ol);
                return emdpo_diag_at(x->diag, EMDPO_ERR_PARSE, x->name, lineno, "the question has no '%s' distribution", name);
            }
            break;
        }
        const emdpo_json *est = emdpo_json_get(d, "est");
        methods[c] = json_str(d, "est_method");
        if (est->type == EMDPO_JSON_NULL || method_accepted(x->o, methods[c]) != 1) {
            accepted = 0;
            continue;
        }
        double *r = x->rows + (size_t)c * (size_t)k;
        json_probs(est, k, r); /* cannot fail: checked above */
        dist[c] = r;
    }
    if (present) {
        x->b->n_present++;
        if (!accepted) x->b->n_filtered++;
        else rc = emdpo_goqa_bank_add(x->b, text, k, (const char *const *)ol.s, dist, methods, row->inum);
    }
    option_list_free(&ol);
    return rc;
}

int emdpo_goqa_load_index(const char *path, const emdpo_goqa_opts *o, emdpo_goqa_bank **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_goqa_opts def;
    if (emdpo_goqa_opts_resolve(&o, &def)) return EMDPO_ERR_INVALID_ARG;
    emdpo_lines lr = {0};
    if (!(lr.fp = fopen(path, "rb"))) return emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    index_ctx x = {.o = o, .name = path, .diag = diag};
    int rc = emdpo_goqa_bank_new(EMDPO_GOQA_INDEX, o, &x.b);
    if (!rc) rc = emdpo_json_doc_create(&x.doc);
    int got = 1;
    while (!rc) {
        if ((rc = emdpo_lines_next(&lr, &got)) || !got) break;
        if (emdpo_line_is_blank(lr.buf, lr.len)) continue;
        rc = index_line(&x, lr.buf, lr.len, lr.lineno);
    }
    if (rc == EMDPO_ERR_IO) emdpo_diag_at(diag, rc, path, lr.lineno, "read error: %s", strerror(errno));
    emdpo_lines_free(&lr);
    fclose(lr.fp);
    emdpo_json_doc_free(x.doc);
    if (x.b) emdpo_free(x.rows, (size_t)(x.b->n_countries + 1) * x.rows_k * sizeof(double));
    if (rc) {
        emdpo_goqa_bank_free(x.b);
        return rc;
    }
    *out = x.b;
    return 0;
}

/* ---- Grouping per-country records into questions (subset file) --------- */

typedef struct qgroup {
    char *key;       /* question text, then "\x1f" and each option followed by "\x1f" */
    size_t key_len;
    char *text;
    option_list ol;
    double *dist;    /* (slots, n_options); slot n_countries holds Great Britain when merging */
    unsigned have;   /* bit per slot */
    int64_t origin;
} qgroup;

typedef struct qtable {
    qgroup *g;
    size_t n, cap;
    int64_t *slots;  /* open addressing over g; -1 empty */
    size_t n_slots;
    int n_dist;      /* dist slots per group */
} qtable;

static void qgroup_clear(qgroup *g, int n_dist) {
    emdpo_free(g->key, g->key_len + 1);
    emdpo_strfree(g->text);
    emdpo_free(g->dist, (size_t)n_dist * (size_t)g->ol.n * sizeof(double));
    option_list_free(&g->ol);
}

static void qtable_free(qtable *t) {
    for (size_t i = 0; i < t->n; i++) qgroup_clear(&t->g[i], t->n_dist);
    emdpo_free(t->g, t->cap * sizeof(qgroup));
    emdpo_free(t->slots, t->n_slots * sizeof(int64_t));
}

static int qtable_rehash(qtable *t, size_t n_slots) {
    int64_t *slots = emdpo_malloc(n_slots * sizeof(int64_t));
    if (!slots) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < n_slots; i++) slots[i] = -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = emdpo_hash_bytes(t->g[i].key, t->g[i].key_len) & (n_slots - 1);
        while (slots[h] >= 0) h = (h + 1) & (n_slots - 1);
        slots[h] = (int64_t)i;
    }
    emdpo_free(t->slots, t->n_slots * sizeof(int64_t));
    t->slots = slots;
    t->n_slots = n_slots;
    return 0;
}

/* The group of (text, options: at least one), created when new; takes
 * ownership of *ol in that case. */
static int qtable_intern(qtable *t, const char *text, option_list *ol, int64_t origin, qgroup **out) {
    size_t len = strlen(text) + 1;
    for (int j = 0; j < ol->n; j++) len += strlen(ol->s[j]) + 1;
    char *key = emdpo_malloc(len + 1);
    if (!key) return EMDPO_ERR_NOMEM;
    char *p = key;
    p += sprintf(p, "%s\x1f", text);
    for (int j = 0; j < ol->n; j++) p += sprintf(p, "%s\x1f", ol->s[j]);
    if ((t->n + 1) * 2 > t->n_slots && qtable_rehash(t, t->n_slots ? t->n_slots * 2 : 256)) {
        emdpo_free(key, len + 1);
        return EMDPO_ERR_NOMEM;
    }
    size_t h = emdpo_hash_bytes(key, len) & (t->n_slots - 1);
    for (; t->slots[h] >= 0; h = (h + 1) & (t->n_slots - 1)) {
        qgroup *g = &t->g[t->slots[h]];
        if (g->key_len == len && memcmp(g->key, key, len) == 0) {
            emdpo_free(key, len + 1);
            *out = g;
            return 0;
        }
    }
    int rc = emdpo_grow((void **)&t->g, &t->cap, t->n + 1, sizeof(qgroup));
    qgroup *g = rc ? NULL : &t->g[t->n];
    if (g) {
        memset(g, 0, sizeof *g);
        g->text = emdpo_strdup(text);
        g->dist = emdpo_calloc((size_t)t->n_dist * (size_t)ol->n, sizeof(double));
        if (!g->text || !g->dist) {
            emdpo_strfree(g->text);
            emdpo_free(g->dist, (size_t)t->n_dist * (size_t)ol->n * sizeof(double));
            rc = EMDPO_ERR_NOMEM;
        }
    }
    if (rc) {
        emdpo_free(key, len + 1);
        return EMDPO_ERR_NOMEM;
    }
    g->key = key;
    g->key_len = len;
    g->ol = *ol;
    ol->s = NULL;
    ol->n = 0;
    g->origin = origin;
    t->slots[h] = (int64_t)t->n++;
    *out = g;
    return 0;
}

/* Moves the complete groups into the bank, in first-appearance order. */
static int qtable_to_bank(qtable *t, const emdpo_goqa_opts *o, emdpo_goqa_bank *b, const char *name,
                          emdpo_diag *diag) {
    int nc = b->n_countries;
    b->n_questions = (int64_t)t->n;
    for (size_t i = 0; i < t->n; i++) {
        qgroup *g = &t->g[i];
        const double *dist[EMDPO_GOQA_MAX_COUNTRIES];
        int present = 1;
        for (int c = 0; c < nc && present; c++) {
            int slot = c;
            if (!(g->have >> c & 1u) && fallback_name(o, b->countries[c])) slot = nc;
            if (!(g->have >> slot & 1u)) {
                present = 0;
                if (o->strict)
                    return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, (long)g->origin,
                                    "the question has no '%s' record", b->countries[c]);
            } else {
                dist[c] = g->dist + (size_t)slot * (size_t)g->ol.n;
            }
        }
        if (!present) continue;
        b->n_present++;
        int rc = emdpo_goqa_bank_add(b, g->text, g->ol.n, (const char *const *)g->ol.s, dist, NULL, g->origin);
        if (rc) return rc;
    }
    return 0;
}

/* The dist slot a record's country fills, or -1 when it is not wanted. */
static int country_slot(const emdpo_goqa_bank *b, const emdpo_goqa_opts *o, const char *country) {
    for (int c = 0; c < b->n_countries; c++)
        if (strcmp(country, b->countries[c]) == 0) return c;
    for (int c = 0; c < b->n_countries; c++) {
        const char *alt = fallback_name(o, b->countries[c]);
        if (alt && strcmp(country, alt) == 0) return b->n_countries;
    }
    return -1;
}

static int subset_line(const emdpo_goqa_opts *o, emdpo_goqa_bank *b, qtable *t, emdpo_json_doc *doc,
                       const char *line, size_t len, long lineno, const char *name, emdpo_diag *diag) {
    const emdpo_json *root;
    emdpo_json_error jerr;
    int rc = emdpo_json_parse(doc, line, len, &root, &jerr);
    if (rc == EMDPO_ERR_PARSE) return emdpo_diag_at(diag, rc, name, lineno, "%s (byte %zu)", jerr.msg, jerr.offset + 1);
    if (rc) return rc;
    if (root->type != EMDPO_JSON_OBJECT) return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, lineno, "not a JSON object");
    const char *text = json_str(root, "question"), *country = json_str(root, "country");
    if (!text || !country)
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, lineno, "'question' and 'country' must be strings");
    option_list ol;
    const char *why;
    if ((rc = json_options(emdpo_json_get(root, "options"), &ol, &why))) {
        option_list_free(&ol);
        return why ? emdpo_diag_at(diag, rc, name, lineno, "%s", why) : rc;
    }
    if (ol.n < 1) {
        option_list_free(&ol);
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, lineno, "a question needs at least one option");
    }
    b->n_records++;
    qgroup *g;
    rc = qtable_intern(t, text, &ol, lineno, &g);
    option_list_free(&ol);
    if (rc) return rc;
    int slot = country_slot(b, o, country);
    double *row = g->dist + (size_t)(slot < 0 ? 0 : slot) * (size_t)g->ol.n;
    if (slot < 0 || (g->have >> slot & 1u)) {
        /* Not wanted, or a later survey year of a (question, country) already seen:
         * still validated so that a malformed record is reported wherever it is. */
        double *scratch = emdpo_malloc((size_t)g->ol.n * sizeof(double));
        if (!scratch) return EMDPO_ERR_NOMEM;
        int bad = json_probs(emdpo_json_get(root, "distribution"), g->ol.n, scratch);
        int chk = bad ? DIST_OK : dist_check(scratch, g->ol.n);
        emdpo_free(scratch, (size_t)g->ol.n * sizeof(double));
        if (bad) return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, lineno, "'distribution' must hold one number per option");
        if (chk != DIST_OK && chk != DIST_ABSENT)
            return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, lineno, "the distribution %s", dist_problem(chk));
        return 0;
    }
    if (json_probs(emdpo_json_get(root, "distribution"), g->ol.n, row))
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, lineno, "'distribution' must hold one number per option");
    int chk = dist_check(row, g->ol.n);
    if (chk == DIST_ABSENT) return 0;
    if (chk != DIST_OK) return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, lineno, "the distribution %s", dist_problem(chk));
    g->have |= 1u << slot;
    return 0;
}

int emdpo_goqa_load_subset(const char *path, const emdpo_goqa_opts *o, emdpo_goqa_bank **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_goqa_opts def;
    if (emdpo_goqa_opts_resolve(&o, &def)) return EMDPO_ERR_INVALID_ARG;
    emdpo_lines lr = {0};
    if (!(lr.fp = fopen(path, "rb"))) return emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    emdpo_goqa_bank *b = NULL;
    emdpo_json_doc *doc = NULL;
    qtable t = {0};
    int rc = emdpo_goqa_bank_new(EMDPO_GOQA_SUBSET, o, &b);
    if (!rc) rc = emdpo_json_doc_create(&doc);
    if (!rc) t.n_dist = b->n_countries + 1;
    int got = 1;
    while (!rc) {
        if ((rc = emdpo_lines_next(&lr, &got)) || !got) break;
        if (emdpo_line_is_blank(lr.buf, lr.len)) continue;
        rc = subset_line(o, b, &t, doc, lr.buf, lr.len, lr.lineno, path, diag);
    }
    if (rc == EMDPO_ERR_IO) emdpo_diag_at(diag, rc, path, lr.lineno, "read error: %s", strerror(errno));
    if (!rc) rc = qtable_to_bank(&t, o, b, path, diag);
    emdpo_lines_free(&lr);
    fclose(lr.fp);
    emdpo_json_doc_free(doc);
    qtable_free(&t);
    if (rc) {
        emdpo_goqa_bank_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- The original CSV ---------------------------------------------------- */

/* A CSV record reader with the name and diag its errors go to. */
typedef struct csv_ctx {
    emdpo_csv rec;
    const char *name;
    emdpo_diag *diag;
} csv_ctx;

/* Parses field i as a Python literal; errors name the line of the offending byte. */
static int csv_py(csv_ctx *r, int i, const char *col, emdpo_py **out) {
    const char *s = emdpo_csv_field(&r->rec, i);
    size_t len = strlen(s), off = 0;
    char msg[160];
    int rc = emdpo_py_parse(s, len, out, &off, msg, sizeof msg);
    if (rc != EMDPO_ERR_PARSE) return rc;
    long line = emdpo_csv_field_line(&r->rec, i);
    for (size_t k = 0; k < off && k < len; k++) line += s[k] == '\n';
    return emdpo_diag_at(r->diag, rc, r->name, line, "%s: %s (column %zu of the field)", col, msg, off + 1);
}

static int csv_row(csv_ctx *r, const int *col, const emdpo_goqa_opts *o, emdpo_goqa_bank *b, double *rows) {
    emdpo_py *opts = NULL, *sel = NULL;
    option_list ol = {0};
    const char *text = emdpo_csv_field(&r->rec, col[0]);
    int rc = csv_py(r, col[2], "options", &opts);
    if (!rc) rc = csv_py(r, col[1], "selections", &sel);
    if (rc) goto done;
    long line = r->rec.rec_line;
    if (opts->type != EMDPO_PY_LIST || opts->len < 1) {
        rc = emdpo_diag_at(r->diag, EMDPO_ERR_PARSE, r->name, emdpo_csv_field_line(&r->rec, col[2]), "options must be a non-empty list");
        goto done;
    }
    if (sel->type != EMDPO_PY_DICT) {
        rc = emdpo_diag_at(r->diag, EMDPO_ERR_PARSE, r->name, emdpo_csv_field_line(&r->rec, col[1]), "selections must be a dict");
        goto done;
    }
    if (emdpo_utf8_invalid_at(text, strlen(text)) < strlen(text)) {
        rc = emdpo_diag_at(r->diag, EMDPO_ERR_PARSE, r->name, emdpo_csv_field_line(&r->rec, col[0]), "the question is not valid UTF-8");
        goto done;
    }
    if ((rc = option_list_alloc(&ol, opts->len))) {
        if (rc == EMDPO_ERR_LIMIT) rc = emdpo_diag_at(r->diag, EMDPO_ERR_PARSE, r->name, line, "too many options");
        goto done;
    }
    int k = ol.n, nc = b->n_countries, present = 1;
    for (int j = 0; j < k; j++) {
        const emdpo_py *e = &opts->elems[j];
        char num[64];
        if (e->type == EMDPO_PY_NUM && isfinite(e->num)) format_number(e->num, num, sizeof num);
        else if (e->type != EMDPO_PY_STR) {
            rc = emdpo_diag_at(r->diag, EMDPO_ERR_PARSE, r->name, emdpo_csv_field_line(&r->rec, col[2]), "option %d is neither a string nor a number", j + 1);
            goto done;
        }
        if (!(ol.s[j] = emdpo_strdup(e->type == EMDPO_PY_STR ? e->str : num))) {
            rc = EMDPO_ERR_NOMEM;
            goto done;
        }
    }
    /* Every country's list is checked, wanted or not, so bad data never passes silently. */
    for (size_t i = 0; i < sel->len; i++) {
        const emdpo_py *v = &sel->elems[2 * i + 1];
        int bad = v->type != EMDPO_PY_LIST || v->len != (size_t)k;
        for (size_t j = 0; !bad && j < v->len; j++) bad = v->elems[j].type != EMDPO_PY_NUM;
        if (bad) {
            rc = emdpo_diag_at(r->diag, EMDPO_ERR_PARSE, r->name, emdpo_csv_field_line(&r->rec, col[1]),
                          "selections['%.40s'] must be a list of %d numbers (one per option)", sel->elems[2 * i].str, k);
            goto done;
        }
    }
    const double *dist[EMDPO_GOQA_MAX_COUNTRIES];
    for (int c = 0; c < nc; c++) {
        const char *alt = fallback_name(o, b->countries[c]);
        const emdpo_py *v = emdpo_py_get(sel, b->countries[c]);
        if (!v && alt) v = emdpo_py_get(sel, alt);
        double *row = rows + (size_t)c * (size_t)k;
        int chk = DIST_ABSENT;
        if (v) {
            for (int j = 0; j < k; j++) row[j] = v->elems[j].num;
            chk = dist_check(row, k);
        }
        if (chk == DIST_ABSENT) {
            if (o->strict) {
                rc = emdpo_diag_at(r->diag, EMDPO_ERR_PARSE, r->name, line, "the question has no '%s' distribution", b->countries[c]);
                goto done;
            }
            present = 0;
            continue;
        }
        if (chk != DIST_OK) {
            rc = emdpo_diag_at(r->diag, EMDPO_ERR_PARSE, r->name, emdpo_csv_field_line(&r->rec, col[1]), "selections['%s'] %s", b->countries[c], dist_problem(chk));
            goto done;
        }
        dist[c] = row;
    }
    b->n_records++;
    b->n_questions++;
    if (present) {
        b->n_present++;
        rc = emdpo_goqa_bank_add(b, text, k, (const char *const *)ol.s, dist, NULL, line);
    }
done:
    option_list_free(&ol);
    emdpo_py_free(opts);
    emdpo_py_free(sel);
    return rc;
}

int emdpo_goqa_parse_csv(const char *buf, size_t len, const char *name, const emdpo_goqa_opts *o,
                         emdpo_goqa_bank **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_goqa_opts def;
    if (emdpo_goqa_opts_resolve(&o, &def)) return EMDPO_ERR_INVALID_ARG;
    emdpo_diag_reset(diag, name);
    csv_ctx r = {.name = name, .diag = diag};
    emdpo_csv_init_buf(&r.rec, buf, len);
    emdpo_goqa_bank *b = NULL;
    double *rows = NULL;
    size_t rows_n = 0;
    int got = 0, rc = emdpo_goqa_bank_new(EMDPO_GOQA_CSV, o, &b);
    if (rc) return rc;
    rc = emdpo_csv_next(&r.rec, &got, diag);
    int col[3];
    if (!rc && !got) {
        rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, 0, "empty file: no header");
    } else if (!rc) {
        static const char *const required[3] = {"question", "selections", "options"};
        for (int c = 0; c < 3 && !rc; c++)
            if ((col[c] = emdpo_csv_column(&r.rec, required[c])) < 0)
                rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r.rec.rec_line, "header lacks the column '%s'",
                                   required[c]);
    }
    int header_nf = r.rec.nf;
    while (!rc && !(rc = emdpo_csv_next(&r.rec, &got, diag)) && got) {
        if (r.rec.nf != header_nf) {
            rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r.rec.rec_line, "expected %d fields, found %d", header_nf,
                               r.rec.nf);
            break;
        }
        /* Room for every country's row at the widest option count the record could have. */
        size_t need = (size_t)b->n_countries * (strlen(emdpo_csv_field(&r.rec, col[2])) / 2 + 1);
        if (need > rows_n) {
            double *nr = emdpo_realloc(rows, rows_n * sizeof(double), need * sizeof(double));
            if (!nr) {
                rc = EMDPO_ERR_NOMEM;
                break;
            }
            rows = nr;
            rows_n = need;
        }
        rc = csv_row(&r, col, o, b, rows);
    }
    if (!rc && !b->n_records) rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, r.rec.line, "no data rows");
    emdpo_csv_free(&r.rec);
    emdpo_free(rows, rows_n * sizeof(double));
    if (rc) {
        emdpo_goqa_bank_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

int emdpo_goqa_load_csv(const char *path, const emdpo_goqa_opts *o, emdpo_goqa_bank **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, path);
    char *buf;
    size_t len;
    int rc = emdpo_file_read(path, &buf, &len, diag);
    if (rc) return rc;
    rc = emdpo_goqa_parse_csv(buf, len, path, o, out, diag);
    emdpo_free(buf, len + 1);
    return rc;
}
