/* emdpo score: sequence log-probabilities of responses under a checkpoint
 * or a mixture, and log-ratios against a reference, as CSV. */
#include "cli.h"

int cmd_score(int argc, char **argv) {
    emdpo_score_opts o;
    emdpo_score_opts_init(&o);
    const char *out = NULL;
    int threads = 0;
    cli_read rd;
    cli_read_init(&rd);
    cli_opt opts[] = {
        {"model", CLI_STR, &o.model, "CKPT", "policy: a llama2.c .bin, a Hugging Face directory or a mixture.json", 1,
         0, 0},
        {"adapter", CLI_STR, &o.adapter, "DIR", "a PEFT LoRA adapter directory to run on --model", 0, 0, 0},
        {"ref", CLI_STR, &o.ref, "CKPT", "reference model: adds ref_logp and logratio columns", 0, 0, 0},
        CLI_TOKENIZER_FLAG(&o.tokenizer),
        {"data", CLI_STR, &o.data, "FILE", "JSONL: preference data (prompt/chosen/rejected or ranking) or "
                                           "{\"prompt\",\"response\"} / {\"text\"} lines", 1, 0, 0},
        {"out", CLI_STR, &out, "FILE", "write the CSV here (atomically) instead of standard output", 0, 0, 0},
        CLI_LENGTH_FLAGS(&o.max_length, &o.max_prompt_length),
        {"batch", CLI_INT, &o.batch, "N", "sequences per forward pass", 0, 0, 0},
        CLI_READ_FLAG_LIST(&rd),
        CLI_THREADS_FLAG(&threads),
    };
    cli_cmd cmd = {"score", "Sequence log-probabilities of responses (and log-ratios against a reference).",
                   "Prints CSV: example,item,annotator,response_tokens,logp[,ref_logp,logratio], one row per\n"
                   "response in file order within each decision (preference data: decisions grouped by\n"
                   "annotator as the dataset stores them; item 1 is the chosen one). logp sums the\n"
                   "log-probabilities of the response tokens and the EOS after them, given BOS + prompt.\n"
                   "Too-long sequences are truncated like the DPO reference implementation: the prompt\n"
                   "keeps BOS and its last tokens, then the response keeps its first.\n"
                   "For a mixture.json (emdpo aggregate's), logp is the mixture's: log sum_k w_k pi_k(y|x)\n"
                   "over its members, computed as a log-sum-exp of the members' logp.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    emdpo_set_threads(threads);
    if ((rc = cli_read_finish(&rd, o.tokenizer))) return rc;
    o.read = &rd.o;

    emdpo_scores *s = NULL;
    emdpo_diag diag;
    rc = emdpo_score_run(&o, &s, &diag);
    cli_read_free(&rd);
    if (rc) return cli_fail("score", rc, &diag, &cmd);
    if (emdpo_scores_n_truncated(s))
        fprintf(stderr, "emdpo score: note: %lld of %lld sequences were truncated to %d tokens\n",
                (long long)emdpo_scores_n_truncated(s), (long long)emdpo_scores_n_sequences(s),
                emdpo_scores_max_length(s));
    if (out) {
        if ((rc = emdpo_scores_save(s, out, &diag))) rc = cli_fail("score", rc, &diag, &cmd);
    } else if (emdpo_scores_write(s, stdout) || fflush(stdout)) {
        rc = cli_usage_error("score", "cannot write standard output");
    }
    emdpo_scores_free(s);
    return rc;
}
