/* Mixture policies; see lm_mixture.h. */
#include "lm/lm_mixture.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"
#include "base/json_write.h"
#include "base/rng.h"
#include "lm/io/peft.h"

void emdpo_mixture_free(emdpo_mixture *m) {
    if (!m) return;
    size_t K = (size_t)m->K;
    for (size_t k = 0; k < K; k++) {
        if (m->member) emdpo_strfree(m->member[k]);
        if (m->path) emdpo_strfree(m->path[k]);
        if (m->model) emdpo_llama_free(m->model[k]);
    }
    emdpo_free(m->w, K * sizeof *m->w);
    emdpo_free(m->member, K * sizeof *m->member);
    emdpo_free(m->path, K * sizeof *m->path);
    emdpo_free(m->model, K * sizeof *m->model);
    emdpo_strfree(m->reference);
    emdpo_free(m, sizeof *m);
}

/* p joined to the directory of file (p itself when absolute or when file
 * has no directory); NULL when out of memory. */
static char *resolve(const char *file, const char *p) {
    const char *slash = strrchr(file, '/');
    size_t dn = p[0] == '/' || !slash ? 0 : (size_t)(slash - file) + 1, n = strlen(p);
    char *r = emdpo_malloc(dn + n + 1);
    if (!r) return NULL;
    memcpy(r, file, dn);
    memcpy(r + dn, p, n + 1);
    return r;
}

/* The 1-based line of byte offset in text. */
static long line_of(const char *text, size_t len, size_t offset) {
    long line = 1;
    for (size_t i = 0; i < offset && i < len; i++) line += text[i] == '\n';
    return line;
}

static int alloc_members(emdpo_mixture *m, int K) {
    m->K = K;
    m->w = emdpo_calloc((size_t)K, sizeof *m->w);
    m->member = emdpo_calloc((size_t)K, sizeof *m->member);
    m->path = emdpo_calloc((size_t)K, sizeof *m->path);
    m->model = emdpo_calloc((size_t)K, sizeof *m->model);
    return m->w && m->member && m->path && m->model ? EMDPO_OK : EMDPO_ERR_NOMEM;
}

/* Fills m from the parsed root; EMDPO_ERR_PARSE with diag's message. */
static int from_json(const emdpo_json *root, const char *path, emdpo_mixture *m, emdpo_diag *diag) {
    if (root->type != EMDPO_JSON_OBJECT) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "not a JSON object");
    const emdpo_json *kind = emdpo_json_get(root, "kind"), *w = emdpo_json_get(root, "weights");
    const emdpo_json *mem = emdpo_json_get(root, "members"), *beta = emdpo_json_get(root, "beta");
    const emdpo_json *ref = emdpo_json_get(root, "reference");
    if (!kind || kind->type != EMDPO_JSON_STRING || strcmp(kind->u.str, "mixture"))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"kind\" must be \"mixture\"");
    if (!w || w->type != EMDPO_JSON_ARRAY || w->len < 1 || w->len > INT32_MAX)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"weights\" must be a non-empty array of numbers");
    if (!mem || mem->type != EMDPO_JSON_ARRAY || mem->len != w->len)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"members\" must be an array of %zu paths, one per weight",
                               w->len);
    if (beta && (beta->type != EMDPO_JSON_NUMBER || !(beta->num > 0)))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"beta\" must be a positive number");
    if (ref && (ref->type != EMDPO_JSON_STRING || ref->len == 0 || strlen(ref->u.str) != ref->len))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"reference\" must be a non-empty path");
    double sum = 0.0;
    for (size_t k = 0; k < w->len; k++) {
        const emdpo_json *v = &w->u.elems[k], *s = &mem->u.elems[k];
        if (v->type != EMDPO_JSON_NUMBER || !(v->num >= 0))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "weight %zu must be a number >= 0", k + 1);
        if (s->type != EMDPO_JSON_STRING || s->len == 0 || strlen(s->u.str) != s->len)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "member %zu must be a non-empty path", k + 1);
        sum += v->num;
    }
    if (!(fabs(sum - 1.0) <= 1e-9))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the weights sum to %.17g, not 1", sum);
    if (alloc_members(m, (int)w->len)) return EMDPO_ERR_NOMEM;
    for (int k = 0; k < m->K; k++) {
        m->w[k] = w->u.elems[k].num;
        if (!(m->member[k] = emdpo_strdup(mem->u.elems[k].u.str)) ||
            !(m->path[k] = resolve(path, m->member[k])))
            return EMDPO_ERR_NOMEM;
    }
    m->beta = beta ? beta->num : NAN;
    if (ref && !(m->reference = resolve(path, ref->u.str))) return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

int emdpo_mixture_parse(const char *text, size_t len, const char *path, emdpo_mixture **out,
                           emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, path);
    emdpo_mixture *m = emdpo_calloc(1, sizeof *m);
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    int rc = m ? emdpo_json_doc_create(&doc) : EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_json_parse(doc, text, len, &root, &err);
    if (rc == EMDPO_ERR_PARSE) {
        emdpo_diag_fail(diag, rc, "not valid JSON: %s", err.msg);
        if (diag) diag->line = line_of(text, len, err.offset);
    } else if (!rc) {
        rc = from_json(root, path, m, diag);
    }
    emdpo_json_doc_free(doc);
    if (rc) {
        emdpo_mixture_free(m);
        return rc;
    }
    *out = m;
    return EMDPO_OK;
}

int emdpo_mixture_read(const char *path, emdpo_mixture **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no mixture path");
    char *buf;
    size_t len;
    int rc = emdpo_file_read(path, &buf, &len, diag);
    if (rc) return rc;
    rc = emdpo_mixture_parse(buf, len, path, out, diag);
    emdpo_free(buf, len + 1);
    return rc;
}

int emdpo_mixture_is_file(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    int c;
    do c = fgetc(fp);
    while (c == ' ' || c == '\t' || c == '\n' || c == '\r');
    fclose(fp);
    return c == '{';
}

/* The first model after models[0] with another vocabulary or context
 * length; 0 when they all agree. */
static int first_mismatch(const emdpo_llama *const *models, int K) {
    const emdpo_llama_config *c0 = &models[0]->config;
    for (int k = 1; k < K; k++)
        if (models[k]->config.vocab_size != c0->vocab_size || emdpo_llama_context(&models[k]->config) != emdpo_llama_context(c0))
            return k;
    return 0;
}

int emdpo_mixture_check(const emdpo_llama *const *models, int K, emdpo_diag *diag) {
    int k = first_mismatch(models, K);
    if (!k) return EMDPO_OK;
    const emdpo_llama_config *c = &models[k]->config, *c0 = &models[0]->config;
    return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "member %d has vocabulary %d and context %d, member 1 has %d and %d",
                           k + 1, c->vocab_size, emdpo_llama_context(c), c0->vocab_size,
                           emdpo_llama_context(c0));
}

/* One member: a directory is a Hugging Face checkpoint, a mixture file is
 * refused, anything else is read as llama2.c. */
static int load_member(const char *path, emdpo_llama **out, emdpo_diag *diag) {
    if (emdpo_mixture_is_file(path)) {
        emdpo_diag_reset(diag, path);
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "a mixture cannot be a member of a mixture");
    }
    return emdpo_llama_load_frozen(path, out, diag);
}

int emdpo_mixture_load(emdpo_mixture *m, emdpo_diag *diag) {
    int rc = EMDPO_OK;
    for (int k = 0; !rc && k < m->K; k++) rc = load_member(m->path[k], &m->model[k], diag);
    if (!rc) {
        const emdpo_llama *const *cm = (const emdpo_llama *const *)m->model;
        emdpo_diag_reset(diag, m->path[first_mismatch(cm, m->K)]);
        rc = emdpo_mixture_check(cm, m->K, diag);
    }
    for (int k = 0; rc && k < m->K; k++) {
        emdpo_llama_free(m->model[k]);
        m->model[k] = NULL;
    }
    return rc;
}

int emdpo_mixture_open_policies(const emdpo_mixture *m, emdpo_llama **base, emdpo_lm_policy *pol, emdpo_diag *diag) {
    *base = NULL;
    memset(pol, 0, (size_t)m->K * sizeof *pol);
    int rc = EMDPO_OK, adapters = 0;
    for (int k = 0; k < m->K; k++) adapters |= emdpo_peft_is_dir(m->path[k]);
    if (adapters && m->reference && !emdpo_mixture_is_file(m->reference))
        rc = emdpo_llama_load_frozen(m->reference, base, diag);
    const emdpo_llama **models = emdpo_malloc((size_t)m->K * sizeof *models);
    if (!rc && !models) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (int k = 0; !rc && k < m->K; k++) {
        if (emdpo_mixture_is_file(m->path[k])) {
            emdpo_diag_reset(diag, m->path[k]);
            rc = emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "a mixture cannot be a member of a mixture");
        } else if (!(rc = emdpo_lm_policy_open(m->path[k], *base, 0, &pol[k], diag))) {
            models[k] = pol[k].model;
        }
    }
    if (!rc) {
        emdpo_diag_reset(diag, m->path[first_mismatch(models, m->K)]);
        rc = emdpo_mixture_check(models, m->K, diag);
    }
    emdpo_free((void *)models, models ? (size_t)m->K * sizeof *models : 0);
    if (rc) {
        for (int k = 0; k < m->K; k++) emdpo_lm_policy_close(&pol[k]);
        emdpo_llama_free(*base);
        *base = NULL;
    }
    return rc;
}

int emdpo_mixture_open(const char *path, emdpo_mixture **out, emdpo_diag *diag) {
    int rc = emdpo_mixture_read(path, out, diag);
    if (!rc && (rc = emdpo_mixture_load(*out, diag))) {
        emdpo_mixture_free(*out);
        *out = NULL;
    }
    return rc;
}

void emdpo_mixture_logp(int K, const double *w, int64_t n, const double *logp, double *out) {
    for (int64_t i = 0; i < n; i++) {
        double mx = -INFINITY, s = 0.0;
        for (int k = 0; k < K; k++)
            if (w[k] > 0) mx = fmax(mx, log(w[k]) + logp[(size_t)k * (size_t)n + (size_t)i]);
        if (mx == -INFINITY) {
            out[i] = -INFINITY;
            continue;
        }
        for (int k = 0; k < K; k++)
            if (w[k] > 0) s += exp(log(w[k]) + logp[(size_t)k * (size_t)n + (size_t)i] - mx);
        out[i] = mx + log(s);
    }
}

void emdpo_mixture_draw(int K, const double *w, uint64_t seed, int64_t n, int *member) {
    for (int64_t i = 0; i < n; i++) {
        emdpo_rng r;
        emdpo_rng_seed(&r, seed, (uint64_t)i);
        member[i] = emdpo_rng_categorical(&r, w, K);
    }
}

/* The generation seed of member k: from a stream no sample index reaches,
 * so the tokens never reuse a member draw's numbers. */
static uint64_t member_seed(uint64_t seed, int k) {
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, UINT64_MAX - (uint64_t)k);
    return emdpo_rng_u64(&r);
}

int emdpo_mixture_generate(const emdpo_llama *const *models, int K, const double *w, const emdpo_sampler *s,
                              uint64_t seed, const int *const *prompts, const int *prompt_len, int n, int max_new,
                              int max_T, int *member, int *out, int *n_out, int *stop) {
    double sum = 0.0;
    if (K < 1 || n < 1 || max_new < 0) return EMDPO_ERR_INVALID_ARG;
    for (int k = 0; k < K; k++) {
        if (!(w[k] >= 0) || !isfinite(w[k])) return EMDPO_ERR_INVALID_ARG;
        sum += w[k];
    }
    if (!(sum > 0)) return EMDPO_ERR_INVALID_ARG;
    emdpo_mixture_draw(K, w, seed, n, member);
    size_t nn = (size_t)n, per = (size_t)max_new;
    const int **sp = emdpo_malloc(nn * sizeof *sp);
    int *idx = emdpo_malloc(nn * sizeof *idx), *sl = emdpo_malloc(nn * sizeof *sl);
    int *sn = emdpo_malloc(nn * sizeof *sn), *ss = emdpo_malloc(nn * sizeof *ss);
    int *so = emdpo_malloc((nn * per + 1) * sizeof *so);
    int rc = sp && idx && sl && sn && ss && so ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (int k = 0; !rc && k < K; k++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (member[i] == k) {
                idx[m] = i;
                sp[m] = prompts[i];
                sl[m++] = prompt_len[i];
            }
        if (!m) continue;
        rc = emdpo_generate_batch(models[k], s, member_seed(seed, k), sp, sl, m, max_new, max_T, so, sn, ss);
        for (int j = 0; !rc && j < m; j++) {
            int i = idx[j];
            memcpy(out + (size_t)i * per, so + (size_t)j * per, (size_t)sn[j] * sizeof *out);
            n_out[i] = sn[j];
            if (stop) stop[i] = ss[j];
        }
    }
    emdpo_free(sp, nn * sizeof *sp);
    emdpo_free(idx, nn * sizeof *idx);
    emdpo_free(sl, nn * sizeof *sl);
    emdpo_free(sn, nn * sizeof *sn);
    emdpo_free(ss, nn * sizeof *ss);
    emdpo_free(so, (nn * per + 1) * sizeof *so);
    return rc;
}

void emdpo_mixture_regret(int K, int M, const double *L, const double *se, const double *w, double *regret,
                             double *regret_se) {
    for (int z = 0; z < K; z++) {
        const double *Lz = L + (size_t)z * M;
        double r = 0.0, v = 0.0;
        for (int b = 0; b < M; b++)
            if (w[b] != 0) r += w[b] * (Lz[z] - Lz[b]);
        regret[z] = r;
        if (!se) continue;
        for (int b = 0; b < M; b++) {
            double c = (b == z) - w[b], e = se[(size_t)z * M + b];
            if (c != 0) v += c * c * e * e;
        }
        regret_se[z] = sqrt(v);
    }
}

int emdpo_mixture_write(const char *path, int K, const double *w, const char *const *members, double beta,
                        const char *reference, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!path || !reference) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no path or reference");
    if (K < 1 || !w || !members) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "a mixture needs K >= 1 members");
    if (!(beta > 0) || !isfinite(beta)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "beta must be > 0");
    double sum = 0.0;
    for (int k = 0; k < K; k++) {
        if (!(w[k] >= 0) || !isfinite(w[k]))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "weight %d is not a finite number >= 0", k + 1);
        if (!members[k]) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "member %d is NULL", k + 1);
        sum += w[k];
    }
    if (fabs(sum - 1.0) > 1e-9) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "the weights do not sum to 1");
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (rc) return rc;
    fputs("{\n  \"kind\": \"mixture\",\n  \"weights\": [", af.fp);
    for (int k = 0; k < K; k++) fprintf(af.fp, "%s%.17g", k ? ", " : "", w[k]);
    fputs("],\n  \"members\": [", af.fp);
    for (int k = 0; !rc && k < K; k++) {
        fputs(k ? ", " : "", af.fp);
        rc = emdpo_json_write_string(af.fp, members[k]);
    }
    fprintf(af.fp, "],\n  \"beta\": %.17g,\n  \"reference\": ", beta);
    if (!rc) rc = emdpo_json_write_string(af.fp, reference);
    fputs("\n}\n", af.fp);
    if (rc) {
        emdpo_afile_abort(&af);
        return emdpo_diag_fail(diag, rc, "a member or the reference is not valid UTF-8");
    }
    return emdpo_afile_commit(&af, diag);
}

int emdpo_mixture_k(const emdpo_mixture *m) { return m ? m->K : 0; }
double emdpo_mixture_weight(const emdpo_mixture *m, int k) { return m && k >= 0 && k < m->K ? m->w[k] : NAN; }
const char *emdpo_mixture_member(const emdpo_mixture *m, int k) {
    return m && k >= 0 && k < m->K ? m->member[k] : NULL;
}
const char *emdpo_mixture_member_path(const emdpo_mixture *m, int k) {
    return m && k >= 0 && k < m->K ? m->path[k] : NULL;
}
const emdpo_llama *emdpo_mixture_model(const emdpo_mixture *m, int k) {
    return m && m->model && k >= 0 && k < m->K ? m->model[k] : NULL;
}
