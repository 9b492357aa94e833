/* The choice model shared by every policy family: a decision's items carry
 * utilities u (beta times the policy's log-ratio), and the decision's
 * probability is a Plackett-Luce sequence of softmax top choices over the
 * items still available. */
#ifndef EMDPO_CHOICE_H
#define EMDPO_CHOICE_H

/* log P of choosing items 0..stages-1 in order from u[0..n). */
double emdpo_choice_logp(const double *u, int n, int stages);
/* The same for utilities beta * x[0..n), the same bits as
 * emdpo_choice_logp on an array holding them. */
double emdpo_choice_logp_scaled(const double *x, int n, int stages, double beta);

/* log(sum exp(v[i])) over n values; -INFINITY when all are -INFINITY. */
double emdpo_logsumexp(const double *v, int n);

#endif
