/* emdpo eval: the paper's Table 1 for ensembles of Llama policies (fit or
 * baseline outputs) on held-out preference data with true groups. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Generation quality, one row per policy, the reference first. */
static void print_genq(const emdpo_eval *e, int rep_n) {
    const char *name;
    const emdpo_genq *g = emdpo_eval_genq(e, 0, &name);
    printf("\ngeneration quality (%lld samples per policy; valid: one of the data's responses; rep: repeated "
           "token %d-grams (seq-rep); KL: sampled KL to the reference, nats):\n",
           (long long)g->n, rep_n);
    printf("%-24s %15s %8s %8s %7s %6s %17s\n", "policy", "valid", "tokens", "words", "rep", "eos", "KL");
    for (int i = 0; (g = emdpo_eval_genq(e, i, &name)); i++) {
        printf("%-24.24s ", name);
        if (g->valid == g->valid) printf("%6.3f (%6.3f)", g->valid, g->valid_se);
        else printf("%15s", "-");
        printf(" %8.2f %8.2f %7.3f %6.3f %8.3f (%6.3f)\n", g->mean_tokens, g->mean_words, g->repetition, g->eos, g->kl,
               g->kl_se);
    }
}

static void print_table(const emdpo_eval *e, double beta, int rep_n) {
    int G = emdpo_eval_n_groups(e), nm = emdpo_eval_n_methods(e);
    printf("%-20s %-*s  %s\n", "", 10 * G, "Max-mean reward margins", "Accuracies");
    printf("%-20s", "method");
    for (int r = 0; r < 2; r++) {
        for (int g = 0; g < G; g++) printf(" %9.9s", emdpo_eval_group_name(e, g));
        fputs(r ? "\n" : "  ", stdout);
    }
    for (int j = 0; j < nm; j++) {
        printf("%-20.20s", emdpo_eval_method_name(e, j));
        for (int g = 0; g < G; g++) printf(" %9.4f", emdpo_eval_max_margin(e, j, g));
        fputs("  ", stdout);
        for (int g = 0; g < G; g++) printf(" %9.4f", emdpo_eval_best_accuracy(e, j, g));
        fputc('\n', stdout);
    }
    printf("\nbest policy per group (beta %g):\n", beta);
    for (int j = 0; j < nm; j++) {
        printf("  %-18.18s", emdpo_eval_method_name(e, j));
        for (int g = 0; g < G; g++) {
            int b = emdpo_eval_best(e, j, g);
            if (b < 0) printf(" %s=-", emdpo_eval_group_name(e, g));
            else printf(" %s=type_%d", emdpo_eval_group_name(e, g), emdpo_eval_policy(e, j, b));
        }
        fputc('\n', stdout);
    }
    printf("\nper policy (margin / accuracy by group):\n");
    for (int j = 0; j < nm; j++)
        for (int i = 0; i < emdpo_eval_n_policies(e, j); i++) {
            printf("  %s/type_%d", emdpo_eval_method_name(e, j), emdpo_eval_policy(e, j, i));
            for (int g = 0; g < G; g++)
                printf("  %s %.4f / %.4f", emdpo_eval_group_name(e, g), emdpo_eval_margin(e, j, i, g),
                       emdpo_eval_accuracy(e, j, i, g));
            fputc('\n', stdout);
        }
    int64_t n_ari = 0;
    double ari = emdpo_eval_ari(e, &n_ari);
    if (n_ari)
        printf("\nadjusted Rand index (posterior argmax vs true groups, %lld annotators): %.4f\n", (long long)n_ari,
               ari);
    if (emdpo_eval_n_genq(e) > 0) print_genq(e, rep_n);
}

/* Splits the comma-separated --policies list in place into dirs (cap
 * entries at least, one per comma plus one); returns the count, or -1 for
 * an empty name. */
static int split_dirs(char *list, const char **dirs) {
    int n = 0;
    for (char *p = list, *comma; p; p = comma ? comma + 1 : NULL) {
        if ((comma = strchr(p, ','))) *comma = '\0';
        if (!*p) return -1;
        dirs[n++] = p;
    }
    return n;
}

int cmd_eval(int argc, char **argv) {
    emdpo_eval_opts o;
    emdpo_eval_opts_init(&o);
    const char *ref_path = NULL, *tokenizer = NULL, *data = NULL, *policies = NULL, *out = NULL, *extra = NULL,
               *adapters = NULL;
    int json = 0, threads = 0;
    cli_read rd;
    cli_read_init(&rd);
    cli_opt opts[] = {
        {"ref", CLI_STR, &ref_path, "CKPT", "reference (SFT) model: llama2.c .bin or Hugging Face directory", 1, 0, 0},
        CLI_TOKENIZER_FLAG(&tokenizer),
        {"data", CLI_STR, &data, "FILE", "held-out preference JSONL with text responses and \"group\"", 1, 0, 0},
        CLI_READ_FLAG_LIST(&rd),
        {"policies", CLI_STR, &policies, "DIR[,DIR...]", "comma-separated method directories, each with type_N/ "
                                                         "policies (emdpo fit or baseline output)", 0, 0, 0},
        {"adapter", CLI_STR, &adapters, "DIR[,DIR...]", "more methods: PEFT LoRA adapters run on --ref, each an adapter "
                                                        "directory (one policy) or a directory of type_N/ adapters", 0,
         0, 0},
        {"beta", CLI_DBL, &o.beta, "X", "rewards are beta * log-ratios", 0, 0, 0},
        {"posterior", CLI_STR, &o.posterior, "FILE", "posterior.csv: adds the adjusted Rand index of its argmax "
                                                     "against the data's groups", 0, 0, 0},
        {"json", CLI_FLAG, &json, NULL, "print JSON instead of the table", 0, 0, 0},
        {"out", CLI_STR, &out, "FILE", "also write the JSON here (atomically)", 0, 0, 0},
        CLI_LENGTH_FLAGS(&o.max_length, &o.max_prompt_length),
        {"batch", CLI_INT, &o.batch, "N", "sequences per forward pass", 0, 0, 0},
        {"generate", CLI_FLAG, &o.generate, NULL, "also sample from every policy and report generation quality", 0, 0,
         0},
        {"closed-set", CLI_FLAG, &o.closed_set, NULL, "generate: the data's responses are the only valid ones; report "
                                                      "the share of samples that are one of them", 0, 0, 0},
        {"generate-policies", CLI_STR, &extra, "NAME=PATH,...", "generate: more policies (checkpoints or "
                                                                "mixture.json), generation quality only", 0, 0, 0},
        {"samples", CLI_INT, &o.genq.samples, "N", "generate: responses per prompt", 0, 0, 0},
        {"prompts", CLI_I64, &o.genq.max_prompts, "N", "generate: the data's first N distinct prompts; 0 = all", 0, 0,
         0},
        {"max-tokens", CLI_INT, &o.genq.max_tokens, "N", "generate: new tokens per response", 0, 0, 0},
        {"temperature", CLI_DBL, &o.genq.temperature, "X", "generate: sampling temperature (the KL estimate assumes 1)",
         0, 0, 0},
        {"rep-n", CLI_INT, &o.genq.rep_n, "N", "generate: n of the repeated-n-gram rate", 0, 0, 0},
        {"seed", CLI_U64, &o.genq.seed, "S", "generate: sampling seed", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
    };
    cli_cmd cmd = {"eval", "Evaluate policy ensembles per true group: max-mean reward margin and accuracy.",
                   "For each method directory (its name labels the row) and each true group g: every policy\n"
                   "type_N's mean over g's decisions of the reward margin, beta * log-ratio of the chosen\n"
                   "response minus that of each rejected one (averaged over the rejected ones); the best\n"
                   "policy for g is the one with the highest mean (ties: the lowest N). Columns: that\n"
                   "max-mean reward margin per group, then the best policy's accuracy per group (the share\n"
                   "of g's decisions whose chosen response has a strictly higher reward than every other).\n"
                   "Log-ratios are against --ref; each distinct sequence is scored once per model.\n"
                   "Annotators without a group are left out. With --posterior, the adjusted Rand index of\n"
                   "each annotator's most probable type against the true groups, over the annotators present\n"
                   "in both files. Directory names must not contain commas.\n\n"
                   "Policies that are PEFT LoRA adapters (fit, baseline or dpo with --lora-r) run unmerged on\n"
                   "--ref when their adapter_config.json names --ref as base_model_name_or_path (else they\n"
                   "load as that base with the adapter merged). --adapter adds methods whose adapters run on\n"
                   "--ref whatever base they name (adapters trained elsewhere, e.g. by PEFT on a Hub model id):\n"
                   "an adapter directory is a method of one policy, type_1, labelled by the directory's name.\n\n"
                   "--generate also samples --samples responses (temperature --temperature, at most\n"
                   "--max-tokens tokens) to each of the data's first --prompts distinct prompts from the\n"
                   "reference, every type_N policy and each --generate-policies entry, and reports: the share\n"
                   "of samples that are exactly one of the data's responses (trimmed of white space; with\n"
                   "--closed-set), mean new tokens and words, the repetition rate (mean over samples of\n"
                   "1 - distinct/total token n-grams, Welleck et al.'s seq-rep-n), the share ending with EOS,\n"
                   "and the sampled KL(pi || ref), the mean of log pi(y|x) - log ref(y|x) over the samples,\n"
                   "with standard errors. The JSON's \"generation\" object holds them.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    emdpo_set_threads(threads);

    if (!policies && !adapters) return cli_usage_error("eval", "nothing to evaluate: give --policies and/or --adapter");
    size_t len = policies ? strlen(policies) + 1 : 1, alen = adapters ? strlen(adapters) + 1 : 1;
    char *list = malloc(len), *alist = malloc(alen);
    const char **dirs = malloc(len * sizeof *dirs), **adirs = malloc(alen * sizeof *adirs);
    if (!list || !dirs || !alist || !adirs) {
        free(list);
        free(dirs);
        free(alist);
        free(adirs);
        return cli_fail("eval", EMDPO_ERR_NOMEM, NULL, &cmd);
    }
    memcpy(list, policies ? policies : "", len);
    memcpy(alist, adapters ? adapters : "", alen);
    int nm = policies ? split_dirs(list, dirs) : 0, na = adapters ? split_dirs(alist, adirs) : 0, ng = 0;
    o.adapters = adirs;
    o.n_adapters = na > 0 ? na : 0;
    char *elist = extra ? malloc(strlen(extra) + 1) : NULL;
    const char **gnames = extra ? malloc((strlen(extra) + 1) * sizeof *gnames) : NULL;
    const char **gpaths = extra ? malloc((strlen(extra) + 1) * sizeof *gpaths) : NULL;
    if (extra && (!elist || !gnames || !gpaths)) {
        nm = 0;
        ng = -2;
    } else if (extra) {
        memcpy(elist, extra, strlen(extra) + 1);
        ng = cli_split_pairs(elist, gnames, gpaths);
        for (int i = 0; i < ng; i++)
            if (!*gnames[i]) ng = -1;
    }
    o.gen_names = gnames;
    o.gen_paths = gpaths;
    o.n_gen = ng > 0 ? ng : 0;
    emdpo_llama *ref = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    emdpo_eval *e = NULL;
    emdpo_diag diag;
    if (ng == -2) {
        rc = cli_fail("eval", EMDPO_ERR_NOMEM, NULL, &cmd);
    } else if (nm < 0) {
        rc = cli_usage_error("eval", "--policies: empty directory name in '%s'", policies);
    } else if (na < 0) {
        rc = cli_usage_error("eval", "--adapter: empty directory name in '%s'", adapters);
    } else if (ng < 0) {
        rc = cli_usage_error("eval", "--generate-policies: expected NAME=PATH,..., not '%s'", extra);
    } else if (extra && !o.generate) {
        rc = cli_usage_error("eval", "--generate-policies needs --generate");
    } else if ((rc = emdpo_llama_load_frozen(ref_path, &ref, &diag)) ||
               (rc = emdpo_tokenizer_load(tokenizer, emdpo_llama_vocab_size(ref), &tok, &diag)) ||
               (rc = cli_read_finish(&rd, tokenizer)) ||
               (rc = emdpo_data_read_with(data, EMDPO_FORMAT_JSONL, &rd.o, &d, &diag)) ||
               (rc = emdpo_eval_run(ref, tok, d, dirs, nm, &o, &e, &diag))) {
        rc = cli_fail("eval", rc, &diag, &cmd);
    } else {
        if (json) emdpo_eval_write_json(e, stdout);
        else print_table(e, o.beta, o.genq.rep_n);
        if (fflush(stdout)) rc = cli_usage_error("eval", "cannot write standard output");
        else if (out && (rc = emdpo_eval_save(e, out, &diag))) rc = cli_fail("eval", rc, &diag, &cmd);
    }
    emdpo_eval_free(e);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(ref);
    free(dirs);
    free(list);
    free(adirs);
    free(alist);
    free(elist);
    free((void *)gnames);
    free((void *)gpaths);
    cli_read_free(&rd);
    return rc;
}
