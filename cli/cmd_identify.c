/* emdpo identify: the identifiability study of the paper's section 4 on
 * data. One table shows that more binary data does not recover the latent
 * types while more ternary data does, and why: the true population and its
 * collapsed twin give every pair the same probabilities. */
#include <math.h>
#include <string.h>

#include "cli.h"

/* Annotator counts above this are a typo, not a study. */
#define ID_MAX_N 100000000

/* A comma-separated list of strictly increasing integers in [lo, hi]; the
 * count, or -1 with a message printed. */
static int parse_list(const char *flag, const char *s, double lo, double hi, int cap, int64_t *out) {
    double v[EMDPO_IDENTIFY_MAX_ITEMS + EMDPO_IDENTIFY_MAX_SIZES];
    int n = cli_parse_doubles(s, v, cap);
    if (n < 1) {
        cli_usage_error("identify", "--%s: expected a comma-separated list of at most %d integers, not '%s'", flag, cap,
                        s);
        return -1;
    }
    for (int q = 0; q < n; q++) {
        if (v[q] != floor(v[q]) || v[q] < lo || v[q] > hi) {
            cli_usage_error("identify", "--%s: %g is not an integer in %.0f..%.0f", flag, v[q], lo, hi);
            return -1;
        }
        if (q > 0 && v[q] <= v[q - 1]) {
            cli_usage_error("identify", "--%s: values must be strictly increasing", flag);
            return -1;
        }
        out[q] = (int64_t)v[q];
    }
    return n;
}

static void print_table(const emdpo_identify_spec *s, const char *inventory, const emdpo_identify_row *rows) {
    printf("identifiability: personalities (P1, P2 = -P1, P3; eta .3/.3/.4) vs collapsed (P1+P2 -> theta = 0, "
           "eta .6)\n");
    printf("design %s%s%s, %d decision%s per annotator, K = %d fitted with %d %s start%s (l2 %g), seed %llu\n\n",
           emdpo_sim_design_name(s->design), inventory ? " from " : "", inventory ? inventory : "", s->decisions,
           s->decisions > 1 ? "s" : "", s->truth.K, s->starts, emdpo_init_name(s->init), s->starts > 1 ? "s" : "",
           s->l2, (unsigned long long)s->seed);
    printf("%33s %-30s %11s\n", "", "---- loglik / annotator ----", "true-coll.");
    printf("%5s %7s %9s %8s  %9s %9s %9s  %11s %8s %5s\n", "items", "N", "theta err", "eta err", "fit", "true",
           "collapsed", "total", "max|dP|", "iter");
    for (int c = 0; c < s->n_items * s->n_sizes; c++) {
        const emdpo_identify_row *r = &rows[c];
        printf("%5d %7lld %9.4f %8.4f  %9.5f %9.5f %9.5f  %11.4g %8.2g %4d%s\n", r->items, (long long)r->n_annot,
               r->theta_err, r->eta_err, r->ll_fit, r->ll_true, r->ll_alt, r->ll_gap, r->max_dp, r->iterations,
               r->converged ? "" : "+");
    }
    printf("\ntheta err: mean |theta_hat - theta| over types after matching; eta err: total variation; "
           "iter +: hit --max-iter\n\n");
    char lines[EMDPO_IDENTIFY_MAX_LINES][EMDPO_IDENTIFY_LINE_CAP];
    int n = emdpo_identify_conclude(s, rows, lines[0], sizeof lines[0], EMDPO_IDENTIFY_MAX_LINES);
    for (int q = 0; q < n; q++) printf("%s\n", lines[q]);
}

static void print_progress(void *ud, const emdpo_identify_row *r, int index, int total) {
    fprintf(stderr, "  [%d/%d] items %d  N %lld  theta err %.4f  (%.1f s)\n", index + 1, total, r->items,
            (long long)r->n_annot, r->theta_err, cli_now() - *(const double *)ud);
}

int cmd_identify(int argc, char **argv) {
    emdpo_identify_spec spec;
    emdpo_identify_spec_init(&spec);
    const char *items = "2,3", *sizes = "250,1000,4000,16000", *inventory = NULL;
    int threads = 0, json = 0, quiet = 0;
    cli_opt opts[] = {
        {"items", CLI_STR, &items, "LIST", "items per decision, increasing, e.g. 2,3,4", 0, 0, 0},
        {"n", CLI_STR, &sizes, "LIST", "annotator counts, increasing", 0, 0, 0},
        {"decisions", CLI_INT, &spec.decisions, "M", "decisions per annotator; M >= 2 lets pairs identify again", 0, 0,
         0},
        {"starts", CLI_INT, &spec.starts, "N", "EM starts per fit; the best log-likelihood wins", 0, 0, 0},
        {"init", CLI_ENUM, &spec.init, "METHOD", "kmeans or random", 0, 0, emdpo_init_name},
        {"max-iter", CLI_INT, &spec.max_iter, "N", "EM iteration cap per start", 0, 0, 0},
        {"l2", CLI_DBL, &spec.l2, "X", "ridge penalty (X/2)|theta_k|^2 per type", 0, 0, 0},
        {"seed", CLI_U64, &spec.seed, "S", "random seed; same seed and threads give the same bits", 0, 0, 0},
        {"design", CLI_ENUM, &spec.design, "KIND", "phrases (trait-scored phrases, p = 5) or gaussian", 0, 0,
         emdpo_sim_design_name},
        {"inventory", CLI_STR, &inventory, "FILE", "phrase inventory as an MPI CSV (default: built-in)", 0, 0, 0},
        {"scale", CLI_DBL, &spec.scale, "X", "feature standard deviation of the gaussian design", 0, 0, 0},
        {"json", CLI_FLAG, &json, NULL, "print the results as one JSON object instead of the table", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
        {"quiet", CLI_FLAG, &quiet, NULL, "no progress lines on stderr", 0, 0, 0},
    };
    cli_cmd cmd = {"identify", "The identifiability study: fit the true number of types to binary and ternary data "
                               "of growing size.",
                   "Data come from the personalities population (P1, P2 = -P1, P3 with eta .3/.3/.4). Its\n"
                   "collapsed twin (P1 and P2 merged into theta = 0 with weight .6) gives every pair the same\n"
                   "probabilities, so with one binary decision per annotator no amount of data separates\n"
                   "them; with three or more items per decision it does. For each items value and N the\n"
                   "table shows the fitted types' error after matching, the log-likelihood per annotator of\n"
                   "the fit, the truth and the collapsed population, their total gap, and the largest\n"
                   "difference of any choice probability between truth and collapsed on the same choice sets.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    int64_t v[EMDPO_IDENTIFY_MAX_ITEMS + EMDPO_IDENTIFY_MAX_SIZES];
    int n = parse_list("items", items, 2, 1000, EMDPO_IDENTIFY_MAX_ITEMS, v);
    if (n < 0) return CLI_EXIT_USAGE;
    spec.n_items = n;
    for (int q = 0; q < n; q++) spec.items[q] = (int)v[q];
    if ((n = parse_list("n", sizes, 1, ID_MAX_N, EMDPO_IDENTIFY_MAX_SIZES, v)) < 0) return CLI_EXIT_USAGE;
    spec.n_sizes = n;
    memcpy(spec.sizes, v, (size_t)n * sizeof v[0]);
    if (spec.decisions < 1) return cli_usage_error("identify", "--decisions must be >= 1");
    if (spec.starts < 1) return cli_usage_error("identify", "--starts must be >= 1");
    if (spec.max_iter < 0) return cli_usage_error("identify", "--max-iter must be >= 0");
    if (!(spec.l2 >= 0)) return cli_usage_error("identify", "--l2 must be >= 0");
    if (!(spec.scale > 0)) return cli_usage_error("identify", "--scale must be > 0");
    if (spec.init == EMDPO_INIT_KMEANS_TOKENS) return cli_usage_error("identify", "--init must be kmeans or random");
    if (inventory && spec.design != EMDPO_SIM_PHRASES)
        return cli_usage_error("identify", "--inventory needs --design phrases");
    emdpo_set_threads(threads);

    emdpo_inventory *inv = NULL;
    emdpo_diag diag;
    if (spec.design == EMDPO_SIM_PHRASES) {
        rc = inventory ? emdpo_inventory_load_mpi(inventory, &inv, &diag) : emdpo_inventory_builtin(&inv);
        if (rc) return cli_fail("identify", rc, inventory ? &diag : NULL, &cmd);
        int top = spec.items[spec.n_items - 1];
        if (top > emdpo_inventory_n(inv)) {
            rc = cli_usage_error("identify", "--items %d exceeds the %lld phrases of the inventory", top,
                                 (long long)emdpo_inventory_n(inv));
            emdpo_inventory_free(inv);
            return rc;
        }
        spec.inventory = inv;
    }
    emdpo_identify_row rows[EMDPO_IDENTIFY_MAX_ITEMS * EMDPO_IDENTIFY_MAX_SIZES];
    double t0 = cli_now();
    if (!quiet)
        fprintf(stderr, "emdpo identify: %d fits of K = %d (%d items values x %d sizes), %d starts each\n",
                spec.n_items * spec.n_sizes, spec.truth.K, spec.n_items, spec.n_sizes, spec.starts);
    rc = emdpo_identify_run(&spec, rows, quiet ? NULL : print_progress, &t0, &diag);
    emdpo_inventory_free(inv);
    if (rc) return cli_fail("identify", rc, &diag, &cmd);
    if (json) emdpo_identify_write_json(&spec, rows, inventory, stdout);
    else print_table(&spec, inventory, rows);
    if (!quiet) fprintf(stderr, "emdpo identify: done in %.1f s\n", cli_now() - t0);
    return 0;
}
