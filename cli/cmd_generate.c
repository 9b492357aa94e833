/* emdpo generate: sample text from a Llama checkpoint or a mixture of
 * checkpoints. */
#include "cli.h"

int cmd_generate(int argc, char **argv) {
    emdpo_sample_opts o;
    emdpo_sample_opts_init(&o);
    const char *model = NULL, *tokenizer = NULL, *prompt = NULL;
    int threads = 0;
    cli_opt opts[] = {
        {"model", CLI_STR, &model, "CKPT", "a Hugging Face directory, a GGUF file, a llama2.c .bin or a mixture.json",
         1, 0, 0},
        {"tokenizer", CLI_STR, &tokenizer, "PATH",
         "the model's tokenizer: a tokenizer.json (or the Hugging Face directory holding it), a GGUF file or a "
         "llama2.c tokenizer.bin (default: the model's own, for a GGUF file or a directory with tokenizer.json)",
         0, 0, 0},
        {"adapter", CLI_STR, &o.adapter, "DIR", "a PEFT LoRA adapter directory, merged into --model first", 0, 0, 0},
        {"prompt", CLI_STR, &prompt, "TEXT", "text to continue (default: none, start from BOS)", 0, 0, 0},
        {"temperature", CLI_DBL, &o.temperature, "X", "softmax temperature; 0 is greedy decoding", 0, 0, 0},
        {"top-k", CLI_INT, &o.top_k, "K", "sample among the K most probable tokens; 0 is all", 0, 0, 0},
        {"top-p", CLI_DBL, &o.top_p, "P", "nucleus: the smallest most-probable set of mass >= P, in (0, 1]", 0, 0, 0},
        {"max-tokens", CLI_INT, &o.max_tokens, "N", "tokens to generate at most", 0, 0, 0},
        {"n", CLI_INT, &o.n, "N", "independent samples, decoded together", 0, 0, 0},
        {"seed", CLI_U64, &o.seed, "S", "random seed; sample i draws from stream i of the seed", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
    };
    cli_cmd cmd = {"generate", "Sample text from a Llama checkpoint or a mixture of checkpoints.",
                   "Prints the prompt exactly as given, then its decoded continuation (no BOS or EOS\n"
                   "text); with --n > 1 each sample follows a\n"
                   "'--- sample I ---' line. Generation stops at the end-of-text token, after\n"
                   "--max-tokens tokens, or when the model's context is full. The prompt is tokenized\n"
                   "as Hugging Face's encode(prompt, add_special_tokens=True) does for a tokenizer.json\n"
                   "and as llama.cpp does for a GGUF vocabulary (BOS when its metadata asks for it).\n"
                   "A mixture.json (emdpo aggregate's {kind, weights, members, ...}) is the policy that\n"
                   "draws a member k ~ weights, then samples from member k: sample I draws its member\n"
                   "from stream I of the seed, so samples may come from different members, and every\n"
                   "sample follows a '--- sample I (member PATH) ---' line naming its member as the\n"
                   "file writes it. Members must share one vocabulary and context length.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    emdpo_set_threads(threads);

    emdpo_generation *g = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_generate_text(model, tokenizer, prompt, &o, &g, &diag))) return cli_fail("generate", rc, &diag, &cmd);
    int n = emdpo_generation_n(g), mixture = emdpo_generation_is_mixture(g);
    for (int i = 0; i < n; i++) {
        if (mixture) printf("--- sample %d (member %s) ---\n", i + 1, emdpo_generation_member(g, i));
        else if (n > 1) printf("--- sample %d ---\n", i + 1);
        size_t len;
        const char *text = emdpo_generation_text(g, i, &len);
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
    }
    emdpo_generation_free(g);
    if (fflush(stdout)) return cli_usage_error("generate", "cannot write standard output");
    return 0;
}
