#include "emdpo.h"

const char *emdpo_version(void) { return EMDPO_VERSION_STRING; }

const char *emdpo_status_name(int status) {
    switch (status) {
    case EMDPO_OK: return "ok";
    case EMDPO_ERR_NOMEM: return "out of memory";
    case EMDPO_ERR_IO: return "i/o error";
    case EMDPO_ERR_PARSE: return "parse error";
    case EMDPO_ERR_INVALID_ARG: return "invalid argument";
    case EMDPO_ERR_NUMERIC: return "numeric error";
    case EMDPO_ERR_NOT_CONVERGED: return "not converged";
    case EMDPO_ERR_UNSUPPORTED: return "unsupported";
    case EMDPO_ERR_LIMIT: return "size limit exceeded";
    default: return "unknown status";
    }
}
