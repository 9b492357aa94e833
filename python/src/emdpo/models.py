"""emdpo's data files, the log-linear fit, and Llama-policy scoring and
generation for the checkpoints emdpo reads, over the public C API."""
from __future__ import annotations

import ctypes
import os
from typing import List, Optional, Sequence

import numpy as np

from . import _lib
from ._lib import Diag, check, lib
from .core import ArrayLike, _as, _ptr

_FORMATS = {"auto": 0, "jsonl": 1, "csv": 2}
_INITS = {"kmeans": 0, "random": 1}


def _s(p: Optional[bytes]) -> Optional[str]:
    return None if p is None else p.decode()


def read_opts(tokenizer: Optional[str] = None, annotator_field: Optional[str] = None,
              chat_template: Optional[str] = None) -> _lib.ReadOpts:
    """emdpo_read_opts as the commands set them: annotator_field and
    chat_template as given; with a tokenizer path, text responses required
    and the tokenizer_config.json beside the tokenizer as the chat template
    (or, with an explicit chat_template, as its special tokens)."""
    o = _lib.ReadOpts()
    lib.emdpo_read_opts_init(ctypes.byref(o))
    if annotator_field is not None:
        o.annotator_field = str(annotator_field).encode()
    if chat_template is not None:
        o.chat_template = str(chat_template).encode()
    if tokenizer is not None:
        o.require_text = 1
        t = str(tokenizer)
        cfg = os.path.join(t if os.path.isdir(t) else (os.path.dirname(t) or "."), "tokenizer_config.json")
        if os.path.isfile(cfg):
            if chat_template is None:
                o.chat_template = cfg.encode()
            else:
                o.special_tokens = cfg.encode()
    return o


class Data:
    """A preference dataset (emdpo_data): annotators, each with decisions,
    each a choice among 2 or more items in preference order (chosen
    first). Read from emdpo's JSONL or long CSV (``Data.read``) or built
    from arrays (``Data.from_arrays``); immutable.

    Arrays (new numpy arrays, made on each access):
    ``offsets`` (n_decisions + 1,) int64 items of decision j are
    ``offsets[j]:offsets[j+1]``; ``annotator`` (n_decisions,) int64;
    ``stages`` (n_decisions,) int32 (1 a top choice, n - 1 a full ranking);
    ``features`` (n_items, n_features) float64.
    """

    def __init__(self, handle: ctypes.c_void_p):
        self._h = handle

    @classmethod
    def read(cls, path: str, format: str = "auto", annotator_field: Optional[str] = None,
             chat_template: Optional[str] = None, tokenizer: Optional[str] = None) -> "Data":
        """Reads JSONL (TRL's prompt/chosen/rejected with annotator,
        ranking, group; features or texts) or long CSV; .gz too.
        annotator_field names the JSONL field of the annotator ("user_id",
        ...). With a tokenizer path, as the commands that take one read
        data: text responses are required and conversational records are
        rendered with chat_template (a .jinja file or a
        tokenizer_config.json), by default the tokenizer_config.json beside
        the tokenizer."""
        o = read_opts(tokenizer, annotator_field, chat_template)
        h = ctypes.c_void_p()
        d = Diag()
        check(lib.emdpo_data_read_with(str(path).encode(), _FORMATS[format], ctypes.byref(o), ctypes.byref(h),
                                       ctypes.byref(d)), d)
        return cls(h)

    @classmethod
    def from_arrays(cls, annotator: Sequence[str], n_items: ArrayLike, features: Optional[ArrayLike] = None,
                    stages: Optional[ArrayLike] = None, texts: Optional[Sequence[str]] = None,
                    prompts: Optional[Sequence[str]] = None, groups: Optional[Sequence[str]] = None) -> "Data":
        """A dataset of n_decisions decisions: annotator ids (n_decisions),
        items per decision n_items (n_decisions), features (total items, p)
        or texts (total items), optional stages, prompts and groups."""
        n_dec = len(annotator)
        ni = _as(n_items, np.intc, "n_items", 1)
        total = int(ni.sum())
        x = None if features is None else _as(features, np.float64, "features", 2)
        p = 0 if x is None else x.shape[1]
        if x is not None and x.shape[0] != total:
            raise ValueError("features must have one row per item (%d)" % total)
        st = None if stages is None else _as(stages, np.intc, "stages", 1)

        def strings(v, n, name):
            if v is None:
                return None
            if len(v) != n:
                raise ValueError("%s must have %d entries" % (name, n))
            return (ctypes.c_char_p * n)(*[None if s is None else str(s).encode() for s in v])

        h = ctypes.c_void_p()
        d = Diag()
        check(lib.emdpo_data_from_arrays(p, n_dec, strings(annotator, n_dec, "annotator"),
                                         ni.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
                                         None if st is None else st.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
                                         None if x is None else _ptr(x, ctypes.c_double),
                                         strings(texts, total, "texts"), strings(prompts, n_dec, "prompts"),
                                         strings(groups, n_dec, "groups"), ctypes.byref(h), ctypes.byref(d)), d)
        return cls(h)

    def write(self, path: str, format: str = "auto") -> None:
        """Writes the dataset atomically (.jsonl, or .csv for feature data)."""
        d = Diag()
        check(lib.emdpo_data_write(self._h, str(path).encode(), _FORMATS[format], ctypes.byref(d)), d)

    @property
    def n_annotators(self) -> int:
        return lib.emdpo_data_n_annotators(self._h)

    @property
    def n_decisions(self) -> int:
        return lib.emdpo_data_n_decisions(self._h)

    @property
    def n_items(self) -> int:
        return lib.emdpo_data_n_items(self._h)

    @property
    def n_features(self) -> int:
        return lib.emdpo_data_n_features(self._h)

    @property
    def annotators(self) -> List[str]:
        """Annotator ids, index i = annotator i."""
        return [lib.emdpo_data_annotator(self._h, i).decode() for i in range(self.n_annotators)]

    @property
    def groups(self) -> List[Optional[str]]:
        """Each annotator's true group (None without one)."""
        names = [_s(lib.emdpo_data_group_name(self._h, g)) for g in range(lib.emdpo_data_n_groups(self._h))]
        return [None if g < 0 else names[g] for g in
                (lib.emdpo_data_annotator_group(self._h, i) for i in range(self.n_annotators))]

    @property
    def offsets(self) -> np.ndarray:
        off = np.empty(self.n_decisions + 1, dtype=np.int64)
        first = ctypes.c_int64()
        off[0] = 0
        for j in range(self.n_decisions):
            n = lib.emdpo_data_decision_items(self._h, j, ctypes.byref(first))
            off[j + 1] = first.value + n
        return off

    @property
    def annotator(self) -> np.ndarray:
        return np.array([lib.emdpo_data_decision_annotator(self._h, j) for j in range(self.n_decisions)],
                        dtype=np.int64)

    @property
    def stages(self) -> np.ndarray:
        return np.array([lib.emdpo_data_decision_stages(self._h, j) for j in range(self.n_decisions)],
                        dtype=np.int32)

    @property
    def ranking(self) -> np.ndarray:
        """True where a decision is a full ranking (stages = items - 1 > 1)."""
        n = np.diff(self.offsets)
        return (self.stages == n - 1) & (n > 2)

    @property
    def features(self) -> np.ndarray:
        p = self.n_features
        x = np.empty((self.n_items, p))
        for i in range(self.n_items):
            check(lib.emdpo_data_item_features(self._h, i, _ptr(x[i], ctypes.c_double), p))
        return x

    @property
    def texts(self) -> List[Optional[str]]:
        return [_s(lib.emdpo_data_item_text(self._h, i)) for i in range(self.n_items)]

    @property
    def prompts(self) -> List[Optional[str]]:
        return [_s(lib.emdpo_data_decision_prompt(self._h, j)) for j in range(self.n_decisions)]

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.emdpo_data_free(self._h)
            self._h = None

    def __del__(self):
        self.close()


def read_data(path: str, format: str = "auto", annotator_field: Optional[str] = None,
              chat_template: Optional[str] = None, tokenizer: Optional[str] = None) -> Data:
    """``Data.read``."""
    return Data.read(path, format, annotator_field, chat_template, tokenizer)


class _Fit:
    """What a fit of either family has (emdpo/em.h's accessors)."""

    def __init__(self, handle: ctypes.c_void_p):
        self._h = h = handle
        self.k = lib.emdpo_fit_k(h)
        self.beta = lib.emdpo_fit_beta(h)
        self.loglik = lib.emdpo_fit_loglik(h)
        self.iterations = lib.emdpo_fit_iterations(h)
        self.converged = bool(lib.emdpo_fit_converged(h))
        self.eta = np.empty(self.k)
        check(lib.emdpo_fit_eta(h, _ptr(self.eta, ctypes.c_double), self.k))
        n = lib.emdpo_fit_n_annotators(h)
        self.posterior = np.empty((n, self.k))
        check(lib.emdpo_fit_posterior(h, _ptr(self.posterior, ctypes.c_double), n, self.k))
        self.annotators = [lib.emdpo_fit_annotator(h, i).decode() for i in range(n)]
        self.trace = np.empty(lib.emdpo_fit_n_trace(h))
        check(lib.emdpo_fit_trace(h, _ptr(self.trace, ctypes.c_double), len(self.trace)))

    def write(self, out: str) -> None:
        """What ``emdpo fit`` writes into directory out (created when
        missing): a Llama fit's type_1 .. type_K first, then posterior.csv,
        then fit.json, each atomically."""
        d = Diag()
        check(lib.emdpo_fit_write(self._h, str(out).encode(), ctypes.byref(d)), d)

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.emdpo_fit_free(self._h)
            self._h = None

    def __del__(self):
        self.close()


class LoglinearFit(_Fit):
    """EM-DPO on log-linear policies (``emdpo fit``): K types with rewards
    theta_k . x, mixing weights eta and each annotator's posterior.

    Attributes: ``k``, ``p``, ``beta``, ``loglik``, ``iterations``,
    ``converged``, ``eta`` (K,), ``theta`` (K, p), ``posterior``
    (n_annotators, K), ``annotators`` (ids), ``trace`` (the log-likelihood
    after every E-step), ``aic``, ``bic``, ``icl``.
    """

    def __init__(self, handle: ctypes.c_void_p):
        super().__init__(handle)
        h = handle
        self.p = lib.emdpo_fit_p(h)
        self.theta = np.empty((self.k, self.p))
        check(lib.emdpo_fit_theta(h, _ptr(self.theta, ctypes.c_double), self.k, self.p))
        npar, aic, bic, icl = ctypes.c_int(), ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        check(lib.emdpo_fit_criteria(h, ctypes.byref(npar), ctypes.byref(aic), ctypes.byref(bic), ctypes.byref(icl)))
        self.npar, self.aic, self.bic, self.icl = npar.value, aic.value, bic.value, icl.value

    def logratios(self, data: Data) -> np.ndarray:
        """The types' log-ratios of data's items, (K, n_items): theta_k . x /
        beta, the input ``estep`` takes (it gives back this fit's posterior
        on the data the fit was made on)."""
        return self.theta @ data.features.T / self.beta


def fit_loglinear(data: Data, k: int, starts: int = 1, seed: int = 1, beta: float = 1.0, l2: float = 0.0,
                  max_iter: int = 500, tol: float = 1e-9, init: str = "kmeans") -> LoglinearFit:
    """EM-DPO with k log-linear types on feature data (``emdpo fit``): the
    same defaults and the same bits as the command."""
    o = _lib.LoglinearOpts()
    lib.emdpo_loglinear_opts_init(ctypes.byref(o))
    o.k, o.l2, o.beta = int(k), float(l2), float(beta)
    o.em.starts, o.em.seed, o.em.max_iter, o.em.tol, o.em.init = int(starts), int(seed), int(max_iter), float(tol), \
        _INITS[init]
    h = ctypes.c_void_p()
    d = Diag()
    check(lib.emdpo_loglinear_fit(data._h, ctypes.byref(o), ctypes.byref(h), ctypes.byref(d)), d)
    return LoglinearFit(h)


class Tokenizer:
    """A tokenizer emdpo reads: a Hugging Face tokenizer.json (or its
    directory), a GGUF file or a llama2.c tokenizer.bin (vocab_size: the
    model's, or 0 for any)."""

    def __init__(self, path: str, vocab_size: int = 0):
        self._h = ctypes.c_void_p()
        d = Diag()
        check(lib.emdpo_tokenizer_load(str(path).encode(), int(vocab_size), ctypes.byref(self._h), ctypes.byref(d)), d)
        self.path = str(path)
        self.vocab_size = lib.emdpo_tokenizer_vocab_size(self._h)
        self.bos = lib.emdpo_tokenizer_bos(self._h)  # -1 when it has none
        self.eos = lib.emdpo_tokenizer_eos(self._h)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> List[int]:
        """The ids of text, as emdpo's training and scoring encode it: a
        prompt with add_bos=True, a response plain (emdpo then appends EOS)."""
        b = text.encode()
        ids = ctypes.POINTER(ctypes.c_int)()
        n = ctypes.c_size_t()
        check(lib.emdpo_tokenizer_encode_alloc(self._h, b, len(b), (1 if add_bos else 0) | (2 if add_eos else 0),
                                               ctypes.byref(ids), ctypes.byref(n)))
        try:
            return ids[:n.value]
        finally:
            lib.emdpo_ids_free(ids, n.value)

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.emdpo_tokenizer_free(self._h)
            self._h = None

    def __del__(self):
        self.close()


class Llama:
    """A Llama-family checkpoint emdpo reads: a Hugging Face directory
    (config.json + model.safetensors), a GGUF file, a llama2.c .bin file,
    or a PEFT adapter directory (its base_model_name_or_path with the
    adapter merged in).

    frozen=True loads a model that will only be run (scored, a frozen LoRA
    base): F16 or BF16 matrices stay 16-bit, in half the memory, with the
    same results; such a model cannot be merged into (``frozen`` tells)."""

    def __init__(self, path: str, frozen: bool = False):
        self._h = ctypes.c_void_p()
        d = Diag()
        load = lib.emdpo_llama_load_frozen if frozen else lib.emdpo_llama_load
        check(load(str(path).encode(), ctypes.byref(self._h), ctypes.byref(d)), d)
        self.path = str(path)
        self.frozen = bool(lib.emdpo_llama_is_frozen(self._h))
        self.vocab_size = lib.emdpo_llama_vocab_size(self._h)
        self.context_length = lib.emdpo_llama_context_length(self._h)
        self.dim = lib.emdpo_llama_dim(self._h)
        self.n_params = lib.emdpo_llama_n_params(self._h)

    def score(self, tokenizer: Tokenizer, data: Data, batch: int = 8, max_length: int = 0,
              max_prompt_length: int = 0, adapter=None) -> np.ndarray:
        """log pi(y|x) of every item of data (n_items,): the response
        tokens' log-probabilities given the decision's prompt, as ``emdpo
        score`` computes them (BOS before the prompt, EOS after the
        response; max_length 0: min(512, context)). adapter: an
        ``emdpo.Adapter`` run on this model unmerged (``emdpo score
        --adapter``); EmdpoError when it was read for another shape."""
        ml, mp = ctypes.c_int(max_length), ctypes.c_int(max_prompt_length)
        d = Diag()
        check(lib.emdpo_lm_lengths(self._h, ctypes.byref(ml), ctypes.byref(mp), ctypes.byref(d)), d)
        s = ctypes.c_void_p()
        check(lib.emdpo_lm_set_from_data(data._h, tokenizer._h, ml, mp, ctypes.byref(s)))
        try:
            out = np.empty(lib.emdpo_lm_set_n_sequences(s))
            check(lib.emdpo_lm_score_adapter(self._h, None if adapter is None else adapter._h, s, int(batch),
                                             _ptr(out, ctypes.c_double)))
        finally:
            lib.emdpo_lm_set_free(s)
        return out

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.emdpo_llama_free(self._h)
            self._h = None

    def __del__(self):
        self.close()


def logratios(policies: Sequence, reference: Llama, tokenizer: Tokenizer, data: Data, batch: int = 8,
              max_length: int = 0, max_prompt_length: int = 0) -> np.ndarray:
    """Each policy's log-ratios of data's items, (K, n_items): log pi_k(y|x)
    - log pi_ref(y|x), the input of ``estep`` (with ``data.offsets`` and
    ``data.annotator``). A policy is a ``Llama`` or an ``emdpo.Adapter``
    (run on its base, unmerged)."""
    ref = reference.score(tokenizer, data, batch, max_length, max_prompt_length)
    return np.stack([m.score(tokenizer, data, batch, max_length, max_prompt_length) - ref for m in policies])


def generate(model: str, tokenizer: str, prompt: Optional[str] = None, n: int = 1, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, max_tokens: int = 256, seed: int = 1,
             adapter: Optional[str] = None) -> List[str]:
    """Samples from a checkpoint (or a mixture.json), as ``emdpo
    generate``: n texts, each the prompt and its continuation (temperature
    0: greedy). adapter: a PEFT LoRA adapter directory merged into the
    model first (``emdpo generate --adapter``)."""
    o = _lib.SampleOpts()
    lib.emdpo_sample_opts_init(ctypes.byref(o))
    o.temperature, o.top_k, o.top_p, o.max_tokens, o.n, o.seed = float(temperature), int(top_k), float(top_p), \
        int(max_tokens), int(n), int(seed)
    o.adapter = None if adapter is None else str(adapter).encode()
    g = ctypes.c_void_p()
    d = Diag()
    check(lib.emdpo_generate_text(str(model).encode(), str(tokenizer).encode(),
                                  None if prompt is None else prompt.encode(), ctypes.byref(o), ctypes.byref(g),
                                  ctypes.byref(d)), d)
    try:
        out = []
        for i in range(lib.emdpo_generation_n(g)):
            ln = ctypes.c_size_t()
            p = lib.emdpo_generation_text(g, i, ctypes.byref(ln))
            out.append(ctypes.string_at(p, ln.value).decode(errors="replace"))
        return out
    finally:
        lib.emdpo_generation_free(g)


__all__ = ["Data", "Llama", "LoglinearFit", "Tokenizer", "fit_loglinear", "generate", "logratios", "read_data",
           "read_opts"]
