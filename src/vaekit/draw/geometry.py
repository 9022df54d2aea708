"""The latent geometry that pictures are drawn on, independent of matplotlib: grids of prior
quantiles (the manifold, traversals), principal components and projections of posterior means
(the manifold's plane, the scatter plot, the explorer's map), and paths between latents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vaekit.errors import ConfigError, DataError
from vaekit.model.priors import Prior, StandardNormal, standard_normal_quantile

QUANTILE_RANGE = (0.05, 0.95)  # the manifold's grid of Gaussian quantiles, p in this range


def manifold_quantiles(n: int, prior: Prior) -> np.ndarray:
    """The prior's quantiles at n values of p evenly spaced over [0.05, 0.95], (n, K): for each
    coordinate, a grid of values equally likely under its marginal (Φ⁻¹(p) for N(0, I))."""
    return prior.quantile(np.linspace(*QUANTILE_RANGE, n))


def manifold_plane(
    k: int, dims: tuple[int, int] | None, latents: np.ndarray | None, prior: Prior, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, str], str]:
    """Origin and the two axis directions (K,) of the plane, the n grid values along each axis
    (n, 2), axis names, and a description.

    The grid point (a, b) is origin + a·axes[0] + b·axes[1]: latent axes take the prior's
    marginal quantiles (the other coordinates at the prior's median), principal axes Φ⁻¹(p).
    """
    lo, hi = (f"{100 * p:g}%" for p in QUANTILE_RANGE)
    if dims is None and k == 2:
        dims = (0, 1)
    if dims is not None:
        if len(dims) != 2 or not all(isinstance(d, (int, np.integer)) for d in dims):
            raise ConfigError(f"dims must be two latent indices such as (0, 1); got {dims!r}")
        i, j = (int(d) for d in dims)
        if i == j or not (0 <= i < k and 0 <= j < k):
            raise ConfigError(
                f"dims must be two different latent indices in 0..{k - 1}; got ({i}, {j})"
            )
        quantiles = manifold_quantiles(n, prior)
        origin = manifold_quantiles(3, prior)[1]  # the median of each coordinate
        origin[[i, j]] = 0.0
        standard = isinstance(prior, StandardNormal)
        rest = f", the other {k - 2} at {'0' if standard else 'their median'}" if k > 2 else ""
        marginal = "N(0, 1)" if standard else "each coordinate's marginal"
        detail = f"z[{i}] × z[{j}] at the {lo}–{hi} quantiles of the prior {marginal}{rest}"
        grid = quantiles[:, [i, j]]
        return origin, np.eye(k)[[i, j]], grid, (f"z[{i}]", f"z[{j}]"), detail
    if latents is None:
        raise ConfigError(
            f"the model has {k} latent dimensions; choose the plane to draw with dims=(i, j) "
            "or pass latents (posterior means of some data) to use their top two principal "
            "components"
        )
    latents = check_latents(latents, "latents")
    if latents.shape[1] != k:
        raise DataError(f"latents have {latents.shape[1]} dimensions, the model has {k}")
    if len(latents) < 3:
        raise DataError("latents must hold at least 3 points to find their principal plane")
    centre, directions, sd, share = principal_components(latents)
    names = tuple(f"PC{m + 1} ({100 * share[m]:.0f}% of variance)" for m in (0, 1))
    detail = (
        f"top-2 principal plane of {len(latents):,} posterior means, "
        f"{lo}–{hi} quantiles of N(mean, sd²) along each"
    )
    grid = np.repeat(standard_normal_quantile(np.linspace(*QUANTILE_RANGE, n))[:, None], 2, 1)
    return centre, directions[:2] * sd[:2, None], grid, names, detail


def traversal_latents(base: np.ndarray, quantiles: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """The latents of a traversal, (len(dims), steps, K): row r is ``base`` (K,) with coordinate
    ``dims[r]`` replaced by ``quantiles[:, dims[r]]`` (``quantiles`` (steps, K), the prior's
    per-coordinate quantiles), every other coordinate left at the base point."""
    base = np.asarray(base, dtype=np.float64)
    z = np.broadcast_to(base, (len(dims), len(quantiles), base.shape[-1])).copy()
    for row, d in enumerate(dims):
        z[row, :, d] = quantiles[:, d]
    return z


def check_latents(latents: np.ndarray, name: str) -> np.ndarray:
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or len(latents) == 0:
        raise DataError(f"{name} must be an array (N, K) of latent vectors; got {latents.shape}")
    if not np.isfinite(latents).all():
        raise DataError(f"{name} contain NaN or infinite values")
    return latents


def principal_components(
    x: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PCA of points x (N, K): their mean (K,), the principal directions (rows, unit length, by
    decreasing variance), the standard deviation along each (x's units) and each one's share of
    the total variance (numpy SVD of the centred points; variance = s²/(N − 1)).

    Each direction is oriented so that its largest-magnitude component is positive (the first
    such component on a tie): an SVD's signs are arbitrary, and with this rule the manifold, the
    scatter plot and the explorer's map show the same plane the same way round, for x and −x.
    """
    centre = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - centre, full_matrices=False)
    variance = singular**2 / max(len(x) - 1, 1)
    total = variance.sum()
    share = variance / total if total > 0 else np.zeros_like(variance)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    return centre, vt * signs[:, None], np.sqrt(variance), share


def _tsne_class() -> type:
    """scikit-learn's TSNE, or a :class:`ConfigError` saying how to get it."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ConfigError(
            "--method tsne needs scikit-learn, which is not installed; "
            "pip install scikit-learn, or use --method pca"
        ) from None
    return TSNE


def check_projection(method: str) -> None:
    """Refuse a scatter ``method`` that cannot run (unknown, or t-SNE without scikit-learn), so
    that callers can check it before any work."""
    if method not in ("auto", "pca", "tsne"):
        raise ConfigError(f"method must be auto, pca or tsne; got {method!r}")
    if method == "tsne":
        _tsne_class()


def project(latents: np.ndarray, method: str) -> tuple[np.ndarray, tuple[str, str], str]:
    """2-D coordinates, axis labels and the name of the projection."""
    k = latents.shape[1]
    if method == "tsne":
        TSNE = _tsne_class()  # noqa: N806 (a class)
        perplexity = float(min(30.0, max(1.0, (len(latents) - 1) / 3)))
        tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=0)
        xy = tsne.fit_transform(latents)
        return xy, ("t-SNE 1", "t-SNE 2"), f"t-SNE of {k} latent dimensions"
    if method == "auto" and k == 2:
        return latents, ("z[0]", "z[1]"), "the 2 latent dimensions"
    if k < 2:
        raise DataError("a latent scatter plot needs at least 2 latent dimensions")
    centre, directions, _, share = principal_components(latents)
    xy = (latents - centre) @ directions[:2].T
    labels = tuple(f"PC{m + 1} ({100 * share[m]:.0f}% of variance)" for m in (0, 1))
    return xy, labels, f"PCA of {k} latent dimensions to 2"


def interpolate_latents(
    z_a: np.ndarray, z_b: np.ndarray, steps: int, method: str = "linear"
) -> np.ndarray:
    """``steps`` latent vectors from ``z_a`` to ``z_b`` (both included exactly), shape (steps, K).

    ``linear``: z(t) = (1 − t)·z_a + t·z_b. ``slerp`` (spherical): with Ω the angle between the
    vectors, z(t) = sin((1 − t)Ω)/sin Ω · z_a + sin(tΩ)/sin Ω · z_b, which keeps unit vectors on
    the unit sphere; it falls back to linear when sin Ω ≈ 0 (the vectors are nearly parallel or
    opposite, or one is zero), where the arc is not defined. t is evenly spaced in [0, 1].
    """
    if method not in ("linear", "slerp"):
        raise ConfigError(f"method must be linear or slerp; got {method!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ConfigError(f"steps must be an integer of at least 2 (both ends); got {steps!r}")
    a = np.asarray(z_a, dtype=np.float64)
    b = np.asarray(z_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise DataError(f"z_a and z_b must be vectors of one length; got {a.shape} and {b.shape}")
    t = np.linspace(0.0, 1.0, int(steps))[:, None]
    path = (1 - t) * a + t * b
    if method == "slerp":
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        if norms > 0:
            omega = math.acos(float(np.clip(a @ b / norms, -1.0, 1.0)))
            if math.sin(omega) > 1e-6:
                path = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / math.sin(omega)
    path[0], path[-1] = a, b
    return path
