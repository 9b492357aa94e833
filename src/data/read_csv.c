/* Long CSV preference data, the choice modellers' layout (Stata lclogit, R
 * flexmix/apollo): one row per shown alternative, columns annotator, task,
 * alt, chosen, optional group, and every other column a feature. chosen is 1
 * for the pick, or 1..r for ranked alternatives, 0 for the rest. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/hash.h"
#include "base/utf8.h"
#include "data/parts.h"
#include "data/readers.h"

enum { COL_ANNOT, COL_TASK, COL_ALT, COL_CHOSEN, COL_GROUP, N_ROLES };

/* The (annotator, task) pairs already finished, so a task that resumes after
 * other rows is caught. Keys "annotator\0task" live back to back in pool. */
typedef struct task_set {
    char *pool;
    size_t pool_len, pool_cap;
    struct task_entry {
        size_t off, len;
        long line;
    } *entries;
    size_t n, entries_cap;
    int64_t *slots; /* -1 empty, else index into entries */
    size_t n_slots;
} task_set;

typedef struct csv_reader {
    emdpo_diag *diag;
    long line;
    emdpo_csv rec;      /* the current record */
    /* Header. */
    size_t n_cols;
    int col[N_ROLES];   /* column of each role, -1 when absent */
    const char *role_name[N_ROLES]; /* the header names of the roles (emdpo_read_opts) */
    size_t *feat_col;   /* (p) column of each feature */
    char **col_name;    /* (n_cols) */
    int p;
    /* The task being read. */
    char *key;          /* "annotator\0task\0group\0" of its first row */
    size_t key_cap, annot_len, task_len;
    int has_group;
    long first_line;
    size_t n_rows, rows_cap;
    double *x;          /* (n_rows, p) in row order */
    size_t x_cap;
    long *row_line;
    size_t row_line_cap;
    uint32_t *rank;     /* chosen value of each row */
    size_t rank_cap;
    int64_t *by_rank;   /* flush scratch: row of each rank */
    size_t by_rank_cap;
    double *xo;         /* flush scratch: x in preference order */
    size_t xo_cap;
    task_set done;
    emdpo_data_builder *b;
    /* Reading a part of the file under mpirun. */
    int part;
    emdpo_part_annots annots;
} csv_reader;

static char *field(const csv_reader *r, size_t c) { return emdpo_csv_field(&r->rec, (int)c); }

/* ---- Task set ---------------------------------------------------------- */

static void task_set_free(task_set *ts) {
    emdpo_free(ts->pool, ts->pool_cap);
    emdpo_free(ts->entries, ts->entries_cap * sizeof *ts->entries);
    emdpo_free(ts->slots, ts->n_slots * sizeof *ts->slots);
}

/* The entry holding key, or -1. */
static int64_t task_set_find(const task_set *ts, const char *key, size_t len) {
    if (!ts->n_slots) return -1;
    size_t mask = ts->n_slots - 1;
    for (size_t h = emdpo_hash_bytes(key, len) & mask;; h = (h + 1) & mask) {
        int64_t e = ts->slots[h];
        if (e < 0 || (ts->entries[e].len == len && memcmp(ts->pool + ts->entries[e].off, key, len) == 0))
            return e;
    }
}

static void task_set_place(task_set *ts, size_t e) {
    size_t mask = ts->n_slots - 1;
    size_t h = emdpo_hash_bytes(ts->pool + ts->entries[e].off, ts->entries[e].len) & mask;
    while (ts->slots[h] >= 0) h = (h + 1) & mask;
    ts->slots[h] = (int64_t)e;
}

/* Adds a key known to be absent. */
static int task_set_add(task_set *ts, const char *key, size_t len, long line) {
    if ((ts->n + 1) * 2 > ts->n_slots) {
        size_t n_slots = ts->n_slots ? ts->n_slots * 2 : 64;
        int64_t *slots = emdpo_malloc(n_slots * sizeof *slots);
        if (!slots) return EMDPO_ERR_NOMEM;
        for (size_t i = 0; i < n_slots; i++) slots[i] = -1;
        emdpo_free(ts->slots, ts->n_slots * sizeof *ts->slots);
        ts->slots = slots;
        ts->n_slots = n_slots;
        for (size_t e = 0; e < ts->n; e++) task_set_place(ts, e);
    }
    if (emdpo_grow((void **)&ts->pool, &ts->pool_cap, ts->pool_len + len, 1) ||
        emdpo_grow((void **)&ts->entries, &ts->entries_cap, ts->n + 1, sizeof *ts->entries))
        return EMDPO_ERR_NOMEM;
    memcpy(ts->pool + ts->pool_len, key, len);
    ts->entries[ts->n] = (struct task_entry){ts->pool_len, len, line};
    ts->pool_len += len;
    task_set_place(ts, ts->n++);
    return EMDPO_OK;
}

/* ---- Fields ------------------------------------------------------------ */

/* ---- Header ------------------------------------------------------------ */

static int read_header(csv_reader *r) {
    size_t n = (size_t)r->rec.nf;
    r->n_cols = n;
    for (int k = 0; k < N_ROLES; k++) r->col[k] = -1;
    if (!(r->col_name = emdpo_calloc(n, sizeof *r->col_name)) ||
        !(r->feat_col = emdpo_calloc(n, sizeof *r->feat_col)))
        return EMDPO_ERR_NOMEM;
    for (size_t c = 0; c < n; c++) {
        const char *name = field(r, c);
        if (!*name) return emdpo_diag_parse(r->diag, r->line, "column %zu of the header has no name", c + 1);
        for (size_t q = 0; q < c; q++)
            if (strcmp(r->col_name[q], name) == 0)
                return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\" appears twice in the header", name);
        if (!(r->col_name[c] = emdpo_strdup(name))) return EMDPO_ERR_NOMEM;
        int role = -1;
        for (int k = 0; k < N_ROLES; k++)
            if (strcmp(name, r->role_name[k]) == 0) role = k;
        if (role >= 0) r->col[role] = (int)c;
        else r->feat_col[r->p++] = c;
    }
    for (int k = 0; k < COL_GROUP; k++)
        if (r->col[k] < 0)
            return emdpo_diag_parse(r->diag, r->line, "missing column \"%.60s\" in the header", r->role_name[k]);
    if (r->p == 0) return emdpo_diag_parse(r->diag, r->line, "no feature columns in the header");
    const char **names = emdpo_malloc((size_t)r->p * sizeof *names);
    if (!names) return EMDPO_ERR_NOMEM;
    for (int j = 0; j < r->p; j++) names[j] = r->col_name[r->feat_col[j]];
    int rc = emdpo_data_builder_create(r->p, &r->b);
    if (!rc) rc = emdpo_data_builder_set_feature_names(r->b, names);
    emdpo_free((void *)names, (size_t)r->p * sizeof *names);
    return rc;
}

/* ---- Tasks ------------------------------------------------------------- */

static const char *task_group(const csv_reader *r) {
    return r->has_group ? r->key + r->annot_len + r->task_len + 2 : NULL;
}

static int groups_differ(const csv_reader *r, const char *group) {
    const char *before = task_group(r);
    if (!group || !before) return group != before;
    return strcmp(group, before) != 0;
}

static void describe_group(char *buf, size_t size, const char *group) {
    if (group) snprintf(buf, size, "group \"%.40s\"", group);
    else snprintf(buf, size, "no group");
}

static int group_mismatch(csv_reader *r, const char *annot, const char *group) {
    char before[64], now[64];
    describe_group(before, sizeof before, task_group(r));
    describe_group(now, sizeof now, group);
    return emdpo_diag_parse(r->diag, r->line, "annotator \"%.40s\" has %s on an earlier line and %s here", annot,
                            before, now);
}

/* Puts the ranked rows first, by rank, then the unranked ones in row order. */
static int order_rows(csv_reader *r, size_t n, size_t *n_ranked) {
    const char *annot = r->key, *task = r->key + r->annot_len + 1;
    if (emdpo_grow((void **)&r->by_rank, &r->by_rank_cap, n + 1, sizeof *r->by_rank)) return EMDPO_ERR_NOMEM;
    for (size_t k = 0; k <= n; k++) r->by_rank[k] = -1;
    size_t top = 0;
    for (size_t q = 0; q < n; q++) {
        size_t c = r->rank[q];
        if (!c) continue;
        r->line = r->row_line[q];
        if (c > n)
            return emdpo_diag_parse(r->diag, r->line,
                                    "rank %zu exceeds the %zu alternatives of task \"%.40s\" of annotator \"%.40s\"", c,
                                    n, task, annot);
        if (r->by_rank[c] >= 0) {
            long first = r->row_line[r->by_rank[c]];
            if (c == 1)
                return emdpo_diag_parse(r->diag, r->line,
                                        "two alternatives chosen (lines %ld and %ld) in task \"%.40s\" of annotator "
                                        "\"%.40s\"",
                                        first, r->line, task, annot);
            return emdpo_diag_parse(r->diag, r->line,
                                    "rank %zu given twice (lines %ld and %ld) in task \"%.40s\" of annotator \"%.40s\"",
                                    c, first, r->line, task, annot);
        }
        r->by_rank[c] = (int64_t)q;
        if (c > top) top = c;
    }
    r->line = r->first_line;
    if (top == 0)
        return emdpo_diag_parse(r->diag, r->line, "no alternative chosen in task \"%.40s\" of annotator \"%.40s\"",
                                task, annot);
    for (size_t c = 1; c <= top; c++)
        if (r->by_rank[c] < 0)
            return emdpo_diag_parse(r->diag, r->line,
                                    "rank %zu missing in task \"%.40s\" of annotator \"%.40s\" (ranks must be 1..%zu)",
                                    c, task, annot, top);
    size_t p = (size_t)r->p, o = 0;
    if (emdpo_grow((void **)&r->xo, &r->xo_cap, n * p, sizeof *r->xo)) return EMDPO_ERR_NOMEM;
    for (size_t c = 1; c <= top; c++)
        memcpy(r->xo + p * o++, r->x + p * (size_t)r->by_rank[c], p * sizeof *r->xo);
    for (size_t q = 0; q < n; q++)
        if (!r->rank[q]) memcpy(r->xo + p * o++, r->x + p * q, p * sizeof *r->xo);
    *n_ranked = top;
    return EMDPO_OK;
}

static int flush_task(csv_reader *r) {
    size_t n = r->n_rows, ranked = 0;
    if (n == 0) return EMDPO_OK;
    r->n_rows = 0;
    const char *annot = r->key, *task = annot + r->annot_len + 1;
    const char *group = task_group(r);
    r->line = r->first_line;
    if (n < 2)
        return emdpo_diag_parse(r->diag, r->line, "task \"%.40s\" of annotator \"%.40s\" has only one alternative",
                                task, annot);
    if (n > INT32_MAX)
        return emdpo_diag_parse(r->diag, r->line, "task \"%.40s\" of annotator \"%.40s\" has too many alternatives",
                                task, annot);
    int rc = order_rows(r, n, &ranked);
    if (rc) return rc;
    int stages = ranked == n ? (int)n - 1 : (int)ranked;
    rc = emdpo_data_builder_add(r->b, annot, group, NULL, (int)n, stages, r->xo, NULL);
    if (rc == EMDPO_ERR_PARSE) emdpo_diag_group_conflict(r->diag, r->first_line, annot, group);
    if (!rc) rc = task_set_add(&r->done, r->key, r->annot_len + 1 + r->task_len, r->first_line);
    return rc;
}

/* Starts a task at the current row, after checking it was not seen before. */
static int start_task(csv_reader *r, const char *annot, const char *task, const char *group) {
    size_t na = strlen(annot), nt = strlen(task), ng = group ? strlen(group) : 0;
    size_t need = na + nt + ng + 3;
    if (emdpo_grow((void **)&r->key, &r->key_cap, need, 1)) return EMDPO_ERR_NOMEM;
    memcpy(r->key, annot, na + 1);
    memcpy(r->key + na + 1, task, nt + 1);
    if (group) memcpy(r->key + na + nt + 2, group, ng + 1);
    r->annot_len = na;
    r->task_len = nt;
    r->has_group = group != NULL;
    r->first_line = r->line;
    int64_t e = task_set_find(&r->done, r->key, na + 1 + nt);
    if (e >= 0)
        return emdpo_diag_parse(
            r->diag, r->line,
            "task \"%.40s\" of annotator \"%.40s\" resumes here after other rows (it began on line %ld);"
            " the rows of a task must be adjacent",
            task, annot, r->done.entries[e].line);
    return EMDPO_OK;
}

static int same_task(const csv_reader *r, const char *annot, const char *task) {
    return r->n_rows && strcmp(r->key, annot) == 0 && strcmp(r->key + r->annot_len + 1, task) == 0;
}

/* ---- Rows -------------------------------------------------------------- */

static const char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

static int parse_rank(csv_reader *r, uint32_t *out) {
    const char *s = trim(field(r, (size_t)r->col[COL_CHOSEN]));
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++)
        if ((v = v * 10 + (uint64_t)(s[i] - '0')) > UINT32_MAX) v = UINT32_MAX; /* beyond any task size */
    if (i == 0 || s[i])
        return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\": expected a non-negative integer, got \"%.40s\"",
                                r->role_name[COL_CHOSEN], s);
    *out = (uint32_t)v;
    return EMDPO_OK;
}

static int parse_features(csv_reader *r, double *x) {
    for (int j = 0; j < r->p; j++) {
        size_t c = r->feat_col[j];
        const char *s = trim(field(r, c));
        char *end;
        if (!*s) return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\": empty feature value", r->col_name[c]);
        x[j] = strtod(s, &end);
        if (*end)
            return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\": \"%.40s\" is not a number", r->col_name[c], s);
        if (!isfinite(x[j]))
            return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\": \"%.40s\" is not a finite number",
                                    r->col_name[c], s);
    }
    return EMDPO_OK;
}

/* An identifier is UTF-8 of at most EMDPO_MAX_ID_BYTES: it is written back
 * to posterior and weight files. */
static int check_id(csv_reader *r, const char *id, int role) {
    size_t n = strlen(id);
    if (n > EMDPO_MAX_ID_BYTES)
        return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\": %zu bytes long; identifiers are at most %d bytes",
                                r->role_name[role], n, EMDPO_MAX_ID_BYTES);
    size_t bad = emdpo_utf8_invalid_at(id, n);
    if (bad < n)
        return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\": invalid UTF-8 at byte %zu", r->role_name[role],
                                bad + 1);
    return EMDPO_OK;
}

static int read_row(csv_reader *r) {
    if ((size_t)r->rec.nf != r->n_cols)
        return emdpo_diag_parse(r->diag, r->line, "row has %d fields, expected %zu (as in the header)", r->rec.nf,
                                r->n_cols);
    const char *annot = field(r, (size_t)r->col[COL_ANNOT]), *task = field(r, (size_t)r->col[COL_TASK]);
    const char *group = r->col[COL_GROUP] >= 0 ? field(r, (size_t)r->col[COL_GROUP]) : NULL;
    if (group && !*group) group = NULL;
    if (!*annot) return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\" is empty", r->role_name[COL_ANNOT]);
    if (!*task) return emdpo_diag_parse(r->diag, r->line, "column \"%.60s\" is empty", r->role_name[COL_TASK]);
    int rc;
    if ((rc = check_id(r, annot, COL_ANNOT)) || (rc = check_id(r, task, COL_TASK)) ||
        (group && (rc = check_id(r, group, COL_GROUP))))
        return rc;
    if (!same_task(r, annot, task)) {
        long here = r->line; /* errors in the finished task point at its own lines */
        if ((rc = flush_task(r))) return rc;
        r->line = here;
        /* Under mpirun each process reads whole annotators from its part. */
        if (r->part && (rc = emdpo_part_note(&r->annots, r->b, r->annots.n ? r->key : NULL, annot, r->line, r->diag)))
            return rc;
        if ((rc = start_task(r, annot, task, group))) return rc;
    } else if (groups_differ(r, group)) {
        return group_mismatch(r, annot, group);
    }
    size_t q = r->n_rows, p = (size_t)r->p;
    if (emdpo_grow((void **)&r->x, &r->x_cap, (q + 1) * p, sizeof *r->x) ||
        emdpo_grow((void **)&r->row_line, &r->row_line_cap, q + 1, sizeof *r->row_line) ||
        emdpo_grow((void **)&r->rank, &r->rank_cap, q + 1, sizeof *r->rank))
        return EMDPO_ERR_NOMEM;
    if ((rc = parse_rank(r, &r->rank[q])) || (rc = parse_features(r, r->x + q * p))) return rc;
    r->row_line[q] = r->line;
    r->n_rows++;
    return EMDPO_OK;
}

static void reader_free(csv_reader *r) {
    emdpo_csv_free(&r->rec);
    if (r->col_name)
        for (size_t c = 0; c < r->n_cols; c++) emdpo_strfree(r->col_name[c]);
    emdpo_free(r->col_name, r->n_cols * sizeof *r->col_name);
    emdpo_free(r->feat_col, r->n_cols * sizeof *r->feat_col);
    emdpo_free(r->key, r->key_cap);
    emdpo_free(r->x, r->x_cap * sizeof *r->x);
    emdpo_free(r->row_line, r->row_line_cap * sizeof *r->row_line);
    emdpo_free(r->rank, r->rank_cap * sizeof *r->rank);
    emdpo_free(r->by_rank, r->by_rank_cap * sizeof *r->by_rank);
    emdpo_free(r->xo, r->xo_cap * sizeof *r->xo);
    task_set_free(&r->done);
    emdpo_data_builder_free(r->b);
    emdpo_part_annots_free(&r->annots);
}

/* ---- Parts of the file (mpirun) ------------------------------------------
 * Each process reads the header, then only its part of the rows (parts.h):
 * an annotator starts at a row whose annotator differs from the row
 * before's. */

/* The rows' emdpo_part_scan_fn (ctx the reader). */
static int scan_part(void *ctx, FILE *fp, int64_t from, int64_t to, long line, int64_t first, const int64_t *want,
                     int n_want, int64_t *at, int64_t *n_starts, int64_t *n_rows) {
    csv_reader *r = ctx;
    char *prev = NULL;
    size_t prev_cap = 0;
    int64_t n = 0, rows = 0;
    int rc, got, k = 0;
    if (fseeko(fp, (off_t)from, SEEK_SET)) return EMDPO_ERR_IO;
    emdpo_csv_seek_file(&r->rec, from, line);
    while (!(rc = emdpo_csv_next(&r->rec, &got, r->diag)) && got) {
        int after = r->rec.rec_pos >= to;
        if (!after && r->rec.line - r->rec.rec_line > 1) {
            rc = emdpo_diag_parse(r->diag, r->rec.rec_line,
                                  "a quoted field spans lines; under mpirun each row must be one line");
            break;
        }
        /* A short row counts as an annotator of its own; reading it fails. */
        const char *annot = r->rec.nf > r->col[COL_ANNOT] ? field(r, (size_t)r->col[COL_ANNOT]) : "";
        if (prev && strcmp(prev, annot) != 0) {
            int64_t g = first + n++;
            while (k < n_want && want[k] < g) k++;
            for (int j = k; j < n_want && want[j] == g; j++) {
                at[2 * j] = r->rec.rec_pos;
                at[2 * j + 1] = r->rec.rec_line;
            }
        }
        if (after) break;
        rows++;
        size_t len = strlen(annot) + 1;
        if (emdpo_grow((void **)&prev, &prev_cap, len, 1)) {
            rc = EMDPO_ERR_NOMEM;
            break;
        }
        memcpy(prev, annot, len);
    }
    emdpo_free(prev, prev_cap);
    *n_starts = n;
    *n_rows = rows;
    return rc;
}

int emdpo_read_csv(FILE *fp, const emdpo_read_opts *o, int part, emdpo_data **out, long *line, emdpo_diag *diag) {
    csv_reader r = {.diag = diag, .role_name = {o->csv_id, o->csv_task, o->csv_alt, o->csv_choice, "group"},
                    .part = part};
    emdpo_csv_init_file(&r.rec, fp);
    emdpo_part where = {.end = -1};
    int rc, got, have_header = 0;
    while (!(rc = emdpo_csv_next(&r.rec, &got, diag)) && got) {
        r.line = r.rec.rec_line;
        if (have_header) {
            if (part && r.rec.rec_pos >= where.end) break;
            if ((rc = read_row(&r))) break;
        } else {
            if ((rc = read_header(&r))) break;
            have_header = 1;
            if (part) {
                if ((rc = emdpo_part_find(fp, r.rec.pos, r.rec.line, scan_part, &r, &where))) break;
                if (fseeko(fp, (off_t)where.begin, SEEK_SET)) {
                    rc = EMDPO_ERR_IO;
                    break;
                }
                emdpo_csv_seek_file(&r.rec, where.begin, where.line);
            }
        }
    }
    *line = r.rec.rec_line;
    if (!rc) rc = flush_task(&r);
    if (!rc && (part ? !where.all_annot : !r.done.n)) {
        emdpo_diag_set(diag, 0, "no decisions in file");
        rc = EMDPO_ERR_PARSE;
    }
    if (!rc && part) {
        rc = emdpo_part_finish(r.b, &where, &r.annots, out, diag);
        r.b = NULL;
    } else if (!rc) {
        rc = emdpo_data_builder_finish(r.b, out);
        r.b = NULL;
    }
    reader_free(&r);
    return rc;
}
