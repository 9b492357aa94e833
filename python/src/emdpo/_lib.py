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
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_int, c_int64, c_long, c_size_t, c_uint64,
                    c_ubyte, c_void_p)
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


class Diag(Structure):
    _fields_ = [("file", c_char * 256), ("line", c_long), ("msg", c_char * 256)]


class ZerosumResult(Structure):
    _fields_ = [("value", c_double), ("upper", c_double), ("lower", c_double), ("gap", c_double),
                ("iterations", c_long)]


class HedgeOpts(Structure):
    _fields_ = [("max_iter", c_long), ("eta", c_double), ("rel_tol", c_double)]


class RegretsResult(Structure):
    _fields_ = [("K", c_int), ("rows", c_int), ("solver", c_int), ("w", c_double * MAX_K),
                ("regret", c_double * MAX_K), ("game", ZerosumResult), ("hedge_capped", c_int),
                ("lp_w", c_double * MAX_K), ("lp", ZerosumResult)]


class EmOpts(Structure):
    _fields_ = [("max_iter", c_int), ("tol", c_double), ("patience", c_int), ("starts", c_int), ("seed", c_uint64),
                ("init", c_int), ("summary", POINTER(c_double)), ("q", c_int), ("progress", c_void_p),
                ("progress_ud", c_void_p)]


class LoglinearOpts(Structure):
    _fields_ = [("k", c_int), ("em", EmOpts), ("l2", c_double), ("beta", c_double)]


class SampleOpts(Structure):
    _fields_ = [("temperature", c_double), ("top_k", c_int), ("top_p", c_double), ("max_tokens", c_int), ("n", c_int),
                ("seed", c_uint64), ("stop_ids", POINTER(c_int)), ("n_stop", c_size_t), ("adapter", c_char_p)]


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


def check(rc: int, diag: Diag = None) -> None:
    """Raises EmdpoError for a status other than 0, with diag's message."""
    if rc:
        if diag is not None:
            raise EmdpoError(rc, diag.msg.decode(errors="replace"), diag.file.decode(errors="replace"), diag.line)
        raise EmdpoError(rc)
