/* The files of EM-DPO around any trainer (emdpo/em.h, emdpo/mmra.h): the
 * log-ratio files emdpo estep reads and the three it writes, the margins
 * of emdpo select --margins and the regret matrices of emdpo aggregate
 * --regrets. Every reader streams lines through base/lines.h, so .gz files
 * read the same as plain ones; a CSV record is one line. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"
#include "base/json_write.h"
#include "base/lines.h"
#include "base/names.h"
#include "core/estep.h"
#include "fitfile/posterior.h"

/* ---- What the readers share ----------------------------------------------- */

typedef enum file_kind { KIND_JSONL, KIND_CSV, KIND_JSON } file_kind;

static int ends_with_nocase(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)s[n - k + i]) != suffix[i]) return 0;
    return 1;
}

/* JSONL (.jsonl, or .json when json_whole is 0), CSV, or one JSON document
 * (.json when json_whole is 1), each optionally .gz. */
static int kind_of(const char *path, int json_whole, file_kind *kind, emdpo_diag *diag) {
    size_t n = strlen(path);
    if (ends_with_nocase(path, n, ".gz")) n -= 3;
    if (ends_with_nocase(path, n, ".jsonl")) *kind = KIND_JSONL;
    else if (ends_with_nocase(path, n, ".json")) *kind = json_whole ? KIND_JSON : KIND_JSONL;
    else if (ends_with_nocase(path, n, ".csv")) *kind = KIND_CSV;
    else
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "cannot tell the format from the file name (use %s, or "
                               ".csv, optionally .gz)", json_whole ? ".json" : ".jsonl");
    return EMDPO_OK;
}

/* A strtod that takes the whole field and nothing else. */
static int parse_number(const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    return end != s && !*end && errno != ERANGE;
}

/* A decimal integer in [lo, hi]. */
static int parse_int(const char *s, long lo, long hi, long *v) {
    char *end;
    errno = 0;
    *v = strtol(s, &end, 10);
    return end != s && !*end && !errno && *v >= lo && *v <= hi;
}

/* An id: a non-empty string, or an integer spelled in decimal into buf. */
static int json_id(const emdpo_json *obj, const char *key, char *buf, size_t size, const char **out, emdpo_diag *diag,
                   long line) {
    const emdpo_json *v = emdpo_json_get(obj, key);
    if (!v) return emdpo_diag_parse(diag, line, "no \"%s\"", key);
    if (v->type == EMDPO_JSON_NUMBER && v->is_int) {
        snprintf(buf, size, "%" PRId64, v->inum);
        *out = buf;
        return EMDPO_OK;
    }
    if (v->type != EMDPO_JSON_STRING || v->len == 0 || v->has_nul)
        return emdpo_diag_parse(diag, line, "\"%s\" must be a non-empty string or an integer", key);
    if (v->full_len > EMDPO_MAX_ID_BYTES)
        return emdpo_diag_parse(diag, line, "\"%s\" is %zu bytes long; identifiers are at most %d bytes", key,
                                v->full_len, EMDPO_MAX_ID_BYTES);
    *out = v->u.str;
    return EMDPO_OK;
}

/* The next record of a JSONL file, streamed under lim (whose list_key
 * bounds the record's types): *got is 0 at the end. */
static int json_record(emdpo_lines *lin, emdpo_json_stream *st, const emdpo_json **root, int *got, emdpo_diag *diag) {
    emdpo_json_error jerr;
    int rc, c = -1;
    while (!(rc = emdpo_lines_begin(lin, got)) && *got) {
        emdpo_json_stream_reset(st, emdpo_lines_read_line, lin);
        if ((rc = emdpo_json_stream_peek(st, &c, &jerr)) || c >= 0) break; /* else a blank line */
    }
    if (!rc && *got && !(rc = emdpo_json_stream_value(st, root, &jerr))) rc = emdpo_json_stream_end(st, &jerr);
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, lin->lineno, "read error: %s", strerror(errno));
    if (rc == EMDPO_ERR_PARSE)
        return emdpo_diag_parse(diag, lin->lineno, "line %s: %s at column %zu",
                                jerr.limit ? "is too large to read" : "is not valid JSON", jerr.msg, jerr.offset + 1);
    if (rc || !*got) return rc;
    if ((*root)->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_parse(diag, lin->lineno, "line is a JSON %s, expected an object",
                                emdpo_json_type_name((*root)->type));
    return EMDPO_OK;
}

/* A stream into a new doc for a JSONL file whose records list at most
 * EMDPO_MAX_K elements under key (one per type). */
static int json_records_open(const char *key, emdpo_json_doc **doc, emdpo_json_stream **st) {
    /* Its one string is an identifier: what is kept of a longer one is
     * enough to refuse it. */
    emdpo_json_limits lim = {
        .keep = EMDPO_MAX_ID_BYTES, .max_key = EMDPO_MAX_ID_BYTES, .list_key = key, .list_max = EMDPO_MAX_K};
    *st = NULL;
    int rc = emdpo_json_doc_create(doc);
    return rc ? rc : emdpo_json_stream_create(*doc, &lim, st);
}

/* Parses line lr's text as one CSV record into rec (its own buffer). */
static int csv_line(emdpo_csv *rec, const emdpo_lines *lr, emdpo_diag *diag) {
    emdpo_csv_reset_buf(rec, lr->buf, lr->len);
    int got = 0, rc = emdpo_csv_next(rec, &got, diag);
    if (rc == EMDPO_ERR_PARSE) {
        if (diag) diag->line = lr->lineno;
        return rc;
    }
    if (!rc && !got) return emdpo_diag_parse(diag, lr->lineno, "empty record");
    if (!rc && rec->p < rec->end) {
        int more = 0;
        rc = emdpo_csv_next(rec, &more, diag);
        if (!rc && more) return emdpo_diag_parse(diag, lr->lineno, "a quoted field spans lines (records are one line)");
    }
    return rc;
}

/* The columns names[0..n) of a CSV header, each required once. */
static int csv_header(const emdpo_csv *rec, const char *const *names, int n, int *col, long line, emdpo_diag *diag) {
    for (int c = 0; c < n; c++) {
        col[c] = emdpo_csv_column(rec, names[c]);
        if (col[c] < 0) {
            char want[128] = "";
            for (int i = 0; i < n; i++) {
                strcat(want, i ? "," : "");
                strcat(want, names[i]);
            }
            return emdpo_diag_parse(diag, line, "expected the header %s (no column \"%s\")", want, names[c]);
        }
    }
    return EMDPO_OK;
}

/* Opens path's lines; EMDPO_ERR_IO with diag. */
static int open_lines(emdpo_lines *lr, const char *path, emdpo_diag *diag) {
    if (emdpo_lines_open(lr, path)) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open: %s", strerror(errno));
    return EMDPO_OK;
}

/* The next line that is not blank; *got 0 at the end. */
static int next_line(emdpo_lines *lr, int *got, emdpo_diag *diag) {
    int rc;
    while (!(rc = emdpo_lines_next(lr, got)) && *got && emdpo_line_is_blank(lr->buf, lr->len)) {
    }
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, lr->lineno, "read error: %s", strerror(errno));
    return rc;
}

/* ---- Log-ratio files -------------------------------------------------------- */

struct emdpo_logratios {
    int K;
    int64_t n_dec, n_items;
    double *v;              /* (K, n_items) once read; while reading (n_items, K) */
    size_t v_cap;           /* doubles */
    int64_t *off;           /* (n_dec + 1) */
    size_t off_cap;
    int64_t *annot;         /* (n_dec) */
    size_t annot_cap;
    unsigned char *rank;    /* (n_dec) */
    size_t rank_cap;
    emdpo_name_index names;
    char *source;
};

void emdpo_logratios_free(emdpo_logratios *lr) {
    if (!lr) return;
    emdpo_free(lr->v, lr->v_cap * sizeof(double));
    emdpo_free(lr->off, lr->off_cap * sizeof(int64_t));
    emdpo_free(lr->annot, lr->annot_cap * sizeof(int64_t));
    emdpo_free(lr->rank, lr->rank_cap);
    emdpo_name_index_free(&lr->names);
    emdpo_strfree(lr->source);
    emdpo_free(lr, sizeof *lr);
}

int emdpo_logratios_k(const emdpo_logratios *lr) { return lr ? lr->K : 0; }
int64_t emdpo_logratios_n_decisions(const emdpo_logratios *lr) { return lr ? lr->n_dec : 0; }
int64_t emdpo_logratios_n_items(const emdpo_logratios *lr) { return lr ? lr->n_items : 0; }
int64_t emdpo_logratios_n_annotators(const emdpo_logratios *lr) { return lr ? (int64_t)lr->names.n : 0; }
const double *emdpo_logratios_values(const emdpo_logratios *lr) { return lr ? lr->v : NULL; }
const int64_t *emdpo_logratios_offsets(const emdpo_logratios *lr) { return lr ? lr->off : NULL; }
const int64_t *emdpo_logratios_annotators(const emdpo_logratios *lr) { return lr ? lr->annot : NULL; }
const unsigned char *emdpo_logratios_ranking(const emdpo_logratios *lr) { return lr ? lr->rank : NULL; }

const char *emdpo_logratios_annotator_name(const emdpo_logratios *lr, int64_t i) {
    return lr && i >= 0 && i < (int64_t)lr->names.n ? lr->names.names[i] : NULL;
}

/* Appends a decision of n items whose values x (n, K) item-major are
 * checked, by annotator name. */
static int lr_append(emdpo_logratios *lr, const char *annotator, int n, int ranking, const double *x) {
    int64_t a;
    int is_new;
    if (emdpo_name_index_intern(&lr->names, annotator, &a, &is_new) ||
        emdpo_grow((void **)&lr->off, &lr->off_cap, (size_t)lr->n_dec + 2, sizeof(int64_t)) ||
        emdpo_grow((void **)&lr->annot, &lr->annot_cap, (size_t)lr->n_dec + 1, sizeof(int64_t)) ||
        emdpo_grow((void **)&lr->rank, &lr->rank_cap, (size_t)lr->n_dec + 1, 1) ||
        emdpo_grow((void **)&lr->v, &lr->v_cap, (size_t)(lr->n_items + n) * lr->K, sizeof(double)))
        return EMDPO_ERR_NOMEM;
    memcpy(lr->v + (size_t)lr->n_items * lr->K, x, (size_t)n * lr->K * sizeof(double));
    lr->annot[lr->n_dec] = a;
    lr->rank[lr->n_dec] = (unsigned char)ranking;
    lr->off[lr->n_dec] = lr->n_items;
    lr->n_items += n;
    lr->n_dec++;
    lr->off[lr->n_dec] = lr->n_items;
    return EMDPO_OK;
}

/* The number of types a decision has: checked against the file's. */
static int lr_types(emdpo_logratios *lr, int K, long line, emdpo_diag *diag) {
    if (K < 1 || K > EMDPO_MAX_K)
        return emdpo_diag_parse(diag, line, "%d types; 1..%d are supported", K, EMDPO_MAX_K);
    if (!lr->K) lr->K = K;
    else if (K != lr->K)
        return emdpo_diag_parse(diag, line, lr->n_dec ? "%d types, but earlier decisions have %d"
                                                      : "%d types, but %d expected (as many as eta has)", K, lr->K);
    return EMDPO_OK;
}

typedef struct scratch {
    double *x;
    size_t cap;  /* doubles */
} scratch;

static double *scratch_get(scratch *s, size_t n) {
    if (emdpo_grow((void **)&s->x, &s->cap, n ? n : 1, sizeof(double))) return NULL;
    return s->x;
}

static int lr_jsonl_decision(emdpo_logratios *lr, const emdpo_json *root, scratch *sc, long line, emdpo_diag *diag) {
    char buf[32];
    const char *annot = NULL;
    int rc = json_id(root, "annotator", buf, sizeof buf, &annot, diag, line);
    if (rc) return rc;
    const emdpo_json *l = emdpo_json_get(root, "logratios"), *r = emdpo_json_get(root, "ranking");
    if (!l || l->type != EMDPO_JSON_ARRAY || l->len < 1)
        return emdpo_diag_parse(diag, line, "\"logratios\" must be an array of one array per type");
    if (r && r->type != EMDPO_JSON_BOOL) return emdpo_diag_parse(diag, line, "\"ranking\" must be true or false");
    if (l->len > EMDPO_MAX_K) return emdpo_diag_parse(diag, line, "%zu types; 1..%d are supported", l->len, EMDPO_MAX_K);
    int K = (int)l->len;
    if ((rc = lr_types(lr, K, line, diag))) return rc;
    const emdpo_json *t0 = &l->u.elems[0];
    if (t0->type != EMDPO_JSON_ARRAY)
        return emdpo_diag_parse(diag, line, "\"logratios\" must be an array of one array per type");
    size_t n = t0->len;
    if (n < 2) return emdpo_diag_parse(diag, line, "%zu item%s: a decision needs 2 or more", n, n == 1 ? "" : "s");
    if (n > INT32_MAX) return emdpo_diag_parse(diag, line, "too many items");
    double *x = scratch_get(sc, n * (size_t)K);
    if (!x) return EMDPO_ERR_NOMEM;
    for (int k = 0; k < K; k++) {
        const emdpo_json *t = &l->u.elems[k];
        if (t->type != EMDPO_JSON_ARRAY || t->len != n)
            return emdpo_diag_parse(diag, line, "ragged types: type 1 has %zu items, type %d %s", n, k + 1,
                                    t->type == EMDPO_JSON_ARRAY ? "another number" : "is not an array");
        for (size_t q = 0; q < n; q++) {
            const emdpo_json *e = &t->u.elems[q];
            if (e->type != EMDPO_JSON_NUMBER)
                return emdpo_diag_parse(diag, line, "type %d, item %zu: %s is not a finite number", k + 1, q,
                                        emdpo_json_type_name(e->type));
            x[q * (size_t)K + k] = e->num;
        }
    }
    return lr_append(lr, annot, (int)n, r && r->boolean, x);
}

/* One CSV decision being gathered: its rows' (type, item, value). */
typedef struct csv_dec {
    char *id, *annot;
    long line;
    int *type, *item;
    double *val;
    size_t n, cap;
    int ranking;
} csv_dec;

static void csv_dec_free(csv_dec *d) {
    emdpo_strfree(d->id);
    emdpo_strfree(d->annot);
    emdpo_free(d->type, d->cap * sizeof(int));
    emdpo_free(d->item, d->cap * sizeof(int));
    emdpo_free(d->val, d->cap * sizeof(double));
    memset(d, 0, sizeof *d);
}

/* The gathered decision, checked: every type 1..K and item 0..n-1 once. */
static int csv_dec_flush(emdpo_logratios *lr, csv_dec *d, scratch *sc, emdpo_diag *diag) {
    if (!d->n) return EMDPO_OK;
    int K = 0, n = 0;
    for (size_t r = 0; r < d->n; r++) {
        K = d->type[r] > K ? d->type[r] : K;
        n = d->item[r] + 1 > n ? d->item[r] + 1 : n;
    }
    int rc = lr_types(lr, K, d->line, diag);
    if (rc) return rc;
    if (n < 2) return emdpo_diag_parse(diag, d->line, "decision %s has 1 item: a decision needs 2 or more", d->id);
    if ((size_t)K * n != d->n)
        return emdpo_diag_parse(diag, d->line, "decision %s: %zu rows for %d types and %d items (ragged types, or a "
                                "row missing or repeated)", d->id, d->n, K, n);
    double *x = scratch_get(sc, (size_t)n * K);
    if (!x) return EMDPO_ERR_NOMEM;
    for (size_t q = 0; q < (size_t)n * K; q++) x[q] = NAN;
    for (size_t r = 0; r < d->n; r++) {
        double *slot = &x[(size_t)d->item[r] * K + d->type[r] - 1];
        if (!isnan(*slot))
            return emdpo_diag_parse(diag, d->line, "decision %s: type %d, item %d given twice", d->id, d->type[r],
                                    d->item[r]);
        *slot = d->val[r];
    }
    for (size_t q = 0; q < (size_t)n * K; q++)
        if (isnan(x[q]))
            return emdpo_diag_parse(diag, d->line, "decision %s: type %d, item %d missing", d->id, (int)(q % K) + 1,
                                    (int)(q / K));
    rc = lr_append(lr, d->annot, n, d->ranking, x);
    d->n = 0;
    return rc;
}

static int lr_read_csv(emdpo_logratios *lr, emdpo_lines *lin, emdpo_diag *diag) {
    static const char *const cols[] = {"annotator", "decision", "type", "item", "logratio"};
    int col[5], rank_col = -1, got, rc, nf = 0;
    emdpo_csv rec;
    emdpo_csv_init_buf(&rec, "", 0);
    csv_dec d = {0};
    scratch sc = {0};
    emdpo_name_index seen = {0}; /* decisions already flushed */
    if (!(rc = next_line(lin, &got, diag)) && !got) rc = emdpo_diag_parse(diag, 1, "empty file");
    if (!rc && !(rc = csv_line(&rec, lin, diag)) && !(rc = csv_header(&rec, cols, 5, col, lin->lineno, diag))) {
        rank_col = emdpo_csv_column(&rec, "ranking");
        nf = rec.nf;
    }
    while (!rc && !(rc = next_line(lin, &got, diag)) && got) {
        long line = lin->lineno;
        if ((rc = csv_line(&rec, lin, diag))) break;
        if (rec.nf != nf) {
            rc = emdpo_diag_parse(diag, line, "%d fields, the header has %d", rec.nf, nf);
            break;
        }
        const char *id = emdpo_csv_field(&rec, col[1]), *annot = emdpo_csv_field(&rec, col[0]);
        long type = 0, item = 0, ranking = 0;
        double v = 0.0;
        if (!*annot || !*id) rc = emdpo_diag_parse(diag, line, "an empty annotator or decision");
        else if (!parse_int(emdpo_csv_field(&rec, col[2]), 1, EMDPO_MAX_K, &type))
            rc = emdpo_diag_parse(diag, line, "type must be an integer in 1..%d", EMDPO_MAX_K);
        else if (!parse_int(emdpo_csv_field(&rec, col[3]), 0, INT32_MAX - 1, &item))
            rc = emdpo_diag_parse(diag, line, "item must be an integer >= 0 (0: the chosen one)");
        else if (!parse_number(emdpo_csv_field(&rec, col[4]), &v) || !isfinite(v))
            rc = emdpo_diag_parse(diag, line, "logratio '%.40s' is not a finite number", emdpo_csv_field(&rec, col[4]));
        else if (rank_col >= 0 && !parse_int(emdpo_csv_field(&rec, rank_col), 0, 1, &ranking))
            rc = emdpo_diag_parse(diag, line, "ranking must be 0 or 1");
        if (rc) break;
        if (!d.n || strcmp(d.id, id) != 0) { /* a new decision */
            if (d.n) {
                int64_t ix;
                int is_new;
                if ((rc = emdpo_name_index_intern(&seen, d.id, &ix, &is_new)) || (rc = csv_dec_flush(lr, &d, &sc, diag)))
                    break;
            }
            if (emdpo_name_index_find(&seen, id) >= 0) {
                rc = emdpo_diag_parse(diag, line, "decision %.60s appears again (a decision's rows must be "
                                                  "consecutive)", id);
                break;
            }
            emdpo_strfree(d.id);
            emdpo_strfree(d.annot);
            d.id = emdpo_strdup(id);
            d.annot = emdpo_strdup(annot);
            if (!d.id || !d.annot) {
                rc = EMDPO_ERR_NOMEM;
                break;
            }
            d.line = line;
            d.ranking = (int)ranking;
        } else if (strcmp(d.annot, annot) != 0 || d.ranking != ranking) {
            rc = emdpo_diag_parse(diag, line, "decision %.60s changes its %s", id,
                                  strcmp(d.annot, annot) ? "annotator" : "ranking flag");
            break;
        }
        if (d.n == d.cap) {
            size_t cap = d.cap ? 2 * d.cap : 16;
            void **arrays[] = {(void **)&d.type, (void **)&d.item, (void **)&d.val};
            size_t elem[] = {sizeof(int), sizeof(int), sizeof(double)};
            if ((rc = emdpo_resize_parallel(arrays, elem, 3, d.cap, cap))) break;
            d.cap = cap;
        }
        d.type[d.n] = (int)type;
        d.item[d.n] = (int)item;
        d.val[d.n++] = v;
    }
    if (!rc) rc = csv_dec_flush(lr, &d, &sc, diag);
    csv_dec_free(&d);
    emdpo_csv_free(&rec);
    emdpo_free(sc.x, sc.cap * sizeof(double));
    emdpo_name_index_free(&seen);
    return rc;
}

static int lr_read_jsonl(emdpo_logratios *lr, emdpo_lines *lin, emdpo_diag *diag) {
    emdpo_json_doc *doc = NULL;
    emdpo_json_stream *st = NULL;
    scratch sc = {0};
    const emdpo_json *root;
    int rc = json_records_open("logratios", &doc, &st), got;
    while (!rc && !(rc = json_record(lin, st, &root, &got, diag)) && got)
        rc = lr_jsonl_decision(lr, root, &sc, lin->lineno, diag);
    emdpo_json_stream_free(st);
    emdpo_json_doc_free(doc);
    emdpo_free(sc.x, sc.cap * sizeof(double));
    return rc;
}

/* (n_items, K) as read into (K, n_items), as emdpo_estep takes it. */
static int lr_transpose(emdpo_logratios *lr) {
    size_t n = (size_t)lr->n_items, K = (size_t)lr->K;
    double *t = emdpo_malloc(n * K * sizeof(double));
    if (!t) return EMDPO_ERR_NOMEM;
    for (size_t q = 0; q < n; q++)
        for (size_t k = 0; k < K; k++) t[k * n + q] = lr->v[q * K + k];
    emdpo_free(lr->v, lr->v_cap * sizeof(double));
    lr->v = t;
    lr->v_cap = n * K;
    return EMDPO_OK;
}

int emdpo_logratios_read(const char *path, int k, emdpo_logratios **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path || k < 0 || k > EMDPO_MAX_K)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no path, or k outside 0..%d", EMDPO_MAX_K);
    file_kind kind;
    int rc = kind_of(path, 0, &kind, diag);
    if (rc) return rc;
    emdpo_lines lin;
    if ((rc = open_lines(&lin, path, diag))) return rc;
    emdpo_logratios *lr = emdpo_calloc(1, sizeof *lr);
    if (!lr) rc = EMDPO_ERR_NOMEM;
    else {
        lr->K = k;
        rc = kind == KIND_CSV ? lr_read_csv(lr, &lin, diag) : lr_read_jsonl(lr, &lin, diag);
    }
    if (!rc && !lr->n_dec) rc = emdpo_diag_parse(diag, lin.lineno ? lin.lineno : 1, "no decision in the file");
    if (!rc) rc = lr_transpose(lr);
    if (!rc && !(lr->source = emdpo_path_real(path))) rc = EMDPO_ERR_NOMEM;
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_set(diag, lin.lineno, "out of memory");
    emdpo_lines_close(&lin);
    if (rc) {
        emdpo_logratios_free(lr);
        return rc;
    }
    *out = lr;
    return EMDPO_OK;
}

/* ---- emdpo estep's outputs ------------------------------------------------ */

typedef struct estep_out {
    const emdpo_logratios *lr;
    double beta, loglik;
    const double *eta_in, *gamma, *eta_new, *w;
    int normalize;
} estep_out;

static void write_posterior(FILE *fp, const void *ctx) {
    const estep_out *o = ctx;
    emdpo_posterior_write_csv(fp, o->lr->K, (int64_t)o->lr->names.n, (const char *const *)o->lr->names.names,
                              o->gamma);
}

static void write_weights(FILE *fp, const void *ctx) {
    const estep_out *o = ctx;
    int K = o->lr->K;
    fputs("annotator", fp);
    for (int k = 0; k < K; k++) fprintf(fp, ",weight_%d", k + 1);
    fputc('\n', fp);
    for (int64_t j = 0; j < o->lr->n_dec; j++) {
        emdpo_csv_write_field(fp, o->lr->names.names[o->lr->annot[j]]);
        for (int k = 0; k < K; k++) fprintf(fp, ",%.17g", o->w[j * K + k]);
        fputc('\n', fp);
    }
}

static void write_estep_json(FILE *fp, const void *ctx) {
    const estep_out *o = ctx;
    int K = o->lr->K;
    fprintf(fp, "{\n  \"k\": %d,\n  \"n_annotators\": %zu,\n  \"n_decisions\": %" PRId64 ",\n  \"beta\": ", K,
            o->lr->names.n, o->lr->n_dec);
    emdpo_json_num(fp, o->beta);
    fputs(",\n  \"eta\": ", fp);
    emdpo_json_nums(fp, o->eta_new, K);
    fputs(",\n  \"loglik\": ", fp);
    emdpo_json_num(fp, o->loglik);
    fputs(",\n  \"eta_in\": ", fp);
    double uniform[EMDPO_MAX_K];
    for (int k = 0; k < K; k++) uniform[k] = 1.0 / K;
    emdpo_json_nums(fp, o->eta_in ? o->eta_in : uniform, K);
    fprintf(fp, ",\n  \"normalize\": %s,\n  \"data\": ", o->normalize ? "true" : "false");
    emdpo_json_str(fp, o->lr->source);
    fprintf(fp, ",\n  \"emdpo_version\": \"%s\"\n}\n", EMDPO_VERSION_STRING);
}

int emdpo_estep_save(const emdpo_logratios *lr, double beta, const double *eta_in, const double *gamma,
                     const double *eta_new, double loglik, int normalize, const char *dir, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!lr || !gamma || !eta_new || !dir)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no log-ratios, gamma, eta or directory");
    int K = lr->K;
    size_t wn = (size_t)(lr->n_dec ? lr->n_dec : 1) * K;
    double *w = emdpo_malloc(wn * sizeof(double));
    if (!w) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = emdpo_estep_weights(K, lr->n_dec, lr->annot, (int64_t)lr->names.n, gamma, normalize, w, diag);
    estep_out o = {lr, beta, loglik, eta_in, gamma, eta_new, w, normalize};
    if (!rc) rc = emdpo_afile_write_in(dir, "posterior.csv", write_posterior, &o, diag);
    if (!rc) rc = emdpo_afile_write_in(dir, "weights.csv", write_weights, &o, diag);
    if (!rc) rc = emdpo_afile_write_in(dir, "estep.json", write_estep_json, &o, diag);
    emdpo_free(w, wn * sizeof(double));
    return rc;
}

/* ---- Margins files ---------------------------------------------------------- */

typedef struct margin_cand {
    int k;
    int64_t n_dec;
    double *m;          /* (n_dec, k) */
    size_t m_cap;
    int64_t *annot;     /* (n_dec) */
    size_t annot_cap;
    emdpo_name_index names;
} margin_cand;

struct emdpo_margins {
    int n;
    margin_cand c[EMDPO_MAX_K];
};

void emdpo_margins_free(emdpo_margins *m) {
    if (!m) return;
    for (int c = 0; c < m->n; c++) {
        emdpo_free(m->c[c].m, m->c[c].m_cap * sizeof(double));
        emdpo_free(m->c[c].annot, m->c[c].annot_cap * sizeof(int64_t));
        emdpo_name_index_free(&m->c[c].names);
    }
    emdpo_free(m, sizeof *m);
}

int emdpo_margins_n_candidates(const emdpo_margins *m) { return m ? m->n : 0; }

int emdpo_margins_candidate(const emdpo_margins *m, int c, int64_t *n_dec, const double **margins,
                            const int64_t **annotator, int64_t *n_annot) {
    if (!m || c < 0 || c >= m->n) return 0;
    const margin_cand *mc = &m->c[c];
    if (n_dec) *n_dec = mc->n_dec;
    if (margins) *margins = mc->m;
    if (annotator) *annotator = mc->annot;
    if (n_annot) *n_annot = (int64_t)mc->names.n;
    return mc->k;
}

/* Candidate k's decision: its annotator and k margins. */
static int margins_append(emdpo_margins *m, int k, const char *annotator, const double *v) {
    int c = 0;
    while (c < m->n && m->c[c].k != k) c++;
    if (c == m->n) m->c[m->n++].k = k; /* at most EMDPO_MAX_K distinct k in 1..EMDPO_MAX_K */
    margin_cand *mc = &m->c[c];
    int64_t a;
    int is_new;
    if (emdpo_name_index_intern(&mc->names, annotator, &a, &is_new) ||
        emdpo_grow((void **)&mc->m, &mc->m_cap, (size_t)(mc->n_dec + 1) * k, sizeof(double)) ||
        emdpo_grow((void **)&mc->annot, &mc->annot_cap, (size_t)mc->n_dec + 1, sizeof(int64_t)))
        return EMDPO_ERR_NOMEM;
    memcpy(mc->m + (size_t)mc->n_dec * k, v, (size_t)k * sizeof(double));
    mc->annot[mc->n_dec++] = a;
    return EMDPO_OK;
}

static int margins_jsonl(emdpo_margins *m, emdpo_lines *lin, emdpo_diag *diag) {
    emdpo_json_doc *doc = NULL;
    emdpo_json_stream *st = NULL;
    const emdpo_json *root;
    int rc = json_records_open("margins", &doc, &st), got;
    while (!rc && !(rc = json_record(lin, st, &root, &got, diag)) && got) {
        long line = lin->lineno;
        char buf[32];
        const char *annot = NULL;
        if ((rc = json_id(root, "annotator", buf, sizeof buf, &annot, diag, line))) break;
        const emdpo_json *mv = emdpo_json_get(root, "margins"), *kv = emdpo_json_get(root, "k");
        if (!mv || mv->type != EMDPO_JSON_ARRAY || mv->len < 1 || mv->len > EMDPO_MAX_K) {
            rc = emdpo_diag_parse(diag, line, "\"margins\" must be an array of 1..%d numbers, one per type",
                                  EMDPO_MAX_K);
            break;
        }
        int k = (int)mv->len;
        if (kv && (kv->type != EMDPO_JSON_NUMBER || !kv->is_int || kv->inum != k)) {
            rc = emdpo_diag_parse(diag, line, "\"k\" must be the number of margins (%d)", k);
            break;
        }
        double v[EMDPO_MAX_K];
        for (int t = 0; t < k && !rc; t++) {
            const emdpo_json *e = &mv->u.elems[t];
            if (e->type == EMDPO_JSON_NULL) v[t] = NAN; /* a margin that could not be computed: skipped */
            else if (e->type == EMDPO_JSON_NUMBER) v[t] = e->num;
            else rc = emdpo_diag_parse(diag, line, "margin %d must be a number or null", t + 1);
        }
        if (!rc) rc = margins_append(m, k, annot, v);
    }
    emdpo_json_stream_free(st);
    emdpo_json_doc_free(doc);
    return rc;
}

static int margins_csv(emdpo_margins *m, emdpo_lines *lin, emdpo_diag *diag) {
    static const char *const cols[] = {"k", "annotator", "decision", "type", "margin"};
    int col[5], got, rc, nf = 0, cur_k = 0, have = 0;
    emdpo_csv rec;
    emdpo_csv_init_buf(&rec, "", 0);
    char *cur_id = NULL, *cur_annot = NULL;
    long cur_line = 0;
    double v[EMDPO_MAX_K];
    unsigned char set[EMDPO_MAX_K];
    if (!(rc = next_line(lin, &got, diag)) && !got) rc = emdpo_diag_parse(diag, 1, "empty file");
    if (!rc && !(rc = csv_line(&rec, lin, diag)) && !(rc = csv_header(&rec, cols, 5, col, lin->lineno, diag)))
        nf = rec.nf;
    for (;;) {
        if (rc || (rc = next_line(lin, &got, diag))) break;
        long line = lin->lineno;
        long k = 0, type = 0;
        double x = 0;
        const char *id = "", *annot = "";
        if (got) {
            if ((rc = csv_line(&rec, lin, diag))) break;
            if (rec.nf != nf) {
                rc = emdpo_diag_parse(diag, line, "%d fields, the header has %d", rec.nf, nf);
                break;
            }
            id = emdpo_csv_field(&rec, col[2]);
            annot = emdpo_csv_field(&rec, col[1]);
            if (!parse_int(emdpo_csv_field(&rec, col[0]), 1, EMDPO_MAX_K, &k))
                rc = emdpo_diag_parse(diag, line, "k must be an integer in 1..%d", EMDPO_MAX_K);
            else if (!parse_int(emdpo_csv_field(&rec, col[3]), 1, k, &type))
                rc = emdpo_diag_parse(diag, line, "type must be an integer in 1..k");
            else if (!parse_number(emdpo_csv_field(&rec, col[4]), &x) || isinf(x))
                rc = emdpo_diag_parse(diag, line, "margin '%.40s' is not a number", emdpo_csv_field(&rec, col[4]));
            else if (!*id || !*annot)
                rc = emdpo_diag_parse(diag, line, "an empty annotator or decision");
            if (rc) break;
        }
        /* the end of the file, or another decision: the gathered one is done */
        if (have && (!got || k != cur_k || strcmp(id, cur_id) != 0)) {
            for (int t = 0; t < cur_k && !rc; t++)
                if (!set[t]) rc = emdpo_diag_parse(diag, cur_line, "decision %.60s has no margin for type %d", cur_id, t + 1);
            if (!rc && (rc = margins_append(m, cur_k, cur_annot, v)) == EMDPO_ERR_NOMEM) break;
            have = 0;
        }
        if (rc || !got) break;
        if (!have) {
            emdpo_strfree(cur_id);
            emdpo_strfree(cur_annot);
            cur_id = emdpo_strdup(id);
            cur_annot = emdpo_strdup(annot);
            if (!cur_id || !cur_annot) {
                rc = EMDPO_ERR_NOMEM;
                break;
            }
            cur_k = (int)k;
            cur_line = line;
            memset(set, 0, sizeof set);
            have = 1;
        } else if (strcmp(annot, cur_annot) != 0) {
            rc = emdpo_diag_parse(diag, line, "decision %.60s changes its annotator", id);
            break;
        }
        if (set[type - 1]) {
            rc = emdpo_diag_parse(diag, line, "decision %.60s: type %ld given twice", id, type);
            break;
        }
        set[type - 1] = 1;
        v[type - 1] = x;
    }
    emdpo_strfree(cur_id);
    emdpo_strfree(cur_annot);
    emdpo_csv_free(&rec);
    return rc;
}

int emdpo_margins_read(const char *path, emdpo_margins **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no path");
    file_kind kind;
    int rc = kind_of(path, 0, &kind, diag);
    if (rc) return rc;
    emdpo_lines lin;
    if ((rc = open_lines(&lin, path, diag))) return rc;
    emdpo_margins *m = emdpo_calloc(1, sizeof *m);
    if (!m) rc = EMDPO_ERR_NOMEM;
    else rc = kind == KIND_CSV ? margins_csv(m, &lin, diag) : margins_jsonl(m, &lin, diag);
    if (!rc && !m->n) rc = emdpo_diag_parse(diag, lin.lineno ? lin.lineno : 1, "no margins in the file");
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_set(diag, lin.lineno, "out of memory");
    emdpo_lines_close(&lin);
    if (rc) {
        emdpo_margins_free(m);
        return rc;
    }
    *out = m;
    return EMDPO_OK;
}

/* ---- Regret matrices -------------------------------------------------------- */

/* Row r of R from a JSON array of numbers. */
static int regret_row_json(const emdpo_json *row, int r, double *R, int *K, long line, emdpo_diag *diag) {
    if (row->type != EMDPO_JSON_ARRAY || row->len < 1)
        return emdpo_diag_parse(diag, line, "row %d is not a non-empty array of numbers", r);
    if (row->len > EMDPO_MAX_K)
        return emdpo_diag_at(diag, EMDPO_ERR_LIMIT, NULL, line, "row %d has %zu columns; at most %d types", r, row->len,
                             EMDPO_MAX_K);
    if (*K && (int)row->len != *K)
        return emdpo_diag_parse(diag, line, "row %d has %zu columns, row 0 has %d", r, row->len, *K);
    *K = (int)row->len;
    for (int c = 0; c < *K; c++) {
        if (row->u.elems[c].type != EMDPO_JSON_NUMBER)
            return emdpo_diag_parse(diag, line, "row %d, column %d is not a number", r, c);
        R[r * *K + c] = row->u.elems[c].num;
    }
    return EMDPO_OK;
}

static int regrets_json(emdpo_lines *lin, double *R, int *rows, int *K, emdpo_diag *diag) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc, got;
    while (!(rc = emdpo_lines_next(lin, &got)) && got) {
        if (emdpo_grow((void **)&buf, &cap, len + lin->len + 2, 1)) {
            rc = EMDPO_ERR_NOMEM;
            break;
        }
        memcpy(buf + len, lin->buf, lin->len);
        len += lin->len;
        buf[len++] = '\n';
    }
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    emdpo_json_error jerr;
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, lin->lineno, "read error: %s", strerror(errno));
    if (!rc) rc = emdpo_json_doc_create(&doc);
    if (!rc && (rc = emdpo_json_parse(doc, buf ? buf : "", len, &root, &jerr)) == EMDPO_ERR_PARSE) {
        long line = 1; /* the line of the error's byte */
        for (size_t i = 0; i < jerr.offset && i < len; i++) line += buf[i] == '\n';
        emdpo_diag_parse(diag, line, "not valid JSON: %s", jerr.msg);
    }
    if (!rc && root->type == EMDPO_JSON_OBJECT) root = emdpo_json_get(root, "regrets");
    if (!rc && (!root || root->type != EMDPO_JSON_ARRAY || root->len < 1))
        rc = emdpo_diag_parse(diag, 1, "expected an array of rows (or an object with \"regrets\")");
    if (!rc && root->len > EMDPO_MAX_K + 1)
        rc = emdpo_diag_at(diag, EMDPO_ERR_LIMIT, NULL, 1, "%zu rows; at most %d", root->len, EMDPO_MAX_K + 1);
    for (size_t r = 0; !rc && r < root->len; r++) rc = regret_row_json(&root->u.elems[r], (int)r, R, K, 1, diag);
    if (!rc) *rows = (int)root->len;
    emdpo_json_doc_free(doc);
    emdpo_free(buf, cap);
    return rc;
}

static int regrets_csv(emdpo_lines *lin, double *R, int *rows, int *K, emdpo_diag *diag) {
    emdpo_csv rec;
    emdpo_csv_init_buf(&rec, "", 0);
    int rc, got, r = 0, first = 1;
    while (!(rc = next_line(lin, &got, diag)) && got) {
        long line = lin->lineno;
        if ((rc = csv_line(&rec, lin, diag))) break;
        int numeric = 1;
        double v[EMDPO_MAX_K];
        if (rec.nf > EMDPO_MAX_K) {
            rc = emdpo_diag_at(diag, EMDPO_ERR_LIMIT, NULL, line, "%d columns; at most %d types", rec.nf, EMDPO_MAX_K);
            break;
        }
        for (int c = 0; c < rec.nf; c++) numeric &= parse_number(emdpo_csv_field(&rec, c), &v[c]);
        if (first && !numeric) { /* a header of names */
            first = 0;
            *K = rec.nf;
            continue;
        }
        first = 0;
        if (!numeric) {
            rc = emdpo_diag_parse(diag, line, "a field is not a number");
            break;
        }
        if (*K && rec.nf != *K) {
            rc = emdpo_diag_parse(diag, line, "%d columns, expected %d", rec.nf, *K);
            break;
        }
        if (r == EMDPO_MAX_K + 1) {
            rc = emdpo_diag_at(diag, EMDPO_ERR_LIMIT, NULL, line, "more than %d rows", EMDPO_MAX_K + 1);
            break;
        }
        *K = rec.nf;
        memcpy(R + (size_t)r * *K, v, (size_t)*K * sizeof(double));
        r++;
    }
    if (!rc && !r) rc = emdpo_diag_parse(diag, lin->lineno ? lin->lineno : 1, "no rows of numbers");
    if (!rc) *rows = r;
    emdpo_csv_free(&rec);
    return rc;
}

int emdpo_regrets_read(const char *path, double *R, int *rows, int *K, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!path || !R || !rows || !K) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no path or outputs");
    *rows = *K = 0;
    file_kind kind;
    int rc = kind_of(path, 1, &kind, diag);
    if (rc) return rc;
    emdpo_lines lin;
    if ((rc = open_lines(&lin, path, diag))) return rc;
    rc = kind == KIND_CSV ? regrets_csv(&lin, R, rows, K, diag) : regrets_json(&lin, R, rows, K, diag);
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_set(diag, lin.lineno, "out of memory");
    emdpo_lines_close(&lin);
    if (rc) *rows = *K = 0;
    return rc;
}

/* ---- MMRA-AE's result on a given matrix ------------------------------------ */

typedef struct regrets_out {
    const emdpo_regrets_result *res;
    const char *source;
} regrets_out;

static void write_regrets_json(FILE *fp, const void *ctx) {
    const regrets_out *o = ctx;
    const emdpo_regrets_result *r = o->res;
    fprintf(fp, "{\n  \"k\": %d,\n  \"solver\": \"%s\",\n  \"w\": ", r->K, emdpo_game_solver_name(r->solver));
    emdpo_json_nums(fp, r->w, r->K);
    fputs(",\n  \"regret\": ", fp);
    emdpo_json_nums(fp, r->regret, r->K);
    fputs(",\n  \"max_regret\": ", fp);
    emdpo_json_num(fp, r->game.upper);
    fputs(",\n  \"duality_gap\": ", fp);
    emdpo_json_num(fp, r->game.gap);
    fprintf(fp, ",\n  \"iterations\": %ld,\n  \"hedge_capped\": %s,\n  \"lp_value\": ", r->game.iterations,
            r->hedge_capped ? "true" : "false");
    emdpo_json_num(fp, r->lp.value);
    fputs(",\n  \"lp_w\": ", fp);
    emdpo_json_nums(fp, r->lp_w, r->K);
    fputs(",\n  \"regrets\": ", fp);
    emdpo_json_str(fp, o->source);
    fprintf(fp, ",\n  \"emdpo_version\": \"%s\"\n}\n", EMDPO_VERSION_STRING);
}

int emdpo_regrets_result_write_json(const emdpo_regrets_result *res, const char *source, FILE *fp) {
    if (!res || !fp || res->K < 1 || res->K > EMDPO_MAX_K) return EMDPO_ERR_INVALID_ARG;
    regrets_out o = {res, source};
    write_regrets_json(fp, &o);
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}

int emdpo_regrets_result_save(const emdpo_regrets_result *res, const char *source, const char *dir,
                              emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!res || !dir || res->K < 1 || res->K > EMDPO_MAX_K)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no result or directory");
    regrets_out o = {res, source};
    return emdpo_afile_write_in(dir, "aggregate.json", write_regrets_json, &o, diag);
}
