/* emdpo chat-template: render conversations with a model's chat template,
 * as transformers.js (@huggingface/jinja) renders them. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_chat_template(int argc, char **argv) {
    const char *path = NULL, *bos = NULL, *eos = NULL;
    int agp = 0;
    cli_opt opts[] = {
        {"template", CLI_STR, &path, "PATH", "a .jinja file, or a tokenizer_config.json (its chat_template)", 1, 0, 0},
        {"bos-token", CLI_STR, &bos, "S", "bos_token (default: the tokenizer_config.json's; \"\" for none)", 0, 0, 0},
        {"eos-token", CLI_STR, &eos, "S", "eos_token (default: the tokenizer_config.json's; \"\" for none)", 0, 0, 0},
        {"add-generation-prompt", CLI_FLAG, &agp, NULL, "end with the prompt for the assistant's reply", 0, 0, 0},
    };
    cli_cmd cmd = {"chat-template", "Render conversations with a chat template (Jinja), as transformers.js does.",
                   "Reads standard input: one conversation per line, a JSON array of {\"role\", \"content\"}\n"
                   "objects. Writes one line per conversation: the rendered text as a JSON string.\n"
                   "The template sees messages, bos_token, eos_token, add_generation_prompt and\n"
                   "raise_exception. A token that is neither given nor in the tokenizer_config.json is\n"
                   "undefined in the template. A raise_exception in the template, a line that is not\n"
                   "a conversation or a template construct outside the supported Jinja subset ends\n"
                   "the run with exit code 2, naming the input line.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    emdpo_chat_template *t = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_chat_template_load(path, &t, &diag))) return cli_fail("chat-template", rc, &diag, &cmd);
    if (!cli_seen(&cmd, "bos-token")) bos = emdpo_chat_template_bos_token(t);
    if (!cli_seen(&cmd, "eos-token")) eos = emdpo_chat_template_eos_token(t);
    rc = emdpo_chat_template_render_jsonl(t, stdin, "stdin", stdout, bos, eos, agp, &diag);
    if (!rc && fflush(stdout) != 0) {
        rc = EMDPO_ERR_IO;
        snprintf(diag.msg, sizeof diag.msg, "cannot write the output");
        diag.file[0] = 0;
    }
    emdpo_chat_template_free(t);
    return rc ? cli_fail("chat-template", rc, &diag, &cmd) : 0;
}
