/* Reading Hugging Face tokenizer.json files into hf_tok.h's pipeline. */
#ifndef EMDPO_HF_TOK_JSON_H
#define EMDPO_HF_TOK_JSON_H

#include <stddef.h>

#include "lm/io/hf_tok.h"

/* Parses text[0..len) (name goes into diag->file). EMDPO_ERR_PARSE (diag:
 * the field and what is wrong), EMDPO_ERR_UNSUPPORTED (diag: a model,
 * normalizer, pre-tokenizer, post-processor or decoder type this reader
 * does not implement), EMDPO_ERR_NOMEM. */
int emdpo_hf_tok_from_json(const char *text, size_t len, const char *name, emdpo_hf_tok **out, emdpo_diag *diag);

#endif
