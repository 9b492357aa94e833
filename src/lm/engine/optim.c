/* AdamW and RMSprop with warmup and clipping; see optim.h. */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/threads.h"
#include "emdpo.h"
#include "lm/engine/optim.h"

void emdpo_optim_config_init(emdpo_optim_config *c, emdpo_optim_kind kind) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->lr = kind == EMDPO_OPTIM_ADAMW ? 1e-3 : 1e-2;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->alpha = 0.99;
    c->eps = 1e-8;
}

const char *emdpo_optim_name(int kind) {
    switch (kind) {
    case EMDPO_OPTIM_ADAMW: return "adamw";
    case EMDPO_OPTIM_RMSPROP: return "rmsprop";
    default: return NULL;
    }
}

static int in01(double x) { return x >= 0.0 && x < 1.0; }

int emdpo_optim_create(const emdpo_optim_config *c, size_t n, emdpo_optim **out) {
    *out = NULL;
    if ((c->kind != EMDPO_OPTIM_ADAMW && c->kind != EMDPO_OPTIM_RMSPROP) || !(c->lr >= 0) || !in01(c->beta1) ||
        !in01(c->beta2) || !in01(c->alpha) || !in01(c->momentum) || !(c->eps > 0) || !(c->weight_decay >= 0) ||
        c->warmup < 0 || !(c->clip >= 0) || n == 0)
        return EMDPO_ERR_INVALID_ARG;
    emdpo_optim *o = emdpo_calloc(1, sizeof *o);
    if (!o) return EMDPO_ERR_NOMEM;
    o->config = *c;
    o->n = n;
    int need_m = c->kind == EMDPO_OPTIM_ADAMW || c->momentum > 0;
    o->v = emdpo_calloc(n, sizeof(float));
    if (need_m) o->m = emdpo_calloc(n, sizeof(float));
    if (!o->v || (need_m && !o->m)) {
        emdpo_optim_free(o);
        return EMDPO_ERR_NOMEM;
    }
    *out = o;
    return EMDPO_OK;
}

void emdpo_optim_free(emdpo_optim *o) {
    if (!o) return;
    emdpo_free(o->m, o->m ? o->n * sizeof(float) : 0);
    emdpo_free(o->v, o->n * sizeof(float));
    emdpo_free(o, sizeof *o);
}

double emdpo_optim_lr(const emdpo_optim *o) {
    double f = (double)(o->t + 1) / (double)(o->config.warmup + 1);
    return o->config.lr * (f < 1.0 ? f : 1.0);
}

/* Sum of squares over fixed blocks added in block order, so the norm has
 * the same bits for any thread count. */
#define NORM_BLOCK 65536
static double grad_sumsq(const float *g, size_t n) {
    size_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    double total = 0.0;
    /* Blocks are summed into total in order by the ordered clause. */
#pragma omp parallel for ordered schedule(static, 1) if (n > EMDPO_PAR_MIN_WORK)
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * NORM_BLOCK, hi = lo + NORM_BLOCK < n ? lo + NORM_BLOCK : n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
#pragma omp ordered
        total += s;
    }
    return total;
}

int emdpo_optim_step(emdpo_optim *o, float *params, float *grad, double *grad_norm, double *lr_used) {
    const emdpo_optim_config *c = &o->config;
    size_t n = o->n;
    double norm = sqrt(grad_sumsq(grad, n));
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) return EMDPO_ERR_NUMERIC;
    if (c->clip > 0) {
        double coef = c->clip / (norm + 1e-6);
        if (coef < 1.0) {
            float fc = (float)coef;
#pragma omp parallel for if (n > EMDPO_PAR_MIN_WORK)
            for (size_t i = 0; i < n; i++) grad[i] *= fc;
        }
    }
    double lr = emdpo_optim_lr(o);
    if (lr_used) *lr_used = lr;
    o->t++;
    float *m = o->m, *v = o->v;
    float eps = (float)c->eps, wd = (float)c->weight_decay, flr = (float)lr;
    if (c->kind == EMDPO_OPTIM_ADAMW) {
        /* 1 - beta in double, as PyTorch passes it: 1.0f - 0.999f is off by 1e-5. */
        float b1 = (float)c->beta1, b2 = (float)c->beta2, b1c = (float)(1.0 - c->beta1), b2c = (float)(1.0 - c->beta2);
        float step_size = (float)(lr / (1.0 - pow(c->beta1, (double)o->t)));
        float bc2_sqrt = (float)sqrt(1.0 - pow(c->beta2, (double)o->t));
        float decay = (float)(1.0 - lr * c->weight_decay);
#pragma omp parallel for if (n > EMDPO_PAR_MIN_WORK)
        for (size_t i = 0; i < n; i++) {
            float g = grad[i];
            float p = params[i] * decay;
            m[i] = b1 * m[i] + b1c * g;
            v[i] = b2 * v[i] + b2c * g * g;
            params[i] = p - step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        }
    } else {
        float a = (float)c->alpha, ac = (float)(1.0 - c->alpha), mu = (float)c->momentum;
#pragma omp parallel for if (n > EMDPO_PAR_MIN_WORK)
        for (size_t i = 0; i < n; i++) {
            float g = grad[i] + wd * params[i];
            v[i] = a * v[i] + ac * g * g;
            float u = g / (sqrtf(v[i]) + eps);
            if (m) {
                m[i] = mu * m[i] + u;
                u = m[i];
            }
            params[i] -= flr * u;
        }
    }
    return EMDPO_OK;
}

int emdpo_optim_write(const emdpo_optim *o, FILE *fp) {
    int64_t t = o->t;
    if (fwrite(&t, sizeof t, 1, fp) != 1 || fwrite(o->v, sizeof(float), o->n, fp) != o->n ||
        (o->m && fwrite(o->m, sizeof(float), o->n, fp) != o->n))
        return EMDPO_ERR_IO;
    return EMDPO_OK;
}

int emdpo_optim_read(emdpo_optim *o, FILE *fp) {
    int64_t t;
    if (fread(&t, sizeof t, 1, fp) != 1 || t < 0 || fread(o->v, sizeof(float), o->n, fp) != o->n ||
        (o->m && fread(o->m, sizeof(float), o->n, fp) != o->n))
        return EMDPO_ERR_IO;
    o->t = t;
    return EMDPO_OK;
}
