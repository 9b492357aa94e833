/* A LoRA adapter merged into its base and saved as a full checkpoint in the
 * base's own format (emdpo merge, and the training commands' --merge). */
#ifndef EMDPO_MERGE_H
#define EMDPO_MERGE_H

#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"

/* W += s B A in m (changed in place), then m written to out in the format
 * it was loaded from (emdpo_llama_source): a Hugging Face directory for a
 * directory or a model made in memory, a GGUF file for a GGUF file, a
 * llama2.c checkpoint for another file. tokenizer: Hugging Face output:
 * whose files and BOS/EOS ids go beside the weights (NULL: the source
 * directory's tokenizer.json, when it has one); GGUF output: the
 * vocabulary (NULL: the source's). dtype AUTO: the dtype m was stored in;
 * a llama2.c checkpoint holds F32 only (EMDPO_ERR_INVALID_ARG otherwise).
 * The errors of emdpo_lora_adapter_merge and of the savers. */
int emdpo_merge_save(emdpo_llama *m, const emdpo_lora *lo, const char *out, emdpo_dtype dtype, const char *tokenizer,
                     emdpo_diag *diag);

#endif
