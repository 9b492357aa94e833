"""emdpo: EM-DPO around any trainer.

The exact parts of EM-DPO (Chidambaram, Seetharaman, Syrgkanis), on
log-probabilities computed by any trainer on any hardware, through the C
library libemdpo (ctypes; no compiler needed):

>>> gamma, eta, loglik = emdpo.estep(logratios, offsets, annotator, beta)
>>> w = emdpo.weights(gamma, annotator, normalize=True)   # the next weighted-DPO round
>>> w_mix, max_regret, gap = emdpo.mmra_ae(regret_matrix)

``logratios`` is float64 (K, total items): row k holds log pi_k(y|x) -
log pi_ref(y|x); decision j's items are the columns offsets[j]:offsets[j+1],
the chosen item first. See ``emdpo.core`` for the array conventions (inputs
are used without a copy when they are float64 / int64 with contiguous
rows), ``emdpo.models`` for data files, the log-linear fit and Llama
scoring and generation, ``emdpo.train`` for SFT, DPO and EM-DPO on Llama
policies (``sft``, ``dpo``, ``fit_llama``) and ``emdpo.lora`` for LoRA
adapters in PEFT's format (``LoraConfig``, ``Adapter``, ``merge``):

>>> fit = emdpo.fit_llama(base, base, "prefs.jsonl", 4, lora=emdpo.LoraConfig(r=16))
>>> fit.write("run")                                # run/type_k: PEFT adapters on base

The library is loaded from ``EMDPO_LIBRARY`` (a path) or through the
dynamic loader (``libemdpo.so.0``); errors raise ``EmdpoError`` with the
library's message and status name.
"""
from ._lib import EmdpoError, LibraryNotFound
from .core import (LogRatios, MMRAResult, SelectResult, estep, estep_file, margin_criterion, mmra_ae, mmra_ae_result,
                   read_logratios, read_margins, read_regrets, select_k, set_threads, version, weights)
from .models import Data, Llama, LoglinearFit, Tokenizer, fit_loglinear, generate, logratios, read_data
from .lora import Adapter, LoraConfig, merge
from .train import LlamaFit, TrainMetrics, TrainResult, dpo, fit_llama, sft

__version__ = "0.2.0"

__all__ = ["Adapter", "Data", "EmdpoError", "LibraryNotFound", "Llama", "LlamaFit", "LogRatios", "LoglinearFit",
           "LoraConfig", "MMRAResult", "SelectResult", "Tokenizer", "TrainMetrics", "TrainResult", "dpo", "estep",
           "estep_file", "fit_llama", "fit_loglinear", "generate", "logratios", "margin_criterion", "merge", "mmra_ae",
           "mmra_ae_result", "read_data", "read_logratios", "read_margins", "read_regrets", "select_k", "set_threads",
           "sft", "version", "weights"]
