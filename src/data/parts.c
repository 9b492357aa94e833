/* Reading a record file in parts under mpirun: the split, the scans'
 * bookkeeping and the adjacency checks that read_csv.c and read_jsonl.c
 * share (parts.h). */
#include "data/parts.h"

#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/hash.h"
#include "base/names.h"

int emdpo_part_line_start(FILE *fp, int64_t at, int64_t body, int64_t size, int64_t *out) {
    if (at <= body || at >= size) {
        *out = at <= body ? body : size;
        return EMDPO_OK;
    }
    if (fseeko(fp, (off_t)(at - 1), SEEK_SET)) return EMDPO_ERR_IO;
    int c;
    while ((c = getc_unlocked(fp)) != EOF && c != '\n') at++;
    if (ferror(fp)) return EMDPO_ERR_IO;
    *out = c == EOF ? size : at;
    return EMDPO_OK;
}

/* Line ends in bytes [from, to). */
static int count_lines(FILE *fp, int64_t from, int64_t to, int64_t *n) {
    char buf[1 << 16];
    *n = 0;
    if (fseeko(fp, (off_t)from, SEEK_SET)) return EMDPO_ERR_IO;
    while (from < to) {
        size_t want = to - from < (int64_t)sizeof buf ? (size_t)(to - from) : sizeof buf;
        size_t got = fread(buf, 1, want, fp);
        for (size_t i = 0; i < got; i++) *n += buf[i] == '\n';
        if (got < want) return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
        from += (int64_t)got;
    }
    return EMDPO_OK;
}

int emdpo_part_find(FILE *fp, int64_t body, long body_line, emdpo_part_scan_fn scan, void *ctx, emdpo_part *part) {
    int rank = emdpo_dist_rank(), size = emdpo_dist_size();
    struct stat st;
    if (fstat(fileno(fp), &st)) return EMDPO_ERR_IO;
    int64_t fsize = (int64_t)st.st_size, bytes = fsize > body ? fsize - body : 0, from, to, lines, starts, records;
    int rc;
    if ((rc = emdpo_part_line_start(fp, body + bytes * rank / size, body, fsize, &from)) ||
        (rc = emdpo_part_line_start(fp, body + bytes * (rank + 1) / size, body, fsize, &to)) ||
        (rc = count_lines(fp, from, to, &lines)) || (rc = emdpo_dist_exscan_i64(&lines, 1)))
        return rc;
    long line = body_line + (long)lines;
    /* A refusal found here is found again, at the same line, below. */
    int first_rc = scan(ctx, fp, from, to, line, 0, NULL, 0, NULL, &starts, &records);
    if (first_rc && first_rc != EMDPO_ERR_PARSE) return first_rc;
    int64_t before = starts, total[2] = {starts, records};
    if ((rc = emdpo_dist_exscan_i64(&before, 1)) || (rc = emdpo_dist_sum_i64(total, 2))) return rc;
    int64_t all = total[1] ? total[0] + 1 : 0; /* the first record starts annotator 0 */
    /* The starts of the shares of processes 1 .. size - 1. */
    size_t wbytes = (size_t)size * sizeof(int64_t), abytes = 2 * wbytes;
    int64_t *want = emdpo_malloc(wbytes), *at = emdpo_calloc(2 * (size_t)size, sizeof(int64_t));
    if (!want || !at) rc = EMDPO_ERR_NOMEM;
    for (int q = 1; !rc && q < size; q++) {
        int64_t lo, hi;
        emdpo_dist_share_of(q, all, &lo, &hi);
        want[q - 1] = lo;
    }
    if (!rc) rc = scan(ctx, fp, from, to, line, before + 1, want, size - 1, at, &starts, &records);
    if (!rc) rc = first_rc;
    if (!rc) rc = emdpo_dist_sum_i64(at, 2 * (size_t)(size - 1));
    if (!rc) {
        int64_t lo, hi;
        emdpo_dist_share(all, &lo, &hi);
        *part = (emdpo_part){.begin = body, .end = fsize, .line = body_line, .end_line = LONG_MAX,
                             .annot_base = lo, .all_annot = all};
        if (lo >= all) part->begin = fsize;
        else if (lo > 0) part->begin = at[2 * (rank - 1)], part->line = (long)at[2 * (rank - 1) + 1];
        if (hi == 0) part->end = body, part->end_line = body_line;
        else if (hi < all) part->end = at[2 * rank], part->end_line = (long)at[2 * rank + 1];
    }
    emdpo_free(want, wbytes);
    emdpo_free(at, abytes);
    return rc;
}

int emdpo_part_note(emdpo_part_annots *a, const emdpo_data_builder *b, const char *prev, const char *annot, long line,
                    emdpo_diag *diag) {
    if (prev && strcmp(prev, annot) == 0) return EMDPO_OK;
    if (b && emdpo_data_builder_count(b, annot) > 0)
        return emdpo_diag_parse(diag, line,
                                "annotator \"%.40s\" appears again here after other annotators' rows; under mpirun "
                                "the rows of an annotator must be adjacent (sort the file by annotator)",
                                annot);
    if (emdpo_grow((void **)&a->line, &a->cap, a->n + 1, sizeof *a->line)) return EMDPO_ERR_NOMEM;
    a->line[a->n++] = line;
    return EMDPO_OK;
}

void emdpo_part_annots_free(emdpo_part_annots *a) {
    emdpo_free(a->line, a->cap * sizeof *a->line);
    a->line = NULL;
    a->n = a->cap = 0;
}

static int check_adjacent(const emdpo_data *d, const emdpo_part_annots *a, emdpo_diag *diag) {
    int size = emdpo_dist_size();
    size_t cbytes = (size_t)size * sizeof(int64_t), sbytes = 0;
    int64_t *count = emdpo_calloc((size_t)size, sizeof(int64_t));
    int *dest = emdpo_malloc((d->n_annot ? (size_t)d->n_annot : 1) * sizeof *dest);
    char *send = NULL, *recv = NULL;
    size_t recv_len = 0;
    int rc = count && dest ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (int64_t i = 0; !rc && i < d->n_annot; i++) {
        size_t len = strlen(d->annot_name[i]) + 1;
        dest[i] = (int)(emdpo_hash_bytes(d->annot_name[i], len - 1) % (uint64_t)size);
        count[dest[i]] += (int64_t)(sizeof(int64_t) + len);
        sbytes += sizeof(int64_t) + len;
    }
    if (!rc && sbytes && !(send = emdpo_malloc(sbytes))) rc = EMDPO_ERR_NOMEM;
    if (!rc) { /* pieces in rank order */
        size_t *fill = emdpo_malloc((size_t)size * sizeof *fill);
        if (!fill) rc = EMDPO_ERR_NOMEM;
        size_t o = 0;
        for (int q = 0; !rc && q < size; q++) {
            fill[q] = o;
            o += (size_t)count[q];
        }
        for (int64_t i = 0; !rc && i < d->n_annot; i++) {
            int64_t line = a->line[i];
            size_t len = strlen(d->annot_name[i]) + 1;
            memcpy(send + fill[dest[i]], &line, sizeof line);
            memcpy(send + fill[dest[i]] + sizeof line, d->annot_name[i], len);
            fill[dest[i]] += sizeof line + len;
        }
        emdpo_free(fill, (size_t)size * sizeof *fill);
    }
    if (!rc) rc = emdpo_dist_alltoall_bytes(send, count, &recv, &recv_len);
    emdpo_name_index seen = {0};
    int64_t *first = NULL;
    size_t first_cap = 0;
    for (size_t o = 0; !rc && o < recv_len;) {
        int64_t line, idx;
        int is_new;
        memcpy(&line, recv + o, sizeof line);
        const char *name = recv + o + sizeof line;
        o += sizeof line + strlen(name) + 1;
        if ((rc = emdpo_name_index_intern(&seen, name, &idx, &is_new))) break;
        if (is_new) {
            if (emdpo_grow((void **)&first, &first_cap, (size_t)idx + 1, sizeof *first)) rc = EMDPO_ERR_NOMEM;
            else first[idx] = line;
        } else {
            long lo = (long)(first[idx] < line ? first[idx] : line), hi = (long)(first[idx] < line ? line : first[idx]);
            rc = emdpo_diag_parse(diag, hi,
                                  "annotator \"%.40s\" appears again here after other annotators' rows (it began "
                                  "on line %ld); under mpirun the rows of an annotator must be adjacent (sort the "
                                  "file by annotator)",
                                  name, lo);
        }
    }
    emdpo_name_index_free(&seen);
    emdpo_free(first, first_cap * sizeof *first);
    emdpo_free(recv, recv_len);
    emdpo_free(send, sbytes);
    emdpo_free(dest, (d->n_annot ? (size_t)d->n_annot : 1) * sizeof *dest);
    emdpo_free(count, cbytes);
    return rc;
}

int emdpo_part_finish(emdpo_data_builder *b, const emdpo_part *part, const emdpo_part_annots *a, emdpo_data **out,
                      emdpo_diag *diag) {
    int rc = emdpo_data_builder_finish_share(b, part->annot_base, part->all_annot, out);
    if (!rc && (rc = check_adjacent(*out, a, diag))) {
        emdpo_data_free(*out);
        *out = NULL;
    }
    return rc;
}
