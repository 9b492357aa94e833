/* emdpo convert: a checkpoint in another format (GGUF for llama.cpp and
 * ollama, a Hugging Face directory). */
#include <string.h>

#include "cli.h"

int cmd_convert(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *out = NULL, *dtype = NULL;
    int save_dtype = EMDPO_DTYPE_AUTO;
    cli_opt opts[] = {
        {"model", CLI_STR, &model, "CKPT", "a Hugging Face directory, a GGUF file or a llama2.c .bin", 1, 0, 0},
        {"tokenizer", CLI_STR, &tokenizer, "PATH",
         "GGUF output: the vocabulary to embed, a tokenizer.json (or its Hugging Face directory), a GGUF file or a "
         "llama2.c tokenizer.bin (default: the model's own GGUF file); Hugging Face output: the tokenizer whose "
         "files and BOS/EOS ids are written beside the weights (default: none)",
         0, 0, 0},
        {"out", CLI_STR, &out, "PATH", "a file ending in .gguf writes GGUF; anything else a Hugging Face directory", 1,
         0, 0},
        {"dtype", CLI_STR, &dtype, "T", "GGUF output: f32, f16 (default), bf16 or q8_0 matrices (norms stay f32)", 0, 0,
         0},
        CLI_SAVE_DTYPE_FLAG(&save_dtype),
    };
    cli_cmd cmd = {"convert", "Write a checkpoint in another format.",
                   "GGUF output (OUT ending in .gguf) runs in llama.cpp and ollama: architecture llama,\n"
                   "qwen2 or qwen3 with the tokenizer's metadata (a GGUF vocabulary copied as it is, a\n"
                   "byte-level BPE tokenizer.json as llama.cpp's gpt2 vocabulary, a llama2.c tokenizer.bin\n"
                   "as its llama one). Other output is a Hugging Face directory (config.json,\n"
                   "generation_config.json, model.safetensors in --save-dtype, the tokenizer's files).\n"
                   "emdpo fit writes one checkpoint per type: convert each.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    size_t n = strlen(out);
    int gguf = n > 5 && strcmp(out + n - 5, ".gguf") == 0;
    if (!gguf && dtype)
        return cli_usage_error("convert", "--dtype is for GGUF output (an --out ending in .gguf); a Hugging Face "
                                          "directory takes --save-dtype");
    if (gguf && save_dtype != EMDPO_DTYPE_AUTO)
        return cli_usage_error("convert", "--save-dtype is for a Hugging Face directory; GGUF output takes --dtype");
    emdpo_llama *m = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_llama_load(model, &m, &diag)) ||
        (!gguf && tokenizer && (rc = emdpo_tokenizer_load(tokenizer, emdpo_llama_vocab_size(m), &tok, &diag)))) {
        emdpo_llama_free(m);
        return cli_fail("convert", rc, &diag, &cmd);
    }
    emdpo_llama_save_opts so = {(emdpo_dtype)save_dtype, tok};
    rc = gguf ? emdpo_llama_save_gguf(m, tokenizer, out, dtype, &diag) : emdpo_llama_save_with(m, out, &so, &diag);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(m);
    return rc ? cli_fail("convert", rc, &diag, &cmd) : 0;
}
