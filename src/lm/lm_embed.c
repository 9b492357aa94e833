/* Annotator embeddings; see lm_embed.h. */
#include "lm/lm_embed.h"

#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "lm/engine/llama_model.h"

/* The first annotator a with annot_dec[a] >= j (n_annot when none). */
static int64_t first_from(const emdpo_data *d, int64_t j) {
    int64_t lo = 0, hi = d->n_annot;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (d->annot_dec[mid] >= j) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* A process's part: it runs decisions [j0, j1), its share of the batches
 * of B; it sums the rows of annotators [a0, a1), whose first decision is
 * among them, and keeps apart the scaled vectors of its first `carry`
 * decisions, which belong to annotator a0 - 1 (begun on an earlier
 * process) and are added to that row after the rows are gathered. */
typedef struct embed_part {
    int64_t j0, j1, a0, a1, carry;
} embed_part;

static embed_part part_of(const emdpo_data *d, int B, int r) {
    embed_part p;
    int64_t b0, b1;
    emdpo_dist_range_of(r, (d->n_dec + B - 1) / B, &b0, &b1);
    p.j0 = b0 * B < d->n_dec ? b0 * B : d->n_dec;
    p.j1 = b1 * B < d->n_dec ? b1 * B : d->n_dec;
    p.a0 = first_from(d, p.j0);
    p.a1 = first_from(d, p.j1);
    int64_t next = d->annot_dec[p.a0] < p.j1 ? d->annot_dec[p.a0] : p.j1;
    p.carry = next - p.j0;
    return p;
}

int emdpo_lm_embed_annotators(const emdpo_llama *m, const emdpo_data *d, const emdpo_lm_set *set, int batch,
                              double *out) {
    const emdpo_llama_config *c = &m->config;
    if (batch < 1 || set->n_group != d->n_dec || set->n_seq != d->n_items) return EMDPO_ERR_INVALID_ARG;
    for (int64_t j = 0; j < d->n_dec; j++)
        if (set->group_off[j] != d->dec_item[j]) return EMDPO_ERR_INVALID_ARG;
    if (set->longest > c->max_seq_len) return EMDPO_ERR_LIMIT;
    for (int64_t i = 0; i < set->n_tok; i++)
        if (set->tok[i] < 0 || set->tok[i] >= c->vocab_size) return EMDPO_ERR_LIMIT;
    size_t C = (size_t)c->dim;
    memset(out, 0, (size_t)d->n_annot * C * sizeof *out);
    if (d->n_dec == 0) return EMDPO_OK;
    int B = (int64_t)batch < d->n_dec ? batch : (int)d->n_dec, T = set->longest, np = emdpo_dist_size();
    embed_part me = part_of(d, B, emdpo_dist_rank());
    size_t bt = (size_t)B * (size_t)T, n_carry = 0, n_count = 2 * (size_t)np, carry_bytes = 0;
    emdpo_llama_acts *a = NULL;
    int *tokens = emdpo_malloc(bt * sizeof *tokens), *ib = emdpo_malloc(3 * (size_t)B * sizeof *ib);
    int64_t *seqs = emdpo_malloc((size_t)B * sizeof *seqs), *count = emdpo_malloc(n_count * sizeof *count);
    double *e = emdpo_malloc(C * sizeof *e), *carry = NULL;
    int rc = tokens && ib && seqs && count && e ? EMDPO_OK : EMDPO_ERR_NOMEM;
    /* Every process's part, to gather the rows and the carried vectors. */
    for (int r = 0; !rc && r < np; r++) {
        embed_part p = part_of(d, B, r);
        count[r] = p.a1 - p.a0;
        count[np + r] = p.carry;
        n_carry += (size_t)p.carry;
    }
    carry_bytes = (n_carry ? n_carry : 1) * C * sizeof *carry;
    if (!rc && !(carry = emdpo_malloc(carry_bytes))) rc = EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_llama_acts_create(c, B, T, 0, &a);
    int *lens = ib, *start = ib + B, *end = ib + 2 * B;
    double *mine = carry;
    for (int r = 0; !rc && r < emdpo_dist_rank(); r++) mine += (size_t)count[np + r] * C;
    /* Decisions are stored annotator by annotator, so the owner of
     * decision j is found by walking annot_dec alongside j. */
    int64_t owner = me.carry ? me.a0 - 1 : me.a0;
    for (int64_t j0 = me.j0; !rc && j0 < me.j1; j0 += B) {
        int nb = me.j1 - j0 < B ? (int)(me.j1 - j0) : B, Tb;
        for (int b = 0; b < nb; b++) seqs[b] = set->group_off[j0 + b];
        emdpo_lm_pack(set, seqs, nb, tokens, lens, start, end, &Tb);
        if ((rc = emdpo_llama_forward(m, a, tokens, lens, nb, Tb))) break;
        for (int b = 0; b < nb; b++) {
            int64_t j = j0 + b;
            while (d->annot_dec[owner + 1] <= j) owner++;
            memset(e, 0, C * sizeof *e);
            for (int t = start[b]; t < end[b]; t++) {
                const float *h = a->lnf + ((size_t)b * Tb + (size_t)t) * C;
                for (size_t q = 0; q < C; q++) e[q] += h[q];
            }
            /* The response's mean, weighted so the decisions of an
             * annotator average; added in decision order, the vectors of
             * a carried decision after the process it began on. */
            double scale = 1.0 / ((double)(end[b] - start[b]) * (double)(d->annot_dec[owner + 1] - d->annot_dec[owner]));
            for (size_t q = 0; q < C; q++) e[q] *= scale;
            if (j < me.j0 + me.carry) {
                memcpy(mine + (size_t)(j - me.j0) * C, e, C * sizeof *e);
                continue;
            }
            double *o = out + (size_t)owner * C;
            for (size_t q = 0; q < C; q++) o[q] += e[q];
        }
    }
    if (!rc) rc = emdpo_dist_allgather_parts(out, count, C * sizeof *out);
    if (!rc && n_carry) rc = emdpo_dist_allgather_parts(carry, count + np, C * sizeof *carry);
    const double *v = carry;
    for (int r = 1; !rc && r < np; r++) {
        embed_part p = part_of(d, B, r);
        for (int64_t i = 0; i < p.carry; i++, v += C)
            for (size_t q = 0; q < C; q++) out[(size_t)(p.a0 - 1) * C + q] += v[q];
    }
    emdpo_llama_acts_free(a);
    emdpo_free(tokens, bt * sizeof *tokens);
    emdpo_free(ib, 3 * (size_t)B * sizeof *ib);
    emdpo_free(seqs, (size_t)B * sizeof *seqs);
    emdpo_free(count, n_count * sizeof *count);
    emdpo_free(e, C * sizeof *e);
    emdpo_free(carry, carry_bytes);
    return rc;
}

int emdpo_lm_choice_summaries(const emdpo_data *d, const emdpo_lm_set *set, int dim, double *out) {
    if (dim < 1 || set->n_group != d->n_dec || set->n_seq != d->n_items) return EMDPO_ERR_INVALID_ARG;
    for (int64_t j = 0; j < d->n_dec; j++)
        if (set->group_off[j] != d->dec_item[j]) return EMDPO_ERR_INVALID_ARG;
    memset(out, 0, (size_t)d->n_annot * (size_t)dim * sizeof *out);
    for (int64_t a = 0; a < d->n_annot; a++) {
        double *o = out + (size_t)a * (size_t)dim;
        int64_t n_dec = d->annot_dec[a + 1] - d->annot_dec[a];
        for (int64_t j = d->annot_dec[a]; j < d->annot_dec[a + 1]; j++) {
            int64_t first = d->dec_item[j], n_items = d->dec_item[j + 1] - first;
            for (int64_t i = first; i < first + n_items; i++) {
                /* chosen: +1 - 1/n, the others: -1/n, over the decisions */
                double w = ((i == first) - 1.0 / (double)n_items) / (double)n_dec;
                for (int64_t t = set->seq_off[i] + set->seq_start[i]; t < set->seq_off[i + 1]; t++)
                    o[set->tok[t] % dim] += w;
            }
        }
    }
    return EMDPO_OK;
}
