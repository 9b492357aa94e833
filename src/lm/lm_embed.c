/* Annotator embeddings; see lm_embed.h. */
#include "lm/lm_embed.h"

#include <string.h>

#include "base/alloc.h"
#include "lm/engine/llama_model.h"

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
    int B = (int64_t)batch < d->n_dec ? batch : (int)d->n_dec, T = set->longest;
    size_t bt = (size_t)B * (size_t)T;
    emdpo_llama_acts *a = NULL;
    int *tokens = emdpo_malloc(bt * sizeof *tokens), *ib = emdpo_malloc(3 * (size_t)B * sizeof *ib);
    int64_t *seqs = emdpo_malloc((size_t)B * sizeof *seqs);
    double *e = emdpo_malloc(C * sizeof *e);
    int rc = tokens && ib && seqs && e ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_llama_acts_create(c, B, T, 0, &a);
    int *lens = ib, *start = ib + B, *end = ib + 2 * B;
    /* Decisions are stored annotator by annotator, so the owner of
     * decision j is found by walking annot_dec alongside j. */
    int64_t owner = 0;
    for (int64_t j0 = 0; !rc && j0 < d->n_dec; j0 += B) {
        int nb = d->n_dec - j0 < B ? (int)(d->n_dec - j0) : B, Tb;
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
             * annotator average. */
            double scale = 1.0 / ((double)(end[b] - start[b]) * (double)(d->annot_dec[owner + 1] - d->annot_dec[owner]));
            double *o = out + (size_t)owner * C;
            for (size_t q = 0; q < C; q++) o[q] += e[q] * scale;
        }
    }
    emdpo_llama_acts_free(a);
    emdpo_free(tokens, bt * sizeof *tokens);
    emdpo_free(ib, 3 * (size_t)B * sizeof *ib);
    emdpo_free(seqs, (size_t)B * sizeof *seqs);
    emdpo_free(e, C * sizeof *e);
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
