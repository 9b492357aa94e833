/* emdpo simulate: preference data from a latent-class logit population. */
#include <string.h>

#include "base/alloc.h"
#include "cli.h"
#include "experiments/inventory.h"
#include "experiments/simulate.h"

#define SIM_MAX_P 1000

typedef struct sim_args {
    const char *out, *format, *preset, *design, *inventory, *theta, *eta, *response;
    int64_t annotators, phrases;
    int decisions, items, no_text, threads;
    double scale;
    uint64_t seed;
} sim_args;

/* "a,b,c;d,e,f" -> theta (K, p). Returns 0 or prints and returns 2. */
static int parse_theta(const char *s, double *theta, int *K, int *p) {
    char buf[8192];
    if (strlen(s) >= sizeof buf) return cli_usage_error("simulate", "--theta is too long");
    strcpy(buf, s);
    int k = 0, width = -1;
    for (char *row = strtok(buf, ";"); row; row = strtok(NULL, ";")) {
        if (k == EMDPO_MAX_K) return cli_usage_error("simulate", "--theta: at most %d types", EMDPO_MAX_K);
        int n = cli_parse_doubles(row, theta + (size_t)k * SIM_MAX_P, SIM_MAX_P);
        if (n < 1) return cli_usage_error("simulate", "--theta: type %d is not a comma-separated list of numbers", k + 1);
        if (width >= 0 && n != width)
            return cli_usage_error("simulate", "--theta: type %d has %d values, type 1 has %d", k + 1, n, width);
        width = n;
        k++;
    }
    if (k == 0) return cli_usage_error("simulate", "--theta is empty");
    /* Compact rows from stride SIM_MAX_P to stride width. */
    for (int q = 1; q < k; q++) memmove(theta + (size_t)q * width, theta + (size_t)q * SIM_MAX_P, (size_t)width * sizeof(double));
    *K = k;
    *p = width;
    return 0;
}

/* Fills spec->pop from --preset or --theta/--eta; theta and eta are the storage. */
static int population_from_args(const sim_args *a, double *theta, double *eta, emdpo_sim_spec *spec) {
    if (a->theta) {
        int K = 0, p = 0;
        if (parse_theta(a->theta, theta, &K, &p)) return CLI_EXIT_USAGE;
        if (a->eta) {
            int n = cli_parse_doubles(a->eta, eta, EMDPO_MAX_K);
            if (n != K) return cli_usage_error("simulate", "--eta needs %d comma-separated weights (one per type)", K);
            double s = 0;
            for (int k = 0; k < K; k++) {
                if (eta[k] < 0) return cli_usage_error("simulate", "--eta weights must be >= 0");
                s += eta[k];
            }
            if (!(s > 0)) return cli_usage_error("simulate", "--eta weights must not all be 0");
        } else {
            for (int k = 0; k < K; k++) eta[k] = 1.0 / K;
        }
        spec->pop.K = K;
        spec->pop.p = p;
        spec->pop.theta = theta;
        spec->pop.eta = eta;
        spec->pop.type_names = NULL;
        return 0;
    }
    if (a->eta) return cli_usage_error("simulate", "--eta needs --theta");
    const emdpo_population *pre = emdpo_population_preset(a->preset);
    if (!pre) return cli_usage_error("simulate", "unknown --preset '%s' (personalities, personalities-collapsed)", a->preset);
    spec->pop = *pre;
    return 0;
}

/* Replaces *inv (the built-in inventory when NULL) by its balanced subset
 * of a->phrases phrases. */
static int subset_inventory(const sim_args *a, emdpo_inventory **inv) {
    emdpo_inventory *all = *inv, *sub = NULL;
    int rc = all ? EMDPO_OK : emdpo_inventory_builtin(&all);
    if (!rc && (a->phrases < 2 || a->phrases > all->n || a->phrases < a->items)) {
        rc = cli_usage_error("simulate", "--phrases must be between max(2, --items) and the inventory's %lld phrases",
                             (long long)all->n);
    } else if (!rc && (rc = emdpo_inventory_subset(all, a->phrases, &sub))) {
        rc = cli_fail("simulate", rc, NULL, "cannot take the phrase subset");
    } else if (rc) {
        rc = cli_fail("simulate", rc, NULL, "cannot load the built-in inventory");
    }
    emdpo_inventory_free(all);
    *inv = sub;
    return rc;
}

int cmd_simulate(int argc, char **argv) {
    /* --dataset goqa has its own flags; everything else is the logit population. */
    for (int i = 0; i < argc; i++)
        if ((strcmp(argv[i], "--dataset") == 0 && i + 1 < argc && strcmp(argv[i + 1], "goqa") == 0) ||
            strcmp(argv[i], "--dataset=goqa") == 0)
            return cli_simulate_goqa(argc, argv);
    sim_args a = {0};
    a.preset = "personalities";
    a.design = "phrases";
    a.response = "top";
    a.annotators = 1000;
    a.decisions = 1;
    a.items = 3;
    a.scale = 1.0;
    a.seed = 1;
    cli_opt opts[] = {
        {"out", CLI_STR, &a.out, "FILE", "output file (.jsonl or .csv)", 1, 0},
        {"format", CLI_STR, &a.format, "FMT", "jsonl, csv or auto (by extension)", 0, 0},
        {"preset", CLI_STR, &a.preset, "NAME", "population: personalities (P1, P2 = -P1, P3; .3/.3/.4) or personalities-collapsed", 0, 0},
        {"theta", CLI_STR, &a.theta, "LIST", "custom types instead of a preset: 'a,b,c;d,e,f' (one row per type)", 0, 0},
        {"eta", CLI_STR, &a.eta, "LIST", "custom type weights 'w1,w2,...' (default: equal)", 0, 0},
        {"annotators", CLI_I64, &a.annotators, "N", "number of annotators (1000)", 0, 0},
        {"decisions", CLI_INT, &a.decisions, "M", "decisions per annotator (1)", 0, 0},
        {"items", CLI_INT, &a.items, "N", "items per decision, >= 2 (3)", 0, 0},
        {"response", CLI_STR, &a.response, "KIND", "top (one choice) or ranking (full Plackett-Luce ranking) (top)", 0, 0},
        {"design", CLI_STR, &a.design, "KIND", "phrases (trait-scored phrases, p = 5) or gaussian (iid N(0, scale^2))", 0, 0},
        {"inventory", CLI_STR, &a.inventory, "FILE", "phrase inventory as an MPI CSV (label_raw,text,label_ocean,key)", 0, 0},
        {"scale", CLI_DBL, &a.scale, "X", "feature standard deviation of the gaussian design (1)", 0, 0},
        {"phrases", CLI_I64, &a.phrases, "N", "phrase design: a balanced subset of N phrases (all)", 0, 0},
        {"no-text", CLI_FLAG, &a.no_text, NULL, "phrase design: write features only, no prompts or phrase texts", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "random seed (1)", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
    };
    cli_cmd cmd = {"simulate", "Generate preference data from a latent-class (random-coefficient) logit population.",
                   "Each annotator draws a type k ~ eta, then every decision shows `items` items and records\n"
                   "the top choice drawn from softmax(theta_k . x) (or a full ranking). The annotator's\n"
                   "`group` is its true type, for evaluation only. Country opinions (GlobalOpinionQA):\n"
                   "emdpo simulate --dataset goqa --help.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    emdpo_sim_spec spec;
    emdpo_sim_spec_init(&spec);
    double *theta = emdpo_malloc((size_t)EMDPO_MAX_K * SIM_MAX_P * sizeof(double));
    double eta[EMDPO_MAX_K];
    if (!theta) return cli_fail("simulate", EMDPO_ERR_NOMEM, NULL, "out of memory");
    emdpo_inventory *inv = NULL;
    emdpo_data *d = NULL;
    if ((rc = population_from_args(&a, theta, eta, &spec))) goto done;
    if (a.annotators < 1) { rc = cli_usage_error("simulate", "--annotators must be >= 1"); goto done; }
    if (a.decisions < 1) { rc = cli_usage_error("simulate", "--decisions must be >= 1"); goto done; }
    if (a.items < 2) { rc = cli_usage_error("simulate", "--items must be >= 2"); goto done; }
    if (!(a.scale > 0)) { rc = cli_usage_error("simulate", "--scale must be > 0"); goto done; }
    if (strcmp(a.response, "top") == 0) spec.response = EMDPO_SIM_TOP;
    else if (strcmp(a.response, "ranking") == 0) spec.response = EMDPO_SIM_RANKING;
    else { rc = cli_usage_error("simulate", "--response must be top or ranking"); goto done; }
    if (strcmp(a.design, "phrases") == 0) spec.design = EMDPO_SIM_PHRASES;
    else if (strcmp(a.design, "gaussian") == 0) spec.design = EMDPO_SIM_GAUSSIAN;
    else { rc = cli_usage_error("simulate", "--design must be phrases or gaussian"); goto done; }
    if (spec.design == EMDPO_SIM_PHRASES && spec.pop.p != EMDPO_N_TRAITS) {
        rc = cli_usage_error("simulate", "the phrase design has %d trait features, but the types have %d values "
                             "(use --design gaussian)", EMDPO_N_TRAITS, spec.pop.p);
        goto done;
    }
    if (a.inventory) {
        if (spec.design != EMDPO_SIM_PHRASES) { rc = cli_usage_error("simulate", "--inventory needs --design phrases"); goto done; }
        emdpo_diag diag;
        memset(&diag, 0, sizeof diag);
        int irc = emdpo_inventory_load_mpi(a.inventory, &inv, &diag);
        if (irc) {
            if (!diag.file[0]) snprintf(diag.file, sizeof diag.file, "%s", a.inventory);
            rc = cli_fail("simulate", irc, &diag, "cannot read inventory");
            goto done;
        }
        spec.inventory = inv;
    }
    if (a.phrases) {
        if (spec.design != EMDPO_SIM_PHRASES) { rc = cli_usage_error("simulate", "--phrases needs --design phrases"); goto done; }
        if ((rc = subset_inventory(&a, &inv))) goto done;
        spec.inventory = inv;
    }
    int fmt = cli_format(a.format);
    if (fmt < 0) { rc = cli_usage_error("simulate", "--format must be jsonl, csv or auto"); goto done; }
    spec.n_annotators = a.annotators;
    spec.decisions = a.decisions;
    spec.items = a.items;
    spec.scale = a.scale;
    spec.omit_text = a.no_text;
    spec.seed = a.seed;
    cli_set_threads(a.threads);
    int src = emdpo_simulate(&spec, &d, NULL);
    if (src) {
        rc = src == EMDPO_ERR_INVALID_ARG
                 ? cli_usage_error("simulate", "inconsistent settings (e.g. more items per decision than phrases)")
                 : cli_fail("simulate", src, NULL, "simulation failed");
        goto done;
    }
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int wrc = emdpo_data_write(d, a.out, (emdpo_format)fmt, &diag);
    if (wrc) {
        if (!diag.file[0]) snprintf(diag.file, sizeof diag.file, "%s", a.out);
        rc = cli_fail("simulate", wrc, &diag, "cannot write data");
        goto done;
    }
    printf("wrote %s: %lld annotators, %lld decisions of %d items, %d types\n", a.out, (long long)d->n_annot,
           (long long)d->n_dec, a.items, spec.pop.K);
done:
    emdpo_data_free(d);
    emdpo_inventory_free(inv);
    emdpo_free(theta, (size_t)EMDPO_MAX_K * SIM_MAX_P * sizeof(double));
    return rc;
}
