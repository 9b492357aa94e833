"""Loading libemdpo.so.MAJOR and declaring the C functions the package calls.

The library is found, in this order, at the path in the ``EMDPO_LIBRARY``
environment variable, then through the dynamic loader's usual search
(``LD_LIBRARY_PATH``, the ldconfig cache, the system directories). Nothing
is compiled: the declarations below are ctypes' (ABI mode), so installing
the package needs neither a compiler nor the C headers.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int64, c_long,
                    c_size_t, c_uint, c_uint64, c_ubyte, c_void_p)
from typing import List

SOMAJOR = 0
SONAME = "libemdpo.so.%d" % SOMAJOR
MAX_K = 64


class LibraryNotFound(OSError):
    """libemdpo could not be loaded; the message lists every place tried."""


def _load() -> ctypes.CDLL:
    tried: List[str] = []
    env = os.environ.get("EMDPO_LIBRARY")
    if env:
        try:
            return ctypes.CDLL(env)
        except OSError as e:
            tried.append("EMDPO_LIBRARY=%s: %s" % (env, e))
    try:
        return ctypes.CDLL(SONAME)
    except OSError as e:
        tried.append("%s through the dynamic loader (LD_LIBRARY_PATH=%s, the ldconfig cache, system "
                     "directories): %s" % (SONAME, os.environ.get("LD_LIBRARY_PATH", ""), e))
    found = ctypes.util.find_library("emdpo")
    if found:
        try:
            return ctypes.CDLL(found)
        except OSError as e:
            tried.append("%s (ctypes.util.find_library): %s" % (found, e))
    else:
        tried.append("ctypes.util.find_library('emdpo'): nothing")
    raise LibraryNotFound("cannot load the emdpo C library. Tried:\n  " + "\n  ".join(tried) +
                          "\nBuild it (make) and set EMDPO_LIBRARY=/path/to/build/%s, or install it "
                          "(make install) where the dynamic loader looks." % SONAME)


lib = _load()


# Mirrors of the public headers' structs, field for field: each names its C
# type in _c_name_, and python/tests/test_struct_layout.py checks every field's
# name, offset and size and every struct's size against the C compiler's.
class Diag(Structure):
    _c_name_ = "emdpo_diag"
    _fields_ = [("file", c_char * 256), ("line", c_long), ("msg", c_char * 256)]


class ZerosumResult(Structure):
    _c_name_ = "emdpo_zerosum_result"
    _fields_ = [("value", c_double), ("upper", c_double), ("lower", c_double), ("gap", c_double),
                ("iterations", c_long)]


class HedgeOpts(Structure):
    _c_name_ = "emdpo_mmra_hedge_opts"
    _fields_ = [("max_iter", c_long), ("eta", c_double), ("rel_tol", c_double)]


class RegretsResult(Structure):
    _c_name_ = "emdpo_regrets_result"
    _fields_ = [("K", c_int), ("rows", c_int), ("solver", c_int), ("w", c_double * MAX_K),
                ("regret", c_double * MAX_K), ("game", ZerosumResult), ("hedge_capped", c_int),
                ("lp_w", c_double * MAX_K), ("lp", ZerosumResult)]


# emdpo_em_progress(ud, start, iter, loglik, eta, K)
EM_PROGRESS = CFUNCTYPE(None, c_void_p, c_int, c_int, c_double, POINTER(c_double), c_int)


class EmOpts(Structure):
    _c_name_ = "emdpo_em_opts"
    _fields_ = [("max_iter", c_int), ("tol", c_double), ("patience", c_int), ("starts", c_int), ("seed", c_uint64),
                ("init", c_int), ("summary", POINTER(c_double)), ("q", c_int), ("progress", EM_PROGRESS),
                ("progress_ud", c_void_p)]


class LoglinearOpts(Structure):
    _c_name_ = "emdpo_loglinear_opts"
    _fields_ = [("k", c_int), ("em", EmOpts), ("l2", c_double), ("beta", c_double)]


class ReadOpts(Structure):
    _c_name_ = "emdpo_read_opts"
    _fields_ = [("annotator_field", c_char_p), ("chat_template", c_char_p), ("special_tokens", c_char_p),
                ("csv_id", c_char_p), ("csv_task", c_char_p), ("csv_alt", c_char_p), ("csv_choice", c_char_p),
                ("require_text", c_int), ("share", c_int)]


class SampleOpts(Structure):
    _c_name_ = "emdpo_sample_opts"
    _fields_ = [("temperature", c_double), ("top_k", c_int), ("top_p", c_double), ("max_tokens", c_int), ("n", c_int),
                ("seed", c_uint64), ("stop_ids", POINTER(c_int)), ("n_stop", c_size_t), ("adapter", c_char_p)]


class LoraConfigC(Structure):
    _c_name_ = "emdpo_lora_config"
    _fields_ = [("r", c_int), ("alpha", c_float), ("dropout", c_float), ("rslora", c_int), ("targets", c_uint)]


class MergeOpts(Structure):
    _c_name_ = "emdpo_merge_opts"
    _fields_ = [("model", c_char_p), ("adapter", c_char_p), ("out", c_char_p), ("tokenizer", c_char_p),
                ("dtype", c_int)]


class OptimConfig(Structure):
    _c_name_ = "emdpo_optim_config"
    _fields_ = [("kind", c_int), ("lr", c_double), ("beta1", c_double), ("beta2", c_double), ("alpha", c_double),
                ("momentum", c_double), ("eps", c_double), ("weight_decay", c_double), ("warmup", c_int64),
                ("clip", c_double)]


class LossOpts(Structure):
    _c_name_ = "emdpo_loss_opts"
    _fields_ = [("kind", c_int), ("beta", c_double), ("label_smoothing", c_double), ("rpo_alpha", c_double)]


class TrainConfig(Structure):
    _c_name_ = "emdpo_train_config"
    _fields_ = [("mode", c_int), ("loss", LossOpts), ("optim", OptimConfig), ("batch", c_int), ("accum", c_int),
                ("seed", c_uint64), ("grad_checkpoint", c_int)]


class TrainMetrics(Structure):
    _c_name_ = "emdpo_train_metrics"
    _fields_ = [("step", c_int64), ("epoch", c_double), ("loss", c_double), ("grad_norm", c_double),
                ("learning_rate", c_double), ("rewards_chosen", c_double), ("rewards_rejected", c_double),
                ("rewards_margins", c_double), ("rewards_accuracies", c_double), ("examples", c_int64)]


# emdpo_train_progress(ud, metrics, total_steps, examples_per_s)
TRAIN_PROGRESS = CFUNCTYPE(None, c_void_p, POINTER(TrainMetrics), c_int64, c_double)


class TrainOpts(Structure):
    _c_name_ = "emdpo_train_opts"
    _fields_ = [("train", TrainConfig), ("data", c_char_p), ("read", POINTER(ReadOpts)), ("model", c_char_p),
                ("config_spec", c_char_p), ("tokenizer", c_char_p), ("out", c_char_p), ("ref", c_char_p),
                ("weights", c_char_p), ("weight_column", c_char_p), ("log", c_char_p), ("steps", c_int64),
                ("save_every", c_int64), ("resume", c_int), ("max_length", c_int), ("max_prompt_length", c_int),
                ("save_dtype", c_int), ("lora", LoraConfigC), ("merge", c_char_p), ("progress", TRAIN_PROGRESS),
                ("progress_ud", c_void_p)]


class LmMstepOpts(Structure):
    _c_name_ = "emdpo_lm_mstep_opts"
    _fields_ = [("beta", c_double), ("rpo_alpha", c_double), ("max_length", c_int), ("max_prompt_length", c_int),
                ("optim", OptimConfig), ("batch", c_int), ("accum", c_int), ("steps", c_int64), ("epochs", c_double),
                ("restart", c_int), ("weight_norm", c_int), ("score_batch", c_int), ("seed", c_uint64),
                ("lora", LoraConfigC), ("grad_checkpoint", c_int)]


class LmFitOpts(Structure):
    _c_name_ = "emdpo_lm_fit_opts"
    _fields_ = [("k", c_int), ("em", EmOpts), ("mstep", LmMstepOpts), ("save_dtype", c_int), ("checkpoint", c_char_p),
                ("resume", c_int), ("log", c_char_p)]


MIRRORS = [Diag, ZerosumResult, HedgeOpts, RegretsResult, EmOpts, LoglinearOpts, ReadOpts, SampleOpts, LoraConfigC,
           MergeOpts, OptimConfig, LossOpts, TrainConfig, TrainMetrics, TrainOpts, LmMstepOpts, LmFitOpts]


P = c_void_p
DP = POINTER(c_double)
I64P = POINTER(c_int64)
UBP = POINTER(c_ubyte)
DIAGP = POINTER(Diag)


def _decl(name: str, res, *args) -> None:
    f = getattr(lib, name)
    f.restype = res
    f.argtypes = list(args)


_SIGNATURES = [
    ("emdpo_version", c_char_p),
    ("emdpo_status_name", c_char_p, c_int),
    ("emdpo_set_threads", None, c_int),
    # em.h: EM-DPO around any trainer
    ("emdpo_estep", c_int, c_int, c_int64, DP, c_int64, I64P, UBP, I64P, c_int64, c_double, DP, DP, DP, DP, DIAGP),
    ("emdpo_estep_weights", c_int, c_int, c_int64, I64P, c_int64, DP, c_int, DP, DIAGP),
    ("emdpo_margin_criterion", c_int, c_int, c_int64, DP, I64P, c_int64, DP, DP, DIAGP),
    ("emdpo_margin_best", c_int, c_int, POINTER(c_int), DP),
    ("emdpo_logratios_read", c_int, c_char_p, c_int, POINTER(P), DIAGP),
    ("emdpo_logratios_free", None, P),
    ("emdpo_logratios_k", c_int, P),
    ("emdpo_logratios_n_decisions", c_int64, P),
    ("emdpo_logratios_n_items", c_int64, P),
    ("emdpo_logratios_n_annotators", c_int64, P),
    ("emdpo_logratios_values", DP, P),
    ("emdpo_logratios_offsets", I64P, P),
    ("emdpo_logratios_annotators", I64P, P),
    ("emdpo_logratios_ranking", UBP, P),
    ("emdpo_logratios_annotator_name", c_char_p, P, c_int64),
    ("emdpo_estep_save", c_int, P, c_double, DP, DP, DP, c_double, c_int, c_char_p, DIAGP),
    ("emdpo_margins_read", c_int, c_char_p, POINTER(P), DIAGP),
    ("emdpo_margins_free", None, P),
    ("emdpo_margins_n_candidates", c_int, P),
    ("emdpo_margins_candidate", c_int, P, c_int, I64P, POINTER(DP), POINTER(I64P), I64P),
    # mmra.h
    ("emdpo_mmra_hedge_opts_init", None, POINTER(HedgeOpts)),
    ("emdpo_mmra_ae_regrets", c_int, DP, c_int, c_int, c_int, POINTER(HedgeOpts), POINTER(RegretsResult), DIAGP),
    ("emdpo_regrets_read", c_int, c_char_p, DP, POINTER(c_int), POINTER(c_int), DIAGP),
    ("emdpo_regrets_result_save", c_int, POINTER(RegretsResult), c_char_p, c_char_p, DIAGP),
    # data.h
    ("emdpo_data_read", c_int, c_char_p, c_int, POINTER(P), DIAGP),
    ("emdpo_data_write", c_int, P, c_char_p, c_int, DIAGP),
    ("emdpo_data_free", None, P),
    ("emdpo_data_n_annotators", c_int64, P),
    ("emdpo_data_n_decisions", c_int64, P),
    ("emdpo_data_n_items", c_int64, P),
    ("emdpo_data_n_features", c_int, P),
    ("emdpo_data_n_groups", c_int, P),
    ("emdpo_data_has_text", c_int, P),
    ("emdpo_data_group_name", c_char_p, P, c_int),
    ("emdpo_data_annotator", c_char_p, P, c_int64),
    ("emdpo_data_annotator_group", c_int, P, c_int64),
    ("emdpo_data_decision_items", c_int, P, c_int64, I64P),
    ("emdpo_data_decision_stages", c_int, P, c_int64),
    ("emdpo_data_decision_annotator", c_int64, P, c_int64),
    ("emdpo_data_decision_prompt", c_char_p, P, c_int64),
    ("emdpo_data_item_text", c_char_p, P, c_int64),
    ("emdpo_data_item_features", c_int, P, c_int64, DP, c_int),
    ("emdpo_data_from_arrays", c_int, c_int, c_int64, POINTER(c_char_p), POINTER(c_int), POINTER(c_int), DP,
     POINTER(c_char_p), POINTER(c_char_p), POINTER(c_char_p), POINTER(P), DIAGP),
    # em.h / loglinear.h / fitfile.h: the log-linear fit
    ("emdpo_loglinear_opts_init", None, POINTER(LoglinearOpts)),
    ("emdpo_loglinear_fit", c_int, P, POINTER(LoglinearOpts), POINTER(P), DIAGP),
    ("emdpo_fit_free", None, P),
    ("emdpo_fit_k", c_int, P),
    ("emdpo_fit_p", c_int, P),
    ("emdpo_fit_beta", c_double, P),
    ("emdpo_fit_loglik", c_double, P),
    ("emdpo_fit_iterations", c_int, P),
    ("emdpo_fit_converged", c_int, P),
    ("emdpo_fit_n_annotators", c_int64, P),
    ("emdpo_fit_eta", c_int, P, DP, c_int),
    ("emdpo_fit_theta", c_int, P, DP, c_int, c_int),
    ("emdpo_fit_posterior", c_int, P, DP, c_int64, c_int),
    ("emdpo_fit_annotator", c_char_p, P, c_int64),
    ("emdpo_fit_criteria", c_int, P, POINTER(c_int), DP, DP, DP),
    ("emdpo_fit_n_trace", c_int, P),
    ("emdpo_fit_trace", c_int, P, DP, c_int),
    ("emdpo_fit_write", c_int, P, c_char_p, DIAGP),
    # lm.h: models, tokenizers, scoring, generation
    ("emdpo_llama_load", c_int, c_char_p, POINTER(P), DIAGP),
    ("emdpo_llama_free", None, P),
    ("emdpo_llama_vocab_size", c_int, P),
    ("emdpo_llama_context_length", c_int, P),
    ("emdpo_llama_dim", c_int, P),
    ("emdpo_llama_n_params", c_size_t, P),
    ("emdpo_tokenizer_load", c_int, c_char_p, c_int, POINTER(P), DIAGP),
    ("emdpo_tokenizer_free", None, P),
    ("emdpo_tokenizer_vocab_size", c_int, P),
    ("emdpo_tokenizer_bos", c_int, P),
    ("emdpo_tokenizer_eos", c_int, P),
    ("emdpo_tokenizer_encode_alloc", c_int, P, c_char_p, c_size_t, ctypes.c_uint, POINTER(POINTER(c_int)),
     POINTER(c_size_t)),
    ("emdpo_ids_free", None, POINTER(c_int), c_size_t),
    ("emdpo_lm_set_from_data", c_int, P, P, c_int, c_int, POINTER(P)),
    ("emdpo_lm_set_free", None, P),
    ("emdpo_lm_set_n_sequences", c_int64, P),
    ("emdpo_lm_lengths", c_int, P, POINTER(c_int), POINTER(c_int), DIAGP),
    ("emdpo_lm_score", c_int, P, P, c_int, DP),
    ("emdpo_sample_opts_init", None, POINTER(SampleOpts)),
    ("emdpo_generate_text", c_int, c_char_p, c_char_p, c_char_p, POINTER(SampleOpts), POINTER(P), DIAGP),
    ("emdpo_generation_free", None, P),
    ("emdpo_generation_n", c_int, P),
    ("emdpo_generation_text", c_void_p, P, c_int, POINTER(c_size_t)),
    ("emdpo_llama_load_frozen", c_int, c_char_p, POINTER(P), DIAGP),
    ("emdpo_llama_is_frozen", c_int, P),
    ("emdpo_dtype_name", c_char_p, c_int),
    ("emdpo_read_opts_init", None, POINTER(ReadOpts)),
    ("emdpo_data_read_with", c_int, c_char_p, c_int, POINTER(ReadOpts), POINTER(P), DIAGP),
    # lm.h: LoRA adapters (PEFT)
    ("emdpo_lora_config_init", None, POINTER(LoraConfigC)),
    ("emdpo_lora_targets_parse", c_int, c_char_p, POINTER(c_uint)),
    ("emdpo_lora_target_name", c_char_p, c_int),
    ("emdpo_lora_adapter_read", c_int, c_char_p, P, POINTER(P), DIAGP),
    ("emdpo_lora_adapter_write", c_int, P, c_char_p, c_int, c_char_p, DIAGP),
    ("emdpo_lora_adapter_free", None, P),
    ("emdpo_lora_adapter_rank", c_int, P),
    ("emdpo_lora_adapter_alpha", c_double, P),
    ("emdpo_lora_adapter_scale", c_double, P),
    ("emdpo_lora_adapter_n_params", c_size_t, P),
    ("emdpo_lora_adapter_merge", c_int, P, P, DIAGP),
    ("emdpo_merge_opts_init", None, POINTER(MergeOpts)),
    ("emdpo_merge_run", c_int, POINTER(MergeOpts), DIAGP),
    ("emdpo_lm_score_adapter", c_int, P, P, P, c_int, DP),
    # lm.h: SFT and DPO runs
    ("emdpo_optim_name", c_char_p, c_int),
    ("emdpo_loss_name", c_char_p, c_int),
    ("emdpo_train_opts_init", None, POINTER(TrainOpts), c_int),
    ("emdpo_train_job_create", c_int, POINTER(TrainOpts), POINTER(P), DIAGP),
    ("emdpo_train_job_free", None, P),
    ("emdpo_train_job_total_steps", c_int64, P),
    ("emdpo_train_job_steps_done", c_int64, P),
    ("emdpo_train_job_n_sequences", c_int64, P),
    ("emdpo_train_job_n_truncated", c_int64, P),
    ("emdpo_train_job_max_length", c_int, P),
    ("emdpo_train_job_run", c_int, P, DIAGP),
    ("emdpo_train_job_last", None, P, POINTER(TrainMetrics)),
    # lm.h: EM-DPO on Llama policies
    ("emdpo_init_name", c_char_p, c_int),
    ("emdpo_weight_norm_name", c_char_p, c_int),
    ("emdpo_lm_fit_opts_init", None, POINTER(LmFitOpts)),
    ("emdpo_lm_fit", c_int, P, P, P, POINTER(LmFitOpts), POINTER(P), DIAGP),
    ("emdpo_fit_best_iteration", c_int, P),
    ("emdpo_fit_starts", c_int, P),
    ("emdpo_fit_empty", c_int, P, c_int),
]

for _s in _SIGNATURES:
    _decl(*_s)


class EmdpoError(Exception):
    """A failed call of the C library: ``status`` is its status code,
    ``status_name`` the library's name for it ("parse error", ...), and
    ``file``, ``line`` and ``message`` its diagnostic."""

    def __init__(self, status: int, message: str = "", file: str = "", line: int = 0):
        self.status = status
        self.status_name = lib.emdpo_status_name(status).decode()
        self.file, self.line, self.message = file, line, message
        where = ""
        if file:
            where = "%s:%d: " % (file, line) if line > 0 else "%s: " % file
        super().__init__("%s%s (%s)" % (where, message or self.status_name, self.status_name))


def enum_value(name_fn, name: str, what: str) -> int:
    """The C enum value whose name (emdpo_optim_name, emdpo_dtype_name, ...)
    is name; ValueError listing the names otherwise."""
    names = []
    while True:
        n = name_fn(len(names))
        if n is None:
            break
        names.append(n.decode())
    if name not in names:
        raise ValueError("%s must be one of %s, not %r" % (what, ", ".join(names), name))
    return names.index(name)


def check(rc: int, diag: Diag = None) -> None:
    """Raises EmdpoError for a status other than 0, with diag's message."""
    if rc:
        if diag is not None:
            raise EmdpoError(rc, diag.msg.decode(errors="replace"), diag.file.decode(errors="replace"), diag.line)
        raise EmdpoError(rc)
