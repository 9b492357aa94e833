/* emdpo_report_write: one self-contained HTML page for a run directory. It shows
 * the run's configuration and timings (run.json), every EM fit's
 * log-likelihood trace and posterior by true group (NAME/fit.json with a
 * loglik_trace, NAME/posterior.csv, and the training data that fit.json
 * names), the paper's Tables 1 and 2 (table1.json, table2.json: emdpo eval
 * --json, with generation quality when it has "generation"), Table 3
 * (table3.json: emdpo regret --json; table3_exact.json, when present, the
 * same under the option-set estimator) and the choice of K
 * (select.json). Charts are inline SVG, styles inline CSS: no script, no
 * network, and the markup is XHTML-compatible. A section whose files are
 * missing says so; a malformed file stops the report with EMDPO_ERR_PARSE
 * and a diag naming it and what was wrong, and no page is written. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"
#include "data/data.h"
#include "fitfile/fit.h"
#include "report/svg.h"

static const char css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#222;"
    "background:#fff;max-width:60em;margin:0 auto;padding:1.5em;line-height:1.45}\n"
    "h1{font-size:1.7em;margin:.2em 0}\n"
    "h2{font-size:1.3em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2.2em}\n"
    "h3{font-size:1.05em;margin-top:1.6em}\n"
    ".meta,.note{color:#555}\n"
    "nav ul{list-style:none;padding:0;margin:.5em 0}\n"
    "nav li{display:inline;margin-right:1.2em}\n"
    "code,pre{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:.9em}\n"
    "pre{background:#f4f4f4;padding:.6em .8em;white-space:pre-wrap;word-break:break-all}\n"
    "table{border-collapse:collapse;margin:.8em 0;font-variant-numeric:tabular-nums}\n"
    "th,td{padding:.3em .7em;text-align:right;border-bottom:1px solid #ddd;vertical-align:top}\n"
    "thead th{border-bottom:2px solid #888;text-align:center}\n"
    "tbody th,td.text{text-align:left}\n"
    "td.text{word-break:break-all}\n"
    ".sep{border-left:2px solid #bbb}\n"
    "figure{margin:1em 0}\n"
    "svg{display:block;max-width:100%;height:auto}\n"
    "@media print{body{max-width:none;padding:0;font-size:10pt}nav{display:none}"
    "h2,h3{break-after:avoid}figure,table{break-inside:avoid}}\n";

/* ---- reading ---- */

typedef struct jfile {
    char *path;
    char *text;
    size_t len;
    emdpo_json_doc *doc;
    const emdpo_json *root; /* NULL when the file is absent */
    emdpo_diag *diag;
} jfile;

static int nomem(emdpo_diag *diag, const char *what) {
    return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory (%s)", what);
}

/* 1 when path exists; 0 when it does not (ENOENT or ENOTDIR). */
static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR);
}

static void jfile_free(jfile *f) {
    emdpo_json_doc_free(f->doc);
    if (f->text) emdpo_free(f->text, f->len + 1);
    emdpo_strfree(f->path);
    f->doc = NULL;
    f->text = NULL;
    f->path = NULL;
    f->root = NULL;
}

/* Reads and parses dir/name into f, whose root must be an object. A
 * missing file leaves f->root NULL and is no error. */
static int jfile_load(jfile *f, const char *dir, const char *name, emdpo_diag *diag) {
    memset(f, 0, sizeof *f);
    f->diag = diag;
    if (!(f->path = emdpo_path_join(dir, name))) return nomem(diag, name);
    if (!exists(f->path)) return 0;
    emdpo_diag_reset(diag, f->path);
    int rc = emdpo_file_read(f->path, &f->text, &f->len, diag);
    if (rc) return rc;
    emdpo_json_error err;
    if (!(rc = emdpo_json_doc_create(&f->doc))) rc = emdpo_json_parse(f->doc, f->text, f->len, &f->root, &err);
    if (rc == EMDPO_ERR_PARSE) {
        long line = 1;
        size_t col = 1;
        for (size_t i = 0; i < err.offset && i < f->len; i++, col++)
            if (f->text[i] == '\n') line++, col = 0;
        f->root = NULL;
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, f->path, line, "not valid JSON: %s (column %zu)", err.msg, col);
    }
    if (rc) return nomem(diag, f->path);
    if (f->root->type != EMDPO_JSON_OBJECT) {
        emdpo_json_type type = f->root->type;
        f->root = NULL;
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, f->path, 0, "expected a JSON object, found %s",
                             emdpo_json_type_name(type));
    }
    return 0;
}

static const char *a_type(emdpo_json_type t) {
    return t == EMDPO_JSON_ARRAY ? "an array" : t == EMDPO_JSON_OBJECT ? "an object" : emdpo_json_type_name(t);
}

/* obj[key] into *out when it has the type. A missing or null member is
 * an error only when required (*out is then NULL); ctx prefixes the key in
 * messages, e.g. "methods[2].". */
static int field(const jfile *f, const emdpo_json *obj, const char *ctx, const char *key, emdpo_json_type type,
                 int required, const emdpo_json **out) {
    const emdpo_json *v = emdpo_json_get(obj, key);
    *out = NULL;
    if (!v || v->type == EMDPO_JSON_NULL)
        return required ? emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "missing \"%s%s\"", ctx, key) : 0;
    if (v->type != type)
        return emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "\"%s%s\" must be %s, found %s", ctx, key,
                             a_type(type), a_type(v->type));
    *out = v;
    return 0;
}

/* An array of n numbers or nulls (any length when n < 0). */
static int num_array(const jfile *f, const emdpo_json *obj, const char *ctx, const char *key, long n, int required,
                     const emdpo_json **out) {
    int rc = field(f, obj, ctx, key, EMDPO_JSON_ARRAY, required, out);
    if (rc || !*out) return rc;
    if (n >= 0 && (long)(*out)->len != n)
        return emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "\"%s%s\" has %zu entries, expected %ld", ctx, key,
                             (*out)->len, n);
    for (size_t i = 0; i < (*out)->len; i++) {
        emdpo_json_type t = (*out)->u.elems[i].type;
        if (t != EMDPO_JSON_NUMBER && t != EMDPO_JSON_NULL)
            return emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0,
                                 "\"%s%s\"[%zu] must be a number or null, found %s", ctx, key, i, a_type(t));
    }
    return 0;
}

/* An array of n strings (or nulls when nulls is set). */
static int str_array(const jfile *f, const emdpo_json *obj, const char *ctx, const char *key, long n, int nulls,
                     int required, const emdpo_json **out) {
    int rc = field(f, obj, ctx, key, EMDPO_JSON_ARRAY, required, out);
    if (rc || !*out) return rc;
    if (n >= 0 && (long)(*out)->len != n)
        return emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "\"%s%s\" has %zu entries, expected %ld", ctx, key,
                             (*out)->len, n);
    for (size_t i = 0; i < (*out)->len; i++) {
        emdpo_json_type t = (*out)->u.elems[i].type;
        if (t != EMDPO_JSON_STRING && !(nulls && t == EMDPO_JSON_NULL))
            return emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "\"%s%s\"[%zu] must be a string%s, found %s",
                                 ctx, key, i, nulls ? " or null" : "", a_type(t));
    }
    return 0;
}

/* Each element of arr[key] must be an object. */
static int obj_array(const jfile *f, const emdpo_json *obj, const char *key, const emdpo_json **out) {
    int rc = field(f, obj, "", key, EMDPO_JSON_ARRAY, 1, out);
    for (size_t i = 0; !rc && i < (*out)->len; i++)
        if ((*out)->u.elems[i].type != EMDPO_JSON_OBJECT)
            rc = emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "\"%s\"[%zu] must be an object, found %s", key, i,
                               a_type((*out)->u.elems[i].type));
    return rc;
}

/* Arrays of n elements (n may be 0), zeroed; free with free_n and the same n. */
static void *alloc_n(size_t n, size_t size) { return emdpo_calloc(n ? n : 1, size); }
static void free_n(void *p, size_t n, size_t size) {
    if (p) emdpo_free(p, (n ? n : 1) * size);
}

static double num(const emdpo_json *v) { return v && v->type == EMDPO_JSON_NUMBER ? v->num : NAN; }
static double num_at(const emdpo_json *a, size_t i) { return a && i < a->len ? num(&a->u.elems[i]) : NAN; }
static const char *str_at(const emdpo_json *a, size_t i) {
    return a && i < a->len && a->u.elems[i].type == EMDPO_JSON_STRING ? a->u.elems[i].u.str : NULL;
}
static const char *str_of(const emdpo_json *obj, const char *key) {
    const emdpo_json *v = emdpo_json_get(obj, key);
    return v && v->type == EMDPO_JSON_STRING ? v->u.str : NULL;
}

/* Group and method names sort as people number them: P2 before P10. */
static int natural_cmp(const char *a, const char *b) {
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            while (*a == '0') a++;
            while (*b == '0') b++;
            size_t na = strspn(a, "0123456789"), nb = strspn(b, "0123456789");
            if (na != nb) return na < nb ? -1 : 1;
            int c = strncmp(a, b, na);
            if (c) return c;
            a += na;
            b += nb;
        } else if (*a != *b) {
            return (unsigned char)*a - (unsigned char)*b;
        } else {
            a++, b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

/* order[0..n) = 0..n-1 sorted by natural order of names[i]. */
static void natural_order(const char *const *names, int *order, int n) {
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && natural_cmp(names[order[j - 1]], names[i]) > 0; j--) order[j] = order[j - 1];
        order[j] = i;
    }
}

/* ---- writing ---- */

typedef struct report {
    FILE *fp;
    const char *dir;
    int charts; /* charts so far; numbers their ids */
    emdpo_diag *diag;
} report;

static const char *next_id(report *r, char *buf, size_t size) {
    snprintf(buf, size, "chart%d", ++r->charts);
    return buf;
}

/* A paragraph of class cls: fmt's text, escaped. */
static void para(report *r, const char *cls, const char *fmt, ...) EMDPO_PRINTF(3, 4);

static void para(report *r, const char *cls, const char *fmt, ...) {
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(r->fp, "<p class=\"%s\">", cls);
    emdpo_html_text(r->fp, buf);
    fputs("</p>\n", r->fp);
}

static void absent(report *r, const char *file) { para(r, "note", "%s: not in this run.", file); }

static void section_open(report *r, const char *id, const char *title) {
    fprintf(r->fp, "<section id=\"%s\">\n<h2>", id);
    emdpo_html_text(r->fp, title);
    fputs("</h2>\n", r->fp);
}

static void section_close(report *r) { fputs("</section>\n", r->fp); }

/* A table cell with a number, in bold when best. */
static void num_cell(report *r, double v, int decimals, int best, const char *cls) {
    char buf[64];
    fprintf(r->fp, "<td%s%s%s>%s", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "", best ? "<strong>" : "");
    emdpo_html_text(r->fp, emdpo_fmt_num(buf, sizeof buf, v, decimals));
    fprintf(r->fp, "%s</td>", best ? "</strong>" : "");
}

static void th(report *r, const char *attrs, const char *text) {
    fprintf(r->fp, "<th%s%s>", attrs ? " " : "", attrs ? attrs : "");
    emdpo_html_text(r->fp, text);
    fputs("</th>", r->fp);
}

/* A JSON value in compact form: strings quoted inside arrays and objects. */
static void json_value(FILE *fp, const emdpo_json *v, int top) {
    switch (v->type) {
    case EMDPO_JSON_NULL:
        fputs(top ? "\xE2\x80\x93" : "null", fp);
        break;
    case EMDPO_JSON_BOOL:
        fputs(v->boolean ? "true" : "false", fp);
        break;
    case EMDPO_JSON_NUMBER:
        if (v->is_int) fprintf(fp, "%lld", (long long)v->inum);
        else fprintf(fp, "%.10g", v->num);
        break;
    case EMDPO_JSON_STRING:
        fputs(top ? "" : "&quot;", fp);
        emdpo_html_text(fp, v->u.str);
        fputs(top ? "" : "&quot;", fp);
        break;
    case EMDPO_JSON_ARRAY:
        fputc('[', fp);
        for (size_t i = 0; i < v->len; i++) {
            if (i) fputs(", ", fp);
            json_value(fp, &v->u.elems[i], 0);
        }
        fputc(']', fp);
        break;
    case EMDPO_JSON_OBJECT:
        fputc('{', fp);
        for (size_t i = 0; i < v->len; i++) {
            fputs(i ? ", &quot;" : "&quot;", fp);
            emdpo_html_text(fp, v->u.members[i].key);
            fputs("&quot;: ", fp);
            json_value(fp, &v->u.members[i].value, 0);
        }
        fputc('}', fp);
        break;
    }
}

static void figure(report *r, void (*draw)(FILE *, const emdpo_svg_chart *), const emdpo_svg_chart *c) {
    fputs("<figure>\n", r->fp);
    draw(r->fp, c);
    fputs("</figure>\n", r->fp);
}

/* ---- run.json ---- */

static int check_run(const jfile *f) {
    const emdpo_json *v, *t = NULL;
    int rc = field(f, f->root, "", "title", EMDPO_JSON_STRING, 0, &v);
    if (!rc) rc = field(f, f->root, "", "command", EMDPO_JSON_STRING, 0, &v);
    if (!rc) rc = field(f, f->root, "", "config", EMDPO_JSON_OBJECT, 0, &v);
    if (!rc) rc = field(f, f->root, "", "total_seconds", EMDPO_JSON_NUMBER, 0, &v);
    if (!rc) rc = field(f, f->root, "", "timings", EMDPO_JSON_ARRAY, 0, &t);
    for (size_t i = 0; !rc && t && i < t->len; i++) {
        char ctx[48];
        snprintf(ctx, sizeof ctx, "timings[%zu].", i);
        if (t->u.elems[i].type != EMDPO_JSON_OBJECT)
            return emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "\"timings\"[%zu] must be an object, found %s",
                                 i, a_type(t->u.elems[i].type));
        if (!(rc = field(f, &t->u.elems[i], ctx, "stage", EMDPO_JSON_STRING, 1, &v)))
            rc = field(f, &t->u.elems[i], ctx, "seconds", EMDPO_JSON_NUMBER, 0, &v);
    }
    return rc;
}

static int timings_chart(report *r, const emdpo_json *t) {
    size_t n = t->len;
    double *y = alloc_n(n, sizeof *y);
    const char **cats = alloc_n(n, sizeof *cats);
    int rc = y && cats ? 0 : nomem(r->diag, "timings");
    for (size_t i = 0; !rc && i < n; i++) {
        cats[i] = str_of(&t->u.elems[i], "stage");
        y[i] = num(emdpo_json_get(&t->u.elems[i], "seconds"));
    }
    if (!rc) {
        char id[32];
        emdpo_svg_series s = {"seconds", y, NULL, (int)n};
        emdpo_svg_chart c = {.id = next_id(r, id, sizeof id), .title = "Time per stage", .x_label = "seconds",
                           .y_label = "stage", .series = &s, .n_series = 1, .cats = cats, .n_cats = (int)n,
                           .decimals = 1, .value_suffix = " s"};
        figure(r, emdpo_svg_hbars, &c);
    }
    free_n(y, n, sizeof *y);
    free_n(cats, n, sizeof *cats);
    return rc;
}

static int section_run(report *r, const jfile *f) {
    section_open(r, "run", "Run");
    int rc = 0;
    if (!f->root) absent(r, "run.json");
    else {
        const emdpo_json *cmd = emdpo_json_get(f->root, "command"), *config = emdpo_json_get(f->root, "config"),
                         *t = emdpo_json_get(f->root, "timings");
        if (cmd && cmd->type == EMDPO_JSON_STRING) {
            fputs("<h3>Command</h3>\n<pre><code>", r->fp);
            emdpo_html_text(r->fp, cmd->u.str);
            fputs("</code></pre>\n", r->fp);
        }
        if (config && config->type == EMDPO_JSON_OBJECT) {
            fputs("<h3>Configuration</h3>\n<table>\n<thead><tr><th>setting</th><th>value</th></tr></thead>\n<tbody>\n",
                  r->fp);
            for (size_t i = 0; i < config->len; i++) {
                fputs("<tr>", r->fp);
                th(r, "scope=\"row\"", config->u.members[i].key);
                fputs("<td class=\"text\">", r->fp);
                json_value(r->fp, &config->u.members[i].value, 1);
                fputs("</td></tr>\n", r->fp);
            }
            fputs("</tbody>\n</table>\n", r->fp);
        }
        double total = num(emdpo_json_get(f->root, "total_seconds"));
        char buf[64];
        if (t && t->type == EMDPO_JSON_ARRAY && t->len > 0) {
            fputs("<h3>Timings</h3>\n", r->fp);
            rc = timings_chart(r, t);
        } else {
            para(r, "note", "run.json lists no timings.");
        }
        if (!rc && isfinite(total)) para(r, "note", "Total: %s s.", emdpo_fmt_num(buf, sizeof buf, total, 1));
    }
    section_close(r);
    return rc;
}

/* ---- EM fits ---- */

typedef struct fit_dir {
    char *name;
    char *dir;
    emdpo_fit *fit;
} fit_dir;

typedef struct fit_list {
    fit_dir *v;
    size_t n, cap;
} fit_list;

static void fits_free(fit_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        emdpo_strfree(l->v[i].name);
        emdpo_strfree(l->v[i].dir);
        emdpo_fit_free(l->v[i].fit);
    }
    emdpo_free(l->v, l->cap * sizeof *l->v);
}

static int fit_cmp(const void *a, const void *b) {
    return natural_cmp(((const fit_dir *)a)->name, ((const fit_dir *)b)->name);
}

/* Adds DIR/name when it is a directory holding a fit.json with a trace,
 * read by the one fit reader (which checks it). */
static int consider_fit(report *r, fit_list *l, const char *name) {
    char *dir = emdpo_path_join(r->dir, name);
    jfile f = {0};
    int rc = dir ? EMDPO_OK : nomem(r->diag, "listing fits");
    if (!rc && emdpo_path_is_dir(dir) && !(rc = jfile_load(&f, dir, "fit.json", r->diag)) && f.root) {
        const emdpo_json *trace = emdpo_json_get(f.root, "loglik_trace");
        emdpo_fit *fit = NULL;
        if (trace && trace->type != EMDPO_JSON_NULL && !(rc = emdpo_fit_read(f.path, &fit, r->diag))) {
            if (emdpo_grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v) || !(l->v[l->n].name = emdpo_strdup(name))) {
                emdpo_fit_free(fit);
                rc = nomem(r->diag, "listing fits");
            } else {
                l->v[l->n].dir = dir;
                l->v[l->n++].fit = fit;
                dir = NULL;
            }
        }
    }
    jfile_free(&f);
    emdpo_strfree(dir);
    return rc;
}

static int list_fits(report *r, fit_list *l) {
    DIR *dp = opendir(r->dir);
    if (!dp) return emdpo_diag_at(r->diag, EMDPO_ERR_IO, r->dir, 0, "cannot open the directory: %s", strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(dp)))
        if (e->d_name[0] != '.') rc = consider_fit(r, l, e->d_name);
    closedir(dp);
    if (!rc && l->n > 1) qsort(l->v, l->n, sizeof *l->v, fit_cmp);
    return rc;
}

static void fits_table(report *r, const fit_list *l) {
    fputs("<table>\n<thead><tr><th>fit</th><th>family</th><th>K</th><th>&#951; (type weights)</th><th>iterations</th>"
          "<th>converged</th><th>log-likelihood</th><th>elapsed (s)</th></tr></thead>\n<tbody>\n", r->fp);
    char buf[64];
    for (size_t i = 0; i < l->n; i++) {
        const emdpo_fit *f = l->v[i].fit;
        fputs("<tr>", r->fp);
        th(r, "scope=\"row\"", l->v[i].name);
        fputs("<td class=\"text\">", r->fp);
        emdpo_html_text(r->fp, emdpo_family_name(f->family));
        fputs("</td>", r->fp);
        num_cell(r, f->K, 0, 0, NULL);
        fputs("<td>", r->fp);
        for (int k = 0; k < f->K; k++)
            fprintf(r->fp, "%s%s", k ? ", " : "", emdpo_fmt_num(buf, sizeof buf, f->res.eta[k], 3));
        fputs("</td>", r->fp);
        num_cell(r, f->res.iterations < 0 ? NAN : f->res.iterations, 0, 0, NULL);
        fprintf(r->fp, "<td>%s</td>", f->res.converged < 0 ? "\xE2\x80\x93" : f->res.converged ? "yes" : "no");
        num_cell(r, f->res.loglik, 2, 0, NULL);
        num_cell(r, f->elapsed, 1, 0, NULL);
        fputs("</tr>\n", r->fp);
    }
    fputs("</tbody>\n</table>\n", r->fp);
}

static int trace_chart(report *r, const fit_list *l) {
    emdpo_svg_series *s = alloc_n(l->n, sizeof *s);
    if (!s) return nomem(r->diag, "traces");
    for (size_t i = 0; i < l->n; i++) {
        s[i].label = l->v[i].name;
        s[i].n = l->v[i].fit->res.n_trace;
        s[i].y = l->v[i].fit->res.trace;
    }
    char id[32], title[96];
    snprintf(title, sizeof title, "Log-likelihood per EM iteration%s%.40s", l->n == 1 ? ": " : "",
             l->n == 1 ? l->v[0].name : "");
    emdpo_svg_chart c = {.id = next_id(r, id, sizeof id), .title = title,
                         .x_label = "EM iteration (0: after the first E-step)", .y_label = "log-likelihood",
                         .series = s, .n_series = (int)l->n, .x_integer = 1};
    figure(r, emdpo_svg_lines, &c);
    free_n(s, l->n, sizeof *s);
    return EMDPO_OK;
}

/* The posterior averaged over each true group's annotators. */
typedef struct group_gamma {
    int K, G;
    double *sum;    /* (G, K) */
    int64_t *count; /* (G) */
    int64_t unmatched, ungrouped;
} group_gamma;

#define ROW_LABEL 96

static int gamma_heatmap(report *r, const fit_dir *fd, const emdpo_data *d, const group_gamma *g) {
    size_t G = (size_t)g->G, K = (size_t)g->K;
    int *order = alloc_n(G, sizeof *order);
    double *v = alloc_n(G * K, sizeof *v);
    char *rowbuf = alloc_n(G, ROW_LABEL);
    const char **rows = alloc_n(G, sizeof *rows);
    char colbuf[EMDPO_MAX_K][32], notebuf[EMDPO_MAX_K][64];
    const char *cols[EMDPO_MAX_K], *notes[EMDPO_MAX_K];
    int rc = order && v && rowbuf && rows ? 0 : nomem(r->diag, "posterior by group");
    if (rc) goto done;
    natural_order((const char *const *)d->group_name, order, (int)G);
    for (size_t i = 0; i < G; i++) {
        int gi = order[i];
        rows[i] = rowbuf + i * ROW_LABEL;
        snprintf(rowbuf + i * ROW_LABEL, ROW_LABEL, "%.60s (n = %lld)", d->group_name[gi], (long long)g->count[gi]);
        for (size_t k = 0; k < K; k++)
            v[i * K + k] = g->count[gi] ? g->sum[(size_t)gi * K + k] / (double)g->count[gi] : NAN;
    }
    for (size_t k = 0; k < K; k++) {
        char buf[48];
        snprintf(colbuf[k], sizeof colbuf[k], "type_%zu", k + 1);
        snprintf(notebuf[k], sizeof notebuf[k], "\xCE\xB7 = %s",
                 emdpo_fmt_num(buf, sizeof buf, (int)k < fd->fit->K ? fd->fit->res.eta[k] : NAN, 3));
        cols[k] = colbuf[k];
        notes[k] = notebuf[k];
    }
    char id[32], title[160];
    snprintf(title, sizeof title, "%.40s: mean posterior \xCE\xB3 by true group", fd->name);
    emdpo_svg_heat h = {next_id(r, id, sizeof id), title, "true group", "latent type", rows, cols, notes, v, (int)G,
                        (int)K};
    fputs("<figure>\n", r->fp);
    emdpo_svg_heatmap(r->fp, &h);
    fputs("</figure>\n", r->fp);
done:
    free_n(order, G, sizeof *order);
    free_n(v, G * K, sizeof *v);
    free_n(rowbuf, G, ROW_LABEL);
    free_n(rows, G, sizeof *rows);
    return rc;
}

/* Joins posterior.csv (read by the one posterior reader) with the data's
 * groups and draws the heat map. */
static int group_posterior(report *r, const fit_dir *fd, const char *post, const emdpo_data *d) {
    emdpo_posterior *p = NULL;
    int rc = emdpo_posterior_read(post, fd->fit->K, &p, r->diag);
    if (rc) return rc;
    group_gamma g = {.G = d->n_groups, .K = emdpo_posterior_k(p)};
    g.count = alloc_n((size_t)g.G, sizeof *g.count);
    g.sum = alloc_n((size_t)g.G * g.K, sizeof *g.sum);
    if (!g.count || !g.sum) rc = nomem(r->diag, "posterior");
    int64_t matched = 0;
    for (int64_t i = 0; !rc && i < d->n_annot; i++) {
        int64_t row = emdpo_posterior_find(p, d->annot_name[i]);
        if (row < 0) continue;
        matched++;
        int gi = d->annot_group[i];
        if (gi < 0) {
            g.ungrouped++;
            continue;
        }
        g.count[gi]++;
        for (int k = 0; k < g.K; k++) g.sum[(size_t)gi * g.K + k] += emdpo_posterior_gamma(p, row, k);
    }
    g.unmatched = emdpo_posterior_n(p) - matched;
    if (!rc) {
        int64_t used = 0;
        for (int i = 0; i < g.G; i++) used += g.count[i];
        if (used == 0) para(r, "note", "No annotator of %s has a group in the training data.", post);
        else rc = gamma_heatmap(r, fd, d, &g);
        if (!rc)
            para(r, "note", "Cell: the mean posterior probability of the type over the group's annotators "
                            "(%lld joined; %lld not in the training data; %lld without a group).",
                 (long long)used, (long long)g.unmatched, (long long)g.ungrouped);
    }
    free_n(g.sum, (size_t)g.G * g.K, sizeof *g.sum);
    free_n(g.count, (size_t)g.G, sizeof *g.count);
    emdpo_posterior_free(p);
    return rc;
}

static int fit_groups(report *r, const fit_dir *fd) {
    const char *data = fd->fit->data;
    fputs("<h3>", r->fp);
    emdpo_html_text(r->fp, fd->name);
    fputs(": posterior by true group</h3>\n", r->fp);
    char *post = emdpo_path_join(fd->dir, "posterior.csv");
    if (!post) return nomem(r->diag, "posterior");
    int rc = 0;
    emdpo_data *d = NULL;
    if (!exists(post)) para(r, "note", "%s/posterior.csv: not in this run.", fd->name);
    else if (!data) para(r, "note", "fit.json names no training data, so the true groups are unknown.");
    else if (!exists(data)) para(r, "note", "The training data %s is missing, so the true groups are unknown.", data);
    else if (!(rc = emdpo_data_read(data, EMDPO_FORMAT_AUTO, &d, r->diag))) {
        if (d->n_groups == 0) para(r, "note", "The training data %s has no \"group\" field.", data);
        else rc = group_posterior(r, fd, post, d);
    }
    emdpo_data_free(d);
    emdpo_strfree(post);
    return rc;
}

static int section_fits(report *r) {
    fit_list l = {0};
    section_open(r, "fits", "EM-DPO fits");
    int rc = list_fits(r, &l);
    if (!rc && l.n == 0) para(r, "note", "EM fits (NAME/fit.json with a loglik_trace): not in this run.");
    if (!rc && l.n > 0) {
        fits_table(r, &l);
        rc = trace_chart(r, &l);
    }
    for (size_t i = 0; !rc && i < l.n; i++) rc = fit_groups(r, &l.v[i]);
    section_close(r);
    fits_free(&l);
    return rc;
}

/* ---- Tables 1 and 2 ---- */

/* ---- Generation quality (emdpo eval --generate's "generation") ---- */

static const char *const genq_key[] = {"valid", "valid_se", "mean_tokens", "mean_words", "repetition", "eos", "kl",
                                       "kl_se"};
#define N_GENQ 8

static int check_genq(const jfile *f, const emdpo_json *gen) {
    const emdpo_json *pols, *v;
    int rc = obj_array(f, gen, "policies", &pols);
    for (size_t i = 0; !rc && i < pols->len; i++) {
        const emdpo_json *p = &pols->u.elems[i];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "generation.policies[%zu].", i);
        rc = field(f, p, ctx, "name", EMDPO_JSON_STRING, 1, &v);
        for (int k = 0; !rc && k < N_GENQ; k++) rc = field(f, p, ctx, genq_key[k], EMDPO_JSON_NUMBER, 0, &v);
    }
    return rc;
}

/* A value with its standard error, or a dash. */
static void value_se_cell(report *r, double v, double se, int decimals) {
    char buf[64];
    fputs("<td>", r->fp);
    emdpo_html_text(r->fp, emdpo_fmt_num(buf, sizeof buf, v, decimals));
    if (isfinite(v) && isfinite(se)) fprintf(r->fp, " &#177; %s", emdpo_fmt_num(buf, sizeof buf, se, decimals));
    fputs("</td>", r->fp);
}

static void genq_table(report *r, const emdpo_json *gen) {
    const emdpo_json *pols = emdpo_json_get(gen, "policies");
    char b[5][32];
    fputs("<h3>Generation quality</h3>\n<table>\n<thead><tr><th scope=\"col\">policy</th>"
          "<th scope=\"col\">valid</th><th scope=\"col\">tokens</th><th scope=\"col\">words</th>"
          "<th scope=\"col\">repetition</th><th scope=\"col\">EOS</th><th scope=\"col\">KL to the reference</th>"
          "</tr></thead>\n<tbody>\n",
          r->fp);
    for (size_t i = 0; i < pols->len; i++) {
        const emdpo_json *p = &pols->u.elems[i];
        double v[N_GENQ];
        for (int k = 0; k < N_GENQ; k++) v[k] = num(emdpo_json_get(p, genq_key[k]));
        fputs("<tr>", r->fp);
        th(r, "scope=\"row\"", str_of(p, "name"));
        value_se_cell(r, v[0], v[1], 3);
        num_cell(r, v[2], 2, 0, NULL);
        num_cell(r, v[3], 2, 0, NULL);
        num_cell(r, v[4], 3, 0, NULL);
        num_cell(r, v[5], 3, 0, NULL);
        value_se_cell(r, v[6], v[7], 3);
        fputs("</tr>\n", r->fp);
    }
    fputs("</tbody>\n</table>\n", r->fp);
    para(r, "note",
         "Samples: %s per prompt on %s prompts of the held-out data, temperature %s, at most %s tokens. Valid: the "
         "share of samples that are exactly one of the data's responses (a closed set; a dash when there is none). "
         "Repetition: the mean share of repeated token %s-grams in a sample (seq-rep). KL: the mean over samples of "
         "log \xCF\x80(y|x) \xE2\x88\x92 log \xCF\x80_ref(y|x), nats.",
         emdpo_fmt_num(b[0], sizeof b[0], num(emdpo_json_get(gen, "samples_per_prompt")), 0),
         emdpo_fmt_num(b[1], sizeof b[1], num(emdpo_json_get(gen, "prompts")), 0),
         emdpo_fmt_num(b[2], sizeof b[2], num(emdpo_json_get(gen, "temperature")), -1),
         emdpo_fmt_num(b[3], sizeof b[3], num(emdpo_json_get(gen, "max_tokens")), 0),
         emdpo_fmt_num(b[4], sizeof b[4], num(emdpo_json_get(gen, "rep_n")), 0));
}

static int check_table12(const jfile *f) {
    const emdpo_json *groups, *methods, *v;
    int rc = str_array(f, f->root, "", "groups", -1, 0, 1, &groups);
    if (!rc && groups->len == 0) rc = emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "\"groups\" is empty");
    if (!rc) rc = field(f, f->root, "", "title", EMDPO_JSON_STRING, 0, &v);
    if (!rc) rc = field(f, f->root, "", "beta", EMDPO_JSON_NUMBER, 0, &v);
    if (!rc) rc = field(f, f->root, "", "ari", EMDPO_JSON_NUMBER, 0, &v);
    if (!rc) rc = num_array(f, f->root, "", "decisions", (long)groups->len, 0, &v);
    if (!rc) rc = obj_array(f, f->root, "methods", &methods);
    long G = rc ? 0 : (long)groups->len;
    for (size_t j = 0; !rc && j < methods->len; j++) {
        const emdpo_json *m = &methods->u.elems[j];
        char ctx[48];
        snprintf(ctx, sizeof ctx, "methods[%zu].", j);
        if (!(rc = field(f, m, ctx, "name", EMDPO_JSON_STRING, 1, &v)) &&
            !(rc = num_array(f, m, ctx, "max_mean_margin", G, 1, &v)) &&
            !(rc = num_array(f, m, ctx, "accuracy", G, 1, &v)))
            rc = str_array(f, m, ctx, "best", G, 1, 0, &v);
    }
    const emdpo_json *gen;
    if (!rc) rc = field(f, f->root, "", "generation", EMDPO_JSON_OBJECT, 0, &gen);
    if (!rc && gen) rc = check_genq(f, gen);
    return rc;
}

/* The largest finite value of methods[*].key[g], or -inf. */
static double column_top(const emdpo_json *methods, const char *key, int g) {
    double top = -INFINITY;
    for (size_t j = 0; j < methods->len; j++) {
        double v = num_at(emdpo_json_get(&methods->u.elems[j], key), (size_t)g);
        if (isfinite(v)) top = fmax(top, v);
    }
    return top;
}

static void table12_rows(report *r, const emdpo_json *methods, const int *order, int G) {
    static const char *const keys[2] = {"max_mean_margin", "accuracy"};
    for (size_t j = 0; j < methods->len; j++) {
        const emdpo_json *m = &methods->u.elems[j];
        fputs("<tr>", r->fp);
        th(r, "scope=\"row\"", str_of(m, "name"));
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < G; i++) {
                double v = num_at(emdpo_json_get(m, keys[b]), (size_t)order[i]);
                num_cell(r, v, 4, v == column_top(methods, keys[b], order[i]), b == 1 && i == 0 ? "sep" : NULL);
            }
        fputs("</tr>\n", r->fp);
    }
}

static void table12_best_policies(report *r, const emdpo_json *methods, const emdpo_json *groups, const int *order) {
    int G = (int)groups->len;
    fputs("<table>\n<thead><tr><th>best policy of each ensemble</th>", r->fp);
    for (int i = 0; i < G; i++) th(r, "scope=\"col\"", str_at(groups, (size_t)order[i]));
    fputs("</tr></thead>\n<tbody>\n", r->fp);
    for (size_t j = 0; j < methods->len; j++) {
        const emdpo_json *m = &methods->u.elems[j], *best = emdpo_json_get(m, "best");
        fputs("<tr>", r->fp);
        th(r, "scope=\"row\"", str_of(m, "name"));
        for (int i = 0; i < G; i++) {
            const char *s = str_at(best, (size_t)order[i]);
            fputs("<td>", r->fp);
            emdpo_html_text(r->fp, s ? s : "\xE2\x80\x93");
            fputs("</td>", r->fp);
        }
        fputs("</tr>\n", r->fp);
    }
    fputs("</tbody>\n</table>\n", r->fp);
}

static int margins_chart(report *r, const emdpo_json *methods, const emdpo_json *groups, const int *order) {
    size_t nm = methods->len, G = groups->len;
    double *y = alloc_n(nm * G, sizeof *y);
    emdpo_svg_series *s = alloc_n(nm, sizeof *s);
    const char **cats = alloc_n(G, sizeof *cats);
    int rc = y && s && cats ? 0 : nomem(r->diag, "margins chart");
    for (size_t i = 0; !rc && i < G; i++) cats[i] = str_at(groups, (size_t)order[i]);
    for (size_t j = 0; !rc && j < nm; j++) {
        const emdpo_json *m = &methods->u.elems[j];
        for (size_t i = 0; i < G; i++) y[j * G + i] = num_at(emdpo_json_get(m, "max_mean_margin"), (size_t)order[i]);
        s[j] = (emdpo_svg_series){str_of(m, "name"), y + j * G, NULL, (int)G};
    }
    if (!rc) {
        char id[32];
        emdpo_svg_chart c = {.id = next_id(r, id, sizeof id), .title = "Max-mean reward margin by true group",
                           .x_label = "true group", .y_label = "max-mean reward margin", .series = s,
                           .n_series = (int)nm, .cats = cats, .n_cats = (int)G, .decimals = 3};
        figure(r, emdpo_svg_bars, &c);
    }
    free_n(y, nm * G, sizeof *y);
    free_n(s, nm, sizeof *s);
    free_n(cats, G, sizeof *cats);
    return rc;
}

static void table12_notes(report *r, const jfile *f, const emdpo_json *groups, const int *order) {
    char buf[64], buf2[64];
    const emdpo_json *dec = emdpo_json_get(f->root, "decisions"), *ari = emdpo_json_get(f->root, "ari");
    fprintf(r->fp, "<p class=\"note\">\xCE\xB2 = %s.",
            emdpo_fmt_num(buf, sizeof buf, num(emdpo_json_get(f->root, "beta")), -1));
    for (size_t i = 0; dec && dec->type == EMDPO_JSON_ARRAY && i < groups->len; i++) {
        fputs(i ? ", " : " Decisions per group: ", r->fp);
        emdpo_html_text(r->fp, str_at(groups, (size_t)order[i]));
        fprintf(r->fp, " %s%s", emdpo_fmt_num(buf, sizeof buf, num_at(dec, (size_t)order[i]), 0),
                i + 1 == groups->len ? "." : "");
    }
    fputs(" Bold: the best value in each column. A method's number for a group is that of its best policy for the "
          "group (the highest mean margin).</p>\n", r->fp);
    if (ari && ari->type == EMDPO_JSON_NUMBER)
        para(r, "note", "Adjusted Rand index of the posterior's most probable type against the true groups: %s "
                        "(%s annotators).",
             emdpo_fmt_num(buf, sizeof buf, ari->num, 4),
             emdpo_fmt_num(buf2, sizeof buf2, num(emdpo_json_get(f->root, "ari_annotators")), 0));
}

static int section_table12(report *r, const char *file, const char *id, const char *default_title) {
    jfile f;
    int rc;
    if ((rc = jfile_load(&f, r->dir, file, r->diag)) || (f.root && (rc = check_table12(&f)))) {
        jfile_free(&f);
        return rc;
    }
    const char *title = f.root ? str_of(f.root, "title") : NULL;
    section_open(r, id, title ? title : default_title);
    if (!f.root) absent(r, file);
    else {
        const emdpo_json *groups = emdpo_json_get(f.root, "groups"), *methods = emdpo_json_get(f.root, "methods");
        int G = (int)groups->len;
        int *order = alloc_n((size_t)G, sizeof *order);
        const char **names = alloc_n((size_t)G, sizeof *names);
        if (!order || !names) rc = nomem(r->diag, file);
        else {
            for (int i = 0; i < G; i++) names[i] = str_at(groups, (size_t)i);
            natural_order(names, order, G);
            fprintf(r->fp, "<table>\n<thead><tr><th rowspan=\"2\" scope=\"col\">method</th>"
                           "<th colspan=\"%d\" scope=\"colgroup\">Max-mean reward margins</th>"
                           "<th colspan=\"%d\" scope=\"colgroup\" class=\"sep\">Accuracies</th></tr>\n<tr>", G, G);
            for (int b = 0; b < 2; b++)
                for (int i = 0; i < G; i++)
                    th(r, b && !i ? "scope=\"col\" class=\"sep\"" : "scope=\"col\"", names[order[i]]);
            fputs("</tr></thead>\n<tbody>\n", r->fp);
            table12_rows(r, methods, order, G);
            fputs("</tbody>\n</table>\n", r->fp);
            table12_notes(r, &f, groups, order);
            table12_best_policies(r, methods, groups, order);
            rc = margins_chart(r, methods, groups, order);
            const emdpo_json *gen = emdpo_json_get(f.root, "generation");
            if (!rc && gen && gen->type == EMDPO_JSON_OBJECT) genq_table(r, gen);
        }
        free_n(order, (size_t)G, sizeof *order);
        free_n(names, (size_t)G, sizeof *names);
    }
    section_close(r);
    jfile_free(&f);
    return rc;
}

/* ---- Table 3 ---- */

static int check_table3(const jfile *f) {
    const emdpo_json *types, *pols, *v;
    int rc = str_array(f, f->root, "", "types", -1, 0, 1, &types);
    if (!rc) rc = field(f, f->root, "", "beta", EMDPO_JSON_NUMBER, 0, &v);
    if (!rc) rc = field(f, f->root, "", "estimator", EMDPO_JSON_STRING, 0, &v);
    if (!rc) rc = obj_array(f, f->root, "policies", &pols);
    long T = rc ? 0 : (long)types->len;
    for (size_t j = 0; !rc && j < pols->len; j++) {
        const emdpo_json *p = &pols->u.elems[j];
        char ctx[48];
        snprintf(ctx, sizeof ctx, "policies[%zu].", j);
        if (!(rc = field(f, p, ctx, "name", EMDPO_JSON_STRING, 1, &v)) &&
            !(rc = field(f, p, ctx, "path", EMDPO_JSON_STRING, 0, &v)) &&
            !(rc = num_array(f, p, ctx, "regret", T, 1, &v)) && !(rc = num_array(f, p, ctx, "se", T, 0, &v)))
            rc = field(f, p, ctx, "max_regret", EMDPO_JSON_NUMBER, 0, &v);
    }
    return rc;
}

static void table3_rows(report *r, const emdpo_json *pols, int T) {
    double least = INFINITY;
    char buf[64];
    for (size_t j = 0; j < pols->len; j++) least = fmin(least, num(emdpo_json_get(&pols->u.elems[j], "max_regret")));
    for (size_t j = 0; j < pols->len; j++) {
        const emdpo_json *p = &pols->u.elems[j], *reg = emdpo_json_get(p, "regret"), *se = emdpo_json_get(p, "se");
        const char *path = str_of(p, "path");
        double mx = num(emdpo_json_get(p, "max_regret"));
        fputs("<tr>", r->fp);
        if (path) {
            fputs("<th scope=\"row\" title=\"", r->fp);
            emdpo_html_text(r->fp, path);
            fputs("\">", r->fp);
            emdpo_html_text(r->fp, str_of(p, "name"));
            fputs("</th>", r->fp);
        } else {
            th(r, "scope=\"row\"", str_of(p, "name"));
        }
        for (int k = 0; k < T; k++) {
            double s = num_at(se, (size_t)k);
            fprintf(r->fp, "<td>%s", emdpo_fmt_num(buf, sizeof buf, num_at(reg, (size_t)k), 4));
            if (isfinite(s)) fprintf(r->fp, " &#177; %s", emdpo_fmt_num(buf, sizeof buf, s, 4));
            fputs("</td>", r->fp);
        }
        num_cell(r, mx, 4, isfinite(mx) && mx == least, "sep");
        fputs("</tr>\n", r->fp);
    }
}

static int regret_chart(report *r, const emdpo_json *pols) {
    size_t n = pols->len;
    double *y = alloc_n(n, sizeof *y);
    const char **cats = alloc_n(n, sizeof *cats);
    int rc = y && cats ? 0 : nomem(r->diag, "regret chart");
    for (size_t j = 0; !rc && j < pols->len; j++) {
        cats[j] = str_of(&pols->u.elems[j], "name");
        y[j] = num(emdpo_json_get(&pols->u.elems[j], "max_regret"));
    }
    if (!rc) {
        char id[32];
        emdpo_svg_series s = {"max regret", y, NULL, (int)pols->len};
        emdpo_svg_chart c = {.id = next_id(r, id, sizeof id), .title = "Max regret over the types (lower is better)",
                           .x_label = "policy", .y_label = "max regret", .series = &s, .n_series = 1, .cats = cats,
                           .n_cats = (int)pols->len, .decimals = 3};
        figure(r, emdpo_svg_bars, &c);
    }
    free_n(y, n, sizeof *y);
    free_n(cats, n, sizeof *cats);
    return rc;
}

/* Table 3 from file; a missing optional file leaves no section. */
static int section_table3(report *r, const char *file, const char *id, const char *title, int optional) {
    char buf[64];
    jfile f;
    int rc;
    if ((rc = jfile_load(&f, r->dir, file, r->diag)) || (f.root && (rc = check_table3(&f)))) {
        jfile_free(&f);
        return rc;
    }
    if (!f.root && optional) {
        jfile_free(&f);
        return EMDPO_OK;
    }
    section_open(r, id, title);
    if (!f.root) absent(r, file);
    else {
        const emdpo_json *types = emdpo_json_get(f.root, "types"), *pols = emdpo_json_get(f.root, "policies");
        const char *est = str_of(f.root, "estimator");
        int T = (int)types->len;
        fputs("<table>\n<thead><tr><th scope=\"col\">policy</th>", r->fp);
        for (int k = 0; k < T; k++) th(r, "scope=\"col\"", str_at(types, (size_t)k));
        fputs("<th scope=\"col\" class=\"sep\">max regret</th></tr></thead>\n<tbody>\n", r->fp);
        table3_rows(r, pols, T);
        fputs("</tbody>\n</table>\n", r->fp);
        para(r, "note", "\xCE\xB2 = %s; estimator: %s%s. Bold: the smallest max regret.",
             emdpo_fmt_num(buf, sizeof buf, num(emdpo_json_get(f.root, "beta")), -1), est ? est : "\xE2\x80\x93",
             !est                          ? ""
             : strcmp(est, "sample") == 0 ? " (the paper's: expectations over responses sampled from each policy)"
                                          : " (each policy restricted to each decision's options; not the paper's)");
        rc = regret_chart(r, pols);
    }
    section_close(r);
    jfile_free(&f);
    return rc;
}

/* ---- select.json ---- */

static const char *const crit_key[] = {"loglik", "aic", "bic", "icl", "heldout_loglik_per_annotator"};
static const char *const crit_name[] = {"log-likelihood", "AIC", "BIC", "ICL", "held-out log-likelihood / annotator"};
#define N_CRIT 5

static int check_select(const jfile *f, int lm) {
    const emdpo_json *rows, *v;
    int rc = lm ? field(f, f->root, "", "criterion", EMDPO_JSON_STRING, 1, &v) : 0;
    if (!rc) rc = obj_array(f, f->root, "rows", &rows);
    if (!rc && rows->len == 0) rc = emdpo_diag_at(f->diag, EMDPO_ERR_PARSE, f->path, 0, "\"rows\" is empty");
    for (size_t i = 0; !rc && i < rows->len; i++) {
        const emdpo_json *row = &rows->u.elems[i];
        char ctx[48];
        snprintf(ctx, sizeof ctx, "rows[%zu].", i);
        rc = field(f, row, ctx, "k", EMDPO_JSON_NUMBER, 1, &v);
        if (lm && !rc) rc = field(f, row, ctx, "value", EMDPO_JSON_NUMBER, 0, &v);
        for (int c = 0; !lm && !rc && c < N_CRIT; c++) rc = field(f, row, ctx, crit_key[c], EMDPO_JSON_NUMBER, 0, &v);
    }
    if (!rc) rc = field(f, f->root, "", lm ? "best_k" : "best_k_bic", EMDPO_JSON_NUMBER, 0, &v);
    if (!rc && !lm) rc = field(f, f->root, "", "best_k_heldout", EMDPO_JSON_NUMBER, 0, &v);
    return rc;
}

/* Rows' values of key (or k) as an array; NULL when out of memory. */
static double *row_values(const emdpo_json *rows, const char *key) {
    double *v = alloc_n(rows->len, sizeof *v);
    for (size_t i = 0; v && i < rows->len; i++) v[i] = num(emdpo_json_get(&rows->u.elems[i], key));
    return v;
}

static void k_chart(report *r, const char *title, const char *y_label, const emdpo_svg_series *s, int ns, double best,
                    const char *mark) {
    char id[32];
    emdpo_svg_chart c = {.id = next_id(r, id, sizeof id), .title = title, .x_label = "K (number of types)",
                       .y_label = y_label, .series = s, .n_series = ns, .x_integer = 1, .has_mark = isfinite(best),
                       .mark_x = best, .mark_label = mark};
    figure(r, emdpo_svg_lines, &c);
}

static void select_table(report *r, const emdpo_json *rows, const char *const *names, const char *const *keys, int nc,
                         const double *best_k, const int *decimals) {
    fputs("<table>\n<thead><tr><th scope=\"col\">K</th>", r->fp);
    for (int c = 0; c < nc; c++) th(r, "scope=\"col\"", names[c]);
    fputs("</tr></thead>\n<tbody>\n", r->fp);
    for (size_t i = 0; i < rows->len; i++) {
        const emdpo_json *row = &rows->u.elems[i];
        double k = num(emdpo_json_get(row, "k"));
        char buf[64];
        fprintf(r->fp, "<tr><th scope=\"row\">%s</th>", emdpo_fmt_num(buf, sizeof buf, k, 0));
        for (int c = 0; c < nc; c++)
            num_cell(r, num(emdpo_json_get(row, keys[c])), decimals[c], best_k[c] == k, NULL);
        fputs("</tr>\n", r->fp);
    }
    fputs("</tbody>\n</table>\n", r->fp);
}

static int select_loglinear(report *r, const jfile *f) {
    const emdpo_json *rows = emdpo_json_get(f->root, "rows");
    double bic = num(emdpo_json_get(f->root, "best_k_bic")), held = num(emdpo_json_get(f->root, "best_k_heldout"));
    double best[N_CRIT] = {NAN, NAN, bic, NAN, held};
    static const int dec[N_CRIT] = {1, 1, 1, 1, 4};
    select_table(r, rows, crit_name, crit_key, N_CRIT, best, dec);
    char buf[64], buf2[64], mark[64];
    para(r, "note", "Best K by BIC: %s; by held-out log-likelihood: %s (in bold). Lower criteria and higher held-out "
                    "log-likelihood are better.",
         emdpo_fmt_num(buf, sizeof buf, bic, 0), emdpo_fmt_num(buf2, sizeof buf2, held, 0));
    double *ks = row_values(rows, "k"), *v[N_CRIT] = {0};
    int rc = ks ? 0 : EMDPO_ERR_NOMEM;
    for (int c = 0; !rc && c < N_CRIT; c++)
        if (!(v[c] = row_values(rows, crit_key[c]))) rc = EMDPO_ERR_NOMEM;
    if (!rc) {
        emdpo_svg_series s[3];
        for (int c = 0; c < 3; c++) s[c] = (emdpo_svg_series){crit_name[c + 1], v[c + 1], ks, (int)rows->len};
        snprintf(mark, sizeof mark, "best K by BIC = %s", emdpo_fmt_num(buf, sizeof buf, bic, 0));
        k_chart(r, "Information criteria (lower is better)", "criterion", s, 3, bic, mark);
        emdpo_svg_series h = {crit_name[4], v[4], ks, (int)rows->len};
        snprintf(mark, sizeof mark, "best K = %s", emdpo_fmt_num(buf, sizeof buf, held, 0));
        k_chart(r, "Held-out log-likelihood per annotator (higher is better)", "log-likelihood / annotator", &h, 1,
                held, mark);
    }
    for (int c = 0; c < N_CRIT; c++) free_n(v[c], rows->len, sizeof *v[c]);
    free_n(ks, rows->len, sizeof *ks);
    return rc ? nomem(r->diag, "K selection") : 0;
}

static int select_lm(report *r, const jfile *f) {
    const emdpo_json *rows = emdpo_json_get(f->root, "rows");
    const char *const names[2] = {emdpo_lm_criterion_title(EMDPO_CRITERION_MARGIN),
                                  emdpo_lm_criterion_title(EMDPO_CRITERION_CROSSFIT)};
    static const char *const keys[2] = {"value", "crossfit"};
    static const int dec[2] = {-1, -1};
    const char *crit = str_of(f->root, "criterion");
    double best = num(emdpo_json_get(f->root, "best_k")), marks[2];
    for (int c = 0; c < 2; c++) marks[c] = crit && strcmp(crit, names[c]) == 0 ? best : NAN;
    select_table(r, rows, names, keys, 2, marks, dec);
    char buf[64], mark[64];
    para(r, "note", "Best K by the %s: %s (in bold). The max-mean margin tends to rise with K (each annotator's "
                    "best policy is picked on the decisions it is scored on); the cross-fitted one scores it on "
                    "decisions it was not picked on.",
         crit ? crit : "criterion", emdpo_fmt_num(buf, sizeof buf, best, 0));
    double *ks = row_values(rows, "k"), *v[2] = {row_values(rows, keys[0]), row_values(rows, keys[1])};
    int rc = ks && v[0] && v[1] ? 0 : nomem(r->diag, "K selection");
    if (!rc) {
        emdpo_svg_series s[2] = {{names[0], v[0], ks, (int)rows->len}, {names[1], v[1], ks, (int)rows->len}};
        snprintf(mark, sizeof mark, "best K = %s", emdpo_fmt_num(buf, sizeof buf, best, 0));
        k_chart(r, "K selection (higher is better)", "reward margin", s, 2, best, mark);
    }
    for (int c = 0; c < 2; c++) free_n(v[c], rows->len, sizeof *v[c]);
    free_n(ks, rows->len, sizeof *ks);
    return rc;
}

static int section_select(report *r) {
    jfile f;
    int lm = 0, rc;
    if (!(rc = jfile_load(&f, r->dir, "select.json", r->diag)) && f.root) {
        lm = emdpo_json_get(f.root, "criterion") != NULL;
        rc = check_select(&f, lm);
    }
    if (!rc) {
        section_open(r, "select", "Number of types K");
        if (!f.root) absent(r, "select.json");
        else rc = lm ? select_lm(r, &f) : select_loglinear(r, &f);
        section_close(r);
    }
    jfile_free(&f);
    return rc;
}

/* ---- the page ---- */

static void page_head(report *r, const char *title) {
    fputs("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
          "<meta charset=\"utf-8\"/>\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
          "<meta name=\"generator\" content=\"emdpo " EMDPO_VERSION_STRING "\"/>\n<title>", r->fp);
    emdpo_html_text(r->fp, title);
    fprintf(r->fp, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<header>\n<h1>", css);
    emdpo_html_text(r->fp, title);
    fputs("</h1>\n<p class=\"meta\">Run directory: <code>", r->fp);
    emdpo_html_text(r->fp, r->dir);
    fputs("</code></p>\n</header>\n<nav aria-label=\"sections\"><ul><li><a href=\"#run\">Run</a></li>"
          "<li><a href=\"#fits\">EM-DPO fits</a></li><li><a href=\"#table1\">Table 1</a></li>"
          "<li><a href=\"#table2\">Table 2</a></li><li><a href=\"#table3\">Table 3</a></li>"
          "<li><a href=\"#select\">K selection</a></li></ul></nav>\n<main>\n", r->fp);
}

#define TABLE12_TITLE "max-mean reward margins and accuracies by true group"

static int write_page(report *r, const jfile *run, const char *title) {
    page_head(r, title);
    int rc = section_run(r, run);
    if (!rc) rc = section_fits(r);
    if (!rc) rc = section_table12(r, "table1.json", "table1", "Table 1: " TABLE12_TITLE);
    if (!rc) rc = section_table12(r, "table2.json", "table2", "Table 2: " TABLE12_TITLE);
    if (!rc)
        rc = section_table3(r, "table3.json", "table3", "Table 3: regret of the aggregated policies for each type", 0);
    if (!rc)
        rc = section_table3(r, "table3_exact.json", "table3_exact",
                            "Table 3, restricted to each decision's options", 1);
    if (!rc) rc = section_select(r);
    fputs("</main>\n<footer><p class=\"note\">Written by emdpo " EMDPO_VERSION_STRING
          " report: one file, no scripts, no network.</p></footer>\n</body>\n</html>\n", r->fp);
    return rc;
}

/* The page title: the caller's, else run.json's title, else the
 * directory's name. */
static const char *page_title(const char *given, const jfile *run, const char *dir, char *buf, size_t size) {
    const char *t = run->root ? str_of(run->root, "title") : NULL;
    if (given) return given;
    if (t) return t;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(buf, size, "emdpo run %.*s", (int)(len - start), dir + start);
    return buf;
}

int emdpo_report_write(const char *dir, const char *out, const char *title, char *written, size_t cap,
                       emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no run directory");
    if (!emdpo_path_is_dir(dir)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "not a directory");
    char *own = out ? NULL : emdpo_path_join(dir, "report.html"), tbuf[256];
    if (!out && !own) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    const char *path = out ? out : own;
    jfile run;
    int rc = jfile_load(&run, dir, "run.json", diag);
    if (!rc && run.root) rc = check_run(&run);
    emdpo_afile af;
    if (!rc) rc = emdpo_afile_open(&af, path, diag);
    if (!rc) {
        report r = {af.fp, dir, 0, diag};
        rc = write_page(&r, &run, page_title(title, &run, dir, tbuf, sizeof tbuf));
        if (rc) emdpo_afile_abort(&af);
        else rc = emdpo_afile_commit(&af, diag);
    }
    if (!rc && written && cap) snprintf(written, cap, "%s", path);
    jfile_free(&run);
    emdpo_strfree(own);
    return rc;
}
