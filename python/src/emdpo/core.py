"""EM-DPO around any trainer: the E-step, the next round's weights, K
selection on validation margins and MMRA-AE, on numpy arrays.

Arrays in. Inputs are used in place, without a copy, when they already
have the dtype and layout the C library takes:

- ``logratios``: float64 with contiguous rows (``strides[1] == 8``); the
  row stride may be anything, so a column slice ``big[:, a:b]`` of a wider
  array is used in place too.
- index arrays (``offsets``, ``annotator``): int64, C-contiguous.
- ``ranking``: bool or uint8, C-contiguous.
- ``margins``, regret matrices, ``gamma``: float64, C-contiguous.

Anything else (lists, float32, Fortran order, other integer types) is
converted with one copy (``numpy.ascontiguousarray``). Outputs are new
numpy arrays owned by Python.
"""
from __future__ import annotations

import ctypes
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib
from ._lib import Diag, EmdpoError, check, lib

ArrayLike = Union[np.ndarray, Sequence]

_SOLVERS = {"hedge": 0, "lp": 1}
_CRITERIA = ("margin", "crossfit")


def _ptr(a: np.ndarray, ctype):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


def _as(a: ArrayLike, dtype, name: str, ndim: int) -> np.ndarray:
    """a as a C-contiguous array of dtype, in place when it already is one."""
    arr = np.asarray(a)
    if arr.dtype != dtype or not arr.flags["C_CONTIGUOUS"]:
        if arr.dtype.kind not in "biuf" or (np.dtype(dtype).kind in "iu" and arr.dtype.kind == "f"):
            raise TypeError("%s must be %s, not %s" % (name, np.dtype(dtype).name, arr.dtype))
        arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.ndim != ndim:
        raise ValueError("%s must have %d dimension%s, not shape %s" % (name, ndim, "s" if ndim > 1 else "", arr.shape))
    return arr


def _rows(a: ArrayLike, name: str) -> Tuple[np.ndarray, int]:
    """A 2-D float64 array whose rows are contiguous, and its row stride in
    doubles (in place when it already has that layout)."""
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError("%s must be 2-D (K, total items), not shape %s" % (name, arr.shape))
    ok = (arr.dtype == np.float64 and arr.strides[1] == 8 and arr.strides[0] % 8 == 0 and arr.strides[0] >= 0
          and (arr.shape[0] <= 1 or arr.strides[0] >= 8 * arr.shape[1]))
    if not ok:
        if arr.dtype.kind not in "biuf":
            raise TypeError("%s must be float64, not %s" % (name, arr.dtype))
        arr = np.ascontiguousarray(arr, dtype=np.float64)
    ld = arr.strides[0] // 8 if arr.shape[0] > 1 else arr.shape[1]
    return arr, max(ld, arr.shape[1])


def set_threads(n: int) -> None:
    """Threads of the library's parallel parts (OpenMP); results are the
    same bits for any number."""
    lib.emdpo_set_threads(int(n))


def version() -> str:
    """The version of the C library loaded."""
    return lib.emdpo_version().decode()


def _ranking(ranking: Optional[ArrayLike], n_dec: int) -> Optional[np.ndarray]:
    if ranking is None:
        return None
    r = np.asarray(ranking)
    if r.dtype == np.bool_ and r.flags["C_CONTIGUOUS"]:
        r = r.view(np.uint8)
    else:
        r = _as(np.asarray(r) != 0, np.uint8, "ranking", 1)
    if r.shape != (n_dec,):
        raise ValueError("ranking must have one entry per decision (%d), not shape %s" % (n_dec, r.shape))
    return r


def _annotators(annotator: ArrayLike, n_dec: int, n_annotators: Optional[int]) -> Tuple[np.ndarray, int]:
    ann = _as(annotator, np.int64, "annotator", 1)
    if ann.shape != (n_dec,):
        raise ValueError("annotator must have one entry per decision (%d), not shape %s" % (n_dec, ann.shape))
    if n_annotators is None:
        n_annotators = int(ann.max()) + 1 if n_dec else 0
    return ann, int(n_annotators)


def estep(logratios: ArrayLike, offsets: ArrayLike, annotator: ArrayLike, beta: float,
          eta: Optional[ArrayLike] = None, ranking: Optional[ArrayLike] = None,
          n_annotators: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, float]:
    """The E-step of EM-DPO on log-ratios computed anywhere.

    Parameters
    ----------
    logratios : float64 array, shape (K, total_items)
        Row k holds log pi_k(y|x) - log pi_ref(y|x) of every item. Decision
        j's items are the columns ``offsets[j]:offsets[j+1]``, the chosen
        item first, then the rejected ones (2 or more items). Used in place
        when its rows are contiguous float64 (any row stride).
    offsets : int64 array, shape (n_decisions + 1,)
        Non-decreasing column offsets.
    annotator : int64 array, shape (n_decisions,)
        Each decision's annotator, 0 .. n_annotators - 1 (in any order).
    beta : float
        The policies' temperature: utilities are ``beta * logratios``.
    eta : float array, shape (K,), optional
        The types' current weights (>= 0, summing to 1 within 1e-6);
        uniform when None. A type with eta_k = 0 gets gamma 0.
    ranking : bool array, shape (n_decisions,), optional
        True where a decision's items are a full ranking, best first
        (Plackett-Luce); otherwise only the first item was chosen.
    n_annotators : int, optional
        Default ``annotator.max() + 1``. Annotators without decisions get
        gamma = eta.

    Returns
    -------
    gamma : float64 array, shape (n_annotators, K)
        Posterior type probabilities, ``log gamma_ik = log eta_k +
        sum_j log P_k(V_ij) - logsumexp_k``, computed in log space.
    eta_new : float64 array, shape (K,)
        The M-step's new eta: the mean of gamma over annotators.
    loglik : float
        The observed-data log-likelihood at the given eta.

    The bits are those of ``emdpo estep`` and the C function
    ``emdpo_estep``, for any number of threads. Raises EmdpoError (status
    "invalid argument", the message naming the decision) for bad input.
    """
    lr, ld = _rows(logratios, "logratios")
    K = lr.shape[0]
    off = _as(offsets, np.int64, "offsets", 1)
    n_dec = off.shape[0] - 1
    if n_dec < 0:
        raise ValueError("offsets must have n_decisions + 1 entries")
    ann, n = _annotators(annotator, n_dec, n_annotators)
    rk = _ranking(ranking, n_dec)
    e = None if eta is None else _as(eta, np.float64, "eta", 1)
    if e is not None and e.shape != (K,):
        raise ValueError("eta must have K = %d entries, not %d" % (K, e.shape[0]))
    gamma = np.empty((max(n, 0), K))
    eta_new = np.empty(K)
    ll = ctypes.c_double()
    d = Diag()
    rc = lib.emdpo_estep(K, n_dec, _ptr(lr, ctypes.c_double), ld, _ptr(off, ctypes.c_int64),
                         None if rk is None else _ptr(rk, ctypes.c_ubyte), _ptr(ann, ctypes.c_int64), n, float(beta),
                         None if e is None else _ptr(e, ctypes.c_double), _ptr(gamma, ctypes.c_double),
                         _ptr(eta_new, ctypes.c_double), ctypes.byref(ll), ctypes.byref(d))
    check(rc, d)
    return gamma, eta_new, ll.value


def weights(gamma: ArrayLike, annotator: ArrayLike, normalize: bool = False) -> np.ndarray:
    """The weights of the next weighted-DPO round.

    Parameters
    ----------
    gamma : float64 array, shape (n_annotators, K)
        A posterior, as ``estep`` returns it.
    annotator : int64 array, shape (n_decisions,)
        Each decision's annotator.
    normalize : bool
        Rescale each type's column to mean 1 over the decisions, as
        emdpo's Llama M-step does by default (the same objective up to a
        constant; gradient clipping then acts as in plain DPO).

    Returns
    -------
    w : float64 array, shape (n_decisions, K)
        ``w[j, k] = gamma[annotator[j], k]`` (rescaled when asked): column
        k weighs each decision's DPO loss when training type k.
    """
    g = _as(gamma, np.float64, "gamma", 2)
    n, K = g.shape
    ann = _as(annotator, np.int64, "annotator", 1)
    w = np.empty((ann.shape[0], K))
    d = Diag()
    check(lib.emdpo_estep_weights(K, ann.shape[0], _ptr(ann, ctypes.c_int64), n, _ptr(g, ctypes.c_double),
                                  1 if normalize else 0, _ptr(w, ctypes.c_double), ctypes.byref(d)), d)
    return w


class MMRAResult(NamedTuple):
    """Everything MMRA-AE's game gives (``mmra_ae`` returns the first three)."""
    w: np.ndarray            # (K,) the mixture over the K policies
    max_regret: float        # the game's value at w: the largest type's regret
    duality_gap: float       # its certificate: w is within this of the min-max regret
    regret: np.ndarray       # (K,) each type's regret under w
    iterations: int          # Hedge rounds (or LP pivots)
    hedge_capped: bool       # Hedge stopped at its round cap above its tolerance
    lp_value: float          # the exact LP's min-max regret
    lp_w: np.ndarray         # (K,) the LP's mixture


def mmra_ae_result(regret_matrix: ArrayLike, solver: str = "hedge", max_iter: int = 100000,
                   tol: float = 1e-4) -> MMRAResult:
    """MMRA-AE with everything the game gives; see ``mmra_ae``."""
    R = _as(regret_matrix, np.float64, "regret_matrix", 2)
    rows, K = R.shape
    if solver not in _SOLVERS:
        raise ValueError("solver must be 'hedge' or 'lp', not %r" % (solver,))
    o = _lib.HedgeOpts()
    lib.emdpo_mmra_hedge_opts_init(ctypes.byref(o))
    o.max_iter, o.rel_tol = int(max_iter), float(tol)
    res = _lib.RegretsResult()
    d = Diag()
    check(lib.emdpo_mmra_ae_regrets(_ptr(R, ctypes.c_double), rows, K, _SOLVERS[solver], ctypes.byref(o),
                                    ctypes.byref(res), ctypes.byref(d)), d)
    return MMRAResult(np.array(res.w[:K]), res.game.upper, res.game.gap, np.array(res.regret[:K]),
                      int(res.game.iterations), bool(res.hedge_capped), res.lp.value, np.array(res.lp_w[:K]))


def mmra_ae(regret_matrix: ArrayLike, solver: str = "hedge", max_iter: int = 100000,
            tol: float = 1e-4) -> Tuple[np.ndarray, float, float]:
    """MMRA-AE (the paper's Algorithm 4) on a regret matrix computed anywhere.

    Parameters
    ----------
    regret_matrix : float64 array, shape (K + 1, K) or (K, K)
        Rows are the types whose regrets are measured, columns the K
        policies: ``R[k, k'] = L[k, k] - L[k, k']`` with ``L[k, k'] =
        E_{x, y ~ pi_k'}[beta log(pi_k / pi_ref)]``. With K + 1 rows, row 0
        must be zero (the game's form); with K rows the zero row is added.
    solver : "hedge" or "lp"
        Optimistic Hedge for both players (the paper's) or the exact LP;
        the LP is always solved as a check (``mmra_ae_result``).
    max_iter, tol : Hedge's round cap and relative duality-gap tolerance.

    Returns
    -------
    w : float64 array, shape (K,)
        The mixture over the K policies.
    max_regret : float
        The game's value at w: the largest regret any type suffers.
    duality_gap : float
        Certifies w: the min-max regret is at least max_regret - duality_gap.
    """
    r = mmra_ae_result(regret_matrix, solver, max_iter, tol)
    return r.w, r.max_regret, r.duality_gap


def margin_criterion(margins: ArrayLike, annotator: ArrayLike,
                     n_annotators: Optional[int] = None) -> Tuple[float, float]:
    """The paper's validation reward-margin criterion for one candidate K.

    Parameters
    ----------
    margins : float64 array, shape (n_decisions, K)
        Decision j's reward margin under type k: the mean over its rejected
        items of ``r_k(chosen) - r_k(rejected)``, ``r_k = beta (log pi_k -
        log pi_ref)``. NaN marks a margin to skip.
    annotator : int64 array, shape (n_decisions,)
        Each decision's validation annotator (decisions in each one's order).

    Returns
    -------
    criterion : float
        The mean over annotators of the best type's mean margin.
    crossfit : float
        The cross-fitted version (each annotator's best type on one half of
        its decisions, scored on the other), which does not rise with K on
        noise; NaN when no annotator has two decisions.
    """
    m = _as(margins, np.float64, "margins", 2)
    n_dec, K = m.shape
    ann, n = _annotators(annotator, n_dec, n_annotators)
    c, cf = ctypes.c_double(), ctypes.c_double()
    d = Diag()
    check(lib.emdpo_margin_criterion(K, n_dec, _ptr(m, ctypes.c_double), _ptr(ann, ctypes.c_int64), n,
                                     ctypes.byref(c), ctypes.byref(cf), ctypes.byref(d)), d)
    return c.value, cf.value


class SelectResult(NamedTuple):
    best: int                 # index of the winning candidate
    best_k: int               # its number of types
    k: List[int]              # each candidate's K
    margin: List[float]       # each candidate's criterion
    crossfit: List[float]     # and its cross-fitted version


def select_k(margins: Sequence[ArrayLike], annotator: Union[ArrayLike, Sequence[ArrayLike]],
             criterion: str = "margin") -> SelectResult:
    """K selection on validation margins computed anywhere (the paper's
    appendix D.3.1), as ``emdpo select --margins`` does.

    Parameters
    ----------
    margins : sequence of float64 arrays, each of shape (n_decisions, K_c)
        One per candidate fit (K_c types).
    annotator : int64 array, shape (n_decisions,), or one per candidate
        The validation decisions' annotators.
    criterion : "margin" or "crossfit"
        Which criterion picks K: the largest wins, a tie the smaller K.
    """
    if criterion not in _CRITERIA:
        raise ValueError("criterion must be 'margin' or 'crossfit', not %r" % (criterion,))
    if len(margins) < 1:
        raise ValueError("no candidates")
    shared = isinstance(annotator, np.ndarray) and annotator.ndim == 1
    ks, crit, cfs = [], [], []
    for c, m in enumerate(margins):
        m = _as(m, np.float64, "margins[%d]" % c, 2)
        v, cf = margin_criterion(m, annotator if shared else annotator[c])
        ks.append(m.shape[1])
        crit.append(v)
        cfs.append(cf)
    values = np.array(crit if criterion == "margin" else cfs)
    karr = np.array(ks, dtype=np.intc)
    best = lib.emdpo_margin_best(len(ks), karr.ctypes.data_as(ctypes.POINTER(ctypes.c_int)), _ptr(values, ctypes.c_double))
    return SelectResult(best, ks[best], ks, crit, cfs)


class LogRatios:
    """A log-ratio file (the input of ``emdpo estep``) read by the C library.

    The arrays are views of the library's memory, valid while this object
    lives: ``logratios`` (K, n_items), ``offsets`` (n_decisions + 1),
    ``annotator`` (n_decisions), ``ranking`` (n_decisions, bool) and
    ``annotators`` the ids in order of first appearance. JSONL, CSV and
    their .gz forms are read (see ``emdpo estep --help``).
    """

    def __init__(self, path: str, k: int = 0):
        self._h = ctypes.c_void_p()
        d = Diag()
        check(lib.emdpo_logratios_read(str(path).encode(), int(k), ctypes.byref(self._h), ctypes.byref(d)), d)
        h = self._h
        self.k = lib.emdpo_logratios_k(h)
        self.n_decisions = lib.emdpo_logratios_n_decisions(h)
        self.n_items = lib.emdpo_logratios_n_items(h)
        self.n_annotators = lib.emdpo_logratios_n_annotators(h)
        self.logratios = np.ctypeslib.as_array(lib.emdpo_logratios_values(h), (self.k, self.n_items))
        self.offsets = np.ctypeslib.as_array(lib.emdpo_logratios_offsets(h), (self.n_decisions + 1,))
        self.annotator = np.ctypeslib.as_array(lib.emdpo_logratios_annotators(h), (self.n_decisions,))
        self.ranking = np.ctypeslib.as_array(lib.emdpo_logratios_ranking(h), (self.n_decisions,)).view(np.bool_)
        for a in (self.logratios, self.offsets, self.annotator, self.ranking):
            a.flags.writeable = False
        self.annotators = [lib.emdpo_logratios_annotator_name(h, i).decode() for i in range(self.n_annotators)]

    def estep(self, beta: float, eta: Optional[ArrayLike] = None) -> Tuple[np.ndarray, np.ndarray, float]:
        """``estep`` on the file's arrays."""
        return estep(self.logratios, self.offsets, self.annotator, beta, eta, self.ranking, self.n_annotators)

    def save(self, out: str, beta: float, gamma: np.ndarray, eta_new: np.ndarray, loglik: float,
             eta: Optional[ArrayLike] = None, normalize: bool = False) -> None:
        """Writes what ``emdpo estep`` writes into directory out:
        posterior.csv, weights.csv and estep.json, each atomically."""
        g = _as(gamma, np.float64, "gamma", 2)
        en = _as(eta_new, np.float64, "eta_new", 1)
        if g.shape != (self.n_annotators, self.k) or en.shape != (self.k,):
            raise ValueError("gamma must be (%d, %d) and eta_new (%d,)" % (self.n_annotators, self.k, self.k))
        e = None if eta is None else _as(eta, np.float64, "eta", 1)
        d = Diag()
        check(lib.emdpo_estep_save(self._h, float(beta), None if e is None else _ptr(e, ctypes.c_double),
                                   _ptr(g, ctypes.c_double), _ptr(en, ctypes.c_double), float(loglik),
                                   1 if normalize else 0, str(out).encode(), ctypes.byref(d)), d)

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.emdpo_logratios_free(self._h)
            self._h = None

    def __del__(self):
        self.close()


def read_logratios(path: str, k: int = 0) -> LogRatios:
    """Reads a log-ratio file (k: the number of types expected, 0: any)."""
    return LogRatios(path, k)


def estep_file(path: str, beta: float, out: str, eta: Optional[ArrayLike] = None,
               normalize: bool = False) -> Tuple[np.ndarray, np.ndarray, float]:
    """``emdpo estep --logratios path --beta beta [--eta ...] [--normalize]
    --out out`` from Python: the same files, the same bits."""
    lr = LogRatios(path, 0 if eta is None else len(eta))
    gamma, eta_new, ll = lr.estep(beta, eta)
    lr.save(out, beta, gamma, eta_new, ll, eta, normalize)
    return gamma, eta_new, ll


def read_regrets(path: str) -> np.ndarray:
    """A regret-matrix file (JSON or CSV, as ``emdpo aggregate --regrets``
    reads it) as a float64 array of shape (rows, K)."""
    buf = np.empty((_lib.MAX_K + 1) * _lib.MAX_K)
    rows, K = ctypes.c_int(), ctypes.c_int()
    d = Diag()
    check(lib.emdpo_regrets_read(str(path).encode(), _ptr(buf, ctypes.c_double), ctypes.byref(rows), ctypes.byref(K),
                                 ctypes.byref(d)), d)
    return buf[:rows.value * K.value].reshape(rows.value, K.value).copy()


def read_margins(path: str) -> List[Tuple[np.ndarray, np.ndarray]]:
    """A margins file (as ``emdpo select --margins`` reads it): one
    (margins (n_decisions, K), annotator (n_decisions,)) pair per candidate."""
    h = ctypes.c_void_p()
    d = Diag()
    check(lib.emdpo_margins_read(str(path).encode(), ctypes.byref(h), ctypes.byref(d)), d)
    try:
        out = []
        for c in range(lib.emdpo_margins_n_candidates(h)):
            n_dec, n_ann = ctypes.c_int64(), ctypes.c_int64()
            mp, ap = ctypes.POINTER(ctypes.c_double)(), ctypes.POINTER(ctypes.c_int64)()
            k = lib.emdpo_margins_candidate(h, c, ctypes.byref(n_dec), ctypes.byref(mp), ctypes.byref(ap),
                                            ctypes.byref(n_ann))
            out.append((np.ctypeslib.as_array(mp, (n_dec.value, k)).copy(),
                        np.ctypeslib.as_array(ap, (n_dec.value,)).copy()))
        return out
    finally:
        lib.emdpo_margins_free(h)


__all__ = ["ArrayLike", "EmdpoError", "LogRatios", "MMRAResult", "SelectResult", "estep", "estep_file",
           "margin_criterion", "mmra_ae", "mmra_ae_result", "read_logratios", "read_margins", "read_regrets",
           "select_k", "set_threads", "version", "weights"]
