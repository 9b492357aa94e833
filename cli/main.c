/* emdpo: the command-line tool. Each command lives in its own cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"simulate", cmd_simulate, "generate preference data from a latent-class logit population"},
    {"fit", cmd_fit, "EM-DPO: discover K latent annotator types and fit one policy per type"},
    {"estep", cmd_estep, "the E-step on log-ratios computed by any trainer: posterior, eta, next weights"},
    {"select", cmd_select, "fit a range of K and compare log-likelihood, AIC, BIC, ICL, held-out fit"},
    {"aggregate", cmd_aggregate, "MMRA: one policy or mixture with the smallest worst-case regret (ae, lw, onpolicy)"},
    {"identify", cmd_identify, "the identifiability study: binary vs ternary choices over growing N"},
    {"sft", cmd_sft, "supervised fine-tuning of a Llama policy"},
    {"dpo", cmd_dpo, "DPO / cDPO / IPO / hinge training of a Llama policy, optionally weighted"},
    {"score", cmd_score, "sequence log-probabilities and log-ratios of responses"},
    {"generate", cmd_generate, "sample text from a Llama checkpoint or a mixture.json"},
    {"convert", cmd_convert, "write a checkpoint as GGUF (llama.cpp, ollama) or a Hugging Face directory"},
    {"merge", cmd_merge, "merge a PEFT LoRA adapter into its base: a full checkpoint in the base's format"},
    {"baseline", cmd_baseline, "train a baseline ensemble: vanilla DPO, Cluster-DPO or True-Label DPO"},
    {"eval", cmd_eval, "max-mean reward margins and accuracies of policy ensembles by true group"},
    {"regret", cmd_regret, "each type's regret under given policies and mixtures (the paper's Table 3)"},
    {"report", cmd_report, "one self-contained HTML page of a run directory: tables and charts"},
    {"tokenizer", cmd_tokenizer, "train a BPE vocabulary on texts: a llama2.c tokenizer.bin for new models"},
    {"tokenize", cmd_tokenize, "encode or decode JSON lines with a tokenizer.json, GGUF or tokenizer.bin"},
    {"chat-template", cmd_chat_template, "render conversations with a chat template (Jinja), as transformers.js"},
};

static void usage(FILE *fp) {
    fprintf(fp, "emdpo %s: preference optimization with unobserved annotator types\n\n"
                "usage: emdpo COMMAND [flags]     (emdpo COMMAND --help for its flags)\n\ncommands:\n",
            emdpo_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-13s %s\n", commands[i].name, commands[i].summary);
}

/* Commands that run under mpirun -np N with N > 1: the others would do
 * the whole job N times over and race on their outputs. */
static int runs_distributed(const char *name, int argc, char **argv) {
    /* fit with either family; data-parallel language-model commands
     * (lm/lm_train.h: training and scoring split by rank) */
    static const char *const all[] = {"fit", "sft", "dpo", "baseline", "regret", "aggregate"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, all[i]) == 0) return 1;
    if (strcmp(name, "select") != 0) return 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--policy=", 9) == 0) return strcmp(a + 9, "loglinear") == 0;
        if (strcmp(a, "--policy") == 0) return i + 1 < argc && strcmp(argv[i + 1], "loglinear") == 0;
    }
    return 1;
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("emdpo %s\n", emdpo_version());
        return 0;
    }
    if (emdpo_dist_size() > 1 && !runs_distributed(name, argc, argv)) {
        fprintf(stderr, "emdpo: under mpirun with %d processes only fit, select (log-linear), sft, dpo, baseline, regret "
                        "and aggregate run; "
                        "run '%s' as one process\n", emdpo_dist_size(), name);
        return CLI_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "emdpo: unknown command '%s'\n", name);
    usage(stderr);
    return CLI_EXIT_USAGE;
}

/* Under mpirun every process runs the command; only rank 0 prints results
 * (and writes files, cmd_fit.c, cmd_select.c); any process's error is
 * printed by it and ends the whole job with its exit code. */
int main(int argc, char **argv) {
    emdpo_dist_init(&argc, &argv);
    if (emdpo_dist_rank() > 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "emdpo: rank %d: cannot silence its output\n", emdpo_dist_rank());
        emdpo_dist_finish(1);
        return 1;
    }
    int rc = run(argc, argv);
    fflush(stdout);
    emdpo_dist_finish(rc);
    return rc;
}
