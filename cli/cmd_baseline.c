/* emdpo baseline: the paper's comparison ensembles (section 5, appendix
 * D.2), each a set of DPO policies trained from the SFT model and written
 * as emdpo fit --policy llama writes its types, so emdpo eval treats every
 * method alike:
 *   vanilla    one policy on all decisions             -> DIR/type_1
 *   cluster    k-means on annotator embeddings, one
 *              policy per cluster (Cluster-DPO)         -> DIR/type_1..K, DIR/clusters.csv
 *   truelabel  one policy per true group (True-Label)   -> DIR/type_g, g = the group's
 *              position in baseline.json's "groups" (first-seen order in the data) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/csv.h"
#include "base/lines.h"
#include "cli.h"
#include "cli_lm.h"
#include "lm/io/llama_hf.h"
#include "lm/lm_eval.h"

typedef struct baseline_args {
    const char *method, *data, *model, *tokenizer, *out, *optimizer;
    int k, batch, accum, max_length, max_prompt_length, score_batch, threads, quiet;
    int64_t steps, warmup;
    uint64_t seed;
    double beta, lr, clip;
} baseline_args;

enum { VANILLA, CLUSTER, TRUELABEL };

/* Trains one policy on the decisions of the annotators whose label is
 * `label` (every annotator when labels is NULL) and saves it as DIR/type_<k+1>.
 * A policy with no decisions is the SFT model itself. */
static int train_one(const baseline_args *a, const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *d,
                     const int32_t *labels, int label, int k, const emdpo_train_config *tc, int64_t *n_dec) {
    emdpo_data *sub = NULL;
    emdpo_lm_set *set = NULL;
    emdpo_llama *pol = NULL;
    int64_t *idx = emdpo_malloc((size_t)d->n_annot * sizeof *idx), n = 0;
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc = idx ? 0 : EMDPO_ERR_NOMEM;
    *n_dec = 0;
    for (int64_t i = 0; !rc && i < d->n_annot; i++)
        if (!labels || labels[i] == label) {
            idx[n++] = i;
            *n_dec += d->annot_dec[i + 1] - d->annot_dec[i];
        }
    if (!rc && n) rc = emdpo_data_subset(d, idx, n, &sub);
    if (!rc && n) rc = emdpo_lm_set_from_data(sub, tok, a->max_length, a->max_prompt_length, &set);
    emdpo_train_config c = *tc;
    c.seed = a->seed + (uint64_t)k;
    if (!rc && n) rc = emdpo_lm_train_dpo(sft, set, &c, a->steps, &pol);
    char path[4200];
    snprintf(path, sizeof path, "%s/type_%d", a->out, k + 1);
    if (rc) {
        rc = cli_fail("baseline", rc, NULL,
                      rc == EMDPO_ERR_LIMIT     ? "a sequence does not fit the model (context or vocabulary)"
                      : rc == EMDPO_ERR_NUMERIC ? "the loss or gradient is not finite (lower --lr?)"
                                                : "training failed");
    } else {
        if (!n && !a->quiet) fprintf(stderr, "emdpo baseline: note: type_%d has no decisions; it is the SFT model\n", k + 1);
        if ((rc = emdpo_llama_hf_save(pol ? pol : sft, path, &diag))) rc = cli_fail("baseline", rc, &diag, "cannot save a policy");
    }
    emdpo_llama_free(pol);
    emdpo_lm_set_free(set);
    emdpo_data_free(sub);
    emdpo_free(idx, (size_t)d->n_annot * sizeof *idx);
    return rc;
}

static void write_json(FILE *fp, const baseline_args *a, const emdpo_data *d, int method, int K,
                       const emdpo_train_config *tc, const int64_t *n_dec) {
    static const char *const names[] = {"vanilla", "cluster", "truelabel"};
    char abs[4096];
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"family\": \"llama\",\n  \"method\": \"%s\",\n  \"data\": ",
            EMDPO_VERSION_STRING, names[method]);
    cli_json_str(fp, realpath(a->data, abs) ? abs : a->data);
    fprintf(fp, ",\n  \"model\": ");
    cli_json_str(fp, realpath(a->model, abs) ? abs : a->model);
    fprintf(fp, ",\n  \"tokenizer\": ");
    cli_json_str(fp, realpath(a->tokenizer, abs) ? abs : a->tokenizer);
    fprintf(fp, ",\n  \"k\": %d,\n  \"groups\": [", K);
    for (int g = 0; g < d->n_groups; g++) {
        if (g) fputs(", ", fp);
        cli_json_str(fp, d->group_name[g]);
    }
    fprintf(fp, "],\n  \"policies\": [");
    for (int k = 0; k < K; k++) fprintf(fp, "%s\"type_%d\"", k ? ", " : "", k + 1);
    fprintf(fp, "],\n  \"decisions\": [");
    for (int k = 0; k < K; k++) fprintf(fp, "%s%lld", k ? ", " : "", (long long)n_dec[k]);
    fprintf(fp, "],\n  \"seed\": %llu,\n  \"beta\": ", (unsigned long long)a->seed);
    cli_json_num(fp, tc->loss.beta);
    fprintf(fp, ",\n  \"training\": {\"steps\": %lld, \"optimizer\": \"%s\", \"lr\": ", (long long)a->steps,
            tc->optim.kind == EMDPO_OPTIM_ADAMW ? "adamw" : "rmsprop");
    cli_json_num(fp, tc->optim.lr);
    fprintf(fp, ", \"warmup\": %lld, \"clip\": ", (long long)tc->optim.warmup);
    cli_json_num(fp, tc->optim.clip);
    fprintf(fp, ", \"batch\": %d, \"accum\": %d, \"max_length\": %d, \"max_prompt_length\": %d}\n}\n", tc->batch,
            tc->accum, a->max_length, a->max_prompt_length);
}

static int write_clusters(const baseline_args *a, const emdpo_data *d, const int32_t *assign) {
    char path[4200];
    emdpo_afile af;
    snprintf(path, sizeof path, "%s/clusters.csv", a->out);
    if (emdpo_afile_open(&af, path)) return cli_usage_error("baseline", "cannot write %s", path);
    fputs("annotator,cluster\n", af.fp);
    for (int64_t i = 0; i < d->n_annot; i++) {
        emdpo_csv_write_field(af.fp, d->annot_name[i]);
        fprintf(af.fp, ",%d\n", assign[i] + 1);
    }
    return emdpo_afile_commit(&af) ? cli_usage_error("baseline", "cannot write %s", path) : 0;
}

int cmd_baseline(int argc, char **argv) {
    baseline_args a = {0};
    a.optimizer = "rmsprop";
    a.k = 2;
    a.seed = 1;
    a.beta = 0.1;
    a.lr = 1e-6;
    a.clip = 10.0;
    a.batch = 4;
    a.accum = 1;
    a.score_batch = 16;
    cli_opt opts[] = {
        {"method", CLI_STR, &a.method, "NAME", "vanilla, cluster or truelabel", 1, 0},
        {"data", CLI_STR, &a.data, "FILE", "preference JSONL with text responses (truelabel: with groups)", 1, 0},
        {"model", CLI_STR, &a.model, "CKPT", "SFT model, the start of every policy and the reference", 1, 0},
        {"tokenizer", CLI_STR, &a.tokenizer, "FILE", "llama2.c tokenizer.bin for the model's vocabulary", 1, 0},
        {"out", CLI_STR, &a.out, "DIR", "output: baseline.json, type_1 .. type_K (cluster: clusters.csv)", 1, 0},
        {"k", CLI_INT, &a.k, "K", "cluster: number of k-means clusters (2)", 0, 0},
        {"beta", CLI_DBL, &a.beta, "X", "DPO temperature (0.1)", 0, 0},
        {"steps", CLI_I64, &a.steps, "N", "optimizer steps per policy (default: one epoch of its decisions)", 0, 0},
        {"lr", CLI_DBL, &a.lr, "X", "learning rate (1e-6)", 0, 0},
        {"optimizer", CLI_STR, &a.optimizer, "NAME", "rmsprop or adamw (rmsprop)", 0, 0},
        {"warmup", CLI_I64, &a.warmup, "N", "linear warmup steps (0)", 0, 0},
        {"clip", CLI_DBL, &a.clip, "X", "max gradient norm, 0 = off (10)", 0, 0},
        {"batch", CLI_INT, &a.batch, "N", "decisions per micro-batch (4)", 0, 0},
        {"accum", CLI_INT, &a.accum, "N", "micro-batches per optimizer step (1)", 0, 0},
        {"max-length", CLI_INT, &a.max_length, "N", "truncate sequences to N tokens (min(512, context))", 0, 0},
        {"max-prompt-length", CLI_INT, &a.max_prompt_length, "N", "cut prompts to N tokens first (max-length/2)", 0, 0},
        {"score-batch", CLI_INT, &a.score_batch, "N", "cluster: sequences per embedding forward (16)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "k-means and shuffling seed (1); policy k shuffles with seed + k - 1", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
        {"quiet", CLI_FLAG, &a.quiet, NULL, "print nothing but errors", 0, 0},
    };
    cli_cmd cmd = {"baseline", "Train a baseline ensemble of DPO policies: vanilla, Cluster-DPO or True-Label DPO.",
                   "vanilla: one DPO policy on every decision -> DIR/type_1.\n"
                   "cluster: k-means (k-means++ seeding, --seed) on each annotator's mean final hidden state of\n"
                   "  the SFT model over their chosen responses, hard clusters, one DPO policy per cluster ->\n"
                   "  DIR/type_1 .. type_K and DIR/clusters.csv (annotator,cluster).\n"
                   "truelabel: one DPO policy per true group -> DIR/type_g for the g-th group of\n"
                   "  baseline.json's \"groups\" (first-seen order in the data); annotators without a group\n"
                   "  are left out. Needs groups in the data.\n"
                   "Every policy starts from --model, which is also the DPO reference. Policies are Hugging\n"
                   "Face directories, as emdpo fit --policy llama writes; DIR/baseline.json (method, k, groups,\n"
                   "policies, decisions per policy, training settings) is written last. A policy without\n"
                   "decisions (an empty cluster) is saved as the SFT model.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    int method = strcmp(a.method, "vanilla") == 0 ? VANILLA
                 : strcmp(a.method, "cluster") == 0 ? CLUSTER
                 : strcmp(a.method, "truelabel") == 0 ? TRUELABEL
                                                     : -1;
    if (method < 0) return cli_usage_error("baseline", "--method must be vanilla, cluster or truelabel, not '%s'", a.method);
    int opt_kind = emdpo_optim_parse(a.optimizer);
    if (opt_kind < 0) return cli_usage_error("baseline", "--optimizer must be rmsprop or adamw, not '%s'", a.optimizer);
    if (a.k < 1 || a.k > EMDPO_MAX_K) return cli_usage_error("baseline", "--k must be in 1..%d", EMDPO_MAX_K);
    if (!(a.beta > 0) || !isfinite(a.beta)) return cli_usage_error("baseline", "--beta must be > 0");
    if (a.steps < 0 || a.warmup < 0) return cli_usage_error("baseline", "--steps and --warmup must be >= 0");
    if (a.batch < 1 || a.accum < 1 || a.score_batch < 1)
        return cli_usage_error("baseline", "--batch, --accum and --score-batch must be >= 1");
    if (!(a.lr >= 0) || !(a.clip >= 0)) return cli_usage_error("baseline", "--lr and --clip must be >= 0");
    cli_set_threads(a.threads);

    emdpo_llama *sft = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    emdpo_lm_set *set = NULL;
    int32_t *labels = NULL;
    int64_t n_labels = 0, *n_dec = NULL;
    int K = 0;
    if ((rc = cli_lm_model("baseline", a.model, NULL, 0, &sft)) ||
        (rc = cli_lm_tokenizer("baseline", a.tokenizer, sft->config.vocab_size, &tok)) ||
        (rc = cli_lm_lengths("baseline", sft, &a.max_length, &a.max_prompt_length)) ||
        (rc = cli_load_data("baseline", a.data, "jsonl", &d)))
        goto done;
    if (!emdpo_data_has_text(d)) {
        rc = cli_usage_error("baseline", "%s: responses have no text; baselines need text responses", a.data);
        goto done;
    }
    K = method == VANILLA ? 1 : method == CLUSTER ? a.k : d->n_groups;
    if (method == TRUELABEL && d->n_groups == 0) {
        rc = cli_usage_error("baseline", "%s: no \"group\" field: truelabel needs each annotator's true group", a.data);
        goto done;
    }
    if (method == CLUSTER && a.k > d->n_annot) {
        rc = cli_usage_error("baseline", "--k %d exceeds the %lld annotators", a.k, (long long)d->n_annot);
        goto done;
    }
    if ((rc = cli_mkdirs("baseline", a.out))) goto done;
    n_labels = method == VANILLA ? 0 : d->n_annot;
    if (!(n_dec = emdpo_calloc((size_t)K, sizeof *n_dec)) ||
        (n_labels && !(labels = emdpo_malloc((size_t)n_labels * sizeof *labels)))) {
        rc = cli_fail("baseline", EMDPO_ERR_NOMEM, NULL, "labels");
        goto done;
    }
    if (method == TRUELABEL) memcpy(labels, d->annot_group, (size_t)n_labels * sizeof *labels);
    if (method == CLUSTER) {
        if ((rc = emdpo_lm_set_from_data(d, tok, a.max_length, a.max_prompt_length, &set)) ||
            (rc = emdpo_lm_cluster_annotators(sft, d, set, a.k, a.seed, a.score_batch, labels))) {
            rc = cli_fail("baseline", rc, NULL,
                          rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the model (context or vocabulary)"
                                                : "annotator clustering");
            goto done;
        }
        if ((rc = write_clusters(&a, d, labels))) goto done;
    }
    emdpo_train_config tc;
    memset(&tc, 0, sizeof tc);
    tc.mode = EMDPO_TRAIN_DPO;
    tc.loss.kind = EMDPO_LOSS_DPO;
    tc.loss.beta = a.beta;
    emdpo_optim_config_default(&tc.optim, (emdpo_optim_kind)opt_kind);
    tc.optim.lr = a.lr;
    tc.optim.warmup = a.warmup;
    tc.optim.clip = a.clip;
    tc.batch = a.batch;
    tc.accum = a.accum;
    for (int k = 0; k < K && !rc; k++) rc = train_one(&a, sft, tok, d, labels, k, k, &tc, &n_dec[k]);
    if (rc) goto done;
    char path[4200];
    emdpo_afile af;
    snprintf(path, sizeof path, "%s/baseline.json", a.out);
    if (emdpo_afile_open(&af, path)) {
        rc = cli_usage_error("baseline", "cannot write %s", path);
        goto done;
    }
    write_json(af.fp, &a, d, method, K, &tc, n_dec);
    if (emdpo_afile_commit(&af)) {
        rc = cli_usage_error("baseline", "cannot write %s", path);
        goto done;
    }
    if (!a.quiet) printf("baseline %s: wrote %s/baseline.json and %s/type_1 .. type_%d\n", a.method, a.out, a.out, K);
done:
    emdpo_free(labels, labels ? (size_t)n_labels * sizeof *labels : 0);
    emdpo_free(n_dec, n_dec ? (size_t)K * sizeof *n_dec : 0);
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(sft);
    return rc;
}
