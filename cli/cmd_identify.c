/* emdpo identify: the identifiability study of the paper's section 4 on
 * data. One table shows that more binary data does not recover the latent
 * types while more ternary data does, and why: the true population and its
 * collapsed twin give every pair the same probabilities. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "cli.h"
#include "experiments/identify.h"
#include "experiments/inventory.h"

#define ID_CMD "identify"
/* Plain-language verdict: "falls" when the largest sample at least halves
 * the smallest sample's error. */
#define ID_FALL_RATIO 0.5
/* A total log-likelihood gap below this is rounding, not evidence. */
#define ID_GAP_ZERO 1e-6
/* Choice probabilities closer than this are equal up to rounding. */
#define ID_DP_ZERO 1e-12
#define ID_MAX_N 100000000
#define ID_LIST_CAP (EMDPO_IDENTIFY_MAX_ITEMS + EMDPO_IDENTIFY_MAX_SIZES)

typedef struct id_args {
    const char *items, *sizes, *design, *inventory, *init;
    int decisions, starts, max_iter, threads, json, quiet;
    uint64_t seed;
    double scale, l2;
} id_args;

#define ID_MAX_LINES (2 * EMDPO_IDENTIFY_MAX_ITEMS)

typedef struct id_summary {
    char line[ID_MAX_LINES][320];
    int n;
} id_summary;

/* A comma-separated list of strictly increasing integers in [lo, hi]; the
 * count, or -1 with a message printed. */
static int parse_list(const char *flag, const char *s, double lo, double hi, int cap, int64_t *out) {
    double v[ID_LIST_CAP];
    int n = cli_parse_doubles(s, v, cap);
    if (n < 1) {
        cli_usage_error(ID_CMD, "--%s: expected a comma-separated list of at most %d integers, not '%s'", flag, cap,
                        s);
        return -1;
    }
    for (int q = 0; q < n; q++) {
        if (v[q] != floor(v[q]) || v[q] < lo || v[q] > hi) {
            cli_usage_error(ID_CMD, "--%s: %g is not an integer in %.0f..%.0f", flag, v[q], lo, hi);
            return -1;
        }
        if (q > 0 && v[q] <= v[q - 1]) {
            cli_usage_error(ID_CMD, "--%s: values must be strictly increasing", flag);
            return -1;
        }
        out[q] = (int64_t)v[q];
    }
    return n;
}

static const char *items_word(int items) {
    return items == 2 ? "binary" : items == 3 ? "ternary" : "multi-item";
}

/* The (items-value a) row at the smallest and largest N. */
static void row_ends(const emdpo_identify_spec *s, const emdpo_identify_row *rows, int a,
                     const emdpo_identify_row **first, const emdpo_identify_row **last) {
    *first = &rows[a * s->n_sizes];
    *last = &rows[a * s->n_sizes + s->n_sizes - 1];
}

static void add_line(id_summary *sum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(id_summary *sum, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sum->line[sum->n++], sizeof sum->line[0], fmt, ap);
    va_end(ap);
}

/* One verdict line on the error trend and one on separability for each
 * items value, computed from the numbers. */
static void conclude(const emdpo_identify_spec *s, const emdpo_identify_row *rows, id_summary *sum) {
    sum->n = 0;
    for (int a = 0; a < s->n_items; a++) {
        const emdpo_identify_row *f, *l;
        row_ends(s, rows, a, &f, &l);
        if (s->n_sizes > 1) {
            int falls = l->theta_err <= ID_FALL_RATIO * f->theta_err;
            add_line(sum, "%s (%d items): theta error %s with N (%.3g at N=%lld -> %.3g at N=%lld)",
                     items_word(s->items[a]), s->items[a], falls ? "falls" : "does not fall", f->theta_err,
                     (long long)f->n_annot, l->theta_err, (long long)l->n_annot);
        }
        double gap = 0.0, dp = 0.0;
        for (int b = 0; b < s->n_sizes; b++) {
            gap = fmax(gap, fabs(rows[a * s->n_sizes + b].ll_gap));
            dp = fmax(dp, rows[a * s->n_sizes + b].max_dp);
        }
        if (gap < ID_GAP_ZERO)
            add_line(sum, "  truth and collapsed have the same choice probabilities (max |dP| %.1e) and the same "
                          "likelihood (|gap| <= %.1e nats): no amount of this data separates them",
                     dp, gap);
        else if (dp < ID_DP_ZERO)
            add_line(sum, "  every choice set has the same probabilities under both (max |dP| %.1e), but the "
                          "repeated decisions of each annotator separate them: %.1f nats at N=%lld",
                     dp, l->ll_gap, (long long)l->n_annot);
        else
            add_line(sum, "  the truth out-fits the collapsed population by %.1f nats at N=%lld (%.1f at N=%lld): "
                          "the data tell them apart",
                     l->ll_gap, (long long)l->n_annot, f->ll_gap, (long long)f->n_annot);
    }
}

static void print_table(const emdpo_identify_spec *s, const id_args *a, const emdpo_identify_row *rows,
                        const id_summary *sum) {
    printf("identifiability: personalities (P1, P2 = -P1, P3; eta .3/.3/.4) vs collapsed (P1+P2 -> theta = 0, "
           "eta .6)\n");
    printf("design %s%s%s, %d decision%s per annotator, K = %d fitted with %d %s start%s (l2 %g), seed %llu\n\n",
           a->design, a->inventory ? " from " : "", a->inventory ? a->inventory : "", s->decisions,
           s->decisions > 1 ? "s" : "", s->truth.K, s->starts, a->init, s->starts > 1 ? "s" : "", s->l2,
           (unsigned long long)s->seed);
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
    for (int q = 0; q < sum->n; q++) printf("%s\n", sum->line[q]);
}

static void json_row(const emdpo_identify_row *r) {
    printf("    {\"items\": %d, \"n\": %lld, \"theta_error\": ", r->items, (long long)r->n_annot);
    cli_json_num(stdout, r->theta_err);
    printf(", \"eta_error\": ");
    cli_json_num(stdout, r->eta_err);
    printf(", \"loglik_fit\": ");
    cli_json_num(stdout, r->ll_fit);
    printf(", \"loglik_true\": ");
    cli_json_num(stdout, r->ll_true);
    printf(", \"loglik_collapsed\": ");
    cli_json_num(stdout, r->ll_alt);
    printf(", \"loglik_gap_total\": ");
    cli_json_num(stdout, r->ll_gap);
    printf(", \"max_abs_dp\": ");
    cli_json_num(stdout, r->max_dp);
    printf(", \"iterations\": %d, \"converged\": %s, \"empty_types\": %d}", r->iterations,
           r->converged ? "true" : "false", r->n_empty);
}

static void print_json(const emdpo_identify_spec *s, const id_args *a, const emdpo_identify_row *rows,
                       const id_summary *sum) {
    printf("{\n  \"emdpo_version\": \"%s\",\n  \"study\": \"identifiability\",\n", EMDPO_VERSION_STRING);
    printf("  \"truth\": \"personalities\",\n  \"alternative\": \"personalities-collapsed\",\n  \"design\": ");
    cli_json_str(stdout, a->design);
    printf(",\n  \"inventory\": ");
    cli_json_str(stdout, a->inventory);
    printf(",\n  \"decisions\": %d,\n  \"k\": %d,\n  \"starts\": %d,\n  \"init\": ", s->decisions, s->truth.K,
           s->starts);
    cli_json_str(stdout, a->init);
    printf(",\n  \"l2\": ");
    cli_json_num(stdout, s->l2);
    printf(",\n  \"max_iter\": %d,\n  \"tol\": ", s->max_iter);
    cli_json_num(stdout, s->tol);
    printf(",\n  \"seed\": %llu,\n  \"rows\": [\n", (unsigned long long)s->seed);
    for (int c = 0; c < s->n_items * s->n_sizes; c++) {
        json_row(&rows[c]);
        printf(c + 1 < s->n_items * s->n_sizes ? ",\n" : "\n");
    }
    printf("  ],\n  \"conclusion\": [");
    for (int q = 0; q < sum->n; q++) {
        printf(q ? ",\n    " : "\n    ");
        cli_json_str(stdout, sum->line[q]);
    }
    printf("\n  ]\n}\n");
}

typedef struct id_progress {
    double t0;
} id_progress;

static void print_progress(void *ud, const emdpo_identify_row *r, int index, int total) {
    const id_progress *pg = ud;
    fprintf(stderr, "  [%d/%d] items %d  N %lld  theta err %.4f  (%.1f s)\n", index + 1, total, r->items,
            (long long)r->n_annot, r->theta_err, cli_now() - pg->t0);
}

/* Flags into the study spec; the exit code of a bad flag, else 0. */
static int build_spec(const id_args *a, emdpo_identify_spec *s) {
    int64_t v[ID_LIST_CAP];
    int n = parse_list("items", a->items, 2, 1000, EMDPO_IDENTIFY_MAX_ITEMS, v);
    if (n < 0) return CLI_EXIT_USAGE;
    s->n_items = n;
    for (int q = 0; q < n; q++) s->items[q] = (int)v[q];
    n = parse_list("n", a->sizes, 1, ID_MAX_N, EMDPO_IDENTIFY_MAX_SIZES, v);
    if (n < 0) return CLI_EXIT_USAGE;
    s->n_sizes = n;
    memcpy(s->sizes, v, (size_t)n * sizeof v[0]);
    if (a->decisions < 1) return cli_usage_error(ID_CMD, "--decisions must be >= 1");
    if (a->starts < 1) return cli_usage_error(ID_CMD, "--starts must be >= 1");
    if (a->max_iter < 0) return cli_usage_error(ID_CMD, "--max-iter must be >= 0");
    if (!(a->l2 >= 0)) return cli_usage_error(ID_CMD, "--l2 must be >= 0");
    if (!(a->scale > 0)) return cli_usage_error(ID_CMD, "--scale must be > 0");
    if (strcmp(a->init, "kmeans") && strcmp(a->init, "random"))
        return cli_usage_error(ID_CMD, "--init must be kmeans or random, not '%s'", a->init);
    if (strcmp(a->design, "phrases") && strcmp(a->design, "gaussian"))
        return cli_usage_error(ID_CMD, "--design must be phrases or gaussian, not '%s'", a->design);
    if (a->inventory && strcmp(a->design, "phrases"))
        return cli_usage_error(ID_CMD, "--inventory needs --design phrases");
    s->decisions = a->decisions;
    s->starts = a->starts;
    s->max_iter = a->max_iter;
    s->l2 = a->l2;
    s->scale = a->scale;
    s->seed = a->seed;
    s->init = strcmp(a->init, "random") == 0 ? EMDPO_INIT_RANDOM : EMDPO_INIT_KMEANS;
    s->design = strcmp(a->design, "gaussian") == 0 ? EMDPO_SIM_GAUSSIAN : EMDPO_SIM_PHRASES;
    return 0;
}

/* The phrase inventory (the file's, or the built-in one) and a check that
 * every decision size fits in it. */
static int load_inventory(const id_args *a, const emdpo_identify_spec *s, emdpo_inventory **inv) {
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc = a->inventory ? emdpo_inventory_load_mpi(a->inventory, inv, &diag) : emdpo_inventory_builtin(inv);
    if (rc) {
        if (a->inventory && !diag.file[0]) snprintf(diag.file, sizeof diag.file, "%s", a->inventory);
        return cli_fail(ID_CMD, rc, &diag, "cannot read inventory");
    }
    int top = s->items[s->n_items - 1];
    if (top > (*inv)->n)
        return cli_usage_error(ID_CMD, "--items %d exceeds the %lld phrases of the inventory", top,
                               (long long)(*inv)->n);
    return 0;
}

int cmd_identify(int argc, char **argv) {
    id_args a;
    memset(&a, 0, sizeof a);
    a.items = "2,3";
    a.sizes = "250,1000,4000,16000";
    a.design = "phrases";
    a.init = "kmeans";
    a.decisions = 1;
    a.starts = 3;
    a.max_iter = 150;
    a.seed = 1;
    a.scale = 1.0;
    a.l2 = 0.1;
    cli_opt opts[] = {
        {"items", CLI_STR, &a.items, "LIST", "items per decision, increasing, e.g. 2,3,4 (2,3)", 0, 0},
        {"n", CLI_STR, &a.sizes, "LIST", "annotator counts, increasing (250,1000,4000,16000)", 0, 0},
        {"decisions", CLI_INT, &a.decisions, "M", "decisions per annotator (1); M >= 2 lets pairs identify again", 0, 0},
        {"starts", CLI_INT, &a.starts, "N", "EM starts per fit; the best log-likelihood wins (3)", 0, 0},
        {"init", CLI_STR, &a.init, "METHOD", "kmeans or random (kmeans)", 0, 0},
        {"max-iter", CLI_INT, &a.max_iter, "N", "EM iteration cap per start (150)", 0, 0},
        {"l2", CLI_DBL, &a.l2, "X", "ridge penalty (X/2)|theta_k|^2 per type (0.1)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "random seed (1); same seed and threads give the same bits", 0, 0},
        {"design", CLI_STR, &a.design, "KIND", "phrases (trait-scored phrases, p = 5) or gaussian (phrases)", 0, 0},
        {"inventory", CLI_STR, &a.inventory, "FILE", "phrase inventory as an MPI CSV (built-in)", 0, 0},
        {"scale", CLI_DBL, &a.scale, "X", "feature standard deviation of the gaussian design (1)", 0, 0},
        {"json", CLI_FLAG, &a.json, NULL, "print the results as one JSON object instead of the table", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
        {"quiet", CLI_FLAG, &a.quiet, NULL, "no progress lines on stderr", 0, 0},
    };
    cli_cmd cmd = {ID_CMD, "The identifiability study: fit the true number of types to binary and ternary data of "
                           "growing size.",
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
    emdpo_identify_spec spec;
    emdpo_identify_spec_init(&spec);
    if ((rc = build_spec(&a, &spec))) return rc;
    cli_set_threads(a.threads);
    emdpo_inventory *inv = NULL;
    if (spec.design == EMDPO_SIM_PHRASES && (rc = load_inventory(&a, &spec, &inv))) {
        emdpo_inventory_free(inv);
        return rc;
    }
    spec.inventory = inv;
    emdpo_identify_row rows[EMDPO_IDENTIFY_MAX_ITEMS * EMDPO_IDENTIFY_MAX_SIZES];
    id_progress pg = {cli_now()};
    if (!a.quiet)
        fprintf(stderr, "emdpo identify: %d fits of K = %d (%d items values x %d sizes), %d starts each\n",
                spec.n_items * spec.n_sizes, spec.truth.K, spec.n_items, spec.n_sizes, spec.starts);
    rc = emdpo_identify_run(&spec, rows, a.quiet ? NULL : print_progress, &pg);
    emdpo_inventory_free(inv);
    if (rc) return cli_fail(ID_CMD, rc, NULL, "study failed");
    id_summary sum;
    conclude(&spec, rows, &sum);
    if (a.json)
        print_json(&spec, &a, rows, &sum);
    else
        print_table(&spec, &a, rows, &sum);
    if (!a.quiet) fprintf(stderr, "emdpo identify: done in %.1f s\n", cli_now() - pg.t0);
    return 0;
}
