/* libFuzzer target: the language-model files the text readers' harness
 * (fuzz_readers.c) does not reach. Byte 0 picks the reader (its value mod
 * 5), the rest is the file:
 *   0  SFT/DPO text JSONL (src/lm/io/lm_batch.c: emdpo_lm_texts_read, and
 *      emdpo_lm_set_read_with tokenizing it with a byte tokenizer, which
 *      must give sequences inside the vocabulary and the length limit);
 *   1  a llama2.c checkpoint (src/lm/io/llama2c.c's header and sizes): an
 *      accepted model must pass the configuration check;
 *   2  trainer.bin (src/lm/lm_train.c's resume) of a tiny SFT run made
 *      once at start-up; an even byte 1 makes the input's last 4 bytes its
 *      crc32, so that the checks behind the checksum are reached too;
 *   3  the run-folder JSON files emdpo report reads (src/report/report.c):
 *      byte 1 picks run.json, table1.json, table3.json, select.json or a
 *      type directory's fit.json;
 *   4  a fit checkpoint's fit_state.bin (src/drivers/fit_ckpt.c and
 *      core/em.c's EM state), resumed by emdpo_lm_fit on a copy of the
 *      checkpoint of a tiny fit made once at start-up (on a llama2.c
 *      model of fixed weights); an even byte 1 fixes its crc32, as for trainer.bin; an
 *      accepted state must finish as a fit of K 2 with a finite
 *      log-likelihood.
 * A reader may refuse its input with a status, never crash, read outside
 * it or return a status it does not document. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <math.h>
#include <unistd.h>
#include <zlib.h>

#include "base/file.h"
#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/io/llama2c.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static emdpo_tokenizer *tok;
static int trained; /* 1 once dir/run holds a model and trainer.bin */
static emdpo_llama *fit_sft;
static emdpo_data *fit_data;

static const char *path_of(const char *name) {
    static char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_file(const char *name, const void *p, size_t n) {
    FILE *fp = fopen(path_of(name), "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp) != 0) abort();
}

static void expect(int rc, int ok_a, int ok_b, int ok_c) {
    if (rc != EMDPO_OK && rc != EMDPO_ERR_NOMEM && rc != ok_a && rc != ok_b && rc != ok_c) abort();
}

/* A llama2.c tokenizer.bin of <unk>, BOS, EOS and the 256 byte pieces. */
static void byte_tokenizer(void) {
    static unsigned char buf[4 + 3 * 16 + 256 * 14];
    size_t n = 0;
    int32_t max_len = 16;
    memcpy(buf, &max_len, 4);
    n = 4;
    for (int id = 0; id < 259; id++) {
        char piece[16];
        int32_t len = id == 0 ? snprintf(piece, sizeof piece, "<unk>")
                      : id == 1 ? snprintf(piece, sizeof piece, "\n<s>\n")
                      : id == 2 ? snprintf(piece, sizeof piece, "\n</s>\n")
                                : snprintf(piece, sizeof piece, "<0x%02X>", id - 3);
        float score = 0;
        memcpy(buf + n, &score, 4);
        memcpy(buf + n + 4, &len, 4);
        memcpy(buf + n + 8, piece, (size_t)len);
        n += 8 + (size_t)len;
    }
    write_file("tok.bin", buf, n);
    emdpo_diag diag;
    if (emdpo_tokenizer_parse(buf, n, 259, "tok.bin", &tok, &diag)) abort();
}

/* The SFT run whose trainer.bin the inputs replace: the settings of
 * fuzz/corpus/lm_files/trainer (tools/fuzz_lm_files_seed.sh). */
static void train_opts(emdpo_train_opts *o, int resume) {
    static char data_path[96], tok_path[96], out_path[96];
    snprintf(data_path, sizeof data_path, "%s/sft.jsonl", dir);
    snprintf(tok_path, sizeof tok_path, "%s/tok.bin", dir);
    snprintf(out_path, sizeof out_path, "%s/run", dir);
    emdpo_train_opts_init(o, EMDPO_TRAIN_SFT);
    o->data = data_path;
    o->tokenizer = tok_path;
    o->out = out_path;
    o->config_spec = resume ? NULL : "dim=8,layers=1,heads=1,vocab=259,seq_len=32";
    o->steps = 1;
    o->resume = resume;
}

/* emdpo_lm_fit of the start-up's settings into dir/NAME/checkpoint. */
static int fit_run(emdpo_lm_fit_opts *fo, const char *name, int resume, emdpo_fit **f) {
    static char ck[128];
    snprintf(ck, sizeof ck, "%s/%s/checkpoint", dir, name);
    emdpo_lm_fit_opts_init(fo);
    fo->k = 2;
    fo->em.max_iter = 1;
    fo->mstep.steps = 2;
    fo->mstep.batch = 2;
    fo->checkpoint = ck;
    fo->resume = resume;
    emdpo_diag diag;
    return emdpo_lm_fit(fit_sft, tok, fit_data, fo, f, &diag);
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[4096];
    size_t n;
    while (out && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) abort();
    if (!in || !out || fclose(out) != 0) abort();
    fclose(in);
}

/* The fit's SFT model: a llama2.c file whose floats are (i mod 100) /
 * 1000 (as tools/fuzz_lm_files_seed.sh writes it with Python), so that its
 * bits, which a checkpoint's fingerprint holds, do not depend on how this
 * harness was compiled. dim 8, hidden 16, 1 layer, 1 head, vocabulary 259
 * (tied), context 32. */
static void sft_model(void) {
    const int32_t h[7] = {8, 16, 1, 1, 1, 259, 32};
    const size_t dim = 8, hid = 16, V = 259, S = 32, kv = 8;
    size_t n = V * dim + dim + dim * dim + 2 * dim * kv + dim * dim + dim + 3 * hid * dim + dim + 2 * S * (dim / 2);
    size_t bytes = sizeof h + n * sizeof(float);
    unsigned char *buf = malloc(bytes);
    if (!buf) abort();
    memcpy(buf, h, sizeof h);
    for (size_t i = 0; i < n; i++) {
        float v = (float)((double)(i % 100) / 1000.0);
        memcpy(buf + sizeof h + i * sizeof v, &v, sizeof v);
    }
    write_file("sft.bin", buf, bytes);
    free(buf);
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/emdpo_fuzz_lm_XXXXXX");
    if (!mkdtemp(dir)) abort();
    byte_tokenizer();
    static const char sft[] = "{\"prompt\": \"ab\", \"response\": \"cd\"}\n{\"text\": \"efg\"}\n";
    write_file("sft.jsonl", sft, sizeof sft - 1);
    emdpo_train_opts o;
    train_opts(&o, 0);
    emdpo_train_job *j = NULL;
    emdpo_diag diag;
    emdpo_set_threads(1);
    if (emdpo_train_job_create(&o, &j, &diag) || emdpo_train_job_run(j, &diag)) abort();
    emdpo_train_job_free(j);
    /* the fit whose checkpoint (dir/fit0/checkpoint) inputs replace: the
     * settings of fuzz/corpus/lm_files/fit_state */
    static const char prefs[] = "{\"annotator\": \"a\", \"prompt\": \"ab\", \"chosen\": \"x\", \"rejected\": \"y\"}\n"
                                "{\"annotator\": \"b\", \"prompt\": \"ab\", \"chosen\": \"y\", \"rejected\": \"x\"}\n"
                                "{\"annotator\": \"c\", \"prompt\": \"cd\", \"chosen\": \"x\", \"rejected\": \"y\"}\n";
    write_file("prefs.jsonl", prefs, sizeof prefs - 1);
    emdpo_fit *f = NULL;
    emdpo_lm_fit_opts fo;
    sft_model();
    if (emdpo_llama_load(path_of("sft.bin"), &fit_sft, &diag) ||
        emdpo_data_read(path_of("prefs.jsonl"), EMDPO_FORMAT_JSONL, &fit_data, &diag) ||
        fit_run(&fo, "fit0", 0, &f) != EMDPO_OK)
        abort();
    emdpo_fit_free(f);
    trained = 1;
}

static void texts(const uint8_t *data, size_t size) {
    write_file("texts.jsonl", data, size);
    emdpo_diag diag;
    emdpo_lm_texts *t = NULL;
    expect(emdpo_lm_texts_read(path_of("texts.jsonl"), &t, &diag), EMDPO_ERR_PARSE, EMDPO_ERR_UNSUPPORTED, -1);
    emdpo_lm_texts_free(t);
    emdpo_lm_set *s = NULL;
    emdpo_data *d = NULL;
    int rc = emdpo_lm_set_read_with(path_of("texts.jsonl"), NULL, tok, 16, 8, 1, &s, &d, &diag);
    expect(rc, EMDPO_ERR_PARSE, EMDPO_ERR_UNSUPPORTED, EMDPO_ERR_LIMIT);
    for (int64_t i = 0; !rc && i < s->n_seq; i++) {
        int n = emdpo_lm_seq_len(s, i);
        if (n < 1 || n > 16 || s->seq_start[i] < 0 || s->seq_start[i] > n) abort();
    }
    for (int64_t i = 0; !rc && i < s->n_tok; i++)
        if (s->tok[i] < 0 || s->tok[i] >= 259) abort();
    emdpo_lm_set_free(s);
    emdpo_data_free(d);
}

static void llama2c(const uint8_t *data, size_t size) {
    write_file("model.bin", data, size);
    emdpo_llama *m = NULL;
    emdpo_diag diag;
    int rc = emdpo_llama2c_load(path_of("model.bin"), &m, &diag);
    expect(rc, EMDPO_ERR_PARSE, EMDPO_ERR_IO, EMDPO_ERR_UNSUPPORTED);
    if (!rc && emdpo_llama_config_check(&m->config) != EMDPO_OK) abort();
    emdpo_llama_free(m);
}

/* Writes data to path, with fix_crc its last 4 bytes replaced by the crc32
 * of the rest (so that the input reaches past the checksum); 0 when out of
 * memory. */
static int write_with_crc(const char *path, const uint8_t *data, size_t size, int fix_crc) {
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (fix_crc && size >= 4) {
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), copy, (uInt)(size - 4));
        memcpy(copy + size - 4, &crc, 4);
    }
    write_file(path, copy, size);
    free(copy);
    return 1;
}

static void trainer(const uint8_t *data, size_t size) {
    if (size < 1) return;
    int fix_crc = data[0] % 2 == 0;
    data++, size--;
    if (!write_with_crc("run/trainer.bin", data, size, fix_crc)) return;
    emdpo_train_opts o;
    train_opts(&o, 1);
    emdpo_train_job *j = NULL;
    emdpo_diag diag;
    int rc = emdpo_train_job_create(&o, &j, &diag);
    expect(rc, EMDPO_ERR_PARSE, EMDPO_ERR_IO, -1);
    if (!rc && emdpo_train_job_steps_done(j) < 0) abort();
    emdpo_train_job_free(j);
}

static void report(const uint8_t *data, size_t size) {
    static const char *names[5] = {"run.json", "table1.json", "table3.json", "select.json", "fit/fit.json"};
    if (size < 1) return;
    int which = data[0] % 5;
    data++, size--;
    char rdir[96], sub[128];
    snprintf(rdir, sizeof rdir, "%s/report_%d", dir, which);
    snprintf(sub, sizeof sub, "%s/fit", rdir);
    emdpo_diag diag;
    if (emdpo_mkdirs(which == 4 ? sub : rdir, &diag)) abort();
    char name[160];
    snprintf(name, sizeof name, "report_%d/%s", which, names[which]);
    write_file(name, data, size);
    expect(emdpo_report_write(rdir, NULL, NULL, NULL, 0, &diag), EMDPO_ERR_PARSE, EMDPO_ERR_IO, -1);
}

/* A fresh copy of the start-up fit's checkpoint, its state replaced by
 * the input, resumed. */
static void fit_state(const uint8_t *data, size_t size) {
    if (size < 1) return;
    int fix_crc = data[0] % 2 == 0;
    data++, size--;
    char from[128], to[128], a[400], b[400];
    snprintf(from, sizeof from, "%s/fit0/checkpoint", dir);
    snprintf(to, sizeof to, "%s/fit1/checkpoint", dir);
    emdpo_diag diag;
    if (emdpo_mkdirs(to, &diag)) abort();
    DIR *dp = opendir(to);
    struct dirent *e;
    while (dp && (e = readdir(dp)))
        if (e->d_name[0] != '.') {
            snprintf(b, sizeof b, "%s/%s", to, e->d_name);
            unlink(b);
        }
    if (dp) closedir(dp);
    if (!(dp = opendir(from))) abort();
    while ((e = readdir(dp)))
        if (e->d_name[0] != '.' && strcmp(e->d_name, "fit_state.bin") != 0) {
            snprintf(a, sizeof a, "%s/%s", from, e->d_name);
            snprintf(b, sizeof b, "%s/%s", to, e->d_name);
            copy_file(a, b);
        }
    closedir(dp);
    if (!write_with_crc("fit1/checkpoint/fit_state.bin", data, size, fix_crc)) return;
    emdpo_lm_fit_opts fo;
    emdpo_fit *f = NULL;
    int rc = fit_run(&fo, "fit1", 1, &f);
    expect(rc, EMDPO_ERR_PARSE, EMDPO_ERR_IO, EMDPO_ERR_INVALID_ARG);
    if (!rc && (emdpo_fit_k(f) != 2 || !isfinite(emdpo_fit_loglik(f)))) abort();
    emdpo_fit_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!trained) setup();
    if (size < 1) return 0;
    int which = data[0] % 5;
    data++, size--;
    switch (which) {
    case 0: texts(data, size); break;
    case 1: llama2c(data, size); break;
    case 2: trainer(data, size); break;
    case 3: report(data, size); break;
    default: fit_state(data, size); break;
    }
    return 0;
}
