/* emdpo's conventions, shared by every public header: the version, status
 * codes, the diagnostics of rejected input, the allocation hook and the
 * thread count.
 *
 * Every function that can fail returns an emdpo_status (EMDPO_OK = 0) and,
 * where it takes one, fills an emdpo_diag with where and why; accessors,
 * *_free, emdpo_status_name and emdpo_version are the exceptions. Every
 * handle a create or read function returns has a free function that
 * accepts NULL. The library never prints and never exits. Distinct handles
 * may be used from different threads at once; one handle may not (the
 * allocation hook and the thread count are process-wide settings: set them
 * before work starts). */
#ifndef EMDPO_PUBLIC_COMMON_H
#define EMDPO_PUBLIC_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions the shared library exports (it is built with hidden
 * visibility, so nothing else is). */
#if defined(__GNUC__) || defined(__clang__)
#define EMDPO_API __attribute__((visibility("default")))
#else
#define EMDPO_API
#endif

#define EMDPO_VERSION_MAJOR 0
#define EMDPO_VERSION_MINOR 2
#define EMDPO_VERSION_PATCH 0
#define EMDPO_VERSION_STRING "0.2.0"

/* "MAJOR.MINOR.PATCH" of the library linked, which may be newer than the
 * headers a program was compiled with. */
EMDPO_API const char *emdpo_version(void);

/* Numbered and stable: never renumbered, only appended to. */
typedef enum emdpo_status {
    EMDPO_OK = 0,
    EMDPO_ERR_NOMEM = 1,         /* an allocation failed */
    EMDPO_ERR_IO = 2,            /* a file could not be opened, read or written */
    EMDPO_ERR_PARSE = 3,         /* input data is malformed (see emdpo_diag) */
    EMDPO_ERR_INVALID_ARG = 4,   /* an argument is out of its documented range */
    EMDPO_ERR_NUMERIC = 5,       /* a computation produced a non-finite value */
    EMDPO_ERR_NOT_CONVERGED = 6, /* an iterative solver hit its cap */
    EMDPO_ERR_UNSUPPORTED = 7,   /* the operation does not apply to this input */
    EMDPO_ERR_LIMIT = 8          /* input exceeds a documented size limit */
} emdpo_status;

/* A short stable name for a status, e.g. "parse error". Never NULL. */
EMDPO_API const char *emdpo_status_name(int status);

/* Where and why input or arguments were rejected: file (may be empty),
 * line (1-based, 0 when not tied to a line) and a message. Caller-owned;
 * functions that take one fill it on failure (pass NULL to ignore it). */
typedef struct emdpo_diag {
    char file[256];
    long line;
    char msg[256];
} emdpo_diag;

/* All allocation goes through one hook (Lua style): nsize == 0 frees ptr
 * and returns NULL; otherwise it behaves like realloc(ptr, nsize). osize is
 * the old size when ptr != NULL. NULL restores the C library allocator.
 * The hook is called from one thread at a time per handle, never from
 * inside parallel regions. */
typedef void *(*emdpo_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);
EMDPO_API void emdpo_set_allocator(emdpo_alloc_fn fn, void *ud);

/* Threads of the library's parallel parts (OpenMP): n >= 1 sets them,
 * n <= 0 leaves the current setting (all cores by default). Results are
 * the same bits for the same seed and thread count. */
EMDPO_API void emdpo_set_threads(int n);

/* Distributed runs. A library built with MPI (`make MPI=1`) shares the
 * work of the log-linear fit's M-step among the processes of an MPI job
 * (mpirun -np N), each on a fixed share of the annotators, with results
 * that do not depend on N; a library built without MPI runs one process
 * and these do nothing (rank 0 of 1). Language-model training and scoring
 * are data-parallel over the same processes (each takes a share of every
 * step's examples; the gradients are summed), with losses equal to one
 * process's to float rounding.
 * emdpo_dist_init starts MPI (once, before any other library call; when
 * the caller started MPI itself it is left to the caller).
 * emdpo_dist_finish ends the run: with exit_code 0, or one process, it
 * ends MPI where emdpo_dist_init started it and returns; otherwise it ends
 * every process of the job with exit_code (MPI_Abort), so that a failure on
 * one process never leaves the others waiting. With more than one process
 * every library call that works on shares is a collective: an error that
 * one process returns (bad input in its part of a file, memory) leaves the
 * others inside the call, so a caller ends the job with
 * emdpo_dist_finish(code) on any error rather than going on. */
EMDPO_API void emdpo_dist_init(int *argc, char ***argv);
EMDPO_API int emdpo_dist_rank(void);
EMDPO_API int emdpo_dist_size(void);
EMDPO_API void emdpo_dist_finish(int exit_code);

/* Latent types beyond this are refused: EM with hundreds of latent types is
 * not a use the library is built for, and it keeps fixed-size tables small. */
#define EMDPO_MAX_K 64

/* Identifiers (annotator, group and task ids) longer than this many bytes
 * are refused as data is read (file:line): they are kept for every
 * annotator and written back to every posterior and weight file. */
#define EMDPO_MAX_ID_BYTES 1024

#ifdef __cplusplus
}
#endif
#endif
