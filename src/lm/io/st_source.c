#include "lm/io/st_source.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"

typedef struct entry {
    const emdpo_st_tensor *t; /* owned by its shard */
    size_t shard;
} entry;

struct emdpo_st_source {
    emdpo_safetensors **shard;
    char **shard_name; /* (n_shard) as the index names them; NULL for one file */
    size_t n_shard;
    entry *e; /* (n) by name */
    size_t n;
    char *name;
    emdpo_st_dtype dtype;
};

void emdpo_st_source_close(emdpo_st_source *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_shard; i++) {
        emdpo_st_close(s->shard[i]);
        if (s->shard_name) emdpo_strfree(s->shard_name[i]);
    }
    emdpo_free(s->shard, s->n_shard * sizeof *s->shard);
    if (s->shard_name) emdpo_free(s->shard_name, s->n_shard * sizeof *s->shard_name);
    emdpo_free(s->e, s->n * sizeof *s->e);
    emdpo_strfree(s->name);
    emdpo_free(s, sizeof *s);
}

static int cmp_entry(const void *pa, const void *pb) {
    return strcmp(((const entry *)pa)->t->name, ((const entry *)pb)->t->name);
}

static const entry *find_entry(const emdpo_st_source *s, const char *name) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->e[mid].t->name, name);
        if (c == 0) return &s->e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int is_float(emdpo_st_dtype dt) {
    return dt == EMDPO_ST_F32 || dt == EMDPO_ST_F16 || dt == EMDPO_ST_BF16 || dt == EMDPO_ST_F64;
}

/* Sorts the entries and finds the dominant floating-point dtype. */
static void finish(emdpo_st_source *s) {
    if (s->n) qsort(s->e, s->n, sizeof *s->e, cmp_entry);
    uint64_t count[EMDPO_ST_BOOL + 1] = {0};
    for (size_t i = 0; i < s->n; i++)
        if (is_float(s->e[i].t->dtype)) count[s->e[i].t->dtype] += s->e[i].t->numel;
    static const emdpo_st_dtype order[] = {EMDPO_ST_F32, EMDPO_ST_BF16, EMDPO_ST_F16, EMDPO_ST_F64};
    s->dtype = EMDPO_ST_F32;
    for (size_t i = 1; i < sizeof order / sizeof *order; i++)
        if (count[order[i]] > count[s->dtype]) s->dtype = order[i];
}

static emdpo_st_source *new_source(const char *name, size_t n_shard) {
    emdpo_st_source *s = emdpo_calloc(1, sizeof *s);
    if (!s) return NULL;
    if (!(s->name = emdpo_strdup(name ? name : "")) || !(s->shard = emdpo_calloc(n_shard, sizeof *s->shard))) {
        emdpo_strfree(s->name);
        emdpo_free(s, sizeof *s);
        return NULL;
    }
    s->n_shard = n_shard;
    return s;
}

int emdpo_st_source_file(emdpo_safetensors *st, emdpo_st_source **out) {
    *out = NULL;
    emdpo_st_source *s = new_source(emdpo_st_name(st), 1);
    if (!s) {
        emdpo_st_close(st);
        return EMDPO_ERR_NOMEM;
    }
    s->shard[0] = st;
    s->n = emdpo_st_count(st);
    if (s->n && !(s->e = emdpo_calloc(s->n, sizeof *s->e))) {
        emdpo_st_source_close(s);
        return EMDPO_ERR_NOMEM;
    }
    for (size_t i = 0; i < s->n; i++) s->e[i] = (entry){emdpo_st_tensor_at(st, i), 0};
    finish(s);
    *out = s;
    return EMDPO_OK;
}

/* ---- the index ----------------------------------------------------------- */

/* A file name that stays inside the index's directory. */
static int plain_name(const char *s, size_t len) {
    if (len == 0 || len > 255 || strlen(s) != len || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
    return !strchr(s, '/') && !strchr(s, '\\');
}

static int cmp_str(const void *pa, const void *pb) {
    return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

/* The weight_map member array, checked: every key a NUL-free tensor name,
 * every value a plain shard name. */
static int check_weight_map(const emdpo_json *root, const emdpo_json **map, emdpo_diag *diag) {
    if (root->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the index is a JSON %s, not an object",
                               emdpo_json_type_name(root->type));
    const emdpo_json *meta = emdpo_json_get(root, "metadata");
    if (meta && meta->type != EMDPO_JSON_OBJECT && meta->type != EMDPO_JSON_NULL)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"metadata\" is %s, not an object",
                               emdpo_json_type_name(meta->type));
    const emdpo_json *m = emdpo_json_get(root, "weight_map");
    if (!m) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"weight_map\" is missing");
    if (m->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"weight_map\" is %s, not an object",
                               emdpo_json_type_name(m->type));
    if (!m->len) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"weight_map\" names no tensors");
    for (size_t i = 0; i < m->len; i++) {
        const emdpo_json_member *w = &m->u.members[i];
        if (strlen(w->key) != w->key_len)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.60s...\" contains a NUL character", w->key);
        if (w->value.type != EMDPO_JSON_STRING)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": its shard is %s, not a file name", w->key,
                                   emdpo_json_type_name(w->value.type));
        if (!plain_name(w->value.u.str, w->value.len))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                   "tensor \"%.80s\": shard \"%.80s\" is not a plain file name in the index's "
                                   "directory",
                                   w->key, w->value.u.str);
    }
    *map = m;
    return EMDPO_OK;
}

/* The distinct shard names of the map, sorted, in *names (n of them). */
static int distinct_shards(const emdpo_json *map, const char ***names, size_t *n) {
    const char **v = emdpo_malloc(map->len * sizeof *v);
    if (!v) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < map->len; i++) v[i] = map->u.members[i].value.u.str;
    qsort(v, map->len, sizeof *v, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < map->len; i++)
        if (!k || strcmp(v[k - 1], v[i]) != 0) v[k++] = v[i];
    *names = v;
    *n = k;
    return EMDPO_OK;
}

static size_t shard_of(const emdpo_st_source *s, const char *name) {
    size_t lo = 0, hi = s->n_shard;
    while (lo + 1 < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(s->shard_name[mid], name) <= 0)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Opens the shards and builds the entries; diag's file is the index. */
static int build(emdpo_st_source *s, const emdpo_json *map, const char *const *names, emdpo_st_shard_open open_shard,
                 void *ctx, emdpo_diag *diag) {
    for (size_t j = 0; j < s->n_shard; j++)
        if (!(s->shard_name[j] = emdpo_strdup(names[j]))) return EMDPO_ERR_NOMEM;
    for (size_t j = 0; j < s->n_shard; j++) {
        int rc = open_shard(ctx, names[j], &s->shard[j], diag);
        if (rc) return rc;
        emdpo_diag_reset(diag, s->name);
    }
    if (!(s->e = emdpo_calloc(map->len, sizeof *s->e))) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < map->len; i++) {
        const emdpo_json_member *w = &map->u.members[i];
        size_t j = shard_of(s, w->value.u.str);
        const emdpo_st_tensor *t = emdpo_st_find(s->shard[j], w->key);
        if (!t)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                   "tensor \"%.80s\" is mapped to shard \"%.80s\", which does not hold it", w->key,
                                   s->shard_name[j]);
        s->e[s->n++] = (entry){t, j};
    }
    finish(s);
    for (size_t j = 0; j < s->n_shard; j++)
        for (size_t i = 0; i < emdpo_st_count(s->shard[j]); i++) {
            const char *name = emdpo_st_tensor_at(s->shard[j], i)->name;
            const entry *e = find_entry(s, name);
            if (!e)
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                       "shard \"%.80s\" holds tensor \"%.80s\", which the weight_map does not name",
                                       s->shard_name[j], name);
            if (e->shard != j)
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                       "tensor \"%.80s\" is in two shards, \"%.80s\" (where the weight_map puts it) "
                                       "and \"%.80s\"",
                                       name, s->shard_name[e->shard], s->shard_name[j]);
        }
    return EMDPO_OK;
}

int emdpo_st_source_index(const char *text, size_t len, const char *name, emdpo_st_shard_open open_shard,
                          void *ctx, emdpo_st_source **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, name);
    emdpo_json_doc *doc = NULL;
    int rc = emdpo_json_doc_create(&doc);
    if (rc) return rc;
    const emdpo_json *root = NULL, *map = NULL;
    emdpo_json_error err;
    rc = emdpo_json_parse(doc, text, len, &root, &err);
    if (rc == EMDPO_ERR_PARSE) emdpo_diag_fail(diag, rc, "not valid JSON: %s at byte %zu", err.msg, err.offset);
    if (!rc) rc = check_weight_map(root, &map, diag);
    const char **names = NULL;
    size_t n_shard = 0;
    if (!rc) rc = distinct_shards(map, &names, &n_shard);
    emdpo_st_source *s = NULL;
    if (!rc && !(s = new_source(name, n_shard))) rc = EMDPO_ERR_NOMEM;
    if (!rc && !(s->shard_name = emdpo_calloc(n_shard, sizeof *s->shard_name))) rc = EMDPO_ERR_NOMEM;
    if (!rc) rc = build(s, map, names, open_shard, ctx, diag);
    if (names) emdpo_free(names, map->len * sizeof *names);
    emdpo_json_doc_free(doc);
    if (rc) {
        emdpo_st_source_close(s);
        return rc == EMDPO_ERR_NOMEM ? emdpo_diag_fail(diag, rc, "out of memory") : rc;
    }
    *out = s;
    return EMDPO_OK;
}

/* ---- directories ------------------------------------------------------------ */

static int open_in_dir(void *ctx, const char *shard, emdpo_safetensors **out, emdpo_diag *diag) {
    char *path = emdpo_path_join(ctx, shard);
    if (!path) return EMDPO_ERR_NOMEM;
    int rc = emdpo_st_open(path, out, diag);
    emdpo_strfree(path);
    return rc;
}

/* The index text; it is JSON of a few lines per tensor, so anything the
 * size of a safetensors header limit is hostile. */
static int read_index(const char *path, char **buf, size_t *len, emdpo_diag *diag) {
    struct stat sb;
    if (stat(path, &sb) == 0 && (uint64_t)sb.st_size > EMDPO_ST_MAX_HEADER)
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, path, 0, "%lld bytes, beyond the %llu-byte limit of an index",
                             (long long)sb.st_size, (unsigned long long)EMDPO_ST_MAX_HEADER);
    return emdpo_file_read(path, buf, len, diag);
}

int emdpo_st_source_open_dir(const char *dir, emdpo_st_source **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, dir);
    char *single = emdpo_path_join(dir, EMDPO_ST_SINGLE_NAME), *index = emdpo_path_join(dir, EMDPO_ST_INDEX_NAME);
    int rc = single && index ? EMDPO_OK : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc && emdpo_path_exists(single)) {
        emdpo_safetensors *st = NULL;
        if (!(rc = emdpo_st_open(single, &st, diag)) && (rc = emdpo_st_source_file(st, out)))
            emdpo_diag_fail(diag, rc, "out of memory");
    } else if (!rc && emdpo_path_exists(index)) {
        char *buf = NULL;
        size_t len = 0;
        if (!(rc = read_index(index, &buf, &len, diag))) {
            rc = emdpo_st_source_index(buf, len, index, open_in_dir, (void *)dir, out, diag);
            emdpo_free(buf, len + 1);
        }
    } else if (!rc) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "holds neither %s nor %s", EMDPO_ST_SINGLE_NAME, EMDPO_ST_INDEX_NAME);
    }
    emdpo_strfree(single);
    emdpo_strfree(index);
    return rc;
}

/* ---- reading ------------------------------------------------------------------ */

const char *emdpo_st_source_name(const emdpo_st_source *s) { return s->name; }
size_t emdpo_st_source_count(const emdpo_st_source *s) { return s->n; }
const emdpo_st_tensor *emdpo_st_source_tensor_at(const emdpo_st_source *s, size_t i) {
    return i < s->n ? s->e[i].t : NULL;
}
emdpo_st_dtype emdpo_st_source_dtype(const emdpo_st_source *s) { return s->dtype; }

const emdpo_st_tensor *emdpo_st_source_find(const emdpo_st_source *s, const char *name) {
    const entry *e = find_entry(s, name);
    return e ? e->t : NULL;
}

/* The shard holding name, or NULL after failing diag. */
static const emdpo_safetensors *holder_of(const emdpo_st_source *s, const char *name, int rank, const int64_t *shape,
                                          emdpo_diag *diag) {
    const entry *e = find_entry(s, name);
    if (e || s->n_shard == 1) return s->shard[e ? e->shard : 0];
    emdpo_diag_reset(diag, s->name);
    char want[128];
    emdpo_st_format_shape(want, sizeof want, rank, shape);
    emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\" (shape %s) is missing", name, want);
    return NULL;
}

int emdpo_st_source_read_f32(const emdpo_st_source *s, const char *name, int rank, const int64_t *shape, float *dst,
                             emdpo_diag *diag) {
    const emdpo_safetensors *st = holder_of(s, name, rank, shape, diag);
    return st ? emdpo_st_read_f32(st, name, rank, shape, dst, diag) : EMDPO_ERR_PARSE;
}

int emdpo_st_source_read16(const emdpo_st_source *s, const char *name, int rank, const int64_t *shape,
                           emdpo_st_dtype dtype, uint16_t *dst, emdpo_diag *diag) {
    const emdpo_safetensors *st = holder_of(s, name, rank, shape, diag);
    return st ? emdpo_st_read16(st, name, rank, shape, dtype, dst, diag) : EMDPO_ERR_PARSE;
}

int emdpo_st_source_matrix_dtype(const emdpo_st_source *s) {
    int dt = -1;
    for (size_t i = 0; i < emdpo_st_source_count(s); i++) {
        const emdpo_st_tensor *t = emdpo_st_source_tensor_at(s, i);
        if (t->rank != 2) continue;
        if (dt >= 0 && dt != (int)t->dtype) return -1;
        dt = (int)t->dtype;
    }
    return dt;
}

/* ---- a stale index ------------------------------------------------------------- */

/* A shard a stale index may take along: a safetensors file, never the new
 * model.safetensors (nor config.json, trainer.bin or the like, whatever a
 * hostile index names). */
static int is_stale_shard(const char *name) {
    static const char ext[] = ".safetensors";
    size_t n = strlen(name);
    return n > sizeof ext - 1 && strcmp(name + n - (sizeof ext - 1), ext) == 0 &&
           strcmp(name, EMDPO_ST_SINGLE_NAME) != 0;
}

static int remove_file(const char *dir, const char *name, emdpo_diag *diag) {
    char *path = emdpo_path_join(dir, name);
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = EMDPO_OK;
    if (unlink(path) != 0 && errno != ENOENT)
        rc = emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "cannot remove the stale file: %s", strerror(errno));
    emdpo_strfree(path);
    return rc;
}

int emdpo_st_remove_index(const char *dir, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    char *index = emdpo_path_join(dir, EMDPO_ST_INDEX_NAME);
    if (!index) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!emdpo_path_exists(index)) {
        emdpo_strfree(index);
        return EMDPO_OK;
    }
    /* The shards of an index that cannot be read or checked stay; the
     * index itself goes. */
    char *buf = NULL;
    size_t len = 0;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL, *map = NULL;
    emdpo_json_error err;
    emdpo_diag ignored;
    if (read_index(index, &buf, &len, &ignored) || emdpo_json_doc_create(&doc) ||
        emdpo_json_parse(doc, buf, len, &root, &err) || check_weight_map(root, &map, &ignored))
        map = NULL;
    int rc = EMDPO_OK;
    if (unlink(index) != 0 && errno != ENOENT)
        rc = emdpo_diag_at(diag, EMDPO_ERR_IO, index, 0, "cannot remove the stale index: %s", strerror(errno));
    for (size_t i = 0; !rc && map && i < map->len; i++)
        if (is_stale_shard(map->u.members[i].value.u.str))
            rc = remove_file(dir, map->u.members[i].value.u.str, diag);
    emdpo_json_doc_free(doc);
    if (buf) emdpo_free(buf, len + 1);
    emdpo_strfree(index);
    return rc;
}
