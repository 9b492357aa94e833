#include "experiments/goqa.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/json_write.h"
#include "base/lines.h"
#include "base/rng.h"
#include "base/utf8.h"

const char *const emdpo_goqa_paper_countries[4] = {"Britain", "Indonesia", "Mexico", "Pakistan"};
const char *const emdpo_goqa_builtin_countries[4] = {"Arden", "Belmora", "Calvia", "Dastra"};

/* ---- Python literals ------------------------------------------------------ */

typedef struct py_parser {
    const char *s, *p, *end;
    char *scratch; /* the string being decoded */
    size_t scratch_len, scratch_cap;
    size_t err_off;
    char *msg;
    size_t msg_n;
} py_parser;

static int py_error(py_parser *P, const char *at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int py_error(py_parser *P, const char *at, const char *fmt, ...) {
    P->err_off = (size_t)(at - P->s);
    if (P->msg && P->msg_n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(P->msg, P->msg_n, fmt, ap);
        va_end(ap);
    }
    return EMDPO_ERR_PARSE;
}

/* Frees what v owns (not v itself) and leaves it NONE. */
static void py_clear(emdpo_py *v) {
    if (v->type == EMDPO_PY_STR) {
        emdpo_free(v->str, v->len + 1);
    } else if (v->type == EMDPO_PY_LIST || v->type == EMDPO_PY_DICT) {
        size_t n = v->type == EMDPO_PY_DICT ? 2 * v->len : v->len;
        for (size_t i = 0; i < n; i++) py_clear(&v->elems[i]);
        emdpo_free(v->elems, v->cap * sizeof(emdpo_py));
    }
    memset(v, 0, sizeof *v);
}

void emdpo_py_free(emdpo_py *v) {
    if (!v) return;
    py_clear(v);
    emdpo_free(v, sizeof *v);
}

const emdpo_py *emdpo_py_get(const emdpo_py *dict, const char *key) {
    if (!dict || dict->type != EMDPO_PY_DICT) return NULL;
    for (size_t i = 0; i < dict->len; i++) {
        const emdpo_py *k = &dict->elems[2 * i];
        if (k->type == EMDPO_PY_STR && strcmp(k->str, key) == 0) return &dict->elems[2 * i + 1];
    }
    return NULL;
}

static void py_skip_ws(py_parser *P) {
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')) P->p++;
}

static int py_is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int py_is_digit(char c) { return c >= '0' && c <= '9'; }

/* Consumes word when it is next and not followed by an identifier character. */
static int py_word(py_parser *P, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(P->end - P->p) < n || memcmp(P->p, word, n) != 0) return 0;
    if (P->p + n < P->end && (py_is_alpha(P->p[n]) || py_is_digit(P->p[n]))) return 0;
    P->p += n;
    return 1;
}

static int py_hex(py_parser *P, int digits, unsigned *cp) {
    const char *at = P->p;
    if (P->end - P->p < digits) return py_error(P, at, "truncated \\x, \\u or \\U escape");
    unsigned v = 0;
    for (int i = 0; i < digits; i++) {
        char c = *P->p++;
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return py_error(P, P->p - 1, "bad hex digit in an escape");
        v = v * 16 + d;
    }
    *cp = v;
    return 0;
}

static int py_put(py_parser *P, const char *bytes, size_t n) {
    if (emdpo_grow((void **)&P->scratch, &P->scratch_cap, P->scratch_len + n + 1, 1)) return EMDPO_ERR_NOMEM;
    memcpy(P->scratch + P->scratch_len, bytes, n);
    P->scratch_len += n;
    return 0;
}

static int py_string(py_parser *P, emdpo_py *v) {
    const char *open = P->p;
    char quote = *P->p++;
    P->scratch_len = 0;
    for (;;) {
        if (P->p >= P->end || *P->p == '\n' || *P->p == '\r')
            return py_error(P, open, "unterminated string");
        char c = *P->p;
        if (c == quote) {
            P->p++;
            break;
        }
        if (c == '\0') return py_error(P, P->p, "NUL character in a string");
        if (c != '\\') {
            if (py_put(P, &c, 1)) return EMDPO_ERR_NOMEM;
            P->p++;
            continue;
        }
        const char *esc = P->p++;
        if (P->p >= P->end) return py_error(P, open, "unterminated string");
        char e = *P->p++, out[4];
        int rc;
        unsigned cp = 0;
        switch (e) {
        case '\\': case '\'': case '"': out[0] = e; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        case 'a': out[0] = '\a'; break;
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'v': out[0] = '\v'; break;
        case 'x': case 'u': case 'U':
            if ((rc = py_hex(P, e == 'x' ? 2 : e == 'u' ? 4 : 8, &cp))) return rc;
            /* C strings carry the text downstream, so NUL cannot be represented. */
            if (cp == 0) return py_error(P, esc, "NUL character in a string");
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return py_error(P, esc, "escape is not a Unicode scalar value");
            if (py_put(P, out, (size_t)emdpo_utf8_encode(cp, out))) return EMDPO_ERR_NOMEM;
            continue;
        default:
            return py_error(P, esc, "unsupported escape '\\%c'", e);
        }
        if (py_put(P, out, 1)) return EMDPO_ERR_NOMEM;
    }
    char *s = emdpo_malloc(P->scratch_len + 1);
    if (!s) return EMDPO_ERR_NOMEM;
    if (P->scratch_len) memcpy(s, P->scratch, P->scratch_len);
    s[P->scratch_len] = 0;
    v->type = EMDPO_PY_STR;
    v->str = s;
    v->len = P->scratch_len;
    return 0;
}

static int py_number(py_parser *P, emdpo_py *v) {
    const char *start = P->p;
    int neg = P->p < P->end && *P->p == '-';
    if (neg) P->p++;
    v->type = EMDPO_PY_NUM;
    if (py_word(P, "inf")) {
        v->num = neg ? -INFINITY : INFINITY;
        return 0;
    }
    if (!neg && py_word(P, "nan")) {
        v->num = NAN;
        return 0;
    }
    if (P->p >= P->end || !py_is_digit(*P->p)) return py_error(P, start, "expected a value");
    int is_int = 1;
    while (P->p < P->end && py_is_digit(*P->p)) P->p++;
    if (P->p < P->end && *P->p == '.') {
        is_int = 0;
        P->p++;
        while (P->p < P->end && py_is_digit(*P->p)) P->p++;
    }
    if (P->p < P->end && (*P->p == 'e' || *P->p == 'E')) {
        is_int = 0;
        P->p++;
        if (P->p < P->end && (*P->p == '+' || *P->p == '-')) P->p++;
        if (P->p >= P->end || !py_is_digit(*P->p)) return py_error(P, start, "malformed number");
        while (P->p < P->end && py_is_digit(*P->p)) P->p++;
    }
    if (P->p < P->end && (py_is_alpha(*P->p) || *P->p == '.')) return py_error(P, start, "malformed number");
    char buf[128];
    size_t n = (size_t)(P->p - start);
    if (n >= sizeof buf) return py_error(P, start, "number too long");
    memcpy(buf, start, n);
    buf[n] = 0;
    errno = 0;
    double x = strtod(buf, NULL);
    if (!isfinite(x) || (errno == ERANGE && fabs(x) > 1)) return py_error(P, start, "number out of range");
    v->num = x;
    v->is_int = is_int;
    return 0;
}

static int py_value(py_parser *P, emdpo_py *v, int depth);

/* The items of a list or dict, up to the closing bracket. */
static int py_items(py_parser *P, emdpo_py *v, int depth, char close) {
    const char *open = P->p - 1;
    int dict = close == '}';
    size_t n = 0; /* initialised entries of v->elems */
    int rc = 0;
    py_skip_ws(P);
    if (P->p < P->end && *P->p == close) {
        P->p++;
        goto done;
    }
    for (;;) {
        for (int part = 0; part < 1 + dict; part++) {
            if (emdpo_grow((void **)&v->elems, &v->cap, n + 1, sizeof(emdpo_py))) {
                rc = EMDPO_ERR_NOMEM;
                goto fail;
            }
            memset(&v->elems[n], 0, sizeof(emdpo_py));
            py_skip_ws(P);
            const char *at = P->p;
            if ((rc = py_value(P, &v->elems[n], depth + 1))) goto fail;
            n++;
            if (dict && part == 0) {
                if (v->elems[n - 1].type != EMDPO_PY_STR) {
                    rc = py_error(P, at, "dict keys must be strings");
                    goto fail;
                }
                for (size_t k = 0; k + 1 < n; k += 2) {
                    if (strcmp(v->elems[k].str, v->elems[n - 1].str) == 0) {
                        rc = py_error(P, at, "duplicate dict key '%.40s'", v->elems[k].str);
                        goto fail;
                    }
                }
                py_skip_ws(P);
                if (P->p >= P->end || *P->p != ':') {
                    rc = py_error(P, P->p, "expected ':' after a dict key");
                    goto fail;
                }
                P->p++;
            }
        }
        py_skip_ws(P);
        if (P->p >= P->end) {
            rc = py_error(P, open, "unclosed '%c'", *open);
            goto fail;
        }
        if (*P->p == close) {
            P->p++;
            break;
        }
        if (*P->p != ',') {
            rc = py_error(P, P->p, "expected ',' or '%c'", close);
            goto fail;
        }
        P->p++;
        py_skip_ws(P);
        if (P->p < P->end && *P->p == close) {
            rc = py_error(P, P->p, "trailing comma");
            goto fail;
        }
    }
done:
    v->type = dict ? EMDPO_PY_DICT : EMDPO_PY_LIST;
    v->len = dict ? n / 2 : n;
    return 0;
fail:
    for (size_t i = 0; i < n; i++) py_clear(&v->elems[i]);
    emdpo_free(v->elems, v->cap * sizeof(emdpo_py));
    v->elems = NULL;
    v->cap = 0;
    return rc;
}

/* defaultdict(<class 'NAME'>, {...}), after the word defaultdict. */
static int py_defaultdict(py_parser *P, emdpo_py *v, int depth) {
    static const char *const parts[] = {"(", "<class '"};
    for (int i = 0; i < 2; i++) {
        py_skip_ws(P);
        size_t n = strlen(parts[i]);
        if ((size_t)(P->end - P->p) < n || memcmp(P->p, parts[i], n) != 0)
            return py_error(P, P->p, "expected defaultdict(<class '...'>, {...})");
        P->p += n;
    }
    while (P->p < P->end && (py_is_alpha(*P->p) || py_is_digit(*P->p) || *P->p == '.')) P->p++;
    if (P->end - P->p < 2 || memcmp(P->p, "'>", 2) != 0)
        return py_error(P, P->p, "expected defaultdict(<class '...'>, {...})");
    P->p += 2;
    py_skip_ws(P);
    if (P->p >= P->end || *P->p != ',') return py_error(P, P->p, "expected ',' in defaultdict(...)");
    P->p++;
    py_skip_ws(P);
    if (P->p >= P->end || *P->p != '{') return py_error(P, P->p, "defaultdict(...) must hold a dict");
    int rc = py_value(P, v, depth + 1);
    if (rc) return rc;
    py_skip_ws(P);
    if (P->p >= P->end || *P->p != ')') {
        py_clear(v);
        return py_error(P, P->p, "expected ')' closing defaultdict(");
    }
    P->p++;
    return 0;
}

static int py_value(py_parser *P, emdpo_py *v, int depth) {
    py_skip_ws(P);
    if (depth > EMDPO_PY_MAX_DEPTH) return py_error(P, P->p, "nesting deeper than %d", EMDPO_PY_MAX_DEPTH);
    if (P->p >= P->end) return py_error(P, P->p, "expected a value");
    char c = *P->p;
    if (c == '[' || c == '{') {
        P->p++;
        return py_items(P, v, depth, c == '[' ? ']' : '}');
    }
    if (c == '\'' || c == '"') return py_string(P, v);
    if (py_is_alpha(c)) {
        const char *at = P->p;
        if (py_word(P, "None")) {
            v->type = EMDPO_PY_NONE;
            return 0;
        }
        if (py_word(P, "True") || py_word(P, "False")) {
            v->type = EMDPO_PY_BOOL;
            v->num = *at == 'T';
            return 0;
        }
        if (py_word(P, "defaultdict")) return py_defaultdict(P, v, depth);
        if (c != 'n' && c != 'i') return py_error(P, at, "unexpected name");
    }
    return py_number(P, v);
}

int emdpo_py_parse(const char *text, size_t len, emdpo_py **out, size_t *err_off, char *msg, size_t msg_n) {
    *out = NULL;
    if (msg && msg_n) msg[0] = 0;
    py_parser P = {.s = text, .p = text, .end = text + len, .msg = msg, .msg_n = msg_n};
    size_t bad = emdpo_utf8_invalid_at(text, len);
    int rc;
    emdpo_py *v = NULL;
    if (bad < len) {
        rc = py_error(&P, text + bad, "invalid UTF-8");
    } else if (!(v = emdpo_calloc(1, sizeof *v))) {
        rc = EMDPO_ERR_NOMEM;
    } else if (!(rc = py_value(&P, v, 0))) {
        py_skip_ws(&P);
        if (P.p < P.end) rc = py_error(&P, P.p, "unexpected text after the value");
    }
    emdpo_free(P.scratch, P.scratch_cap);
    if (rc) {
        emdpo_py_free(v);
        if (err_off) *err_off = rc == EMDPO_ERR_PARSE ? P.err_off : 0;
        return rc;
    }
    *out = v;
    return 0;
}

/* ---- The bank ----------------------------------------------------------- */

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

static int bank_new(emdpo_goqa_source source, const emdpo_goqa_opts *o, emdpo_goqa_bank **out) {
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

/* Appends a copy of a question; dist rows are already checked and are renormalised here. */
static int bank_add(emdpo_goqa_bank *b, const char *text, int k, const char *const *options,
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

/* *o, or the defaults (in def) when it is NULL; checked. */
static int resolve_opts(const emdpo_goqa_opts **o, emdpo_goqa_opts *def) {
    if (!*o) {
        emdpo_goqa_opts_init(def);
        *o = def;
    }
    return (*o)->est == EMDPO_GOQA_EST_EXACT || (*o)->est == EMDPO_GOQA_EST_ALL ? EMDPO_OK : EMDPO_ERR_INVALID_ARG;
}

int emdpo_goqa_builtin(const emdpo_goqa_opts *o, emdpo_goqa_bank **out) {
    *out = NULL;
    emdpo_goqa_opts def;
    if (resolve_opts(&o, &def)) return EMDPO_ERR_INVALID_ARG;
    int idx[EMDPO_GOQA_MAX_COUNTRIES];
    for (int c = 0; o->countries && c < o->n_countries && c < EMDPO_GOQA_MAX_COUNTRIES; c++) {
        idx[c] = -1;
        for (int d = 0; d < 4; d++)
            if (o->countries[c] && strcmp(o->countries[c], emdpo_goqa_builtin_countries[d]) == 0) idx[c] = d;
        if (idx[c] < 0) return EMDPO_ERR_INVALID_ARG;
    }
    emdpo_goqa_bank *b;
    int rc = bank_new(EMDPO_GOQA_BUILTIN, o, &b);
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
        if ((rc = bank_add(b, builtin_questions[q].text, k, opts, dist, NULL, q + 1))) {
            emdpo_goqa_bank_free(b);
            return rc;
        }
    }
    b->n_records = b->n_questions = b->n_present = BUILTIN_N;
    *out = b;
    return 0;
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
        else rc = bank_add(x->b, text, k, (const char *const *)ol.s, dist, methods, row->inum);
    }
    option_list_free(&ol);
    return rc;
}

int emdpo_goqa_load_index(const char *path, const emdpo_goqa_opts *o, emdpo_goqa_bank **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_goqa_opts def;
    if (resolve_opts(&o, &def)) return EMDPO_ERR_INVALID_ARG;
    emdpo_lines lr = {0};
    if (!(lr.fp = fopen(path, "rb"))) return emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    index_ctx x = {.o = o, .name = path, .diag = diag};
    int rc = bank_new(EMDPO_GOQA_INDEX, o, &x.b);
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
        int rc = bank_add(b, g->text, g->ol.n, (const char *const *)g->ol.s, dist, NULL, g->origin);
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
    if (resolve_opts(&o, &def)) return EMDPO_ERR_INVALID_ARG;
    emdpo_lines lr = {0};
    if (!(lr.fp = fopen(path, "rb"))) return emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    emdpo_goqa_bank *b = NULL;
    emdpo_json_doc *doc = NULL;
    qtable t = {0};
    int rc = bank_new(EMDPO_GOQA_SUBSET, o, &b);
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
        rc = bank_add(b, text, k, (const char *const *)ol.s, dist, NULL, line);
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
    if (resolve_opts(&o, &def)) return EMDPO_ERR_INVALID_ARG;
    emdpo_diag_reset(diag, name);
    csv_ctx r = {.name = name, .diag = diag};
    emdpo_csv_init_buf(&r.rec, buf, len);
    emdpo_goqa_bank *b = NULL;
    double *rows = NULL;
    size_t rows_n = 0;
    int got = 0, rc = bank_new(EMDPO_GOQA_CSV, o, &b);
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
