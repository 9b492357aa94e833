/* Preference and supervised losses on sequence log-ratios; see lm_loss.h. */
#include <math.h>
#include <string.h>

#include "lm/engine/lm_loss.h"

const char *emdpo_loss_name(int kind) {
    switch (kind) {
    case EMDPO_LOSS_DPO: return "dpo";
    case EMDPO_LOSS_CDPO: return "cdpo";
    case EMDPO_LOSS_IPO: return "ipo";
    case EMDPO_LOSS_HINGE: return "hinge";
    default: return NULL;
    }
}

/* log σ(x) without overflow. */
static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* Loss of one pair as a function of Δ = lr_c − lr_r, and dloss/dΔ. */
static double pair_loss(const emdpo_loss_opts *o, double delta, double *dd) {
    double b = o->beta, z = b * delta;
    switch (o->kind) {
    case EMDPO_LOSS_CDPO: {
        double eps = o->label_smoothing;
        *dd = -b * ((1 - eps) * sigmoid(-z) - eps * sigmoid(z));
        return -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z);
    }
    case EMDPO_LOSS_IPO: {
        double r = delta - 1.0 / (2.0 * b);
        *dd = 2.0 * r;
        return r * r;
    }
    case EMDPO_LOSS_HINGE:
        *dd = z < 1.0 ? -b : 0.0;
        return z < 1.0 ? 1.0 - z : 0.0;
    default:
        *dd = -b * sigmoid(-z);
        return -log_sigmoid(z);
    }
}

double emdpo_pref_loss(const emdpo_loss_opts *o, const double *lr, int n, int stages, double w, double *grad) {
    double loss = 0.0, b = o->beta;
    for (int k = 0; k < n; k++) grad[k] = 0.0;
    for (int s = 0; s < stages; s++) {
        if (o->kind == EMDPO_LOSS_DPO) {
            /* −log softmax over items s..n−1, shifted by the largest score. */
            double mx = b * lr[s];
            for (int k = s + 1; k < n; k++) mx = fmax(mx, b * lr[k]);
            double z = 0.0;
            for (int k = s; k < n; k++) z += exp(b * lr[k] - mx);
            double lse = mx + log(z);
            loss += lse - b * lr[s];
            for (int k = s; k < n; k++) grad[k] += w * b * exp(b * lr[k] - lse);
            grad[s] -= w * b;
        } else {
            double inv = 1.0 / (n - 1 - s);
            for (int k = s + 1; k < n; k++) {
                double dd;
                loss += inv * pair_loss(o, lr[s] - lr[k], &dd);
                grad[s] += w * inv * dd;
                grad[k] -= w * inv * dd;
            }
        }
    }
    return w * loss;
}

void emdpo_pref_rewards_of(double beta, const double *lr, int n, emdpo_pref_rewards *r) {
    double rej = 0.0, best = -INFINITY;
    for (int k = 1; k < n; k++) {
        rej += beta * lr[k];
        best = fmax(best, beta * lr[k]);
    }
    r->chosen = beta * lr[0];
    r->rejected = rej / (n - 1);
    r->margin = r->chosen - r->rejected;
    r->accuracy = r->chosen > best ? 1.0 : 0.0;
}

double emdpo_sft_loss(double logp, double n_tokens, double w, double *grad) {
    *grad = -w / n_tokens;
    return -w * logp / n_tokens;
}
