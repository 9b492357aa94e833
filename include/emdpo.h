/* emdpo: preference optimization with unobserved annotator heterogeneity.
 *
 * The stable public API. Handles are opaque; every create has a free that
 * accepts NULL; every fallible function returns an emdpo_status (0 = OK) and
 * never prints or exits. Error detail for bad input travels in emdpo_diag.
 */
#ifndef EMDPO_H
#define EMDPO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMDPO_VERSION_MAJOR 0
#define EMDPO_VERSION_MINOR 1
#define EMDPO_VERSION_PATCH 0
#define EMDPO_VERSION_STRING "0.1.0"

/* Numbered and stable: never renumber, only append. */
typedef enum emdpo_status {
    EMDPO_OK = 0,
    EMDPO_ERR_NOMEM = 1,       /* an allocation failed */
    EMDPO_ERR_IO = 2,          /* a file could not be opened, read or written */
    EMDPO_ERR_PARSE = 3,       /* input data is malformed (see emdpo_diag) */
    EMDPO_ERR_INVALID_ARG = 4, /* an argument is out of its documented range */
    EMDPO_ERR_NUMERIC = 5,     /* a computation produced a non-finite value */
    EMDPO_ERR_NOT_CONVERGED = 6, /* an iterative solver hit its cap */
    EMDPO_ERR_UNSUPPORTED = 7, /* the operation does not apply to this input */
    EMDPO_ERR_LIMIT = 8        /* input exceeds a documented size limit */
} emdpo_status;

/* A short stable name for a status, e.g. "parse error". Never NULL. */
const char *emdpo_status_name(int status);

/* Where and why input was rejected. Filled by readers on EMDPO_ERR_PARSE and
 * EMDPO_ERR_IO; line is 1-based, 0 when not tied to a line. */
typedef struct emdpo_diag {
    char file[256];
    long line;
    char msg[256];
} emdpo_diag;

/* All allocation goes through one hook (Lua style): nsize == 0 frees ptr and
 * returns NULL; otherwise behaves like realloc(ptr, nsize). osize is the old
 * size when ptr != NULL. Passing NULL restores the C library allocator. */
typedef void *(*emdpo_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);
void emdpo_set_allocator(emdpo_alloc_fn fn, void *ud);

/* ---- Preference data -------------------------------------------------- */

/* An immutable preference dataset: annotators, each with decisions, each a
 * choice among two or more items (a top choice, or a ranking read as a
 * Plackett-Luce sequence of top choices). */
typedef struct emdpo_data emdpo_data;

typedef enum emdpo_format {
    EMDPO_FORMAT_AUTO = 0,  /* by file extension: .jsonl/.json or .csv */
    EMDPO_FORMAT_JSONL = 1,
    EMDPO_FORMAT_CSV = 2
} emdpo_format;

int emdpo_data_read(const char *path, emdpo_format fmt, emdpo_data **out, emdpo_diag *diag);
int emdpo_data_write(const emdpo_data *d, const char *path, emdpo_format fmt, emdpo_diag *diag);
void emdpo_data_free(emdpo_data *d);

int64_t emdpo_data_n_annotators(const emdpo_data *d);
int64_t emdpo_data_n_decisions(const emdpo_data *d);
int64_t emdpo_data_n_items(const emdpo_data *d);
int emdpo_data_n_features(const emdpo_data *d); /* 0 for text-only data */

#ifdef __cplusplus
}
#endif
#endif
