"""LoRA adapters in PEFT's conventions (Hu et al. 2021): W + s B A on some of
a Llama's seven projections, s = lora_alpha / r (lora_alpha / sqrt(r) with
use_rslora), stored as PEFT's adapter directory (adapter_config.json and
adapter_model.safetensors, which ``peft.PeftModel.from_pretrained`` loads).

``LoraConfig`` shapes the adapters that ``emdpo.sft``, ``emdpo.dpo`` and
``emdpo.fit_llama`` train; ``Adapter`` is one read from a directory (made
by emdpo or by PEFT) for a base model: score and generate with it
unmerged, merge it into a model, or write it back; ``merge`` writes base +
adapter as a full checkpoint in the base's format (``emdpo merge``).
"""
from __future__ import annotations

import ctypes
from typing import Iterable, Optional, Union

from . import _lib
from ._lib import Diag, EmdpoError, check, lib
from .models import Llama

EMDPO_ERR_INVALID_ARG = 4  # emdpo/common.h's emdpo_status


def _dtype(name: str) -> int:
    return _lib.enum_value(lib.emdpo_dtype_name, name, "dtype")


def target_names() -> list:
    """PEFT's module names of the projections an adapter can target, in the
    order emdpo stores them: q_proj, k_proj, v_proj, o_proj, gate_proj,
    up_proj, down_proj."""
    out = []
    while lib.emdpo_lora_target_name(len(out)) is not None:
        out.append(lib.emdpo_lora_target_name(len(out)).decode())
    return out


class LoraConfig:
    """The shape of LoRA adapters to train, under PEFT's ``LoraConfig``
    names and with its defaults as emdpo states them (``--lora-*`` flags).

    r : int
        The rank, >= 1 (default 16).
    lora_alpha : float
        The scale's numerator: updates are lora_alpha / r * B A (32).
    lora_dropout : float
        Dropout on the adapters' inputs while training, in [0, 1) (0).
    target_modules : "all-linear", a module name or a list of them
        Which projections are adapted, PEFT's names (``target_names()``;
        default all seven). A string other than "all-linear" is one name
        or a comma-separated list, not PEFT's regular expression.
    use_rslora : bool
        Scale by lora_alpha / sqrt(r) instead (rank-stabilised LoRA).

    The values are checked by the C library where the config is used
    (EmdpoError with its message); unknown target names at once.
    """

    def __init__(self, r: int = 16, lora_alpha: float = 32.0, lora_dropout: float = 0.0,
                 target_modules: Union[str, Iterable[str]] = "all-linear", use_rslora: bool = False):
        self.r = r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.target_modules = target_modules
        self.use_rslora = use_rslora

    def __repr__(self) -> str:
        return "LoraConfig(r=%r, lora_alpha=%r, lora_dropout=%r, target_modules=%r, use_rslora=%r)" % (
            self.r, self.lora_alpha, self.lora_dropout, self.target_modules, self.use_rslora)

    def _c(self) -> _lib.LoraConfigC:
        """The emdpo_lora_config. r 0 means "no adapter" to the C library,
        so it is refused here rather than silently training the model."""
        if int(self.r) == 0:
            raise EmdpoError(EMDPO_ERR_INVALID_ARG, "LoRA: r must be >= 1 (pass lora=None to train the model itself)")
        c = _lib.LoraConfigC()
        lib.emdpo_lora_config_init(ctypes.byref(c))
        names = self.target_modules
        names = names if isinstance(names, str) else ",".join(names)
        targets = ctypes.c_uint()
        rc = lib.emdpo_lora_targets_parse(names.encode(), ctypes.byref(targets))
        if rc:
            raise EmdpoError(rc, "LoRA: target_modules %r is not a list of %s, or all-linear" %
                             (self.target_modules, ", ".join(target_names())))
        c.r, c.alpha, c.dropout, c.rslora, c.targets = int(self.r), float(self.lora_alpha), \
            float(self.lora_dropout), 1 if self.use_rslora else 0, targets.value
        return c


def _lora_c(lora: Optional[LoraConfig]) -> _lib.LoraConfigC:
    """lora's emdpo_lora_config, or the init's with r 0 (no adapter) for None."""
    if lora is not None:
        return lora._c()
    c = _lib.LoraConfigC()
    lib.emdpo_lora_config_init(ctypes.byref(c))
    c.r = 0
    return c


class Adapter:
    """A PEFT LoRA adapter read for a base model (``Adapter.read``).

    ``rank`` (PEFT's r), ``alpha`` (lora_alpha), ``scale`` (alpha / r, or
    alpha / sqrt(r) with use_rslora) and ``n_params`` (floats in all A and
    B) describe it; ``base`` is the model it was read for, which it keeps
    alive. ``score`` runs it on its base unmerged (so it can stand for a
    policy in ``emdpo.logratios``), ``merge_into`` adds s B A to a model's
    weights, ``write`` saves it as a PEFT directory.
    """

    def __init__(self, handle: ctypes.c_void_p, base: Llama, path: str):
        self._h = handle
        self.base = base
        self.path = path
        self.rank = lib.emdpo_lora_adapter_rank(handle)
        self.alpha = lib.emdpo_lora_adapter_alpha(handle)
        self.scale = lib.emdpo_lora_adapter_scale(handle)
        self.n_params = lib.emdpo_lora_adapter_n_params(handle)

    @classmethod
    def read(cls, path: str, base: Llama) -> "Adapter":
        """Reads adapter_config.json and adapter_model.safetensors from
        directory path, as PEFT reads them (target_modules a list, a regular
        expression or "all-linear"; F32, F16 or BF16 tensors), every tensor
        checked against base's shapes. EmdpoError naming the file and the
        key or tensor otherwise (DoRA, trained biases, modules_to_save are
        refused)."""
        h = ctypes.c_void_p()
        d = Diag()
        check(lib.emdpo_lora_adapter_read(str(path).encode(), base._h, ctypes.byref(h), ctypes.byref(d)), d)
        return cls(h, base, str(path))

    def write(self, path: str, dtype: str = "f32", base_model: Optional[str] = None) -> None:
        """Writes path/adapter_config.json and path/adapter_model.safetensors
        (each atomically), tensors as dtype ("f32", "f16", "bf16"; "auto" is
        f32); base_model goes to base_model_name_or_path."""
        d = Diag()
        check(lib.emdpo_lora_adapter_write(self._h, str(path).encode(), _dtype(dtype),
                                           None if base_model is None else str(base_model).encode(),
                                           ctypes.byref(d)), d)

    def merge_into(self, model: Llama) -> None:
        """W += s B A in model (a float32 load of a model of the base's
        shapes: not ``Llama(path, frozen=True)``), which then computes what
        the base with this adapter computes."""
        d = Diag()
        check(lib.emdpo_lora_adapter_merge(self._h, model._h, ctypes.byref(d)), d)

    def score(self, tokenizer, data, batch: int = 8, max_length: int = 0, max_prompt_length: int = 0):
        """``self.base.score(..., adapter=self)``: log pi(y|x) of every item
        of data under the base running this adapter."""
        return self.base.score(tokenizer, data, batch, max_length, max_prompt_length, adapter=self)

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.emdpo_lora_adapter_free(self._h)
            self._h = None

    def __del__(self):
        self.close()


def merge(model: str, adapter: str, out: str, tokenizer: Optional[str] = None, dtype: str = "auto") -> None:
    """``emdpo merge``: the base checkpoint model with the PEFT adapter
    directory merged in, written to out in the base's format (a Hugging
    Face directory with the tokenizer's files, a GGUF file or a llama2.c
    checkpoint); dtype "auto" keeps the base's. tokenizer: whose files go
    beside a Hugging Face output (default: the base directory's
    tokenizer.json), or the vocabulary of a GGUF output."""
    o = _lib.MergeOpts()
    lib.emdpo_merge_opts_init(ctypes.byref(o))
    o.model, o.adapter, o.out = str(model).encode(), str(adapter).encode(), str(out).encode()
    o.tokenizer = None if tokenizer is None else str(tokenizer).encode()
    o.dtype = _dtype(dtype)
    d = Diag()
    check(lib.emdpo_merge_run(ctypes.byref(o), ctypes.byref(d)), d)


__all__ = ["Adapter", "LoraConfig", "merge", "target_names"]
