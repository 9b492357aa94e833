/* emdpo baseline: the paper's comparison ensembles (section 5, appendix
 * D.2), each a set of DPO policies trained from the SFT model and written
 * as emdpo fit --policy llama writes its types, so emdpo eval treats every
 * method alike. */
#include "cli.h"

static void note_empty(void *ud, int k, int64_t n_decisions) {
    (void)n_decisions;
    if (!*(const int *)ud)
        fprintf(stderr, "emdpo baseline: note: type_%d has no decisions; it is the SFT model\n", k + 1);
}

int cmd_baseline(int argc, char **argv) {
    emdpo_baseline_opts o;
    emdpo_baseline_opts_init(&o);
    emdpo_train_config *c = &o.train;
    const char *data = NULL, *model = NULL, *tokenizer = NULL, *out = NULL;
    int threads = 0, quiet = 0;
    cli_lora lora;
    cli_read rd;
    cli_read_init(&rd);
    cli_opt opts[] = {
        {"method", CLI_ENUM, &o.method, "NAME", "vanilla, cluster or truelabel", 1, 0, emdpo_baseline_method_name},
        {"data", CLI_STR, &data, "FILE", "preference JSONL with text responses (truelabel: with groups)", 1, 0, 0},
        {"model", CLI_STR, &model, "CKPT", "SFT model, the start of every policy and the reference", 1, 0, 0},
        CLI_TOKENIZER_FLAG(&tokenizer),
        {"out", CLI_STR, &out, "DIR", "output: baseline.json, type_1 .. type_K (cluster: clusters.csv)", 1, 0, 0},
        {"k", CLI_INT, &o.k, "K", "cluster: number of k-means clusters", 0, 0, 0},
        {"beta", CLI_DBL, &c->loss.beta, "X", "DPO temperature", 0, 0, 0},
        CLI_RPO_FLAG(&c->loss.rpo_alpha),
        CLI_GRAD_CKPT_FLAG(&c->grad_checkpoint),
        {"steps", CLI_I64, &o.steps, "N", "optimizer steps per policy (default: one epoch of its decisions)", 0, 0, 0},
        {"lr", CLI_DBL, &c->optim.lr, "X", "learning rate", 0, 0, 0},
        {"optimizer", CLI_ENUM, &c->optim.kind, "NAME", "rmsprop or adamw", 0, 0, emdpo_optim_name},
        {"warmup", CLI_I64, &c->optim.warmup, "N", "linear warmup steps", 0, 0, 0},
        {"clip", CLI_DBL, &c->optim.clip, "X", "max gradient norm, 0 = off", 0, 0, 0},
        {"batch", CLI_INT, &c->batch, "N", "decisions per micro-batch", 0, 0, 0},
        {"accum", CLI_INT, &c->accum, "N", "micro-batches per optimizer step", 0, 0, 0},
        CLI_LENGTH_FLAGS(&o.max_length, &o.max_prompt_length),
        {"score-batch", CLI_INT, &o.score_batch, "N", "cluster: sequences per embedding forward", 0, 0, 0},
        CLI_SAVE_DTYPE_FLAG(&o.save_dtype),
        {"seed", CLI_U64, &c->seed, "S", "k-means and shuffling seed; policy k shuffles (and starts its adapter) "
                                         "with seed + k - 1", 0, 0, 0},
        {0}, {0}, {0}, {0}, {0}, /* the LoRA flags */
        CLI_READ_FLAG_LIST(&rd),
        CLI_THREADS_FLAG(&threads),
        {"quiet", CLI_FLAG, &quiet, NULL, "print nothing but errors", 0, 0, 0},
    };
    int li = 0;
    while (opts[li].name) li++;
    cli_lora_flags(&opts[li], &lora);
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
                   "decisions (an empty cluster) is saved as the SFT model.\n"
                   "With --lora-r (PEFT's LoRA) each policy is an adapter on the frozen --model, which is also\n"
                   "the reference: type_k holds adapter_config.json and adapter_model.safetensors (as emdpo dpo\n"
                   "--lora-r writes them; an empty cluster's is a fresh adapter, the SFT model), and\n"
                   "baseline.json records the adapters' shape under \"lora\".",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = cli_lora_finish("baseline", &lora, &o.lora))) return rc;
    emdpo_set_threads(threads);
    if ((rc = cli_read_finish(&rd, tokenizer))) return rc;

    emdpo_llama *sft = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    emdpo_diag diag;
    int K = 0;
    /* adapters leave the SFT model frozen: 16 bits stay 16 bits */
    if ((rc = (o.lora.r ? emdpo_llama_load_frozen : emdpo_llama_load)(model, &sft, &diag)) ||
        (rc = emdpo_tokenizer_load(tokenizer, emdpo_llama_vocab_size(sft), &tok, &diag)) ||
        (rc = emdpo_lm_data_read(data, &rd.o, sft, tok, o.max_length, &d, &diag)) ||
        (rc = emdpo_baseline_run(sft, tok, d, &o, out, note_empty, &quiet, &K, &diag)))
        rc = cli_fail("baseline", rc, &diag, &cmd);
    else if (!quiet)
        printf("baseline %s: wrote %s/baseline.json and %s/type_1 .. type_%d\n", emdpo_baseline_method_name(o.method),
               out, out, K);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(sft);
    cli_read_free(&rd);
    return rc;
}
