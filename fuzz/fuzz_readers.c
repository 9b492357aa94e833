/* libFuzzer target: the text readers of untrusted files, through the same
 * entry points the library's users call. The first byte picks the reader,
 * the rest is the file: preference JSONL (with the scan that splits it
 * under mpirun) and long CSV (src/data), fit.json,
 * posterior.csv and weight files (src/fitfile), mixture.json (src/lm),
 * MPI inventories and GlobalOpinionQA's three sources (src/experiments),
 * Python literals (src/base/pylit.c), and the log-ratio, margins and
 * regret-matrix files of EM-DPO around any trainer (src/fitfile), whose
 * arrays then go through the E-step, the margin criterion and MMRA-AE. A reader may refuse its input with
 * a status, never crash, read outside it or return a status it does not
 * document; whatever it accepts must be usable through the accessors. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pylit.h"
#include "base/utf8.h"
#include "data/parts.h"
#include "data/readers.h"
#include "emdpo.h"
#include "emdpo/experimental.h"
#include "experiments/goqa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

/* The input as a file named name in a scratch directory made once. */
static const char *as_file(const char *name, const uint8_t *data, size_t size) {
    static char path[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/emdpo_fuzz_XXXXXX");
        if (!mkdtemp(dir)) abort();
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) abort();
    return path;
}

static void expect(int rc, int ok_a, int ok_b) {
    if (rc != EMDPO_OK && rc != EMDPO_ERR_NOMEM && rc != ok_a && rc != ok_b) abort();
}

static void use_data(const emdpo_data *d) {
    for (int64_t j = 0; j < emdpo_data_n_decisions(d); j++) {
        int64_t first;
        int n = emdpo_data_decision_items(d, j, &first);
        if (n < 2 || emdpo_data_decision_stages(d, j) < 1 || emdpo_data_decision_annotator(d, j) < 0) abort();
    }
}

/* What a log-ratio file accepts is what the E-step takes: decisions of 2
 * or more items in bounds, annotators in range, finite values. */
static void use_logratios(const emdpo_logratios *lr) {
    int K = emdpo_logratios_k(lr);
    int64_t n_dec = emdpo_logratios_n_decisions(lr), n_items = emdpo_logratios_n_items(lr);
    int64_t n_annot = emdpo_logratios_n_annotators(lr);
    const int64_t *off = emdpo_logratios_offsets(lr), *ann = emdpo_logratios_annotators(lr);
    if (K < 1 || K > EMDPO_MAX_K || n_dec < 1 || off[0] != 0 || off[n_dec] != n_items) abort();
    for (int64_t j = 0; j < n_dec; j++)
        if (off[j + 1] - off[j] < 2 || ann[j] < 0 || ann[j] >= n_annot) abort();
    double *g = malloc((size_t)n_annot * K * sizeof(double)), eta[EMDPO_MAX_K], ll;
    if (!g) return;
    int rc = emdpo_estep(K, n_dec, emdpo_logratios_values(lr), n_items, off, emdpo_logratios_ranking(lr), ann, n_annot,
                         1.0, NULL, g, eta, &ll, NULL);
    expect(rc, EMDPO_ERR_NUMERIC, -1); /* huge log-ratios may overflow the sums */
    free(g);
}

/* The scan that splits a JSONL file under mpirun (read_jsonl.c, without
 * MPI here): split at the line start nearest the middle, the two parts'
 * annotator starts and records add up to the whole file's; of a file read
 * whole (d) that would be read in parts, the records are its decisions and
 * the starts at least its annotators less one (as many when each
 * annotator's records are adjacent). */
static void check_jsonl_scan(const char *path, const emdpo_data *d, const uint8_t *data, size_t size) {
    emdpo_read_opts o;
    emdpo_read_opts_init(&o);
    FILE *fp = fopen(path, "rb");
    if (!fp) abort();
    int64_t n = (int64_t)size, s0, r0, s1, r1, s2, r2, cut;
    long line = 1;
    int rc = emdpo_jsonl_scan(fp, &o, 0, n, 1, &s0, &r0);
    if (!rc && emdpo_part_line_start(fp, n / 2, 0, n, &cut)) abort();
    for (int64_t i = 0; !rc && i < cut; i++) line += data[i] == '\n';
    if (!rc) rc = emdpo_jsonl_scan(fp, &o, 0, cut, 1, &s1, &r1);
    if (!rc) rc = emdpo_jsonl_scan(fp, &o, cut, n, line, &s2, &r2);
    expect(rc, -1, -1);
    if (!rc && (s1 + s2 != s0 || r1 + r2 != r0)) abort();
    if (!rc && d && emdpo_jsonl_splits(fp) &&
        (r0 != emdpo_data_n_decisions(d) || s0 + 1 < emdpo_data_n_annotators(d)))
        abort();
    fclose(fp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 16;
    data++, size--;
    emdpo_diag diag;
    emdpo_data *d = NULL;
    switch (which) {
    case 0:
    case 1: {
        const char *p = as_file(which ? "d.csv" : "d.jsonl", data, size);
        int rc = emdpo_data_read(p, EMDPO_FORMAT_AUTO, &d, &diag);
        expect(rc, EMDPO_ERR_PARSE, EMDPO_ERR_LIMIT);
        if (!rc) use_data(d);
        if (!which) check_jsonl_scan(p, d, data, size);
        break;
    }
    case 2: {
        emdpo_fit *f = NULL;
        expect(emdpo_fit_read(as_file("fit.json", data, size), &f, &diag), EMDPO_ERR_PARSE, EMDPO_ERR_IO);
        double eta[EMDPO_MAX_K];
        if (f && emdpo_fit_k(f) >= 1 && emdpo_fit_k(f) <= EMDPO_MAX_K) emdpo_fit_eta(f, eta, emdpo_fit_k(f));
        emdpo_fit_free(f);
        break;
    }
    case 3: {
        emdpo_posterior *post = NULL;
        expect(emdpo_posterior_read(as_file("posterior.csv", data, size), 0, &post, &diag), EMDPO_ERR_PARSE, -1);
        for (int64_t i = 0; post && i < emdpo_posterior_n(post); i++)
            if (emdpo_posterior_find(post, emdpo_posterior_annotator(post, i)) != i) abort();
        emdpo_posterior_free(post);
        break;
    }
    case 4: {
        double w[8];
        expect(emdpo_weights_read(as_file("w.csv", data, size), NULL, NULL, 8, w, &diag), EMDPO_ERR_PARSE, -1);
        break;
    }
    case 5: {
        emdpo_mixture *m = NULL;
        expect(emdpo_mixture_read(as_file("mixture.json", data, size), &m, &diag), EMDPO_ERR_PARSE, -1);
        emdpo_mixture_free(m);
        break;
    }
    case 6: {
        emdpo_inventory *inv = NULL;
        expect(emdpo_inventory_load_mpi(as_file("mpi.csv", data, size), &inv, &diag), EMDPO_ERR_PARSE, -1);
        emdpo_inventory_free(inv);
        break;
    }
    case 7:
    case 8: {
        emdpo_goqa_bank *b = NULL;
        emdpo_goqa_source src = which == 7 ? EMDPO_GOQA_INDEX : EMDPO_GOQA_SUBSET;
        expect(emdpo_goqa_bank_load(src, as_file("goqa.jsonl", data, size), NULL, &b, &diag), EMDPO_ERR_PARSE, -1);
        emdpo_goqa_bank_free(b);
        break;
    }
    case 10:
    case 11: {
        emdpo_logratios *lr = NULL;
        int rc = emdpo_logratios_read(as_file(which == 10 ? "lr.jsonl" : "lr.csv", data, size), 0, &lr, &diag);
        expect(rc, EMDPO_ERR_PARSE, -1);
        if (!rc) use_logratios(lr);
        emdpo_logratios_free(lr);
        break;
    }
    case 12:
    case 13: {
        emdpo_margins *m = NULL;
        int rc = emdpo_margins_read(as_file(which == 12 ? "m.jsonl" : "m.csv", data, size), &m, &diag);
        expect(rc, EMDPO_ERR_PARSE, -1);
        for (int c = 0; !rc && c < emdpo_margins_n_candidates(m); c++) {
            int64_t n_dec, n_annot;
            const double *mg;
            const int64_t *ann;
            double crit, cf;
            int k = emdpo_margins_candidate(m, c, &n_dec, &mg, &ann, &n_annot);
            expect(emdpo_margin_criterion(k, n_dec, mg, ann, n_annot, &crit, &cf, &diag), -1, -1);
        }
        emdpo_margins_free(m);
        break;
    }
    case 14:
    case 15: {
        double R[(EMDPO_MAX_K + 1) * EMDPO_MAX_K];
        int rows, K;
        int rc = emdpo_regrets_read(as_file(which == 14 ? "r.json" : "r.csv", data, size), R, &rows, &K, &diag);
        expect(rc, EMDPO_ERR_PARSE, EMDPO_ERR_LIMIT);
        if (rc) break;
        emdpo_mmra_hedge_opts o;
        emdpo_mmra_hedge_opts_init(&o);
        o.max_iter = 200;
        emdpo_regrets_result res;
        rc = emdpo_mmra_ae_regrets(R, rows, K, EMDPO_GAME_HEDGE, &o, &res, &diag);
        expect(rc, EMDPO_ERR_INVALID_ARG, EMDPO_ERR_NOT_CONVERGED);
        if (!rc && (res.game.gap < 0 || res.lp.gap < 0)) abort();
        break;
    }
    default: {
        emdpo_goqa_bank *b = NULL;
        expect(emdpo_goqa_parse_csv((const char *)data, size, "goqa.csv", NULL, &b, &diag), EMDPO_ERR_PARSE, -1);
        emdpo_goqa_bank_free(b);
        /* The literal reader takes valid UTF-8 (the CSV reader checks it first). */
        if (emdpo_utf8_invalid_at((const char *)data, size) < size) break;
        emdpo_py *v = NULL;
        size_t off = 0;
        char msg[128];
        int rc = emdpo_py_parse((const char *)data, size, &v, &off, msg, sizeof msg);
        expect(rc, EMDPO_ERR_PARSE, -1);
        if (rc == EMDPO_ERR_PARSE && off > size) abort(); /* the error is placed inside the input */
        emdpo_py_free(v);
        break;
    }
    }
    emdpo_data_free(d);
    return 0;
}
