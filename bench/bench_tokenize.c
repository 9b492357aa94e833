/* Single-thread tokenizer figures for docs/BENCHMARKS.md: the load time of
 * a tokenizer (best of 3), and encode throughput over every line of a JSON
 * lines file of strings (best of REPS passes, one thread, no output).
 * usage: bench_tokenize TOKENIZER INPUT.jsonl [REPS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/json.h"
#include "emdpo.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenize TOKENIZER INPUT.jsonl [REPS]\n");
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    emdpo_diag d;
    double load = 1e30;
    emdpo_tokenizer *t = NULL;
    for (int r = 0; r < 3; r++) {
        emdpo_tokenizer_free(t);
        double t0 = emdpo_now();
        if (emdpo_tokenizer_load(argv[1], 0, &t, &d)) {
            fprintf(stderr, "%s: %s\n", argv[1], d.msg);
            return 1;
        }
        double dt = emdpo_now() - t0;
        if (dt < load) load = dt;
    }
    char *buf;
    size_t len;
    if (emdpo_file_read(argv[2], &buf, &len, &d)) {
        fprintf(stderr, "%s: %s\n", argv[2], d.msg);
        return 1;
    }
    /* The strings, decoded from JSON once. */
    emdpo_json_doc *doc;
    if (emdpo_json_doc_create(&doc)) return 1;
    char **text = NULL;
    size_t *tl = NULL, n = 0, cap = 0, bytes = 0;
    for (char *p = buf, *nl; p < buf + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (!nl) nl = buf + len;
        const emdpo_json *v;
        emdpo_json_error err;
        if (nl == p || emdpo_json_parse(doc, p, (size_t)(nl - p), &v, &err) || v->type != EMDPO_JSON_STRING) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            text = realloc(text, cap * sizeof *text);
            tl = realloc(tl, cap * sizeof *tl);
        }
        text[n] = malloc(v->len + 1);
        memcpy(text[n], v->u.str, v->len + 1);
        tl[n] = v->len;
        bytes += v->len;
        n++;
    }
    double best = 1e30;
    size_t tokens = 0;
    for (int r = 0; r < reps; r++) {
        tokens = 0;
        double t0 = emdpo_now();
        for (size_t i = 0; i < n; i++) {
            int *ids;
            size_t k;
            if (emdpo_tokenizer_encode_alloc(t, text[i], tl[i], 0, &ids, &k)) return 1;
            tokens += k;
            emdpo_ids_free(ids, k);
        }
        double dt = emdpo_now() - t0;
        if (dt < best) best = dt;
    }
    printf("load %.3f s; %zu strings, %.2f MB -> %zu tokens; one thread: %.1f MB/s, %.0f tokens/s (best of %d)\n",
           load, n, bytes / 1e6, tokens, bytes / 1e6 / best, tokens / best, reps);
    for (size_t i = 0; i < n; i++) free(text[i]);
    free(text);
    free(tl);
    emdpo_json_doc_free(doc);
    emdpo_tokenizer_free(t);
    return 0;
}
