/* TRL's preference records beyond plain prompt/response strings, turned
 * into one prompt text and one completion text per response, as TRL's
 * maybe_extract_prompt and maybe_apply_chat_template do:
 * - the implicit prompt: no "prompt" (or one of the other kind than the
 *   responses), and the responses share a beginning, which becomes the
 *   prompt (extract_prompt: messages for conversations, characters for
 *   strings, backing off one character at a space);
 * - conversations: prompt and responses as lists of {"role", "content"}
 *   messages, rendered with the model's chat template. The prompt is
 *   rendered with the generation prompt when it ends with a user turn (or
 *   continuing its final assistant message), each response as the text
 *   that prompt + response adds after the prompt's rendering (the prompt
 *   cut to what it shares with prompt + chosen, TRL's guard against
 *   templates such as DeepSeek-R1's).
 * Used by the JSONL reader (read_jsonl.c). */
#ifndef EMDPO_CHAT_RECORDS_H
#define EMDPO_CHAT_RECORDS_H

#include <stddef.h>

#include "base/json.h"
#include "emdpo.h"

/* The template a file's records are rendered with, loaded when the first
 * conversation needs it. */
typedef struct emdpo_chat_ctx {
    const char *template_path;  /* .jinja or tokenizer_config.json; NULL: conversations are refused */
    const char *special_tokens; /* a tokenizer_config.json for bos_token / eos_token; NULL: the template's */
    emdpo_chat_template *t;
    char *bos, *eos; /* what the template sees (NULL: undefined) */
    int loaded;
} emdpo_chat_ctx;

void emdpo_chat_ctx_free(emdpo_chat_ctx *c);

/* 1 when v is a non-empty list of objects that have a "role". */
int emdpo_chat_is_messages(const emdpo_json *v);

/* The texts of a record whose prompt (NULL when absent) and responses
 * items[0..n) (the chosen one first) are TRL's: *done is 0, and nothing
 * allocated, for a record of explicit string prompt and responses (or
 * responses with features), which the reader takes as they are. Otherwise
 * *prompt_out and texts[0..n) are new strings (free with
 * emdpo_chat_texts_free). EMDPO_ERR_PARSE with diag at line: a message
 * that is not {role, content}, no template, a template error or
 * raise_exception, no shared prompt. */
int emdpo_chat_record(emdpo_chat_ctx *c, const emdpo_json *prompt, const emdpo_json *const *items, size_t n,
                      long line, int *done, char **prompt_out, char **texts, emdpo_diag *diag);
void emdpo_chat_texts_free(char *prompt, char **texts, size_t n);

#endif
