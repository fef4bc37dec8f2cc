"""Alignment scores from sentence representations: NeuronXA weak alignment, retrieval accuracy, chance level.

Usage::

    from neuronxa_callback.alignment.scoring import cosine_matrices, weak_alignment, score_pair

    C = cosine_matrices(source_reps, target_reps)      # [L, n, d] x [L, n, d] -> [L, n, n] float64
    per_layer = weak_alignment(C)                       # [L] fractions in [0, 1] (paper Eq. 4, strict)
    score = score_pair(source_reps, target_reps, metric="nasca", pair="eng_Latn-deu_Latn")
    print(score.mean, score.mean_pvalue, score.signature())

Definitions (Huang et al. 2025, arXiv 2507.14900):

- Weak alignment (Eq. 4): sentence i is aligned at layer l when C[i, i] is STRICTLY greater than every other entry of
  row i and of column i; the score is the fraction of such i. Ties fail.
- Retrieval accuracy (section 3.1): src2tgt is the fraction of rows whose strict maximum is the diagonal, tgt2src the
  same for columns; "both" (bidirectional) is their mean. Max-pooling over layers reports the best layer's accuracy.
- Chance level (Appendix E): under random representations a diagonal entry is the strict maximum of its row and column
  (2n - 1 entries) with probability p = 1 / (2n - 1), so k aligned sentences out of n have the tail probability
  P(X >= k), X ~ Binomial(n, p).

Cosines are computed in float64. A zero vector has no direction: its cosine with anything is defined as 0 here
(so an all-zero representation never counts as aligned unless every competitor is negative).

Metric names follow the representation: NAS -> "nasca", NAV -> "navca", hidden-state embedding -> "mexa" (the
weak-alignment score on embeddings, as the paper uses MEXA for comparison; MEXA's own paper differs in details).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from neuronxa_callback.alignment.statistics import aligned_masks

__all__ = [
    "METRIC_FOR_REPRESENTATION",
    "REPRESENTATION_FOR_METRIC",
    "LayerSpec",
    "PairScore",
    "ScoringError",
    "center_representations",
    "chance_probability",
    "cosine_matrices",
    "layers_label",
    "library_versions",
    "non_finite_layers",
    "retrieval_accuracy",
    "score_matrices",
    "score_pair",
    "select_layers",
    "weak_alignment",
    "weak_alignment_counts",
    "weak_alignment_indicators",
]

METRIC_FOR_REPRESENTATION = {"nas": "nasca", "nav": "navca", "embedding": "mexa"}
REPRESENTATION_FOR_METRIC = {metric: rep for rep, metric in METRIC_FOR_REPRESENTATION.items()}

# None or "all": every layer; (start, stop): range(start, stop) with Python slice semantics; list: explicit indices.
LayerSpec = None | str | tuple | list | range


class ScoringError(ValueError):
    """Bad input to a scoring function (shapes, layer selections, counts)."""


# ----------------------------------------------------------------------------------------------------
# Cosine matrices


def center_representations(reps):
    """Subtract the mean over sentences (per layer): ``reps - reps.mean(dim=-2, keepdim=True)``.

    BEYOND THE PAPER (off by default everywhere): NeuronXA uses raw representations. Centering each language
    separately removes the shared offset (anisotropy) that makes all cosines large and similar.
    """
    import torch

    reps = torch.as_tensor(reps)
    return reps - reps.mean(dim=-2, keepdim=True)


def _unit_rows(x):
    """Rows scaled to unit length in float64; zero rows stay zero (so their cosines are 0)."""
    import torch

    x = x.to(torch.float64)
    norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    # Dividing by 1 where the norm is 0 keeps a zero row at exactly zero instead of NaN.
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def cosine_matrices(source, target, *, center: bool = False):
    """Cosine similarity of every source sentence with every target sentence, per layer.

    ``cosine_matrices(a, b)[l, i, j] = cos(a[l, i], b[l, j])``. Accepts [L, n, d] pairs (-> [L, n, n]) or [n, d]
    pairs (-> [n, n]); the two sides need the same number of sentences and dimensions. Float64 output; a zero vector's
    cosine is 0. ``center=True`` (beyond the paper) first subtracts each side's mean representation per layer.
    Layers are converted to float64 one at a time so a large model's [L, n, d] is never copied whole.
    """
    import torch

    source = torch.as_tensor(source)
    target = torch.as_tensor(target)
    if source.dim() not in (2, 3) or source.shape != target.shape:
        raise ScoringError(
            f"scoring.cosine_matrices: source and target must both be [L, n, d] or [n, d] with equal shapes; "
            f"got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    if source.shape[-2] == 0:
        raise ScoringError("scoring.cosine_matrices: no sentences (n = 0)")
    squeeze = source.dim() == 2
    if squeeze:
        source, target = source.unsqueeze(0), target.unsqueeze(0)
    matrices = []
    for layer in range(source.shape[0]):
        a = source[layer].to(torch.float64)
        b = target[layer].to(torch.float64)
        if center:
            a, b = center_representations(a), center_representations(b)
        matrices.append(_unit_rows(a) @ _unit_rows(b).T)
    result = torch.stack(matrices)
    return result[0] if squeeze else result


# ----------------------------------------------------------------------------------------------------
# Scores from cosine matrices


def _check_square(C, caller: str):
    import torch

    C = torch.as_tensor(C)
    if C.dim() not in (2, 3) or C.shape[-1] != C.shape[-2] or C.shape[-1] == 0:
        raise ScoringError(f"scoring.{caller}: expected a non-empty [L, n, n] or [n, n] matrix; got {tuple(C.shape)}")
    return C


def _diagonal_wins(C):
    """(row_wins, column_wins): bool [..., n], True where C[i, i] strictly beats every other entry of row/column i."""
    import torch

    diagonal = C.diagonal(dim1=-2, dim2=-1)
    off_diagonal = C.clone()
    off_diagonal.diagonal(dim1=-2, dim2=-1).fill_(-math.inf)
    # NaN compares False, so a NaN anywhere on a diagonal entry's row/column makes it fail rather than pass.
    has_nan_row = torch.isnan(C).any(dim=-1)
    has_nan_column = torch.isnan(C).any(dim=-2)
    row_wins = (diagonal > off_diagonal.amax(dim=-1)) & ~has_nan_row
    column_wins = (diagonal > off_diagonal.amax(dim=-2)) & ~has_nan_column
    return row_wins, column_wins


def non_finite_layers(C) -> list[int]:
    """Layers of C [L, n, n] holding a NaN or inf: their representations overflowed (activations.encode sets an
    overflowed layer's rows to NaN), so any count from them would be an artefact, not a score."""
    import torch

    C = torch.as_tensor(C)
    if C.dim() == 2:
        C = C.unsqueeze(0)
    return (~torch.isfinite(C)).flatten(1).any(dim=1).nonzero().flatten().tolist()


def weak_alignment_indicators(C):
    """Paper Eq. 4 per sentence: bool [L, n] (or [n]), True where sentence i is weakly aligned at layer l."""
    C = _check_square(C, "weak_alignment_indicators")
    row_wins, column_wins = _diagonal_wins(C)
    return row_wins & column_wins


def weak_alignment_counts(C):
    """Number k of weakly aligned sentences per layer (paper Eq. 4 before dividing by n): int64 [L] (or scalar)."""
    return weak_alignment_indicators(_check_square(C, "weak_alignment_counts")).sum(dim=-1)


def weak_alignment(C):
    """Paper Eq. 4 per layer: fraction of i whose C[i, i] strictly exceeds all other entries of row i and column i.

    ``C``: [L, n, n] (-> float64 [L]) or [n, n] (-> float64 scalar tensor). Ties fail.
    """
    import torch

    C = _check_square(C, "weak_alignment")
    return weak_alignment_counts(C).to(torch.float64) / C.shape[-1]


def retrieval_accuracy(C):
    """Retrieval accuracy per layer: (src2tgt, tgt2src, both), each float64 [L] (or scalar for [n, n]).

    src2tgt: fraction of source sentences i whose row maximum is C[i, i] (strictly; ties count as failures).
    tgt2src: the same for target sentences (columns). both: the mean of the two directions (bidirectional accuracy).
    """
    import torch

    C = _check_square(C, "retrieval_accuracy")
    row_wins, column_wins = _diagonal_wins(C)
    src2tgt = row_wins.to(torch.float64).mean(dim=-1)
    tgt2src = column_wins.to(torch.float64).mean(dim=-1)
    return src2tgt, tgt2src, (src2tgt + tgt2src) / 2


def chance_probability(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1 / (2n - 1)): how likely k of n sentences align by chance (paper App. E).

    ``chance_probability(5, 100)`` is 0.00016 (the paper's example). ``k = 0`` gives 1.
    """
    from scipy.stats import binom

    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ScoringError(f"scoring.chance_probability: k and n must be integers; got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ScoringError(f"scoring.chance_probability: need n >= 1 and 0 <= k <= n; got k={k}, n={n}")
    return float(binom.sf(k - 1, n, 1.0 / (2 * n - 1)))


# ----------------------------------------------------------------------------------------------------
# Layer selection


def select_layers(num_layers: int, layers: LayerSpec = None) -> list[int]:
    """The 0-based layer indices a spec selects, sorted and unique.

    ``None`` or ``"all"``: every layer. ``(start, stop)`` (a tuple) or ``range``: range(start, stop), negative values
    counted from the end like a slice. A list of ints: those layers (negative indices allowed).
    """
    if num_layers < 1:
        raise ScoringError(f"scoring.select_layers: num_layers must be >= 1; got {num_layers}")
    if layers is None or layers == "all":
        return list(range(num_layers))
    if isinstance(layers, range):
        layers = (layers.start, layers.stop) if layers.step == 1 else list(layers)
    if isinstance(layers, tuple):
        if len(layers) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in layers):
            raise ScoringError(
                f"scoring.select_layers: layers=(start, stop) needs two ints; got {layers!r} "
                "(pass a list for explicit indices)"
            )
        selected = list(range(num_layers))[slice(*layers)]
    elif isinstance(layers, list):
        selected = []
        for value in layers:
            if isinstance(value, bool) or not isinstance(value, int) or not -num_layers <= value < num_layers:
                raise ScoringError(
                    f"scoring.select_layers: layer index {value!r} out of range for a model with {num_layers} layers"
                )
            selected.append(value % num_layers)
        selected = sorted(set(selected))
    else:
        raise ScoringError(
            "scoring.select_layers: layers must be None, 'all', (start, stop), a range or a list of ints; "
            f"got {layers!r}"
        )
    if not selected:
        raise ScoringError(f"scoring.select_layers: layers={layers!r} selects no layer of {num_layers}")
    return selected


def layers_label(layers: LayerSpec) -> str:
    """Short text for a layer spec, as used in signatures: "all", "4-12" (start-stop, stop exclusive) or "3,5,7"."""
    if layers is None or layers == "all":
        return "all"
    if isinstance(layers, range) and layers.step == 1:
        layers = (layers.start, layers.stop)
    if isinstance(layers, tuple) and len(layers) == 2:
        return f"{layers[0]}-{layers[1]}"
    return ",".join(str(v) for v in layers)


# ----------------------------------------------------------------------------------------------------
# Result object


def library_versions() -> dict[str, str]:
    """Versions of the packages that shape a score (neuronxa_callback, torch, transformers); "unknown" if absent."""
    from importlib import metadata

    versions = {}
    for package in ("neuronxa_callback", "torch", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


MEAN_PVALUE_DEFINITION = (
    "per-layer binomial test applied to the layer mean: chance_probability(round(mean * n), n); "
    "not a test of the mean's own null distribution"
)


@dataclasses.dataclass
class PairScore:
    """One metric (nasca / navca / mexa) for one language pair, with everything needed to reproduce it.

    per_layer[l] is the weak-alignment fraction at layer l; ``mean`` averages the layers in ``layers``.
    layer_pvalues[l] = chance_probability(k_l, n). mean_pvalue applies the same test to k = round(mean * n)
    (see MEAN_PVALUE_DEFINITION). retrieval: {"src2tgt": [L], "tgt2src": [L], "both": [L],
    "max_pooled": {"src2tgt", "tgt2src", "both", "best_layer"}} with max-pooling over ``layers``.
    settings: model, representation, pooling, layers (the spec's label), center, data_origin, versions.
    invalid_layers: layers with non-finite representations (e.g. float16 overflow). They have no score: NaN in every
    per-layer list, left out of ``mean`` and of max-pooling (NaN / best_layer None when no selected layer is left).
    to_dict() writes their NaNs as None (JSON has no NaN) and lists invalid_layers only when there are any.
    aligned: per layer the Eq. 4 verdict of every sentence as a hex bitmask (bit i = sentence i; None for an invalid
    layer; statistics.aligned_masks), the unit of the paired tests in alignment/statistics.py.
    """

    metric: str
    pair: str
    n: int
    per_layer: list[float]
    layers: list[int]
    mean: float
    layer_pvalues: list[float]
    mean_pvalue: float
    retrieval: dict[str, Any]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    invalid_layers: list[int] = dataclasses.field(default_factory=list)
    aligned: list[str | None] = dataclasses.field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.per_layer)

    def signature(self) -> str:
        """sacrebleu-style settings string, e.g.
        ``nasca|pair:eng_Latn-deu_Latn|n:100|pool:weighted|layers:all|center:no|v:0.1.0``.

        A "model:<name>" field follows the metric when the model is known. The data origin and full library versions
        stay in ``settings`` (too long for a one-line signature).
        """
        settings = self.settings
        parts = [self.metric]
        if settings.get("model"):
            parts.append(f"model:{settings['model']}")
        parts += [
            f"pair:{self.pair}",
            f"n:{self.n}",
            f"pool:{settings.get('pooling', 'unknown')}",
            f"layers:{settings.get('layers', 'all')}",
            f"center:{'yes' if settings.get('center') else 'no'}",
        ]
        parts.append(f"v:{settings.get('versions', {}).get('neuronxa_callback', 'unknown')}")
        return "|".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (plain floats, ints, strings; NaN as None); ``PairScore.from_dict(s.to_dict()) == s`` for
        a score without invalid layers (NaN never equals itself)."""
        data = nan_to_none(dataclasses.asdict(self))
        if not self.invalid_layers:  # unchanged output for every valid score
            del data["invalid_layers"]
        data["signature"] = self.signature()
        data["mean_pvalue_definition"] = MEAN_PVALUE_DEFINITION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairScore:
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = fields - {"settings", "invalid_layers", "aligned"} - set(data)
        if missing:
            raise ScoringError(f"scoring.PairScore.from_dict: missing keys {sorted(missing)}")
        values = {key: value for key, value in data.items() if key in fields}
        if values.get("invalid_layers"):
            values = {
                key: (value if key in ("settings", "aligned") else none_to_nan(value)) for key, value in values.items()
            }
        return cls(**values)


def nan_to_none(value: Any) -> Any:
    """A copy of nested dicts / lists with float NaN replaced by None (what JSON can hold)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(nan_to_none(item) for item in value)
    return value


def none_to_nan(value: Any, keep: tuple[str, ...] = ("best_layer",)) -> Any:
    """nan_to_none's inverse on scores: None -> NaN in nested lists / dicts, except under the keys in `keep`."""
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {key: (item if key in keep else none_to_nan(item, keep)) for key, item in value.items()}
    if isinstance(value, list):
        return [none_to_nan(item, keep) for item in value]
    return value


def score_matrices(
    C,
    *,
    metric: str,
    pair: str,
    layers: LayerSpec = None,
    settings: dict[str, Any] | None = None,
) -> PairScore:
    """A PairScore from precomputed cosine matrices C [L, n, n] (rows: source sentences, columns: target sentences)."""
    C = _check_square(C, "score_matrices")
    if C.dim() == 2:
        C = C.unsqueeze(0)
    num_layers, n = C.shape[0], C.shape[-1]
    selected = select_layers(num_layers, layers)
    invalid = non_finite_layers(C)
    valid = [i for i in selected if i not in invalid]
    indicators = weak_alignment_indicators(C)
    counts = indicators.sum(dim=-1).tolist()
    per_layer = _blank([count / n for count in counts], invalid)
    mean = float(sum(per_layer[i] for i in valid) / len(valid)) if valid else math.nan
    src2tgt, tgt2src, both = (_blank(values.tolist(), invalid) for values in retrieval_accuracy(C))
    retrieval = {
        "src2tgt": src2tgt,
        "tgt2src": tgt2src,
        "both": both,
        "max_pooled": _max_pooled(src2tgt, tgt2src, both, valid),
    }
    settings = dict(settings or {})
    settings.setdefault("layers", layers_label(layers))
    settings.setdefault("center", False)
    settings.setdefault("versions", library_versions())
    settings.setdefault("representation", REPRESENTATION_FOR_METRIC.get(metric))
    return PairScore(
        metric=metric,
        pair=pair,
        n=n,
        per_layer=per_layer,
        layers=selected,
        mean=mean,
        layer_pvalues=_blank([chance_probability(int(k), n) for k in counts], invalid),
        mean_pvalue=chance_probability(int(round(mean * n)), n) if valid else math.nan,
        retrieval=retrieval,
        settings=settings,
        invalid_layers=invalid,
        aligned=aligned_masks(indicators, invalid),
    )


def _blank(values: list[float], invalid: list[int]) -> list[float]:
    """`values` with NaN at the invalid layers: a number computed from non-finite representations is no score."""
    return [math.nan if layer in invalid else value for layer, value in enumerate(values)]


def _max_pooled(src2tgt: list[float], tgt2src: list[float], both: list[float], valid: list[int]) -> dict[str, Any]:
    """Retrieval max-pooled over the valid selected layers; best_layer is the earliest among equals."""
    if not valid:
        return {"src2tgt": math.nan, "tgt2src": math.nan, "both": math.nan, "best_layer": None}
    best_layer = max(valid, key=lambda i: (both[i], -i))
    return {
        "src2tgt": max(src2tgt[i] for i in valid),
        "tgt2src": max(tgt2src[i] for i in valid),
        "both": both[best_layer],
        "best_layer": best_layer,
    }


def score_pair(
    source,
    target,
    *,
    metric: str,
    pair: str,
    layers: LayerSpec = None,
    center: bool = False,
    settings: dict[str, Any] | None = None,
) -> PairScore:
    """Score source vs target representations [L, n, d] (row i of each side is the same sentence's translation).

    ``center=True`` is BEYOND THE PAPER (see center_representations); it is recorded in the settings and signature.
    """
    settings = dict(settings or {})
    settings["center"] = bool(center)
    return score_matrices(
        cosine_matrices(source, target, center=center), metric=metric, pair=pair, layers=layers, settings=settings
    )
