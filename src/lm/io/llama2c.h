/* llama2.c "legacy" (version 0) checkpoints: a header of 7 little-endian
 * int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len; a negative vocab_size means a separate output head), the float32
 * tensors in emdpo_llama_params order up to rms_final, the RoPE tables
 * freq_cis_real and freq_cis_imag (seq_len, hs/2) each, then the output head
 * when it is separate. The format carries neither the RMSNorm epsilon nor
 * the RoPE base: they are llama2.c's 1e-5 and 10000. */
#ifndef EMDPO_LLAMA2C_H
#define EMDPO_LLAMA2C_H

#include "emdpo.h"
#include "lm/engine/llama.h"

/* Loads path strictly: the header must pass emdpo_llama_config_check, the
 * file must hold exactly the bytes the header implies, and every weight must
 * be finite (the RoPE tables are skipped: they are recomputed). Returns 0,
 * EMDPO_ERR_IO, EMDPO_ERR_PARSE (diag says why: header values, expected vs
 * actual bytes, the first non-finite weight) or EMDPO_ERR_NOMEM. diag may be
 * NULL. */
int emdpo_llama2c_load(const char *path, emdpo_llama **out, emdpo_diag *diag);

/* Writes m in the same format, atomically (a failed save leaves any earlier
 * file intact). EMDPO_ERR_UNSUPPORTED when m's epsilon or RoPE base differ
 * from the format's fixed ones; EMDPO_ERR_IO or EMDPO_ERR_NOMEM. */
int emdpo_llama2c_save(const emdpo_llama *m, const char *path, emdpo_diag *diag);

#endif
