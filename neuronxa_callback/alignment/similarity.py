"""Representation-similarity baselines (paper Appendix C.2): debiased linear CKA, SVCCA, ANC — from n x n Grams.

Usage::

    from neuronxa_callback.alignment.similarity import cka, svcca, anc, similarity_per_layer

    cka(x, y)                                   # x, y: [n, d] (d may differ), float64 result in [-1, 1]
    svcca(x, y, directions=10)                  # mean canonical correlation of the top-10 SVD directions
    anc(x, y)                                   # mean Pearson r of neuron j in x with neuron j in y (equal d)
    result = similarity_per_layer(src, tgt, measure="cka")   # src, tgt: [L, n, d] -> {"per_layer", "mean", ...}

Why a small implementation here: no maintained library covers all three measures with n << d support (checked:
ckatorch, anatome, repsim, netrep), so this module implements them in a few tested lines. Layers of large models
have d up to 14336 while n is ~100, so everything is computed from n x n matrices (Gram matrices, or the n x d data
itself for ANC), never d x d, in float64; tests compare each measure with a naive d x d reference implementation.

Definitions (rows are the n parallel sentences, columns the features; row i of x and y are translations):

- Debiased linear CKA (Kornblith et al. 2019 with the unbiased HSIC estimator of Song et al. 2012): features are
  centred, K = x x^T and L = y y^T get zero diagonals, and
  HSIC_u(K, L) = [tr(KL) + 1^T K 1 * 1^T L 1 / ((n-1)(n-2)) - 2/(n-2) * 1^T K L 1] / (n(n-3));
  CKA = HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L)). The plain (biased) estimator is close to 1 for unrelated
  data when n << d; the debiased one is near 0. It can be slightly negative. Needs n >= 4.
- SVCCA (Raghu et al. 2017) with a FIXED number k of directions: the top-k left singular vectors U_k of the centred
  x (eigenvectors of the centred Gram) and V_k of y; CCA between the two k-dimensional projections has canonical
  correlations equal to the singular values of U_k^T V_k; the score is their mean. The usual "keep 99 % of the
  variance" rule keeps nearly all n directions when n << d, and CCA between two (n-1)-dimensional subspaces of the
  (n-1)-dimensional centred sample space gives correlations of 1 for any data, so k is fixed (default 10, k < n-1).
  Under unrelated data the expected mean squared correlation is k/(n-1) (two random k-subspaces), so SVCCA's null
  level is ~0.25-0.3 at n=100, k=10 — not 0; compare measures by their correlation with outcomes, not by level.
- ANC, averaged neuron-wise correlation (Del & Fishel 2022): Pearson r over the n sentences between neuron j of x
  and neuron j of y, averaged over neurons. Neurons with zero variance in either language (e.g. a NAS neuron that
  never fires) have no correlation and are masked out; if every neuron is masked the score is NaN -> None.
  Needs the same neurons on both sides (equal d); O(n d) memory, no d x d matrix.

Layer averaging follows NASCA: per layer, then the plain mean over the selected layers (scoring.select_layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from neuronxa_callback.alignment.scoring import LayerSpec, layers_label, select_layers

__all__ = [
    "SIMILARITY_MEASURES",
    "SimilarityError",
    "anc",
    "cka",
    "centered_gram",
    "hsic_unbiased",
    "measure_names",
    "parse_measure",
    "similarity_per_layer",
    "svcca",
]

SIMILARITY_MEASURES = ("cka", "svcca", "anc")
DEFAULT_SVCCA_DIRECTIONS = 10


class SimilarityError(ValueError):
    """Bad input to a similarity measure (shapes, too few sentences, unknown measure name)."""


def _as_float64_2d(x, name: str, caller: str):
    import torch

    x = torch.as_tensor(x)
    if x.dim() != 2:
        raise SimilarityError(f"similarity.{caller}: {name} must be [n, d]; got shape {tuple(x.shape)}")
    return x.to(torch.float64)


def _check_rows(x, y, caller: str, minimum: int) -> int:
    if x.shape[0] != y.shape[0]:
        raise SimilarityError(
            f"similarity.{caller}: x and y need the same number of sentences (rows); got {x.shape[0]} and {y.shape[0]}"
        )
    n = int(x.shape[0])
    if n < minimum:
        raise SimilarityError(f"similarity.{caller}: needs at least {minimum} sentences; got {n}")
    return n


def centered_gram(x):
    """The n x n Gram matrix of the column-centred x ([n, d]), float64: (x - mean) (x - mean)^T."""
    x = _as_float64_2d(x, "x", "centered_gram")
    x = x - x.mean(dim=0, keepdim=True)
    return x @ x.T


def hsic_unbiased(K, L) -> float:
    """Song et al. (2012) unbiased HSIC estimator of two n x n Gram matrices (diagonals are ignored). n >= 4."""
    import torch

    K = torch.as_tensor(K, dtype=torch.float64).clone()
    L = torch.as_tensor(L, dtype=torch.float64).clone()
    n = K.shape[0]
    if n < 4:
        raise SimilarityError(f"similarity.hsic_unbiased: needs n >= 4 sentences; got {n}")
    K.fill_diagonal_(0.0)
    L.fill_diagonal_(0.0)
    ones = torch.ones(n, dtype=torch.float64)
    k_sum, l_sum = K.sum(), L.sum()
    trace = (K * L).sum()  # tr(K L) for symmetric matrices without forming K L
    cross = ones @ K @ (L @ ones)
    value = trace + k_sum * l_sum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross
    return float(value / (n * (n - 3)))


def cka(x, y) -> float | None:
    """Debiased linear CKA of x [n, d1] and y [n, d2] (d1 may differ from d2). None when a side is constant."""
    x = _as_float64_2d(x, "x", "cka")
    y = _as_float64_2d(y, "y", "cka")
    _check_rows(x, y, "cka", 4)
    K, L = centered_gram(x), centered_gram(y)
    kl, kk, ll = hsic_unbiased(K, L), hsic_unbiased(K, K), hsic_unbiased(L, L)
    if kk <= 0 or ll <= 0:
        return None
    return kl / math.sqrt(kk * ll)


def _top_directions(x, k: int):
    """The top-k left singular vectors of the centred x, from the eigenvectors of its n x n Gram (largest first)."""
    import torch

    values, vectors = torch.linalg.eigh(centered_gram(x))
    order = torch.argsort(values, descending=True)[:k]
    rank = int((values > values.max().clamp(min=0) * 1e-10).sum())
    return vectors[:, order], rank


def svcca(x, y, directions: int = DEFAULT_SVCCA_DIRECTIONS) -> float | None:
    """SVCCA of x [n, d1] and y [n, d2] with a fixed number of SVD directions per side.

    None when a side has fewer than `directions` non-zero singular values (no k-dimensional subspace to compare).
    """
    import torch

    x = _as_float64_2d(x, "x", "svcca")
    y = _as_float64_2d(y, "y", "svcca")
    n = _check_rows(x, y, "svcca", 3)
    if not isinstance(directions, int) or not 1 <= directions < n - 1:
        raise SimilarityError(
            f"similarity.svcca: directions must be an integer in [1, n-2] = [1, {n - 2}] (with n-1 or more directions "
            f"every canonical correlation is 1); got {directions!r}"
        )
    u, rank_x = _top_directions(x, directions)
    v, rank_y = _top_directions(y, directions)
    if rank_x < directions or rank_y < directions:
        return None
    correlations = torch.linalg.svdvals(u.T @ v).clamp(max=1.0)
    return float(correlations.mean())


def anc(x, y, *, eps: float = 1e-10) -> float | None:
    """Average neuron-wise Pearson correlation of x [n, d] and y [n, d]; zero-variance neurons are masked.

    None when no neuron has variance on both sides.
    """
    import torch

    x = _as_float64_2d(x, "x", "anc")
    y = _as_float64_2d(y, "y", "anc")
    _check_rows(x, y, "anc", 2)
    if x.shape[1] != y.shape[1]:
        raise SimilarityError(
            f"similarity.anc: x and y need the same neurons (columns); got {x.shape[1]} and {y.shape[1]}"
        )
    n = x.shape[0]
    # A constant column leaves rounding residue after centring (~1e-16 of its size), not an exact 0: the variance
    # threshold is relative to the column's magnitude.
    floor_x = x.abs().amax(dim=0) * (eps * n)
    floor_y = y.abs().amax(dim=0) * (eps * n)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    sx = torch.linalg.vector_norm(x, dim=0)
    sy = torch.linalg.vector_norm(y, dim=0)
    keep = (sx > floor_x) & (sy > floor_y) & (sx > 0) & (sy > 0)
    if not bool(keep.any()):
        return None
    r = (x[:, keep] * y[:, keep]).sum(dim=0) / (sx[keep] * sy[keep])
    return float(r.mean())


_FUNCTIONS = {"cka": cka, "svcca": svcca, "anc": anc}


def parse_measure(spec: str, default_representation: str = "embedding") -> tuple[str, str]:
    """ "cka" -> ("cka", default_representation); "anc:nas" -> ("anc", "nas"). Representation names or metric names."""
    from neuronxa_callback.alignment.scoring import REPRESENTATION_FOR_METRIC

    if not isinstance(spec, str) or not spec.strip():
        raise SimilarityError(f"similarity: a measure must be a non-empty string; got {spec!r}")
    name, _, representation = spec.strip().lower().partition(":")
    representation = representation or default_representation
    representation = REPRESENTATION_FOR_METRIC.get(representation, representation)
    if name not in _FUNCTIONS:
        raise SimilarityError(f"similarity: unknown measure {name!r} in {spec!r}; use one of {SIMILARITY_MEASURES}")
    if representation not in ("nas", "nav", "embedding"):
        raise SimilarityError(
            f"similarity: unknown representation {representation!r} in {spec!r}; use nas, nav or embedding"
        )
    return name, representation


def similarity_per_layer(
    source,
    target,
    *,
    measure: str,
    layers: LayerSpec = None,
    directions: int = DEFAULT_SVCCA_DIRECTIONS,
) -> dict[str, Any]:
    """A measure per layer of [L, n, d] source/target representations and its mean over the selected layers.

    Returns {"measure", "per_layer": [float|None per layer], "mean": float|None, "layers": [selected],
    "layers_label", "n", plus "directions" for svcca}. Layers where the measure is undefined, or whose
    representations are not finite, are None and left out of the mean (None when every selected layer is).
    """
    import torch

    if measure not in _FUNCTIONS:
        raise SimilarityError(f"similarity: unknown measure {measure!r}; use one of {SIMILARITY_MEASURES}")
    source = torch.as_tensor(source)
    target = torch.as_tensor(target)
    if source.dim() != 3 or target.dim() != 3 or source.shape[:2] != target.shape[:2]:
        raise SimilarityError(
            f"similarity.similarity_per_layer: source and target must be [L, n, d] with equal L and n; got "
            f"{tuple(source.shape)} and {tuple(target.shape)}"
        )
    selected = select_layers(source.shape[0], layers)
    function = _FUNCTIONS[measure]
    kwargs = {"directions": directions} if measure == "svcca" else {}
    per_layer: list[float | None] = []
    for layer in range(source.shape[0]):
        if not (torch.isfinite(source[layer]).all() and torch.isfinite(target[layer]).all()):
            # An overflowed layer (activations.encode leaves its rows NaN) has no measure; SVD would fail on it.
            per_layer.append(None)
            continue
        value = function(source[layer], target[layer], **kwargs)
        per_layer.append(None if value is None or not math.isfinite(value) else float(value))
    defined = [value for value in (per_layer[i] for i in selected) if value is not None]
    result: dict[str, Any] = {
        "measure": measure,
        "per_layer": per_layer,
        "mean": float(sum(defined) / len(defined)) if defined else None,
        "layers": selected,
        "layers_label": layers_label(layers),
        "n": int(source.shape[1]),
    }
    if measure == "svcca":
        result["directions"] = directions
    return result


def measure_names(specs: Sequence[str], default_representation: str = "embedding") -> list[tuple[str, str, str]]:
    """[(key, measure, representation)] for measure specs; key is the spec as written in outputs ("cka", "anc:nas")."""
    out: list[tuple[str, str, str]] = []
    for spec in specs:
        measure, representation = parse_measure(spec, default_representation)
        key = measure if representation == default_representation else f"{measure}:{representation}"
        if key not in [k for k, _, _ in out]:
            out.append((key, measure, representation))
    return out
