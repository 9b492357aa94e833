/* Scores responses with a Llama checkpoint, through the public API only:
 * the log-probability of every response of a JSONL file (preference data
 * or {"prompt", "response"} lines) under the model, one line each.
 *
 *   score_llama MODEL TOKENIZER DATA.jsonl
 *
 * MODEL is a Hugging Face directory (config.json + model.safetensors) or a
 * llama2.c checkpoint; TOKENIZER the llama2.c tokenizer.bin of its
 * vocabulary.
 *
 *   cc score_llama.c $(pkg-config --cflags --libs emdpo) -o score_llama
 */
#include <stdio.h>
#include <stdlib.h>

#include <emdpo.h>

static int fail(const char *what, int rc, const emdpo_diag *diag) {
    fprintf(stderr, "%s: %s", what, emdpo_status_name(rc));
    if (diag && diag->msg[0]) fprintf(stderr, ": %s%s%s", diag->file, diag->file[0] ? ": " : "", diag->msg);
    fputc('\n', stderr);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL TOKENIZER DATA.jsonl\n", argv[0]);
        return 2;
    }
    emdpo_llama *m = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_lm_set *set = NULL;
    emdpo_diag diag;
    int rc, max_length = 0, max_prompt_length = 0;
    if ((rc = emdpo_llama_load(argv[1], &m, &diag))) return fail("model", rc, &diag);
    if ((rc = emdpo_tokenizer_load(argv[2], emdpo_llama_vocab_size(m), &tok, &diag))) return fail("tokenizer", rc, &diag);
    if ((rc = emdpo_lm_lengths(m, &max_length, &max_prompt_length, &diag))) return fail("lengths", rc, &diag);
    if ((rc = emdpo_lm_set_read(argv[3], tok, max_length, max_prompt_length, 0, &set, NULL, &diag)))
        return fail("data", rc, &diag);
    int64_t n = emdpo_lm_set_n_sequences(set);
    double *logp = malloc((size_t)(n ? n : 1) * sizeof *logp);
    if (!logp) return fail("scores", EMDPO_ERR_NOMEM, NULL);
    if ((rc = emdpo_lm_score(m, set, 8, logp))) return fail("score", rc, NULL);
    printf("%lld sequences, %lld cut to %d tokens, under a model of %zu parameters\n", (long long)n,
           (long long)emdpo_lm_set_n_truncated(set), max_length, emdpo_llama_n_params(m));
    for (int64_t g = 0; g < emdpo_lm_set_n_groups(set); g++) {
        int64_t first;
        int count = emdpo_lm_set_group(set, g, &first);
        for (int i = 0; i < count; i++)
            printf("example %lld item %d: %d tokens, logp %.6f\n", (long long)g + 1, i + 1,
                   emdpo_lm_set_response_tokens(set, first + i), logp[first + i]);
    }
    free(logp);
    emdpo_lm_set_free(set);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(m);
    return 0;
}
