/* emdpo_data_read / emdpo_data_write: format choice and file handling
 * around the per-format code (readers.h). */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/dist.h"
#include "data/readers.h"

static int ends_with_nocase(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)s[n - k + i]) != suffix[i]) return 0;
    return 1;
}

static int resolve_format(const char *path, emdpo_format fmt, emdpo_format *out, emdpo_diag *diag) {
    if (fmt == EMDPO_FORMAT_JSONL || fmt == EMDPO_FORMAT_CSV) {
        *out = fmt;
        return EMDPO_OK;
    }
    if (fmt != EMDPO_FORMAT_AUTO) {
        emdpo_diag_set(diag, 0, "unknown data format %d", (int)fmt);
        return EMDPO_ERR_INVALID_ARG;
    }
    if (ends_with_nocase(path, ".jsonl") || ends_with_nocase(path, ".json") || ends_with_nocase(path, ".jsonl.gz") ||
        ends_with_nocase(path, ".json.gz")) {
        *out = EMDPO_FORMAT_JSONL;
    } else if (ends_with_nocase(path, ".csv")) {
        *out = EMDPO_FORMAT_CSV;
    } else {
        emdpo_diag_set(diag, 0, "cannot tell the data format from the file name (use .jsonl, .json, .jsonl.gz or .csv)");
        return EMDPO_ERR_UNSUPPORTED;
    }
    return EMDPO_OK;
}

void emdpo_read_opts_init(emdpo_read_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->annotator_field = "annotator";
    o->csv_id = "annotator";
    o->csv_task = "task";
    o->csv_alt = "alt";
    o->csv_choice = "chosen";
}

int emdpo_data_read(const char *path, emdpo_format fmt, emdpo_data **out, emdpo_diag *diag) {
    return emdpo_data_read_with(path, fmt, NULL, out, diag);
}

int emdpo_data_read_with(const char *path, emdpo_format fmt, const emdpo_read_opts *o, emdpo_data **out,
                         emdpo_diag *diag) {
    return emdpo_data_read_kept(path, fmt, o, 0, out, diag);
}

int emdpo_data_read_kept(const char *path, emdpo_format fmt, const emdpo_read_opts *o, size_t keep_text_bytes,
                         emdpo_data **out, emdpo_diag *diag) {
    emdpo_read_opts defaults;
    emdpo_read_opts_init(&defaults);
    if (!o) o = &defaults;
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    emdpo_diag_reset(diag, path);
    if (!out) return EMDPO_ERR_INVALID_ARG;
    *out = NULL;
    if (!path) return EMDPO_ERR_INVALID_ARG;
    const char *names[] = {o->annotator_field, o->csv_id, o->csv_task, o->csv_alt, o->csv_choice};
    for (int i = 0; i < 5; i++)
        if (!names[i] || !*names[i]) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "an empty field or column name");
    emdpo_format f;
    int rc = resolve_format(path, fmt, &f, diag);
    if (rc) return rc;
    long line = 0;
    int part = 0;
    if (f == EMDPO_FORMAT_JSONL) {
        emdpo_lines lr;
        /* Under mpirun each process reads only its part of a regular file of
         * records on lines; gzip, a JSON array and pipes are read whole (a
         * pipe is not opened twice). */
        struct stat st;
        FILE *fp = o->share && emdpo_dist_size() > 1 && stat(path, &st) == 0 && S_ISREG(st.st_mode) ? fopen(path, "rb")
                                                                                                   : NULL;
        if (fp && !(part = emdpo_jsonl_splits(fp))) fclose(fp);
        if (part) lr = (emdpo_lines){.fp = fp};
        else if (emdpo_lines_open(&lr, path))
            return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open: %s", strerror(errno));
        rc = emdpo_read_jsonl(&lr, o, keep_text_bytes, part, out, diag);
        line = lr.lineno;
        emdpo_lines_close(&lr);
    } else {
        FILE *fp = fopen(path, "rb");
        if (!fp) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open: %s", strerror(errno));
        /* Under mpirun each process reads only its part of a regular file. */
        struct stat st;
        part = o->share && emdpo_dist_size() > 1 && fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode);
        rc = emdpo_read_csv(fp, o, part, out, &line, diag);
        fclose(fp);
    }
    if (!rc && strcmp(o->annotator_field, "annotator") != 0 &&
        !((*out)->read_annotator_field = emdpo_strdup(o->annotator_field))) {
        emdpo_data_free(*out);
        *out = NULL;
        rc = EMDPO_ERR_NOMEM;
    }
    if (!rc && !((*out)->source = emdpo_strdup(path))) {
        emdpo_data_free(*out);
        *out = NULL;
        rc = EMDPO_ERR_NOMEM;
    }
    if (!rc && o->share && !part && emdpo_dist_size() > 1) { /* this process keeps its share of the whole */
        emdpo_data *mine = NULL;
        rc = emdpo_data_share(*out, &mine);
        emdpo_data_free(*out);
        *out = mine;
    }
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_set(diag, line, "out of memory");
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, line, "read error: %s", strerror(errno));
    return rc;
}

int emdpo_data_write(const emdpo_data *d, const char *path, emdpo_format fmt, emdpo_diag *diag) {
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    emdpo_diag_reset(diag, path);
    if (!d || !path) return EMDPO_ERR_INVALID_ARG;
    emdpo_format f;
    int rc = resolve_format(path, fmt, &f, diag);
    if (rc || (f == EMDPO_FORMAT_CSV && (rc = emdpo_csv_check_writable(d, diag)))) return rc;
    emdpo_afile af;
    if ((rc = emdpo_afile_open(&af, path, diag))) return rc;
    if (f == EMDPO_FORMAT_JSONL) rc = emdpo_write_jsonl(d, af.fp, diag);
    else emdpo_write_csv(d, af.fp);
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, 0, "write failed: %s", strerror(errno));
    if (rc) {
        emdpo_afile_abort(&af);
        return rc;
    }
    return emdpo_afile_commit(&af, diag);
}
