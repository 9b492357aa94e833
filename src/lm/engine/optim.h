/* First-order optimizers over a flat float parameter buffer (llm.c style),
 * with PyTorch's update rules so runs can be compared with PyTorch's:
 *
 *   AdamW:   p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
 *            p ← p − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps).
 *   RMSprop: g ← g + wd·p; v ← α·v + (1−α)·g²; with momentum μ > 0:
 *            m ← μ·m + g/(sqrt(v) + eps), p ← p − lr·m; else
 *            p ← p − lr·g/(sqrt(v) + eps). (PyTorch: α 0.99, eps 1e-8.)
 *
 * The learning rate warms up linearly as the DPO reference implementation
 * schedules it: lr·min(1, (t+1)/(warmup+1)) at 0-based step t, then stays
 * constant. Gradients are first clipped to a global L2 norm (PyTorch's
 * clip_grad_norm_: scaled by clip/(norm + 1e-6) when that is below 1).
 * Gradient accumulation is the caller's: sum micro-batch gradients into one
 * buffer and step once. State lives in flat buffers laid out like the
 * parameters; updates are elementwise, so results do not depend on the
 * thread count. */
#ifndef EMDPO_OPTIM_H
#define EMDPO_OPTIM_H

#include "emdpo.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* emdpo_optim_kind, emdpo_optim_config and emdpo_optim_config_init are
 * public (emdpo/lm.h). */
typedef struct emdpo_optim {
    emdpo_optim_config config;
    size_t n;    /* parameters */
    int64_t t;   /* steps taken */
    float *m;    /* (n) AdamW first moment / RMSprop momentum buffer; NULL when unused */
    float *v;    /* (n) second moment / square average */
} emdpo_optim;

/* EMDPO_ERR_INVALID_ARG for a configuration out of range (lr < 0, betas or
 * alpha outside [0, 1), eps <= 0, negative decay, warmup or clip). */
int emdpo_optim_create(const emdpo_optim_config *c, size_t n, emdpo_optim **out);
void emdpo_optim_free(emdpo_optim *o);

/* The learning rate the next step will use. */
double emdpo_optim_lr(const emdpo_optim *o);

/* One step: clips grad in place, updates params, advances t. *grad_norm
 * (may be NULL) receives the norm before clipping, and *lr_used the rate
 * applied. EMDPO_ERR_NUMERIC, leaving params and state untouched, when the
 * gradient is not finite. */
int emdpo_optim_step(emdpo_optim *o, float *params, float *grad, double *grad_norm, double *lr_used);

/* The state (t, m, v) as raw little-endian bytes, for checkpoints; read
 * expects an optimizer created with the same kind and n. EMDPO_ERR_IO on
 * a short read or write. */
int emdpo_optim_write(const emdpo_optim *o, FILE *fp);
int emdpo_optim_read(emdpo_optim *o, FILE *fp);

#endif
