/* emdpo simulate: preference data from a latent-class logit population, or
 * (--dataset goqa) from countries answering GlobalOpinionQA questions. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* "a,b,c;d,e,f" -> theta (K, p), allocated (free it). Returns 0 or prints
 * and returns 2. */
static int parse_theta(const char *s, double **theta_out, int *K, int *p) {
    /* Every number takes a byte and a separator: (len + 1) / 2 values at most. */
    size_t len = strlen(s), cap = (len + 1) / 2 + 1;
    char *buf = malloc(len + 1);
    double *theta = malloc(cap * sizeof *theta);
    int k = 0, width = -1, rc = 0;
    if (!buf || !theta) {
        free(buf);
        free(theta);
        return cli_fail("simulate", EMDPO_ERR_NOMEM, NULL, NULL);
    }
    memcpy(buf, s, len + 1);
    size_t used = 0;
    for (char *row = buf, *semi; !rc && row; row = semi ? semi + 1 : NULL) {
        if ((semi = strchr(row, ';'))) *semi = '\0';
        if (!*row) continue;
        if (k == EMDPO_MAX_K) {
            rc = cli_usage_error("simulate", "--theta: at most %d types", EMDPO_MAX_K);
            break;
        }
        int n = cli_parse_doubles(row, theta + used, (int)(cap - used));
        if (n < 1) rc = cli_usage_error("simulate", "--theta: type %d is not a comma-separated list of numbers", k + 1);
        else if (width >= 0 && n != width)
            rc = cli_usage_error("simulate", "--theta: type %d has %d values, type 1 has %d", k + 1, n, width);
        width = n;
        used += (size_t)n;
        k++;
    }
    if (!rc && k == 0) rc = cli_usage_error("simulate", "--theta is empty");
    free(buf);
    if (rc) {
        free(theta);
        return rc;
    }
    *theta_out = theta;
    *K = k;
    *p = width;
    return 0;
}

/* Fills spec->pop from --preset or --theta/--eta; *theta and eta are the
 * storage. */
static int population_from_args(const char *preset, const char *theta_s, const char *eta_s, double **theta,
                                double *eta, emdpo_sim_spec *spec) {
    if (theta_s) {
        int K = 0, p = 0;
        if (parse_theta(theta_s, theta, &K, &p)) return CLI_EXIT_USAGE;
        if (eta_s) {
            int n = cli_parse_doubles(eta_s, eta, EMDPO_MAX_K);
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
        spec->pop = (emdpo_population){K, p, *theta, eta, NULL};
        return 0;
    }
    if (eta_s) return cli_usage_error("simulate", "--eta needs --theta");
    const emdpo_population *pre = emdpo_population_preset(preset);
    if (!pre) return cli_usage_error("simulate", "unknown --preset '%s' (personalities, personalities-collapsed)", preset);
    spec->pop = *pre;
    return 0;
}

/* Replaces *inv (the built-in inventory when NULL) by its balanced subset
 * of n phrases. */
static int subset_inventory(int64_t n, int items, emdpo_inventory **inv) {
    emdpo_inventory *all = *inv, *sub = NULL;
    int rc = all ? EMDPO_OK : emdpo_inventory_builtin(&all);
    if (rc) {
        rc = cli_fail("simulate", rc, NULL, NULL);
    } else if (n < 2 || n > emdpo_inventory_n(all) || n < items) {
        rc = cli_usage_error("simulate", "--phrases must be between max(2, --items) and the inventory's %lld phrases",
                             (long long)emdpo_inventory_n(all));
    } else if ((rc = emdpo_inventory_subset(all, n, &sub))) {
        rc = cli_fail("simulate", rc, NULL, NULL);
    }
    emdpo_inventory_free(all);
    *inv = sub;
    return rc;
}

static int simulate_population(int argc, char **argv) {
    emdpo_sim_spec spec;
    emdpo_sim_spec_init(&spec);
    const char *out = NULL, *preset = "personalities", *theta_s = NULL, *eta_s = NULL, *inventory = NULL;
    emdpo_format format = EMDPO_FORMAT_AUTO;
    int64_t phrases = 0;
    int threads = 0;
    cli_opt opts[] = {
        {"out", CLI_STR, &out, "FILE", "output file (.jsonl or .csv)", 1, 0, 0},
        {"format", CLI_ENUM, &format, "FMT", "jsonl, csv or auto (by extension)", 0, 0, emdpo_format_name},
        {"preset", CLI_STR, &preset, "NAME", "population: personalities (P1, P2 = -P1, P3; .3/.3/.4) or "
                                             "personalities-collapsed", 0, 0, 0},
        {"theta", CLI_STR, &theta_s, "LIST", "custom types instead of a preset: 'a,b,c;d,e,f' (one row per type)", 0, 0,
         0},
        {"eta", CLI_STR, &eta_s, "LIST", "custom type weights 'w1,w2,...' (default: equal)", 0, 0, 0},
        {"annotators", CLI_I64, &spec.n_annotators, "N", "number of annotators", 0, 0, 0},
        {"decisions", CLI_INT, &spec.decisions, "M", "decisions per annotator", 0, 0, 0},
        {"items", CLI_INT, &spec.items, "N", "items per decision, >= 2", 0, 0, 0},
        {"response", CLI_ENUM, &spec.response, "KIND", "top (one choice) or ranking (full Plackett-Luce ranking)", 0, 0,
         emdpo_sim_response_name},
        {"design", CLI_ENUM, &spec.design, "KIND", "phrases (trait-scored phrases, p = 5) or gaussian (iid N(0, "
                                                   "scale^2))", 0, 0, emdpo_sim_design_name},
        {"inventory", CLI_STR, &inventory, "FILE", "phrase inventory as an MPI CSV (label_raw,text,label_ocean,key)", 0,
         0, 0},
        {"scale", CLI_DBL, &spec.scale, "X", "feature standard deviation of the gaussian design", 0, 0, 0},
        {"phrases", CLI_I64, &phrases, "N", "phrase design: a balanced subset of N phrases (default: all)", 0, 0, 0},
        {"no-text", CLI_FLAG, &spec.omit_text, NULL, "phrase design: write features only, no prompts or phrase texts",
         0, 0, 0},
        {"seed", CLI_U64, &spec.seed, "S", "random seed", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
    };
    cli_cmd cmd = {"simulate", "Generate preference data from a latent-class (random-coefficient) logit population.",
                   "Each annotator draws a type k ~ eta, then every decision shows `items` items and records\n"
                   "the top choice drawn from softmax(theta_k . x) (or a full ranking). The annotator's\n"
                   "`group` is its true type, for evaluation only. Country opinions (GlobalOpinionQA):\n"
                   "emdpo simulate --dataset goqa --help.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    double *theta = NULL, eta[EMDPO_MAX_K];
    emdpo_inventory *inv = NULL;
    emdpo_data *d = NULL;
    emdpo_diag diag;
    if ((rc = population_from_args(preset, theta_s, eta_s, &theta, eta, &spec))) goto done;
    if (spec.n_annotators < 1) rc = cli_usage_error("simulate", "--annotators must be >= 1");
    else if (spec.decisions < 1) rc = cli_usage_error("simulate", "--decisions must be >= 1");
    else if (spec.items < 2) rc = cli_usage_error("simulate", "--items must be >= 2");
    else if (!(spec.scale > 0)) rc = cli_usage_error("simulate", "--scale must be > 0");
    else if (spec.design == EMDPO_SIM_PHRASES && spec.pop.p != EMDPO_N_TRAITS)
        rc = cli_usage_error("simulate", "the phrase design has %d trait features, but the types have %d values "
                                         "(use --design gaussian)", EMDPO_N_TRAITS, spec.pop.p);
    else if (inventory && spec.design != EMDPO_SIM_PHRASES)
        rc = cli_usage_error("simulate", "--inventory needs --design phrases");
    else if (phrases && spec.design != EMDPO_SIM_PHRASES)
        rc = cli_usage_error("simulate", "--phrases needs --design phrases");
    if (rc) goto done;
    if (inventory && (rc = emdpo_inventory_load_mpi(inventory, &inv, &diag))) {
        rc = cli_fail("simulate", rc, &diag, &cmd);
        goto done;
    }
    if (phrases && (rc = subset_inventory(phrases, spec.items, &inv))) goto done;
    spec.inventory = inv;
    emdpo_set_threads(threads);
    if ((rc = emdpo_simulate(&spec, &d, NULL, &diag)) || (rc = emdpo_data_write(d, out, format, &diag))) {
        rc = cli_fail("simulate", rc, &diag, &cmd);
        goto done;
    }
    printf("wrote %s: %lld annotators, %lld decisions of %d items, %d types\n", out,
           (long long)emdpo_data_n_annotators(d), (long long)emdpo_data_n_decisions(d), spec.items, spec.pop.K);
done:
    emdpo_data_free(d);
    emdpo_inventory_free(inv);
    free(theta);
    return rc;
}

/* ---- --dataset goqa ------------------------------------------------------ */

/* Simulates one split and writes it. */
static int goqa_split(const emdpo_goqa_bank *bank, const emdpo_goqa_spec *spec, const char *path, emdpo_format fmt,
                      const char *what, const cli_cmd *cmd) {
    emdpo_data *d = NULL;
    emdpo_diag diag;
    int rc = emdpo_goqa_simulate(bank, spec, &d, NULL, &diag);
    if (!rc) rc = emdpo_data_write(d, path, fmt, &diag);
    if (rc) rc = cli_fail("simulate", rc, &diag, cmd);
    else
        printf("wrote %s (%s): annotators a%" PRId64 "..a%" PRId64 ", %lld decisions of %d options\n", path, what,
               spec->first_annotator + 1, spec->first_annotator + spec->n_annotators,
               (long long)emdpo_data_n_decisions(d), 1 + spec->rejected);
    emdpo_data_free(d);
    return rc;
}

/* Splits "a,b,c" in place into at most EMDPO_GOQA_MAX_COUNTRIES names.
 * Returns the count, or -1 for an empty name or too many. */
static int split_countries(char *s, const char **names) {
    int n = 0;
    for (char *p = s, *comma; p; p = comma ? comma + 1 : NULL) {
        if ((comma = strchr(p, ','))) *comma = '\0';
        if (!*p || n == EMDPO_GOQA_MAX_COUNTRIES) return -1;
        names[n++] = p;
    }
    return n;
}

static void print_bank(const emdpo_goqa_bank *bank, const char *file, const emdpo_goqa_opts *o) {
    printf("goqa: %" PRId64 " questions from the %s bank%s%s: %" PRId64 " records, %" PRId64
           " distinct questions, %" PRId64 " with all of ",
           emdpo_goqa_bank_n(bank), emdpo_goqa_source_name(emdpo_goqa_bank_source(bank)), file ? " " : "",
           file ? file : "", emdpo_goqa_bank_n_records(bank), emdpo_goqa_bank_n_questions(bank),
           emdpo_goqa_bank_n_present(bank));
    for (int c = 0; c < emdpo_goqa_bank_n_countries(bank); c++)
        printf("%s%s", c ? "," : "", emdpo_goqa_bank_country(bank, c));
    if (emdpo_goqa_bank_source(bank) == EMDPO_GOQA_INDEX)
        printf(", %" PRId64 " dropped by --est-methods %s%s", emdpo_goqa_bank_n_filtered(bank),
               emdpo_goqa_est_name(o->est), o->low_confidence ? " (low-confidence accepted)" : "");
    printf("\n");
}

static int simulate_goqa(int argc, char **argv) {
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    emdpo_goqa_spec spec;
    emdpo_goqa_spec_init(&spec);
    const char *dataset = NULL, *bank_file = NULL, *countries = NULL, *weights = NULL, *out = NULL;
    const char *test_out = NULL, *list_questions = NULL;
    emdpo_goqa_source source = EMDPO_GOQA_BUILTIN;
    emdpo_format format = EMDPO_FORMAT_AUTO;
    int64_t test_annotators = 0;
    cli_opt opts[] = {
        {"dataset", CLI_STR, &dataset, "NAME", "goqa (country opinions)", 1, 0, 0},
        {"out", CLI_STR, &out, "FILE", "training data (.jsonl or .csv)", 1, 0, 0},
        {"format", CLI_ENUM, &format, "FMT", "jsonl, csv or auto (by extension)", 0, 0, emdpo_format_name},
        {"bank", CLI_ENUM, &source, "SRC", "question bank: builtin, index, subset or csv", 0, 0,
         emdpo_goqa_source_name},
        {"bank-file", CLI_STR, &bank_file, "FILE", "the bank's file for index, subset or csv", 0, 0, 0},
        {"countries", CLI_STR, &countries, "LIST", "types, comma-separated (default: Britain,Indonesia,Mexico,"
                                                   "Pakistan; builtin: Arden,Belmora,Calvia,Dastra)", 0, 0, 0},
        {"weights", CLI_STR, &weights, "LIST", "country proportions (default: .15,.20,.30,.35 for four; else equal)", 0,
         0, 0},
        {"merge-great-britain", CLI_FLAG, &o.merge_great_britain, NULL, "use Great Britain (WVS) where a question "
                                                                       "lacks Britain (Pew)", 0, 0, 0},
        {"est-methods", CLI_ENUM, &o.est, "SET", "index estimates: exact (unique, no_truncation_detected) or all (+ "
                                                 "ambiguous_prior, asis_no_hyp)", 0, 0, emdpo_goqa_est_name},
        {"low-confidence", CLI_FLAG, &o.low_confidence, NULL, "index: also accept estimates for 14+ options", 0, 0, 0},
        {"strict", CLI_FLAG, &o.strict, NULL, "a question lacking a country is an error, not skipped", 0, 0, 0},
        {"annotators", CLI_I64, &spec.n_annotators, "N", "training annotators", 0, 0, 0},
        {"questions", CLI_INT, &spec.questions, "Q", "questions per annotator, without replacement", 0, 0, 0},
        {"rejected", CLI_INT, &spec.rejected, "R", "rejected options per decision (1: binary)", 0, 0, 0},
        {"list-options", CLI_FLAG, &spec.list_options, NULL, "list the options in each prompt", 0, 0, 0},
        {"test-annotators", CLI_I64, &test_annotators, "N", "also simulate N test annotators (needs --test-out)", 0, 0,
         0},
        {"test-out", CLI_STR, &test_out, "FILE", "test data file", 0, 0, 0},
        {"list-questions", CLI_STR, &list_questions, "FILE", "write the questions and distributions used (JSONL)", 0, 0,
         0},
        {"seed", CLI_U64, &spec.seed, "S", "random seed", 0, 0, 0},
    };
    cli_cmd cmd = {"simulate --dataset goqa", "Generate preference data from country opinions (GlobalOpinionQA style).",
                   "Each annotator draws a country c ~ weights and answers --questions distinct questions:\n"
                   "the chosen option ~ the country's answer distribution, the rejected option(s) uniformly\n"
                   "from the rest. Prompt = the question; responses = option texts; group = the country.\n"
                   "Test annotators continue the numbering (a<N+1>...) with their own random streams, so\n"
                   "they are independent of the training set. The paper's GPT-4 rephrasings are not\n"
                   "reproduced: every prompt is the question text. Britain (Pew) and Great Britain (WVS)\n"
                   "are distinct countries unless --merge-great-britain.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    cmd.name = "simulate";
    if (strcmp(dataset, "goqa") != 0) return cli_usage_error("simulate", "--dataset must be goqa here");
    if (spec.n_annotators < 1) return cli_usage_error("simulate", "--annotators must be >= 1");
    if (spec.questions < 1) return cli_usage_error("simulate", "--questions must be >= 1");
    if (spec.rejected < 1) return cli_usage_error("simulate", "--rejected must be >= 1");
    if (test_annotators < 0) return cli_usage_error("simulate", "--test-annotators must be >= 0");
    if ((test_annotators > 0) != (test_out != NULL))
        return cli_usage_error("simulate", "--test-annotators and --test-out go together");
    if (source == EMDPO_GOQA_BUILTIN && bank_file)
        return cli_usage_error("simulate", "--bank-file needs --bank index, subset or csv");
    if (source != EMDPO_GOQA_BUILTIN && !bank_file)
        return cli_usage_error("simulate", "--bank %s needs --bank-file", emdpo_goqa_source_name(source));
    char *names_buf = NULL;
    const char *names[EMDPO_GOQA_MAX_COUNTRIES];
    if (countries) {
        size_t len = strlen(countries) + 1;
        if (!(names_buf = malloc(len))) return cli_fail("simulate", EMDPO_ERR_NOMEM, NULL, &cmd);
        memcpy(names_buf, countries, len);
        int n = split_countries(names_buf, names);
        if (n < 1) {
            free(names_buf);
            return cli_usage_error("simulate", "--countries: 1 to %d non-empty comma-separated names",
                                   EMDPO_GOQA_MAX_COUNTRIES);
        }
        o.countries = names;
        o.n_countries = n;
    }
    emdpo_goqa_bank *bank = NULL;
    emdpo_diag diag;
    double w[EMDPO_GOQA_MAX_COUNTRIES];
    if ((rc = emdpo_goqa_bank_load(source, bank_file, &o, &bank, &diag))) {
        rc = cli_fail("simulate", rc, &diag, &cmd);
        goto done;
    }
    if (weights) {
        int nc = emdpo_goqa_bank_n_countries(bank), n = cli_parse_doubles(weights, w, EMDPO_GOQA_MAX_COUNTRIES);
        int good = n == nc;
        double s = 0;
        for (int c = 0; c < n; c++) {
            good &= w[c] >= 0;
            s += w[c];
        }
        if (!good || !(s > 0)) {
            rc = cli_usage_error("simulate", "--weights needs %d non-negative numbers, not all 0", nc);
            goto done;
        }
        spec.weights = w;
    }
    print_bank(bank, bank_file, &o);
    if (list_questions && (rc = emdpo_goqa_bank_write_questions(bank, list_questions, &diag))) {
        rc = cli_fail("simulate", rc, &diag, &cmd);
        goto done;
    }
    if ((rc = goqa_split(bank, &spec, out, format, "train", &cmd))) goto done;
    if (test_annotators > 0) {
        spec.first_annotator = spec.n_annotators;
        spec.n_annotators = test_annotators;
        rc = goqa_split(bank, &spec, test_out, format, "test", &cmd);
    }
done:
    emdpo_goqa_bank_free(bank);
    free(names_buf);
    return rc;
}

int cmd_simulate(int argc, char **argv) {
    /* --dataset goqa has its own flags; everything else is the logit population. */
    const char *dataset = cli_flag_value(argc, argv, "dataset");
    if (dataset && strcmp(dataset, "goqa") == 0) return simulate_goqa(argc, argv);
    return simulate_population(argc, argv);
}
