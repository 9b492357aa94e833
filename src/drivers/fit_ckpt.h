/* Resumable EM-DPO on Llama policies (emdpo_lm_fit's checkpoint, resume
 * and log options).
 *
 * The checkpoint directory holds fit_state.bin and the parameter files
 * type_K.N.bin it names. After each type's training in an M-step (the
 * types train one after another), the type's new parameters go to a new
 * file type_K.N.bin (N counts the files written), then fit_state.bin is
 * replaced atomically, then the files it no longer names are removed. So
 * the state always names complete files, and a kill loses at most the
 * training of one type.
 *
 * fit_state.bin (little-endian): "EMDPOFIT", uint32 version, int32 K,
 * uint64 fingerprint of the data, the SFT model and every setting that
 * changes the result (a resume with others is refused), int64 the policy's
 * M-step count and forwards, int64 the log's length in bytes, int32 the
 * types of the running M-step already trained, int32 the best iterate's
 * start and E-step as last seen, uint64 next file number, uint64 cur[K]
 * and best[K] (each type's file for the running start and for the best
 * iterate; 0: the type's initial parameters, the SFT model's or the seeded
 * adapter), then EM's state (core/em.h: emdpo_em_image_write, as the
 * running M-step began, with the trained types' annot_logp columns), then
 * the crc32 (zlib's) of every byte before it.
 *
 * type_K.N.bin: "EMDPOPAR", uint64 the number of floats, the floats (a
 * full model's parameters or an adapter's), crc32 of every byte before.
 *
 * Resuming rebuilds the starting policy as a fresh fit does, loads the
 * running start's and the best iterate's types from their files, and
 * continues the M-step that was running, skipping the types it had
 * trained. */
#ifndef EMDPO_FIT_CKPT_H
#define EMDPO_FIT_CKPT_H

#include <stdint.h>
#include <stdio.h>

#include "core/em.h"
#include "emdpo.h"

typedef struct emdpo_fit_ckpt emdpo_fit_ckpt;

/* The checkpoint of a fit of pol (the starting policy; its hooks are set
 * here) on d with options o, in o->checkpoint when set; o->log opened
 * (truncated to the checkpoint's length when resuming). With o->resume
 * hooks is filled to continue from the checkpoint (emdpo_em_hooks' from,
 * cand, best). fingerprint: of the data, model and settings. */
int emdpo_fit_ckpt_open(const emdpo_lm_fit_opts *o, emdpo_policy *pol, const emdpo_data *d, uint64_t fingerprint,
                        emdpo_fit_ckpt **out, emdpo_em_hooks *hooks, emdpo_diag *diag);
/* Closes the log and releases c: the first error a hook met or a write
 * error of the log (diag filled), 0 when none. */
int emdpo_fit_ckpt_close(emdpo_fit_ckpt *c, emdpo_diag *diag);

#endif
