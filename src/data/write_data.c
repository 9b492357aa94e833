/* Writers for emdpo_data_write. Each writes what its reader turns back into
 * an identical dataset: numbers in the fewest digits that read back exactly,
 * items in preference order, rankings as the reader expects them. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/csv.h"
#include "base/diag.h"
#include "base/json.h"
#include "base/json_write.h"
#include "data/readers.h"

static const char *const csv_reserved[] = {"annotator", "task", "alt", "chosen", "group"};

/* %.17g always reads back exactly but spells 0.1 as 0.10000000000000001;
 * %.15g is tried first so that values with few digits stay readable. */
static void write_double(FILE *fp, double v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.15g", v);
    double back = strtod(buf, NULL);
    if (memcmp(&back, &v, sizeof v) != 0) snprintf(buf, sizeof buf, "%.17g", v);
    fputs(buf, fp);
}

static int write_string(FILE *fp, const char *s, emdpo_diag *diag, const char *what) {
    int rc = emdpo_json_write_string(fp, s);
    if (rc == EMDPO_ERR_INVALID_ARG) emdpo_diag_set(diag, 0, "%s \"%.60s\" is not valid UTF-8", what, s);
    return rc;
}

/* ---- JSONL ------------------------------------------------------------- */

/* Item k of decision j, as {"features": [...]} (with "text" when it has one)
 * for feature data, or as its text. */
static int write_response(const emdpo_data *d, FILE *fp, int64_t j, int k, emdpo_diag *diag) {
    int64_t it = d->dec_item[j] + k;
    const char *text = d->item_text ? d->item_text[it] : NULL;
    if (d->p == 0) {
        if (text) return write_string(fp, text, diag, "response text");
        emdpo_diag_set(diag, 0, "item %d of decision %" PRId64 " has neither features nor text", k + 1,
                       j + 1);
        return EMDPO_ERR_UNSUPPORTED;
    }
    fputs("{\"features\":[", fp);
    for (int q = 0; q < d->p; q++) {
        double v = d->x[it * d->p + q];
        if (!isfinite(v)) {
            emdpo_diag_set(diag, 0, "feature %d of item %d of decision %" PRId64 " is not finite", q + 1,
                           k + 1, j + 1);
            return EMDPO_ERR_INVALID_ARG;
        }
        if (q) fputc(',', fp);
        write_double(fp, v);
    }
    fputc(']', fp);
    if (text) {
        fputs(",\"text\":", fp);
        int rc = write_string(fp, text, diag, "response text");
        if (rc) return rc;
    }
    fputc('}', fp);
    return EMDPO_OK;
}

static int write_responses(const emdpo_data *d, FILE *fp, int64_t j, int from, int to, emdpo_diag *diag) {
    fputc('[', fp);
    for (int k = from; k < to; k++) {
        if (k > from) fputc(',', fp);
        int rc = write_response(d, fp, j, k, diag);
        if (rc) return rc;
    }
    fputc(']', fp);
    return EMDPO_OK;
}

/* A top choice as chosen/rejected; a full ranking as one list; a partial
 * one as the ranked head plus the unranked rest. */
static int write_items(const emdpo_data *d, FILE *fp, int64_t j, emdpo_diag *diag) {
    int n = emdpo_dec_n_items(d, j), s = d->dec_stages[j], rc;
    if (s == 1) {
        fputs(",\"chosen\":", fp);
        if ((rc = write_response(d, fp, j, 0, diag))) return rc;
        fputs(",\"rejected\":", fp);
        return write_responses(d, fp, j, 1, n, diag);
    }
    int ranked = s == n - 1 ? n : s;
    fputs(",\"ranking\":", fp);
    if ((rc = write_responses(d, fp, j, 0, ranked, diag)) || ranked == n) return rc;
    fputs(",\"rejected\":", fp);
    return write_responses(d, fp, j, ranked, n, diag);
}

int emdpo_write_jsonl(const emdpo_data *d, FILE *fp, emdpo_diag *diag) {
    for (int64_t i = 0; i < d->n_annot; i++) {
        const char *group = d->annot_group[i] >= 0 ? d->group_name[d->annot_group[i]] : NULL;
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
            const char *prompt = d->dec_prompt ? d->dec_prompt[j] : NULL;
            int rc;
            fputs("{\"annotator\":", fp);
            if ((rc = write_string(fp, d->annot_name[i], diag, "annotator"))) return rc;
            if (group) {
                fputs(",\"group\":", fp);
                if ((rc = write_string(fp, group, diag, "group"))) return rc;
            }
            if (prompt) {
                fputs(",\"prompt\":", fp);
                if ((rc = write_string(fp, prompt, diag, "prompt"))) return rc;
            }
            if ((rc = write_items(d, fp, j, diag))) return rc;
            fputs("}\n", fp);
        }
    }
    return EMDPO_OK;
}

/* ---- CSV --------------------------------------------------------------- */

/* Names the CSV reader would misread: empty, multi-line, or (for feature
 * columns) clashing with a fixed column. */
static int csv_name_ok(const char *s, int is_column) {
    if (!*s || strpbrk(s, "\r\n")) return 0;
    for (size_t k = 0; is_column && k < sizeof csv_reserved / sizeof csv_reserved[0]; k++)
        if (strcmp(s, csv_reserved[k]) == 0) return 0;
    return 1;
}

static int check_names(const emdpo_data *d, emdpo_diag *diag) {
    for (int q = 0; d->feature_name && q < d->p; q++) {
        const char *name = d->feature_name[q];
        int dup = 0;
        for (int r = 0; r < q && !dup; r++) dup = strcmp(d->feature_name[r], name) == 0;
        if (dup || !csv_name_ok(name, 1)) {
            emdpo_diag_set(diag, 0,
                           "feature name \"%.60s\" cannot be a CSV column (empty, repeated, multi-line"
                           " or a reserved name)",
                           name);
            return EMDPO_ERR_UNSUPPORTED;
        }
    }
    for (int64_t i = 0; i < d->n_annot; i++) {
        if (!csv_name_ok(d->annot_name[i], 0)) {
            emdpo_diag_set(diag, 0, "annotator \"%.60s\" cannot be written to CSV (empty or multi-line)",
                           d->annot_name[i]);
            return EMDPO_ERR_UNSUPPORTED;
        }
    }
    for (int g = 0; g < d->n_groups; g++) {
        if (!csv_name_ok(d->group_name[g], 0)) {
            emdpo_diag_set(diag, 0, "group \"%.60s\" cannot be written to CSV (empty or multi-line)",
                           d->group_name[g]);
            return EMDPO_ERR_UNSUPPORTED;
        }
    }
    return EMDPO_OK;
}

int emdpo_csv_check_writable(const emdpo_data *d, emdpo_diag *diag) {
    if (d->p == 0) {
        emdpo_diag_set(diag, 0,
                       "CSV holds feature data only, and this dataset has text responses without features");
        return EMDPO_ERR_UNSUPPORTED;
    }
    for (int64_t k = 0; k < d->n_items * d->p; k++) {
        if (!isfinite(d->x[k])) {
            emdpo_diag_set(diag, 0, "feature %d of item %" PRId64 " is not finite", (int)(k % d->p) + 1,
                           k / d->p + 1);
            return EMDPO_ERR_INVALID_ARG;
        }
    }
    return check_names(d, diag);
}

static void write_csv_header(const emdpo_data *d, FILE *fp) {
    fputs("annotator,task,alt,chosen", fp);
    if (d->n_groups) fputs(",group", fp);
    for (int q = 0; q < d->p; q++) {
        fputc(',', fp);
        if (d->feature_name) emdpo_csv_write_field(fp, d->feature_name[q]);
        else fprintf(fp, "x%d", q + 1);
    }
    fputc('\n', fp);
}

/* chosen is the rank for the first dec_stages items and 0 after, which the
 * reader turns back into the same number of stages. */
void emdpo_write_csv(const emdpo_data *d, FILE *fp) {
    write_csv_header(d, fp);
    for (int64_t i = 0; i < d->n_annot; i++) {
        const char *group = d->annot_group[i] >= 0 ? d->group_name[d->annot_group[i]] : "";
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
            int n = emdpo_dec_n_items(d, j), s = d->dec_stages[j];
            for (int k = 0; k < n; k++) {
                emdpo_csv_write_field(fp, d->annot_name[i]);
                fprintf(fp, ",%" PRId64 ",%d,%d", j - d->annot_dec[i] + 1, k + 1, k < s ? k + 1 : 0);
                if (d->n_groups) {
                    fputc(',', fp);
                    emdpo_csv_write_field(fp, group);
                }
                const double *x = d->x + (d->dec_item[j] + k) * d->p;
                for (int q = 0; q < d->p; q++) {
                    fputc(',', fp);
                    write_double(fp, x[q]);
                }
                fputc('\n', fp);
            }
        }
    }
}
