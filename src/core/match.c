#include "core/match.h"

#include <math.h>
#include <string.h>

typedef struct search {
    const double *cost; /* (K, K): cost[k * K + e] of matching truth k with estimate e */
    int K;
    int cur[EMDPO_MATCH_MAX_K], best[EMDPO_MATCH_MAX_K];
    unsigned used;
    double best_sum;
} search;

static void extend(search *s, int k, double sum) {
    if (sum >= s->best_sum) return;
    if (k == s->K) {
        s->best_sum = sum;
        memcpy(s->best, s->cur, sizeof s->cur);
        return;
    }
    for (int e = 0; e < s->K; e++) {
        if (s->used & (1u << e)) continue;
        s->used |= 1u << e;
        s->cur[k] = e;
        extend(s, k + 1, sum + s->cost[k * s->K + e]);
        s->used &= ~(1u << e);
    }
}

double emdpo_match_types(const double *est, const double *truth, int K, int p, int *perm) {
    if (K < 1 || K > EMDPO_MATCH_MAX_K || p < 1) return -1.0;
    double cost[EMDPO_MATCH_MAX_K * EMDPO_MATCH_MAX_K];
    for (int k = 0; k < K; k++)
        for (int e = 0; e < K; e++) {
            double s2 = 0.0;
            for (int a = 0; a < p; a++) {
                double dlt = est[e * p + a] - truth[k * p + a];
                s2 += dlt * dlt;
            }
            cost[k * K + e] = sqrt(s2);
        }
    search s;
    memset(&s, 0, sizeof s);
    s.cost = cost;
    s.K = K;
    s.best_sum = INFINITY;
    extend(&s, 0, 0.0);
    if (perm) memcpy(perm, s.best, (size_t)K * sizeof(int));
    return s.best_sum / K;
}
