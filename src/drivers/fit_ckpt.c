/* Resumable EM-DPO on Llama policies; see fit_ckpt.h. */
#include "drivers/fit_ckpt.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/file.h"
#include "drivers/train_log.h"
#include "lm/llama_policy.h"

#define STATE_NAME "fit_state.bin"
#define STATE_MAGIC "EMDPOFIT"
#define STATE_VERSION 1u
#define PARAM_MAGIC "EMDPOPAR"

typedef struct state_head {
    char magic[8];
    uint32_t version;
    int32_t K;
    uint64_t fingerprint;
    int64_t msteps, forwards, log_bytes;
    int32_t skip, best_start, best_iteration, have_best;
    uint64_t next;
} state_head;

struct emdpo_fit_ckpt {
    const char *dir;            /* NULL: a log without checkpoints */
    FILE *log;
    const char *log_path;
    int K, starts;
    uint64_t fingerprint;
    const emdpo_em_live *live;  /* the running M-step's */
    int start, have_best, best_start, best_iteration;
    uint64_t next, cur[EMDPO_MAX_K], best[EMDPO_MAX_K];
    int rc;                     /* the first failure of a hook */
    emdpo_diag diag;
};

/* ---- files ------------------------------------------------------------------- */

static char *type_file(const char *dir, int k, uint64_t n) {
    char name[64];
    snprintf(name, sizeof name, "type_%d.%llu.bin", k + 1, (unsigned long long)n);
    return emdpo_path_join(dir, name);
}

/* fwrite that keeps a running crc32 of what it wrote. */
static int put(FILE *fp, const void *p, size_t n, uLong *crc) {
    if (n == 0) return 1;
    *crc = crc32(*crc, p, (uInt)n);
    return fwrite(p, 1, n, fp) == n;
}

static int write_params(const char *path, const float *x, size_t n, emdpo_diag *diag) {
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (rc) return rc;
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t n64 = n;
    int ok = put(af.fp, PARAM_MAGIC, 8, &crc) && put(af.fp, &n64, sizeof n64, &crc);
    /* in chunks: crc32 takes an unsigned int length */
    for (size_t i = 0; ok && i < n; i += (size_t)1 << 26) {
        size_t m = n - i < (size_t)1 << 26 ? n - i : (size_t)1 << 26;
        ok = put(af.fp, x + i, m * sizeof *x, &crc);
    }
    uint32_t c32 = (uint32_t)crc;
    if (!ok || fwrite(&c32, sizeof c32, 1, af.fp) != 1) {
        emdpo_afile_abort(&af);
        return emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "write error");
    }
    return emdpo_afile_commit(&af, diag);
}

/* The whole of path checked against its trailing crc32: its length (less
 * the checksum) in *len, fp at its start. */
static FILE *open_checked(const char *path, long *len, emdpo_diag *diag, int *rc) {
    FILE *fp = fopen(path, "rb");
    uint32_t crc = 0, stored = 0;
    if (!fp) {
        *rc = emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "resume: the checkpoint has no such file");
        return NULL;
    }
    if (fseek(fp, 0, SEEK_END) || (*len = ftell(fp) - (long)sizeof crc) < 16 || fseek(fp, 0, SEEK_SET) ||
        emdpo_file_crc32(fp, *len, &crc) || fread(&stored, sizeof stored, 1, fp) != 1 || crc != stored ||
        fseek(fp, 0, SEEK_SET)) {
        fclose(fp);
        *rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, path, 0,
                            "the checkpoint is damaged (its crc32 checksum does not match its contents)");
        return NULL;
    }
    return fp;
}

static int read_params(const char *path, float *x, size_t n, emdpo_diag *diag) {
    long len = 0;
    int rc = EMDPO_OK;
    FILE *fp = open_checked(path, &len, diag, &rc);
    if (!fp) return rc;
    char magic[8];
    uint64_t n64 = 0;
    const char *why = NULL;
    if (fread(magic, 8, 1, fp) != 1 || memcmp(magic, PARAM_MAGIC, 8) || fread(&n64, sizeof n64, 1, fp) != 1)
        why = "not an emdpo fit checkpoint's parameter file";
    else if (n64 != n || (uint64_t)len != 16 + n64 * sizeof *x)
        why = "the parameter file holds another number of parameters than this fit's types";
    else if (fread(x, sizeof *x, n, fp) != n)
        why = "truncated parameter file";
    fclose(fp);
    return why ? emdpo_diag_at(diag, EMDPO_ERR_PARSE, path, 0, "%s", why) : EMDPO_OK;
}

/* Removes the type files the state does not name (the ones it named
 * before, and those a killed run wrote after its last state). */
static void remove_unnamed(const emdpo_fit_ckpt *c) {
    DIR *dp = opendir(c->dir);
    if (!dp) return;
    struct dirent *e;
    while ((e = readdir(dp))) {
        int k = 0, used = 0;
        unsigned long long n = 0;
        if (sscanf(e->d_name, "type_%d.%llu.bin%n", &k, &n, &used) != 2 || e->d_name[used] || k < 1 || k > c->K ||
            n == c->cur[k - 1] || n == c->best[k - 1])
            continue;
        char *path = emdpo_path_join(c->dir, e->d_name);
        if (path) unlink(path);
        emdpo_strfree(path);
    }
    closedir(dp);
}

static int write_state(emdpo_fit_ckpt *c, const emdpo_policy *pol, int skip, emdpo_diag *diag) {
    state_head h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.version = STATE_VERSION;
    h.K = c->K;
    h.fingerprint = c->fingerprint;
    emdpo_llama_policy_progress(pol, &h.msteps, &h.forwards);
    h.log_bytes = c->log ? ftell(c->log) : 0;
    h.skip = skip;
    h.best_start = c->best_start;
    h.best_iteration = c->best_iteration;
    h.have_best = c->have_best;
    h.next = c->next;
    char *path = emdpo_path_join(c->dir, STATE_NAME);
    if (!path) return EMDPO_ERR_NOMEM;
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (!rc) {
        size_t K = (size_t)c->K;
        int ok = fwrite(&h, sizeof h, 1, af.fp) == 1 && fwrite(c->cur, sizeof *c->cur, K, af.fp) == K &&
                 fwrite(c->best, sizeof *c->best, K, af.fp) == K && emdpo_em_image_write(c->live, af.fp) == 0;
        /* the image is written by EM: the checksum reads the bytes back */
        long len = ok && fflush(af.fp) == 0 ? ftell(af.fp) : -1;
        FILE *back = len >= 0 ? fopen(af.tmp, "rb") : NULL;
        uint32_t crc = 0;
        int crc_rc = back ? emdpo_file_crc32(back, len, &crc) : EMDPO_ERR_IO;
        if (back) fclose(back);
        ok = !crc_rc && fwrite(&crc, sizeof crc, 1, af.fp) == 1;
        if (!ok) {
            emdpo_afile_abort(&af);
            rc = crc_rc == EMDPO_ERR_NOMEM ? emdpo_diag_fail(diag, crc_rc, "out of memory")
                                           : emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "write error");
        } else {
            rc = emdpo_afile_commit(&af, diag);
        }
    }
    emdpo_strfree(path);
    if (!rc) remove_unnamed(c);
    return rc;
}

/* ---- hooks ------------------------------------------------------------------ */

static int fail(emdpo_fit_ckpt *c, int rc) {
    if (!c->rc) c->rc = rc;
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(&c->diag, rc, "out of memory");
    return rc;
}

/* A new start begins from the starting policy; a new best iterate is the
 * policy as it stands when the next M-step begins. */
static int on_mstep(void *ud, const emdpo_em_live *live) {
    emdpo_fit_ckpt *c = ud;
    int start, have_best, best_start, best_iteration;
    emdpo_em_live_where(live, &start, NULL, &have_best, &best_start, &best_iteration);
    c->live = live;
    /* before a new start's reset: the best may be the last iterate of the
     * start before */
    if (have_best && (!c->have_best || best_start != c->best_start || best_iteration != c->best_iteration)) {
        memcpy(c->best, c->cur, sizeof c->best);
        c->have_best = 1;
        c->best_start = best_start;
        c->best_iteration = best_iteration;
    }
    if (start != c->start) {
        c->start = start;
        memset(c->cur, 0, sizeof c->cur);
    }
    return EMDPO_OK;
}

static int on_type_done(void *ud, const emdpo_policy *pol, int k) {
    emdpo_fit_ckpt *c = ud;
    if (!c->dir) return EMDPO_OK;
    if (emdpo_dist_rank() > 0) { /* under MPI rank 0 alone writes; every process keeps the numbering */
        c->cur[k] = c->next++;
        return EMDPO_OK;
    }
    size_t n = 0;
    const float *x = emdpo_llama_policy_params((emdpo_policy *)pol, k, &n);
    char *path = type_file(c->dir, k, c->next);
    if (!path) return fail(c, EMDPO_ERR_NOMEM);
    int rc = write_params(path, x, n, &c->diag);
    emdpo_strfree(path);
    if (rc) return fail(c, rc);
    c->cur[k] = c->next++;
    if ((rc = write_state(c, pol, k + 1, &c->diag))) return fail(c, rc);
    return EMDPO_OK;
}

static void on_step(void *ud, int64_t mstep, int k, const emdpo_train_metrics *m, double seconds) {
    emdpo_fit_ckpt *c = ud;
    if (!c->log) return;
    char extra[96];
    snprintf(extra, sizeof extra, ", \"type\": %d, \"em_iteration\": %lld, \"start\": %d", k + 1, (long long)mstep,
             c->start);
    emdpo_train_log_line(c->log, m, 1, (double)m->examples / (seconds + 1e-12), extra);
    fflush(c->log);
}

/* ---- open, resume, close ------------------------------------------------------ */

/* Type files named by ids into pol's types (0: left as created). */
static int load_types(const emdpo_fit_ckpt *c, emdpo_policy *pol, const uint64_t *ids, emdpo_diag *diag) {
    for (int k = 0; k < c->K; k++) {
        if (!ids[k]) continue;
        if (ids[k] >= c->next) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "impossible checkpoint file number");
        size_t n = 0;
        float *x = emdpo_llama_policy_params(pol, k, &n);
        char *path = type_file(c->dir, k, ids[k]);
        if (!path) return EMDPO_ERR_NOMEM;
        int rc = read_params(path, x, n, diag);
        emdpo_strfree(path);
        if (rc) return rc;
    }
    return EMDPO_OK;
}

static int resume(emdpo_fit_ckpt *c, emdpo_policy *pol, const emdpo_data *d, const emdpo_em_opts *eo,
                  emdpo_em_hooks *hooks, int64_t *log_bytes, emdpo_diag *diag) {
    char *path = emdpo_path_join(c->dir, STATE_NAME);
    if (!path) return EMDPO_ERR_NOMEM;
    long len = 0;
    int rc = EMDPO_OK;
    FILE *fp = open_checked(path, &len, diag, &rc);
    state_head h;
    const char *why = NULL;
    size_t K = (size_t)c->K;
    if (fp && (fread(&h, sizeof h, 1, fp) != 1 || memcmp(h.magic, STATE_MAGIC, 8)))
        why = "not an emdpo fit checkpoint";
    else if (fp && h.version != STATE_VERSION)
        why = "a fit checkpoint of another emdpo version";
    else if (fp && (h.K != c->K || h.fingerprint != c->fingerprint))
        why = "the checkpoint was written by a fit of other data, model or settings";
    else if (fp && (h.skip < 0 || h.skip > c->K || h.msteps < 0 || h.forwards < 0 || h.log_bytes < 0 ||
                    (h.have_best != 0 && h.have_best != 1) ||
                    fread(c->cur, sizeof *c->cur, K, fp) != K || fread(c->best, sizeof *c->best, K, fp) != K))
        why = "corrupt checkpoint header";
    emdpo_em_image *im = NULL;
    if (fp && !why) {
        if ((rc = emdpo_em_image_read(fp, d, c->K, eo, &im, diag))) {
            if (diag) snprintf(diag->file, sizeof diag->file, "%s", path);
        } else if (ftell(fp) != len) {
            why = "the checkpoint's size does not match its contents";
        }
    }
    if (fp) fclose(fp);
    if (why) rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, path, 0, "%s", why);
    emdpo_strfree(path);
    if (rc) {
        emdpo_em_image_free(im);
        return rc;
    }
    int start, mstep, have_best;
    emdpo_em_image_where(im, &start, &mstep, &have_best);
    c->start = start;
    c->have_best = h.have_best;
    c->best_start = h.best_start;
    c->best_iteration = h.best_iteration;
    c->next = h.next;
    *log_bytes = h.log_bytes;
    emdpo_policy *cand = NULL, *best = NULL;
    if ((rc = pol->ops->clone(pol, &cand)) || (rc = load_types(c, cand, c->cur, diag))) goto fail;
    if (have_best && ((rc = pol->ops->clone(pol, &best)) || (rc = load_types(c, best, c->best, diag)))) goto fail;
    emdpo_llama_policy_restore(cand, h.msteps, h.forwards, h.skip);
    hooks->from = im;
    hooks->cand = cand;
    hooks->best = best;
    return EMDPO_OK;
fail:
    emdpo_em_image_free(im);
    emdpo_policy_free(cand);
    emdpo_policy_free(best);
    return rc;
}

/* The log of a resumed fit, cut to the checkpoint's length: lines after it
 * are of training the resumed fit does again. */
static FILE *open_resumed_log(const char *path, int64_t bytes) {
    FILE *fp = fopen(path, "r+");
    if (!fp) return fopen(path, "a");
    if (fseek(fp, 0, SEEK_END) || (ftell(fp) > bytes && ftruncate(fileno(fp), bytes)) || fseek(fp, 0, SEEK_END)) {
        fclose(fp);
        return NULL;
    }
    return fp;
}

int emdpo_fit_ckpt_open(const emdpo_lm_fit_opts *o, emdpo_policy *pol, const emdpo_data *d, uint64_t fingerprint,
                        emdpo_fit_ckpt **out, emdpo_em_hooks *hooks, emdpo_diag *diag) {
    *out = NULL;
    memset(hooks, 0, sizeof *hooks);
    if (!o->checkpoint && !o->log) return EMDPO_OK;
    if (o->resume && !o->checkpoint)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "resume needs the checkpoint directory");
    emdpo_fit_ckpt *c = emdpo_calloc(1, sizeof *c);
    if (!c) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    c->dir = o->checkpoint;
    c->log_path = o->log;
    c->K = o->k;
    c->starts = o->em.starts;
    c->fingerprint = fingerprint;
    c->next = 1;
    int rc = EMDPO_OK;
    int64_t log_bytes = 0;
    /* Under MPI every process may resume (reading what rank 0 wrote), but
     * rank 0 alone makes directories, removes and writes files and logs. */
    int lead = emdpo_dist_rank() == 0;
    if (lead && c->dir && !o->resume && !(rc = emdpo_mkdirs(c->dir, diag))) {
        /* a fresh fit: another run's state must not be resumed by mistake */
        char *state = emdpo_path_join(c->dir, STATE_NAME);
        if (!state) rc = EMDPO_ERR_NOMEM;
        else unlink(state);
        emdpo_strfree(state);
    }
    if (!rc && o->resume) rc = resume(c, pol, d, &o->em, hooks, &log_bytes, diag);
    if (!rc && lead && o->log && !(c->log = o->resume ? open_resumed_log(o->log, log_bytes) : fopen(o->log, "w")))
        rc = emdpo_diag_at(diag, EMDPO_ERR_IO, o->log, 0, "cannot write");
    if (rc) {
        if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(diag, rc, "out of memory");
        emdpo_em_image_free(hooks->from);
        emdpo_policy_free(hooks->cand);
        emdpo_policy_free(hooks->best);
        memset(hooks, 0, sizeof *hooks);
        emdpo_free(c, sizeof *c);
        return rc;
    }
    emdpo_llama_policy_hooks ph = {c, on_step, on_type_done};
    emdpo_llama_policy_set_hooks(pol, &ph);
    if (hooks->cand) emdpo_llama_policy_set_hooks(hooks->cand, &ph);
    if (hooks->best) emdpo_llama_policy_set_hooks(hooks->best, &ph);
    hooks->ud = c;
    hooks->mstep_begins = on_mstep;
    *out = c;
    return EMDPO_OK;
}

int emdpo_fit_ckpt_close(emdpo_fit_ckpt *c, emdpo_diag *diag) {
    if (!c) return EMDPO_OK;
    int rc = c->rc;
    if (rc && diag) *diag = c->diag;
    if (c->log) {
        int bad = ferror(c->log);
        bad |= fclose(c->log) != 0;
        if (!rc && bad) rc = emdpo_diag_at(diag, EMDPO_ERR_IO, c->log_path, 0, "write error");
    }
    emdpo_free(c, sizeof *c);
    return rc;
}
