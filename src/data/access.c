/* What emdpo/data.h offers of a dataset without its struct: sizes, names,
 * the CSR structure and item contents, and datasets built from arrays. */
#include <string.h>

#include "base/diag.h"
#include "data/data.h"

const char *emdpo_format_name(int fmt) {
    switch (fmt) {
    case EMDPO_FORMAT_AUTO: return "auto";
    case EMDPO_FORMAT_JSONL: return "jsonl";
    case EMDPO_FORMAT_CSV: return "csv";
    default: return NULL;
    }
}

const char *emdpo_data_source(const emdpo_data *d) { return d ? d->source : NULL; }
int64_t emdpo_data_n_annotators(const emdpo_data *d) { return d ? d->n_annot : 0; }
int64_t emdpo_data_n_decisions(const emdpo_data *d) { return d ? d->n_dec : 0; }
int64_t emdpo_data_n_items(const emdpo_data *d) { return d ? d->n_items : 0; }
int emdpo_data_n_features(const emdpo_data *d) { return d ? d->p : 0; }
int emdpo_data_n_groups(const emdpo_data *d) { return d ? d->n_groups : 0; }

int emdpo_data_has_text(const emdpo_data *d) {
    if (!d || !d->item_text) return 0;
    for (int64_t i = 0; i < d->n_items; i++)
        if (!d->item_text[i]) return 0;
    return 1;
}

int emdpo_data_max_items(const emdpo_data *d) {
    int m = 2;
    for (int64_t j = 0; d && j < d->n_dec; j++) {
        int n = emdpo_dec_n_items(d, j);
        if (n > m) m = n;
    }
    return m;
}

const char *emdpo_data_feature_name(const emdpo_data *d, int q) {
    return d && d->feature_name && q >= 0 && q < d->p ? d->feature_name[q] : NULL;
}

const char *emdpo_data_group_name(const emdpo_data *d, int g) {
    return d && g >= 0 && g < d->n_groups ? d->group_name[g] : NULL;
}

const char *emdpo_data_annotator(const emdpo_data *d, int64_t i) {
    return d && i >= 0 && i < d->n_annot ? d->annot_name[i] : NULL;
}

int emdpo_data_annotator_group(const emdpo_data *d, int64_t i) {
    return d && i >= 0 && i < d->n_annot ? d->annot_group[i] : -1;
}

int64_t emdpo_data_annotator_decisions(const emdpo_data *d, int64_t i, int64_t *first) {
    if (!d || i < 0 || i >= d->n_annot) return 0;
    if (first) *first = d->annot_dec[i];
    return d->annot_dec[i + 1] - d->annot_dec[i];
}

int emdpo_data_decision_items(const emdpo_data *d, int64_t j, int64_t *first) {
    if (!d || j < 0 || j >= d->n_dec) return 0;
    if (first) *first = d->dec_item[j];
    return emdpo_dec_n_items(d, j);
}

int emdpo_data_decision_stages(const emdpo_data *d, int64_t j) {
    return d && j >= 0 && j < d->n_dec ? d->dec_stages[j] : 0;
}

int64_t emdpo_data_decision_annotator(const emdpo_data *d, int64_t j) {
    if (!d || j < 0 || j >= d->n_dec) return -1;
    int64_t lo = 0, hi = d->n_annot - 1; /* the annotator whose range holds j */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (d->annot_dec[mid] <= j) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

const char *emdpo_data_decision_prompt(const emdpo_data *d, int64_t j) {
    return d && d->dec_prompt && j >= 0 && j < d->n_dec ? d->dec_prompt[j] : NULL;
}

const char *emdpo_data_item_text(const emdpo_data *d, int64_t i) {
    return d && d->item_text && i >= 0 && i < d->n_items ? d->item_text[i] : NULL;
}

int emdpo_data_item_features(const emdpo_data *d, int64_t i, double *x, int n) {
    if (!d || !x || i < 0 || i >= d->n_items || n != d->p) return EMDPO_ERR_INVALID_ARG;
    if (n) memcpy(x, d->x + (size_t)i * (size_t)d->p, (size_t)n * sizeof *x);
    return EMDPO_OK;
}

int emdpo_data_from_arrays(int p, int64_t n_dec, const char *const *annotator, const int *n_items,
                           const int *n_stages, const double *x, const char *const *texts, const char *const *prompts,
                           const char *const *groups, emdpo_data **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (n_dec < 1 || !annotator || !n_items || (p > 0 && !x))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "need n_dec >= 1, annotator and n_items%s",
                               p > 0 ? " and x" : "");
    emdpo_data_builder *b = NULL;
    int rc = emdpo_data_builder_create(p, &b);
    if (rc) return emdpo_diag_fail(diag, rc, p < 0 ? "p must be >= 0" : "out of memory");
    int64_t item = 0;
    for (int64_t j = 0; j < n_dec && !rc; j++) {
        int n = n_items[j], st = n_stages ? n_stages[j] : 1;
        rc = emdpo_data_builder_add(b, annotator[j], groups ? groups[j] : NULL, prompts ? prompts[j] : NULL, n, st,
                                    p > 0 ? x + (size_t)item * (size_t)p : NULL, texts ? texts + item : NULL);
        if (rc == EMDPO_ERR_PARSE)
            emdpo_diag_fail(diag, rc, "decision %lld: annotator \"%.60s\" has a group other than before", (long long)j,
                            annotator[j] ? annotator[j] : "");
        else if (rc == EMDPO_ERR_INVALID_ARG)
            emdpo_diag_fail(diag, rc,
                            "decision %lld: needs an annotator, at least 2 items, 1 to items - 1 stages and finite "
                            "features",
                            (long long)j);
        else if (rc)
            emdpo_diag_fail(diag, rc, "out of memory");
        if (n > 0) item += n;
    }
    if (rc) {
        emdpo_data_builder_free(b);
        return rc;
    }
    if ((rc = emdpo_data_builder_finish(b, out))) return emdpo_diag_fail(diag, rc, "out of memory");
    return EMDPO_OK;
}
