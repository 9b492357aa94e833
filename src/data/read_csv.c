/* Long CSV preference data, the choice modellers' layout (Stata lclogit, R
 * flexmix/apollo): one row per shown alternative, columns annotator, task,
 * alt, chosen, optional group, and every other column a feature. chosen is 1
 * for the pick, or 1..r for ranked alternatives, 0 for the rest. */
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/hash.h"
#include "base/names.h"
#include "base/utf8.h"
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
    /* Reading a part of the file under mpirun: the first line of each of
     * its annotators, in order. */
    int part;
    long *annot_line;
    size_t n_annot, annot_line_cap;
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

/* Under mpirun an annotator's rows must be adjacent: each process reads
 * whole annotators from its part of the file. Called at each new task,
 * while r->key still holds the task before. */
static int note_annotator(csv_reader *r, const char *annot) {
    if (r->n_annot && strcmp(r->key, annot) == 0) return EMDPO_OK;
    if (emdpo_data_builder_count(r->b, annot) > 0)
        return emdpo_diag_parse(r->diag, r->line,
                                "annotator \"%.40s\" appears again here after other annotators' rows; under mpirun "
                                "the rows of an annotator must be adjacent (sort the file by annotator)",
                                annot);
    if (emdpo_grow((void **)&r->annot_line, &r->annot_line_cap, r->n_annot + 1, sizeof *r->annot_line))
        return EMDPO_ERR_NOMEM;
    r->annot_line[r->n_annot++] = r->line;
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
        if (r->part && (rc = note_annotator(r, annot))) return rc;
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
    emdpo_free(r->annot_line, r->annot_line_cap * sizeof *r->annot_line);
}

/* ---- Parts of the file (mpirun) ------------------------------------------
 * Each process reads the header, then only its part of the rows, so that
 * no process holds more than its share while reading. An annotator starts
 * at a row whose annotator differs from the row before's (the rows of an
 * annotator must be adjacent). The processes first split the bytes after
 * the header evenly; process q takes the rows that begin in its bytes and
 * decides, for each of them but its first, and for the row after its
 * bytes, whether it starts an annotator. A first pass counts these
 * starts and the lines; sums over the processes of lower rank give each
 * start its global index and each process its first line's number; a
 * second pass notes the offset and line of the starts where a process's
 * share (emdpo_dist_share: whole runs of EMDPO_DIST_ALIGN annotators)
 * begins, and each process then reads exactly its share's rows. Memory
 * beyond the share: one row and a few numbers per process. */

/* Where this process reads: the rows that begin in [begin, end), from line
 * `line`; they are annotators annot_base .. of all_annot. */
typedef struct csv_part {
    int64_t begin, end;
    long line;
    int64_t annot_base, all_annot;
} csv_part;

/* The first line start at or after byte at of the rows (body .. size). */
static int line_start_at(FILE *fp, int64_t at, int64_t body, int64_t size, int64_t *out) {
    if (at <= body || at >= size) {
        *out = at <= body ? body : size;
        return EMDPO_OK;
    }
    if (fseeko(fp, (off_t)(at - 1), SEEK_SET)) return EMDPO_ERR_IO;
    int c;
    while ((c = getc_unlocked(fp)) != EOF && c != '\n') at++;
    if (ferror(fp)) return EMDPO_ERR_IO;
    *out = c == EOF ? size : at;
    return EMDPO_OK;
}

/* Line ends in bytes [from, to). */
static int count_lines(FILE *fp, int64_t from, int64_t to, int64_t *n) {
    char buf[1 << 16];
    *n = 0;
    if (fseeko(fp, (off_t)from, SEEK_SET)) return EMDPO_ERR_IO;
    while (from < to) {
        size_t want = to - from < (int64_t)sizeof buf ? (size_t)(to - from) : sizeof buf;
        size_t got = fread(buf, 1, want, fp);
        for (size_t i = 0; i < got; i++) *n += buf[i] == '\n';
        if (got < want) return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
        from += (int64_t)got;
    }
    return EMDPO_OK;
}

/* One pass over the rows that begin in [from, to), from line `line`, and
 * the row after them. Counts in *n_starts the annotator starts this
 * process decides (its rows but the first, and the row after) and in
 * *n_rows its rows; the start with global index first + k, when it is
 * want[j] (ascending), puts its offset and line in at[2j], at[2j + 1]. */
static int scan_part(csv_reader *r, FILE *fp, int64_t from, int64_t to, long line, int64_t first, const int64_t *want,
                     int n_want, int64_t *at, int64_t *n_starts, int64_t *n_rows) {
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

/* Decides this process's part (the reader is past the header). A
 * collective: every process calls it. */
static int find_part(csv_reader *r, FILE *fp, csv_part *part) {
    int rank = emdpo_dist_rank(), size = emdpo_dist_size();
    int64_t body = r->rec.pos;
    long body_line = r->rec.line;
    struct stat st;
    if (fstat(fileno(fp), &st)) return EMDPO_ERR_IO;
    int64_t fsize = (int64_t)st.st_size, bytes = fsize > body ? fsize - body : 0, from, to, lines, starts, rows;
    int rc;
    if ((rc = line_start_at(fp, body + bytes * rank / size, body, fsize, &from)) ||
        (rc = line_start_at(fp, body + bytes * (rank + 1) / size, body, fsize, &to)) ||
        (rc = count_lines(fp, from, to, &lines)))
        return rc;
    /* A syntax error found here is found again, at its true line, below. */
    int first_rc = scan_part(r, fp, from, to, 1, 0, NULL, 0, NULL, &starts, &rows);
    if (first_rc && first_rc != EMDPO_ERR_PARSE) return first_rc;
    int64_t before[2] = {lines, starts}, total[2] = {starts, rows};
    if ((rc = emdpo_dist_exscan_i64(before, 2)) || (rc = emdpo_dist_sum_i64(total, 2))) return rc;
    int64_t all = total[1] ? total[0] + 1 : 0; /* the first row starts annotator 0 */
    /* The starts of the shares of processes 1 .. size - 1. */
    size_t wbytes = (size_t)size * sizeof(int64_t), abytes = 2 * wbytes;
    int64_t *want = emdpo_malloc(wbytes), *at = emdpo_calloc(2 * (size_t)size, sizeof(int64_t));
    if (!want || !at) rc = EMDPO_ERR_NOMEM;
    for (int q = 1; !rc && q < size; q++) {
        int64_t lo, hi;
        emdpo_dist_share_of(q, all, &lo, &hi);
        want[q - 1] = lo;
    }
    if (!rc) rc = scan_part(r, fp, from, to, body_line + (long)before[0], before[1] + 1, want, size - 1, at, &starts,
                            &rows);
    if (!rc) rc = first_rc;
    if (!rc) rc = emdpo_dist_sum_i64(at, 2 * (size_t)(size - 1));
    if (!rc) {
        int64_t lo, hi;
        emdpo_dist_share(all, &lo, &hi);
        *part = (csv_part){.begin = body, .end = fsize, .line = body_line, .annot_base = lo, .all_annot = all};
        if (lo >= all) part->begin = fsize;
        else if (lo > 0) part->begin = at[2 * (rank - 1)], part->line = (long)at[2 * (rank - 1) + 1];
        if (hi == 0) part->end = body;
        else if (hi < all) part->end = at[2 * rank];
    }
    emdpo_free(want, wbytes);
    emdpo_free(at, abytes);
    return rc;
}

/* Under mpirun an annotator may not come back after other annotators'
 * rows on another process either: the processes send each of their
 * annotators (its name and first line) to the process its name hashes to,
 * which looks for a name sent twice. A collective. */
static int check_adjacent(csv_reader *r, const emdpo_data *d) {
    int size = emdpo_dist_size();
    size_t cbytes = (size_t)size * sizeof(int64_t), sbytes = 0;
    int64_t *count = emdpo_calloc((size_t)size, sizeof(int64_t));
    int *dest = emdpo_malloc((d->n_annot ? (size_t)d->n_annot : 1) * sizeof *dest);
    char *send = NULL, *recv = NULL;
    size_t recv_len = 0;
    int rc = count && dest ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (int64_t i = 0; !rc && i < d->n_annot; i++) {
        size_t len = strlen(d->annot_name[i]) + 1;
        dest[i] = (int)(emdpo_hash_bytes(d->annot_name[i], len - 1) % (uint64_t)size);
        count[dest[i]] += (int64_t)(sizeof(int64_t) + len);
        sbytes += sizeof(int64_t) + len;
    }
    if (!rc && sbytes && !(send = emdpo_malloc(sbytes))) rc = EMDPO_ERR_NOMEM;
    if (!rc) { /* pieces in rank order */
        size_t *fill = emdpo_malloc((size_t)size * sizeof *fill);
        if (!fill) rc = EMDPO_ERR_NOMEM;
        size_t o = 0;
        for (int q = 0; !rc && q < size; q++) {
            fill[q] = o;
            o += (size_t)count[q];
        }
        for (int64_t i = 0; !rc && i < d->n_annot; i++) {
            int64_t line = r->annot_line[i];
            size_t len = strlen(d->annot_name[i]) + 1;
            memcpy(send + fill[dest[i]], &line, sizeof line);
            memcpy(send + fill[dest[i]] + sizeof line, d->annot_name[i], len);
            fill[dest[i]] += sizeof line + len;
        }
        emdpo_free(fill, (size_t)size * sizeof *fill);
    }
    if (!rc) rc = emdpo_dist_alltoall_bytes(send, count, &recv, &recv_len);
    emdpo_name_index seen = {0};
    int64_t *first = NULL;
    size_t first_cap = 0;
    for (size_t o = 0; !rc && o < recv_len;) {
        int64_t line, idx;
        int is_new;
        memcpy(&line, recv + o, sizeof line);
        const char *name = recv + o + sizeof line;
        o += sizeof line + strlen(name) + 1;
        if ((rc = emdpo_name_index_intern(&seen, name, &idx, &is_new))) break;
        if (is_new) {
            if (emdpo_grow((void **)&first, &first_cap, (size_t)idx + 1, sizeof *first)) rc = EMDPO_ERR_NOMEM;
            else first[idx] = line;
        } else {
            long a = (long)(first[idx] < line ? first[idx] : line), b = (long)(first[idx] < line ? line : first[idx]);
            rc = emdpo_diag_parse(r->diag, b,
                                  "annotator \"%.40s\" appears again here after other annotators' rows (it began "
                                  "on line %ld); under mpirun the rows of an annotator must be adjacent (sort the "
                                  "file by annotator)",
                                  name, a);
        }
    }
    emdpo_name_index_free(&seen);
    emdpo_free(first, first_cap * sizeof *first);
    emdpo_free(recv, recv_len);
    emdpo_free(send, sbytes);
    emdpo_free(dest, (d->n_annot ? (size_t)d->n_annot : 1) * sizeof *dest);
    emdpo_free(count, cbytes);
    return rc;
}

int emdpo_read_csv(FILE *fp, const emdpo_read_opts *o, int part, emdpo_data **out, long *line, emdpo_diag *diag) {
    csv_reader r = {.diag = diag, .role_name = {o->csv_id, o->csv_task, o->csv_alt, o->csv_choice, "group"},
                    .part = part};
    emdpo_csv_init_file(&r.rec, fp);
    csv_part where = {.end = -1};
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
                if ((rc = find_part(&r, fp, &where))) break;
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
        rc = emdpo_data_builder_finish_share(r.b, where.annot_base, where.all_annot, out);
        r.b = NULL;
        if (!rc && (rc = check_adjacent(&r, *out))) {
            emdpo_data_free(*out);
            *out = NULL;
        }
    } else if (!rc) {
        rc = emdpo_data_builder_finish(r.b, out);
        r.b = NULL;
    }
    reader_free(&r);
    return rc;
}
