/* Chat templates (the public API is in emdpo/data.h): a Jinja template
 * (jinja.h) read from a .jinja file or from a tokenizer_config.json's
 * chat_template, with that file's bos_token and eos_token, rendered over
 * a conversation as transformers.js renders it. */
#ifndef EMDPO_DATA_CHAT_TEMPLATE_H
#define EMDPO_DATA_CHAT_TEMPLATE_H

#include "emdpo.h"

#endif
