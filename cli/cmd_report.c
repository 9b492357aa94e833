/* emdpo report RUN_DIR: one self-contained HTML page of a run directory. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_report(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *title = NULL;
    if (argc > 0 && argv[0][0] != '-') {
        dir = argv[0];
        argc--;
        argv++;
    }
    cli_opt opts[] = {
        {"out", CLI_STR, &out, "FILE", "write the page here, atomically (default: RUN_DIR/report.html)", 0, 0, 0},
        {"title", CLI_STR, &title, "T", "the page's title (default: run.json's title, else the directory name)", 0, 0,
         0},
    };
    cli_cmd cmd = {"report", "One self-contained HTML page of a run directory: emdpo report RUN_DIR [flags].",
                   "Renders what RUN_DIR holds: run.json (title, command, config, timings), every subdirectory\n"
                   "with a fit.json that has a loglik_trace (the trace, eta, and with posterior.csv and the\n"
                   "training data's groups, the mean posterior of each true group), table1.json and\n"
                   "table2.json (emdpo eval --json), table3.json (emdpo regret --json) and select.json\n"
                   "(emdpo select --out, or {\"criterion\", \"rows\": [{\"k\", \"value\"}], \"best_k\"}).\n"
                   "A missing file gets a line saying so; a malformed one exits 2 naming the file, and\n"
                   "nothing is written. The page has inline SVG charts and CSS, no script, and needs no\n"
                   "network. Prints the page's path.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!dir) return cli_usage_error("report", "missing RUN_DIR (usage: emdpo report RUN_DIR [--out FILE] [--title T])");
    /* The page's path: out, or RUN_DIR/report.html. */
    size_t cap = (out ? strlen(out) : strlen(dir) + sizeof "/report.html") + 1;
    char *written = malloc(cap);
    emdpo_diag diag;
    if (!written) return cli_fail("report", EMDPO_ERR_NOMEM, NULL, &cmd);
    if ((rc = emdpo_report_write(dir, out, title, written, cap, &diag))) rc = cli_fail("report", rc, &diag, &cmd);
    else printf("%s\n", written);
    free(written);
    return rc;
}
