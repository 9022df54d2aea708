"""Disentanglement metrics of a code against known generative factors: MIG and DCI.

Inputs: ``codes`` (N, K) real numbers (e.g. the encoder's means), ``factors`` (N, F) whole
numbers (each factor's value index, e.g. :attr:`vaekit.data.shapes.Shapes.factors`). Entropies and
mutual informations are in nats.

MIG, the mutual information gap (Chen et al. 2018): each code dimension z_k is discretised into
:data:`MIG_BINS` (20) equal-width bins over its range [min, max]; the plug-in mutual information
I(z_k; v_f) = Σ p(a, b) log[p(a, b) / (p(a) p(b))] is counted from the joint histogram
(:func:`sklearn.metrics.mutual_info_score`), and the factor entropy
H(v_f) = −Σ p(b) log p(b) likewise. With I_(1) ≥ I_(2) the two largest of I(z_k; v_f) over k,

    MIG = (1/F) Σ_f (I_(1)(v_f) − I_(2)(v_f)) / H(v_f)  ∈ [0, 1].

DCI (Eastwood & Williams 2018): for each factor, a random-forest classifier
(:data:`DCI_TREES` trees of depth ≤ :data:`DCI_DEPTH`, all K features tried at each split,
seeded) predicts v_f from z on a training part; its impurity-based feature importances (summing
to 1) form column f of the importance matrix R (K × F). With P_kf = R_kf / Σ_f' R_kf' (what
code k explains), P̃_kf = R_kf / Σ_k' R_k'f (what explains factor f), entropies in base F and K:

    disentanglement D = Σ_k ρ_k (1 − H_F(P_k·)),  ρ_k = Σ_f R_kf / Σ_kf R_kf;
    completeness    C = (1/F) Σ_f (1 − H_K(P̃_·f));
    informativeness I = (1/F) Σ_f accuracy_f  on the held-out part (a fraction
                        :data:`DCI_TEST_FRACTION` of the rows, drawn by the seed).

All three lie in [0, 1]; a code with one dimension per factor scores D = C = 1. Both metrics
need scikit-learn (the ``sklearn`` extra).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vaekit.errors import ConfigError, MissingExtra

MIG_BINS = 20
DCI_TREES = 30
DCI_DEPTH = 8
DCI_TEST_FRACTION = 0.2
_FEATURE = "vaekit.measure.disentanglement (MIG and DCI)"


@dataclass(frozen=True)
class MIGResult:
    """``mig``; per factor, ``gaps`` (I_(1) − I_(2)) / H and ``entropy`` H(v_f) (F,), nats;
    ``mutual_information`` I(z_k; v_f) (K, F), nats."""

    mig: float
    gaps: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray

    def as_dict(self) -> dict:
        """JSON-able: numbers and nested lists."""
        return _plain(asdict(self))


@dataclass(frozen=True)
class DCIResult:
    """The three scores; ``importance`` R (K, F); per code dimension ``code_disentanglement``
    1 − H_F(P_k·) and ``code_weight`` ρ_k (K,); per factor ``factor_completeness``
    1 − H_K(P̃_·f) and held-out ``factor_accuracy`` (F,)."""

    disentanglement: float
    completeness: float
    informativeness: float
    importance: np.ndarray
    code_disentanglement: np.ndarray
    code_weight: np.ndarray
    factor_completeness: np.ndarray
    factor_accuracy: np.ndarray

    def as_dict(self) -> dict:
        """JSON-able: numbers and nested lists."""
        return _plain(asdict(self))


def _plain(record: dict) -> dict:
    return {k: v.tolist() if isinstance(v, np.ndarray) else float(v) for k, v in record.items()}


def sklearn_module():
    """The sklearn module, or :class:`MissingExtra`."""
    try:
        import sklearn.ensemble
        import sklearn.metrics
        import sklearn.model_selection
    except ImportError:
        raise MissingExtra(_FEATURE, "sklearn") from None
    return sklearn


def check_inputs(codes, factors) -> tuple[np.ndarray, np.ndarray]:
    """``codes`` as float64 (N, K) and ``factors`` as int64 (N, F), or one-line ConfigError:
    both 2-D with N ≥ 2 equal rows, codes finite, factors whole numbers."""
    codes, factors = np.asarray(codes), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2:
        raise ConfigError(
            f"codes and factors must be 2-D (N, K) and (N, F); got shapes {codes.shape} "
            f"and {factors.shape}"
        )
    if len(codes) != len(factors) or len(codes) < 2:
        raise ConfigError(
            f"codes and factors need the same number (at least 2) of rows; got {len(codes)} "
            f"and {len(factors)}"
        )
    if codes.dtype.kind not in "biuf" or not np.all(np.isfinite(codes)):
        raise ConfigError("codes must be finite real numbers")
    if factors.dtype.kind not in "biu" and not (
        factors.dtype.kind == "f" and np.all(np.isfinite(factors) & (factors == np.round(factors)))
    ):
        raise ConfigError("factors must be whole numbers (each factor's value index)")
    return codes.astype(np.float64), factors.astype(np.int64)


def discretize(codes: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """Each column's bin number 0 … bins−1 among ``bins`` equal-width bins over [min, max] (the
    maximum in the last bin; a constant column all in one bin)."""
    out = np.empty(codes.shape, np.int64)
    for k, column in enumerate(codes.T):
        edges = np.histogram_bin_edges(column, bins)
        out[:, k] = np.digitize(column, edges[1:-1])
    return out


def mutual_information(codes, factors, bins: int = MIG_BINS) -> np.ndarray:
    """I(z_k; v_f) (K, F), nats, of the discretised codes and the factors, by counting."""
    codes, factors = check_inputs(codes, factors)
    mutual_info_score = sklearn_module().metrics.mutual_info_score
    binned = discretize(codes, bins)
    return np.array([[mutual_info_score(z, v) for v in factors.T] for z in binned.T])


def entropy(factors) -> np.ndarray:
    """H(v_f) (F,), nats, of each column's empirical distribution."""
    factors = np.asarray(factors)
    out = []
    for column in factors.T:
        p = np.unique(column, return_counts=True)[1] / len(column)
        out.append(-np.sum(p * np.log(p)))
    return np.array(out)


def mig(codes, factors, bins: int = MIG_BINS) -> MIGResult:
    """The mutual information gap of ``codes`` (N, K ≥ 2) for ``factors`` (N, F), each factor
    taking at least two values (see the module's docstring)."""
    codes, factors = check_inputs(codes, factors)
    if codes.shape[1] < 2:
        raise ConfigError("MIG needs at least 2 code dimensions")
    h = _varied(factors)
    mi = mutual_information(codes, factors, bins)
    top = np.sort(mi, axis=0)[::-1]
    gaps = (top[0] - top[1]) / h
    return MIGResult(float(gaps.mean()), gaps, h, mi)


def _varied(factors: np.ndarray) -> np.ndarray:
    """H(v_f) (F,), or ConfigError when a factor takes one value (nothing to explain)."""
    h = entropy(factors)
    if np.any(h == 0):
        raise ConfigError(f"factor {int(np.argmin(h))} takes one value; each needs at least two")
    return h


def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """−Σ p log_base p along ``axis`` (0 log 0 = 0)."""
    logs = np.log(np.where(p > 0, p, 1.0)) / np.log(base)
    return -np.sum(p * logs, axis=axis)


def _normalise(r: np.ndarray, axis: int) -> np.ndarray:
    """r divided by its sums along ``axis`` (a zero sum leaves zeros)."""
    total = r.sum(axis=axis, keepdims=True)
    return np.divide(r, total, out=np.zeros_like(r), where=total > 0)


def dci_scores(importance: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    """From R (K ≥ 2, F ≥ 2): D, C, per-code 1 − H_F(P_k·), ρ_k, per-factor 1 − H_K(P̃_·f)."""
    r = np.asarray(importance, dtype=np.float64)
    n_codes, n_factors = r.shape
    code_d = 1 - _entropy_base(_normalise(r, axis=1), n_factors, axis=1)
    weight = r.sum(axis=1) / r.sum()
    factor_c = 1 - _entropy_base(_normalise(r, axis=0), n_codes, axis=0)
    return float(np.sum(weight * code_d)), float(factor_c.mean()), code_d, weight, factor_c


def dci(codes, factors, seed: int = 0) -> DCIResult:
    """Disentanglement, completeness and informativeness of ``codes`` (N, K ≥ 2) for
    ``factors`` (N, F ≥ 2), from one seeded random forest per factor (see the module's
    docstring). Cost: F forests of 30 trees on 0.8·N rows."""
    codes, factors = check_inputs(codes, factors)
    if codes.shape[1] < 2 or factors.shape[1] < 2:
        raise ConfigError("DCI needs at least 2 code dimensions and 2 factors")
    _varied(factors)
    sklearn = sklearn_module()
    train, test = sklearn.model_selection.train_test_split(
        np.arange(len(codes)), test_size=DCI_TEST_FRACTION, random_state=seed
    )
    importance = np.empty((codes.shape[1], factors.shape[1]))
    accuracy = np.empty(factors.shape[1])
    for f, v in enumerate(factors.T):
        forest = sklearn.ensemble.RandomForestClassifier(
            n_estimators=DCI_TREES, max_depth=DCI_DEPTH, max_features=None, random_state=seed
        ).fit(codes[train], v[train])
        importance[:, f] = forest.feature_importances_
        accuracy[f] = forest.score(codes[test], v[test])
    d, c, code_d, weight, factor_c = dci_scores(importance)
    return DCIResult(d, c, float(accuracy.mean()), importance, code_d, weight, factor_c, accuracy)
