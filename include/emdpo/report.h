/* One self-contained HTML page of a run directory: EM traces, the
 * posterior by true group, the paper's Tables 1-3, K selection, the run's
 * configuration and timings. Inline SVG and CSS, no script, no network. */
#ifndef EMDPO_PUBLIC_REPORT_H
#define EMDPO_PUBLIC_REPORT_H

#include "emdpo/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Renders what dir holds: run.json (title, command, config, timings), every
 * subdirectory with a fit.json that has a loglik_trace (with its
 * posterior.csv and the training data's groups), table1.json and
 * table2.json (emdpo_eval_write_json), table3.json
 * (emdpo_regret_write_json) and select.json. A missing file gets a line
 * saying so. The page goes to out (NULL: dir/report.html), atomically;
 * title NULL takes run.json's, else the directory's name. written (cap
 * bytes, may be NULL) receives the page's path. EMDPO_ERR_PARSE with diag
 * naming a malformed file (no page is written), EMDPO_ERR_INVALID_ARG
 * when dir is not a directory, EMDPO_ERR_IO. */
EMDPO_API int emdpo_report_write(const char *dir, const char *out, const char *title, char *written, size_t cap,
                                 emdpo_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
