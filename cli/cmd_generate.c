/* emdpo generate: sample text from a Llama checkpoint or a mixture of
 * checkpoints (lm_mixture.h). */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "cli.h"
#include "cli_lm.h"
#include "lm/engine/lm_sample.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_mixture.h"

typedef struct gen_args {
    const char *model, *tokenizer, *prompt;
    double temperature, top_p;
    int top_k, max_tokens, n, threads;
    uint64_t seed;
} gen_args;

/* Decodes prompt + generated ids and prints them; a byte string may hold
 * NUL, so it is written by length. */
static int print_text(const emdpo_tokenizer *tok, const int *ids, size_t n) {
    size_t len;
    int rc = emdpo_tokenizer_decode(tok, ids, n, NULL, 0, &len);
    if (rc && rc != EMDPO_ERR_LIMIT) return rc;
    char *s = emdpo_malloc(len + 1);
    if (!s) return EMDPO_ERR_NOMEM;
    rc = emdpo_tokenizer_decode(tok, ids, n, s, len + 1, &len);
    if (!rc) {
        fwrite(s, 1, len, stdout);
        fputc('\n', stdout);
    }
    emdpo_free(s, len + 1);
    return rc;
}

/* m is the checkpoint, or a mixture's first member when mix is given. */
static int run(const gen_args *a, const emdpo_llama *m, const emdpo_lm_mixture *mix, const emdpo_tokenizer *tok) {
    const char *text = a->prompt ? a->prompt : "";
    size_t cap = emdpo_tokenizer_encode_bound(strlen(text)), n_prompt;
    int max_T = m->config.max_seq_len, rc;
    int *prompt = emdpo_malloc(cap * sizeof(int));
    if (!prompt) return cli_fail("generate", EMDPO_ERR_NOMEM, NULL, "out of memory");
    rc = emdpo_tokenizer_encode(tok, text, strlen(text), EMDPO_TOK_ADD_BOS, prompt, cap, &n_prompt);
    if (rc) {
        emdpo_free(prompt, cap * sizeof(int));
        return cli_fail("generate", rc, NULL, "cannot encode the prompt");
    }
    if (n_prompt > (size_t)max_T) {
        emdpo_free(prompt, cap * sizeof(int));
        return cli_usage_error("generate", "the prompt is %zu tokens; the model's context is %d", n_prompt, max_T);
    }
    /* The cache needs room for the prompt and the new tokens, no more. */
    if ((long long)n_prompt + a->max_tokens < max_T) max_T = (int)n_prompt + a->max_tokens;
    emdpo_sampler *s = NULL;
    rc = emdpo_sampler_create(m->config.vocab_size, (float)a->temperature, a->top_k, (float)a->top_p, &s);
    size_t n = (size_t)a->n, per = (size_t)a->max_tokens, seqlen = n_prompt + per, n_gen = n * per + 1;
    const int **prompts = emdpo_malloc(n * sizeof *prompts);
    int *plen = emdpo_malloc(n * sizeof(int)), *n_out = emdpo_malloc(n * sizeof(int));
    int *gen = emdpo_malloc(n_gen * sizeof(int)), *seq = emdpo_malloc(seqlen * sizeof(int));
    int *member = mix ? emdpo_malloc(n * sizeof(int)) : NULL;
    if (!rc && (!prompts || !plen || !n_out || !gen || !seq || (mix && !member))) rc = EMDPO_ERR_NOMEM;
    if (!rc) {
        for (size_t i = 0; i < n; i++) {
            prompts[i] = prompt;
            plen[i] = (int)n_prompt;
        }
        if (mix)
            rc = emdpo_lm_mixture_generate((const emdpo_llama *const *)mix->model, mix->K, mix->w, s, a->seed,
                                           prompts, plen, a->n, a->max_tokens, max_T, member, gen, n_out, NULL);
        else
            rc = emdpo_generate_batch(m, s, a->seed, prompts, plen, a->n, a->max_tokens, max_T, gen, n_out, NULL);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        if (mix) printf("--- sample %zu (member %s) ---\n", i + 1, mix->member[member[i]]);
        else if (n > 1) printf("--- sample %zu ---\n", i + 1);
        memcpy(seq, prompt, n_prompt * sizeof(int));
        memcpy(seq + n_prompt, gen + i * per, (size_t)n_out[i] * sizeof(int));
        rc = print_text(tok, seq, n_prompt + (size_t)n_out[i]);
    }
    emdpo_free(member, mix ? n * sizeof(int) : 0);
    emdpo_free(seq, seqlen * sizeof(int));
    emdpo_free(gen, n_gen * sizeof(int));
    emdpo_free(n_out, n * sizeof(int));
    emdpo_free(plen, n * sizeof(int));
    emdpo_free(prompts, n * sizeof *prompts);
    emdpo_sampler_free(s);
    emdpo_free(prompt, cap * sizeof(int));
    return rc ? cli_fail("generate", rc, NULL, "generation failed") : 0;
}

int cmd_generate(int argc, char **argv) {
    gen_args a = {0};
    a.temperature = 1.0;
    a.top_p = 1.0;
    a.max_tokens = 256;
    a.n = 1;
    a.seed = 1;
    cli_opt opts[] = {
        {"model", CLI_STR, &a.model, "CKPT", "a llama2.c .bin, a Hugging Face directory or a mixture.json", 1, 0},
        {"tokenizer", CLI_STR, &a.tokenizer, "FILE", "llama2.c tokenizer.bin for the model's vocabulary", 1, 0},
        {"prompt", CLI_STR, &a.prompt, "TEXT", "text to continue (default: none, start from BOS)", 0, 0},
        {"temperature", CLI_DBL, &a.temperature, "X", "softmax temperature; 0 is greedy decoding (1)", 0, 0},
        {"top-k", CLI_INT, &a.top_k, "K", "sample among the K most probable tokens; 0 is all (0)", 0, 0},
        {"top-p", CLI_DBL, &a.top_p, "P", "nucleus: the smallest most-probable set of mass >= P, in (0, 1] (1)", 0, 0},
        {"max-tokens", CLI_INT, &a.max_tokens, "N", "tokens to generate at most (256)", 0, 0},
        {"n", CLI_INT, &a.n, "N", "independent samples, decoded together (1)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "random seed (1); sample i draws from stream i of the seed", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
    };
    cli_cmd cmd = {"generate", "Sample text from a Llama checkpoint or a mixture of checkpoints.",
                   "Prints the prompt and its continuation; with --n > 1 each sample follows a\n"
                   "'--- sample I ---' line. Generation stops at the end-of-text token, after\n"
                   "--max-tokens tokens, or when the model's context is full.\n"
                   "A mixture.json (emdpo aggregate's {kind, weights, members, ...}) is the policy that\n"
                   "draws a member k ~ weights, then samples from member k: sample I draws its member\n"
                   "from stream I of the seed, so samples may come from different members, and every\n"
                   "sample follows a '--- sample I (member PATH) ---' line naming its member as the\n"
                   "file writes it. Members must share one vocabulary and context length.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!(a.temperature >= 0) || !isfinite(a.temperature))
        return cli_usage_error("generate", "--temperature must be a finite number >= 0");
    if (a.top_k < 0) return cli_usage_error("generate", "--top-k must be >= 0");
    if (!(a.top_p > 0 && a.top_p <= 1)) return cli_usage_error("generate", "--top-p must be in (0, 1]");
    if (a.max_tokens < 0) return cli_usage_error("generate", "--max-tokens must be >= 0");
    if (a.n < 1 || a.n > 1000000) return cli_usage_error("generate", "--n must be in 1..1000000");
    cli_set_threads(a.threads);

    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    emdpo_llama *m = NULL;
    emdpo_lm_mixture *mix = NULL;
    if (emdpo_lm_mixture_is_file(a.model)) {
        if ((rc = emdpo_lm_mixture_open(a.model, &mix, &diag)))
            return cli_fail("generate", rc, &diag, "cannot load the mixture");
    } else if ((rc = cli_lm_model("generate", a.model, NULL, 0, &m))) {
        return rc;
    }
    const emdpo_llama *m0 = mix ? mix->model[0] : m;
    int V = m0->config.vocab_size;
    emdpo_tokenizer *tok = NULL;
    if (a.top_k > V)
        rc = cli_usage_error("generate", "--top-k must be at most the vocabulary size %d", V);
    else if (!(rc = cli_lm_tokenizer("generate", a.tokenizer, V, &tok)))
        rc = run(&a, m0, mix, tok);
    emdpo_tokenizer_free(tok);
    emdpo_lm_mixture_free(mix);
    emdpo_llama_free(m);
    return rc;
}
