/* The special token ids of llama2.c vocabularies: what sequences start
 * with, and what generation stops at. The tokenizers (lm/io) reserve them;
 * the engine needs only these ids, not the tokenizer. */
#ifndef EMDPO_TOKENS_H
#define EMDPO_TOKENS_H

#define EMDPO_TOK_UNK 0
#define EMDPO_TOK_BOS 1
#define EMDPO_TOK_EOS 2

#endif
