/* libFuzzer target: the text readers of untrusted files, through the same
 * entry points the library's users call. The first byte picks the reader,
 * the rest is the file: preference JSONL and long CSV (src/data), fit.json,
 * posterior.csv and weight files (src/fitfile), mixture.json (src/lm),
 * MPI inventories and GlobalOpinionQA's three sources (src/experiments),
 * and Python literals (src/base/pylit.c). A reader may refuse its input with
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 10;
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
