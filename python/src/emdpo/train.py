"""Training Llama policies through the C library: an SFT or DPO run
(``emdpo sft`` / ``emdpo dpo``, with the same defaults, files and bits) and
EM-DPO with K types (``emdpo fit --policy llama``), each either on the
model's own weights or, with a ``LoraConfig``, as LoRA adapters on the
frozen model (PEFT's adapter directories).

Options left at None keep the library's defaults, which are the commands'
(``emdpo dpo --help``); names are the commands' flags with "_" for "-".
"""
from __future__ import annotations

import ctypes
from typing import Callable, NamedTuple, Optional, Union

import numpy as np

from . import _lib
from ._lib import Diag, check, enum_value, lib
from .models import Data, Llama, Tokenizer, _Fit, read_opts
from .lora import LoraConfig, _lora_c

_SFT, _DPO = 0, 1  # emdpo_train_mode


class TrainMetrics(NamedTuple):
    """One optimizer step's metrics (emdpo_train_metrics; TRL's
    ``rewards/chosen`` is ``rewards_chosen``, and so on)."""
    step: int
    epoch: float
    loss: float
    grad_norm: float
    learning_rate: float
    rewards_chosen: float
    rewards_rejected: float
    rewards_margins: float
    rewards_accuracies: float
    examples: int


class TrainResult(NamedTuple):
    """What a run did: optimizer steps done, sequences and how many were
    cut (to max_length tokens), and the last step's metrics."""
    steps: int
    n_sequences: int
    n_truncated: int
    max_length: int
    last: TrainMetrics


def _metrics(m: _lib.TrainMetrics) -> TrainMetrics:
    return TrainMetrics(*(getattr(m, name) for name, _ in _lib.TrainMetrics._fields_))


def _path(p) -> Optional[bytes]:
    return None if p is None else str(p).encode()


# option -> (where in emdpo_train_opts, how to convert)
_TRAIN_OPTIONS = {
    "config": ("config_spec", _path), "merge": ("merge", _path), "ref": ("ref", _path),
    "weights": ("weights", _path), "weight_column": ("weight_column", _path), "log": ("log", _path),
    "steps": ("steps", int), "save_every": ("save_every", int), "resume": ("resume", int),
    "max_length": ("max_length", int), "max_prompt_length": ("max_prompt_length", int),
    "save_dtype": ("save_dtype", lambda v: enum_value(lib.emdpo_dtype_name, v, "save_dtype")),
    "batch": ("train.batch", int), "accum": ("train.accum", int), "seed": ("train.seed", int),
    "grad_checkpoint": ("train.grad_checkpoint", int),
    "lr": ("train.optim.lr", float), "warmup": ("train.optim.warmup", int), "clip": ("train.optim.clip", float),
    "weight_decay": ("train.optim.weight_decay", float),
    "optimizer": ("train.optim.kind", lambda v: enum_value(lib.emdpo_optim_name, v, "optimizer")),
    "beta": ("train.loss.beta", float), "label_smoothing": ("train.loss.label_smoothing", float),
    "rpo_alpha": ("train.loss.rpo_alpha", float),
    "loss": ("train.loss.kind", lambda v: enum_value(lib.emdpo_loss_name, v, "loss")),
}
_DPO_ONLY = {"beta", "label_smoothing", "rpo_alpha", "loss", "ref"}


def _set(struct, dotted: str, value) -> None:
    *outer, last = dotted.split(".")
    for name in outer:
        struct = getattr(struct, name)
    setattr(struct, last, value)


def _train(mode: int, data: str, out: str, tokenizer: str, model: Optional[str], lora: Optional[LoraConfig],
           annotator_field: Optional[str], chat_template: Optional[str],
           progress: Optional[Callable[[TrainMetrics, int, float], None]], options: dict) -> TrainResult:
    o = _lib.TrainOpts()
    lib.emdpo_train_opts_init(ctypes.byref(o), mode)
    for name, value in options.items():
        if name not in _TRAIN_OPTIONS or (mode == _SFT and name in _DPO_ONLY):
            raise TypeError("%s() got an unexpected option %r" % ("dpo" if mode == _DPO else "sft", name))
        if value is not None:
            field, conv = _TRAIN_OPTIONS[name]
            _set(o, field, conv(value))
    o.data, o.out, o.tokenizer, o.model = _path(data), _path(out), _path(tokenizer), _path(model)
    o.lora = _lora_c(lora)
    ro = read_opts(tokenizer, annotator_field, chat_template)
    o.read = ctypes.pointer(ro)
    if progress is not None:
        cb = _lib.TRAIN_PROGRESS(lambda ud, m, total, eps: progress(_metrics(m.contents), total, eps))
        o.progress = cb
    job = ctypes.c_void_p()
    d = Diag()
    check(lib.emdpo_train_job_create(ctypes.byref(o), ctypes.byref(job), ctypes.byref(d)), d)
    try:
        check(lib.emdpo_train_job_run(job, ctypes.byref(d)), d)
        last = _lib.TrainMetrics()
        lib.emdpo_train_job_last(job, ctypes.byref(last))
        return TrainResult(lib.emdpo_train_job_steps_done(job), lib.emdpo_train_job_n_sequences(job),
                           lib.emdpo_train_job_n_truncated(job), lib.emdpo_train_job_max_length(job), _metrics(last))
    finally:
        lib.emdpo_train_job_free(job)


def sft(data: str, out: str, tokenizer: str, model: Optional[str] = None, *, lora: Optional[LoraConfig] = None,
        annotator_field: Optional[str] = None, chat_template: Optional[str] = None,
        progress: Optional[Callable[[TrainMetrics, int, float], None]] = None, **options) -> TrainResult:
    """``emdpo sft``: supervised fine-tuning (the mean over response tokens
    and their EOS of -log p) of model on data (JSONL {"prompt",
    "response"} or {"text"} lines; preference data: its chosen responses).

    out receives the model (a Hugging Face directory with the tokenizer's
    files) and trainer.bin; with lora, only a LoRA adapter is trained on
    the frozen model and out holds PEFT's adapter_config.json and
    adapter_model.safetensors (``merge=PATH`` also writes model + adapter
    merged, in the model's format). Options (None: the command's
    default): config (a fresh model's spec instead of model: "dim=N,
    layers=N,heads=N,kv_heads=N,hidden=N,vocab=N,seq_len=N,tied=0|1"),
    steps (0: one epoch), lr, batch, accum, optimizer ("adamw",
    "rmsprop"), warmup, clip, weight_decay, seed, max_length,
    max_prompt_length, weights (a CSV), weight_column, save_every, resume,
    log (JSONL metrics), save_dtype ("auto", "f32", "f16", "bf16"), merge,
    grad_checkpoint (activation checkpointing: each layer's activations
    recomputed in the backward, in less memory, with the same bits).
    progress(metrics, total_steps, examples_per_s) is called after every
    step. The same options give the command's bits.
    """
    return _train(_SFT, data, out, tokenizer, model, lora, annotator_field, chat_template, progress, options)


def dpo(data: str, out: str, tokenizer: str, model: Optional[str] = None, *, lora: Optional[LoraConfig] = None,
        annotator_field: Optional[str] = None, chat_template: Optional[str] = None,
        progress: Optional[Callable[[TrainMetrics, int, float], None]] = None, **options) -> TrainResult:
    """``emdpo dpo``: preference optimization (DPO, cDPO, IPO or hinge;
    multi-item, rankings) of model on preference JSONL.

    With lora, a LoRA adapter is trained on the frozen model, which is also
    the reference (adapters off); out then holds PEFT's
    adapter_config.json and adapter_model.safetensors and trainer.bin.
    The options of ``sft`` and: beta, loss ("dpo", "cdpo", "ipo",
    "hinge"), label_smoothing, rpo_alpha, ref (a reference checkpoint).
    EmdpoError with the library's message for bad options, data or
    LoRA settings.
    """
    return _train(_DPO, data, out, tokenizer, model, lora, annotator_field, chat_template, progress, options)


class LlamaFit(_Fit):
    """EM-DPO with K Llama-policy types (``fit_llama``).

    Attributes: ``k``, ``beta``, ``loglik`` (the returned iterate's: the
    best over iterations and starts), ``iterations``, ``best_iteration``,
    ``converged``, ``eta`` (K,), ``empty`` (K bools: types that lost all
    weight), ``posterior`` (n_annotators, K), ``annotators`` (ids),
    ``trace`` (the log-likelihood after every E-step of the best start).
    The fit holds the K trained policies (K adapters with lora) until
    ``write(out)`` saves them as ``emdpo fit --policy llama`` does:
    out/type_1 .. type_K (PEFT adapter directories on the model with lora,
    base_model_name_or_path its absolute path; Hugging Face checkpoints
    otherwise), posterior.csv and fit.json last. It keeps its model and
    tokenizer alive.
    """

    def __init__(self, handle: ctypes.c_void_p, model: Llama, tokenizer: Tokenizer, data: Data):
        super().__init__(handle)
        self.model, self.tokenizer, self.data = model, tokenizer, data
        self.best_iteration = lib.emdpo_fit_best_iteration(handle)
        self.empty = np.array([bool(lib.emdpo_fit_empty(handle, k)) for k in range(self.k)])


# option -> (where in emdpo_lm_fit_opts, how to convert)
_FIT_OPTIONS = {
    "max_iter": ("em.max_iter", int), "tol": ("em.tol", float), "patience": ("em.patience", int),
    "starts": ("em.starts", int), "seed": ("em.seed", int),
    "init": ("em.init", lambda v: enum_value(lib.emdpo_init_name, v, "init")),
    "beta": ("mstep.beta", float), "rpo_alpha": ("mstep.rpo_alpha", float), "steps": ("mstep.steps", int),
    "epochs": ("mstep.epochs", float), "lr": ("mstep.optim.lr", float), "warmup": ("mstep.optim.warmup", int),
    "clip": ("mstep.optim.clip", float),
    "optimizer": ("mstep.optim.kind", lambda v: enum_value(lib.emdpo_optim_name, v, "optimizer")),
    "batch": ("mstep.batch", int), "accum": ("mstep.accum", int), "max_length": ("mstep.max_length", int),
    "max_prompt_length": ("mstep.max_prompt_length", int), "restart": ("mstep.restart", int),
    "weight_norm": ("mstep.weight_norm", lambda v: enum_value(lib.emdpo_weight_norm_name, v, "weight_norm")),
    "score_batch": ("mstep.score_batch", int), "grad_checkpoint": ("mstep.grad_checkpoint", int),
    "save_dtype": ("save_dtype", lambda v: enum_value(lib.emdpo_dtype_name, v, "save_dtype")),
}


def fit_llama(model: Union[str, Llama], tokenizer: Union[str, Tokenizer], data: Union[str, Data], k: int, *,
              lora: Optional[LoraConfig] = None, annotator_field: Optional[str] = None,
              chat_template: Optional[str] = None,
              progress: Optional[Callable[[int, int, float, np.ndarray], None]] = None, **options) -> LlamaFit:
    """``emdpo fit --policy llama``: EM-DPO with k types, each starting as
    the SFT model, which is also the reference; the same options give the
    command's bits.

    model, tokenizer and data are paths (read as the command reads them:
    the model frozen when lora is given, data as JSONL with text
    responses, conversational records rendered with the chat template
    beside the tokenizer) or objects already loaded. With lora each type
    is a LoRA adapter on the shared frozen model: K types cost one model
    plus K adapters. Options (None: the command's defaults): EM's
    max_iter, tol, patience, init ("kmeans", "random", "kmeans-tokens"),
    starts, seed; the M-step's beta, rpo_alpha, steps (per type per
    M-step; 0: from epochs), epochs, lr, optimizer, warmup, clip, batch,
    accum, max_length, max_prompt_length, restart, weight_norm ("mean",
    "none"), score_batch, grad_checkpoint (activation checkpointing in the
    M-steps); save_dtype of the written types.
    progress(start, iteration, loglik, eta) is called after every E-step.
    """
    o = _lib.LmFitOpts()
    lib.emdpo_lm_fit_opts_init(ctypes.byref(o))
    o.k = int(k)
    for name, value in options.items():
        if name not in _FIT_OPTIONS:
            raise TypeError("fit_llama() got an unexpected option %r" % name)
        if value is not None:
            field, conv = _FIT_OPTIONS[name]
            _set(o, field, conv(value))
    o.mstep.lora = _lora_c(lora)
    if progress is not None:
        cb = _lib.EM_PROGRESS(lambda ud, start, it, ll, eta, K: progress(start, it, ll,
                                                                          np.ctypeslib.as_array(eta, (K,)).copy()))
        o.em.progress = cb
    m = model if isinstance(model, Llama) else Llama(model, frozen=lora is not None)
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer(tokenizer, m.vocab_size)
    d = data if isinstance(data, Data) else Data.read(data, "jsonl", annotator_field, chat_template, tok.path)
    h = ctypes.c_void_p()
    diag = Diag()
    check(lib.emdpo_lm_fit(m._h, tok._h, d._h, ctypes.byref(o), ctypes.byref(h), ctypes.byref(diag)), diag)
    return LlamaFit(h, m, tok, d)


__all__ = ["LlamaFit", "TrainMetrics", "TrainResult", "dpo", "fit_llama", "sft"]
