/* emdpo tokenize: a tokenizer as a filter, JSON lines in and out; the
 * interface every parity check against Hugging Face tokenizers uses. */
#include <stdio.h>

#include "cli.h"

int cmd_tokenize(int argc, char **argv) {
    const char *tokenizer = NULL;
    int special = 0, decode = 0, threads = 0;
    cli_opt opts[] = {
        {"tokenizer", CLI_STR, &tokenizer, "PATH", "a tokenizer.json (or the model directory holding it), a GGUF "
                                                   "file or a llama2.c tokenizer.bin", 1, 0, 0},
        {"special", CLI_FLAG, &special, NULL, "add the tokenizer's special tokens (Hugging Face's "
                                              "add_special_tokens=True); without it, add_special_tokens=False", 0, 0, 0},
        {"decode", CLI_FLAG, &decode, NULL, "read arrays of ids and write the decoded strings", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
    };
    cli_cmd cmd = {"tokenize", "Encode or decode JSON lines from standard input with a tokenizer.",
                   "Reads standard input, one JSON value per line, and writes one JSON value per line:\n"
                   "a string becomes its array of ids, as Hugging Face tokenizers'\n"
                   "encode(text, add_special_tokens=...) gives them (special tokens written in the text\n"
                   "are matched as tokens, as there); with --decode an array of ids becomes the decoded\n"
                   "string, as decode(ids, skip_special_tokens=False). Lines run in parallel and come\n"
                   "out in input order. A bad line (not JSON, not a string / array of ids, an id out of\n"
                   "range, text that is not UTF-8) ends the run with exit status 2 and its line number;\n"
                   "the lines before it have been written.\n"
                   "Example: echo '\"Hello world\"' | emdpo tokenize --tokenizer DIR/tokenizer.json",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    emdpo_set_threads(threads);
    emdpo_tokenizer *tok = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_tokenizer_load(tokenizer, 0, &tok, &diag))) return cli_fail("tokenize", rc, &diag, &cmd);
    rc = emdpo_tokenize_stream(tok, stdin, stdout, special ? EMDPO_TOK_SPECIAL : 0u, decode, &diag);
    emdpo_tokenizer_free(tok);
    return rc ? cli_fail("tokenize", rc, &diag, &cmd) : 0;
}
