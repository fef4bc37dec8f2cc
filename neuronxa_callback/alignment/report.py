"""NeuronXA alignment of a model on a parallel set: encode every language once, score pivot vs each target.

Usage::

    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.data.loaders import load_parallel

    data = load_parallel("bundled", languages=("isl_Latn", "deu_Latn"))
    report = measure_alignment(model, tokenizer, data, representations=("nas", "nav"), model_name="gemma-3-270m")
    report.mean("nasca", "eng_Latn-isl_Latn")     # layer mean of the weak-alignment score
    payload = report.to_dict()                     # the CLI's JSON (see docs/DESIGN.md)

All languages' sentences go to ONE encode() call (pivot first, then each target, in data.languages order), so
batches are length-sorted across languages and the pivot is encoded once however many targets there are.
Under DDP the callback encodes a shard per rank, gathers (distributed.gather_encoded) and calls score_encoded().
Representation -> metric: nas -> nasca, nav -> navca, embedding -> mexa.

Extra similarity baselines (similarity.py: debiased CKA, SVCCA, ANC; paper Appendix C.2) are opt-in with
``similarity=("cka", "svcca", "anc")`` (on the hidden-state embedding; "anc:nas" etc. for another representation);
they go to ``pairs[pair]["similarity"][name] = {"representation", "per_layer", "mean", ...}`` and
``report.mean("cka", pair)``. Without them the output is unchanged.

Float16 overflow (activations.encode): a recomputation under bfloat16 autocast, or layers that stayed unusable, are
recorded in ``report.numerics`` and, in to_dict(), in each pair's "numerics" (and "invalid_layers": {metric:
[layers]}); an invalid layer's per-layer values are None there (NaN in the PairScore) and it is left out of the layer
means. Without an overflow the output is unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from neuronxa_callback.alignment.scoring import (
    METRIC_FOR_REPRESENTATION,
    REPRESENTATION_FOR_METRIC,
    LayerSpec,
    PairScore,
    layers_label,
    library_versions,
    nan_to_none,
    none_to_nan,
    score_pair,
)
from neuronxa_callback.alignment.similarity import DEFAULT_SVCCA_DIRECTIONS, measure_names, similarity_per_layer

if TYPE_CHECKING:
    from neuronxa_callback.data.loaders import ParallelSet
    from neuronxa_callback.instrument.activations import Encoded

__all__ = ["AlignmentReport", "AlignmentError", "measure_alignment", "parallel_sentences", "score_encoded"]

ALL_REPRESENTATIONS = ("nas", "nav", "embedding")


class AlignmentError(ValueError):
    """Bad input to measure_alignment / score_encoded (representations, encoded rows, report dicts)."""


def normalize_representations(representations: str | Sequence[str]) -> tuple[str, ...]:
    """("nas", "nav") -> same; "all" -> ("nas", "nav", "embedding"); "nav" -> ("nav",). Metric names also accepted."""
    if isinstance(representations, str):
        representations = ALL_REPRESENTATIONS if representations == "all" else (representations,)
    result = []
    for name in representations:
        name = REPRESENTATION_FOR_METRIC.get(name, name)
        if name not in METRIC_FOR_REPRESENTATION:
            raise AlignmentError(
                f"alignment: unknown representation {name!r}; use {ALL_REPRESENTATIONS}, their metric names "
                f"{tuple(METRIC_FOR_REPRESENTATION.values())} or 'all'"
            )
        if name not in result:
            result.append(name)
    if not result:
        raise AlignmentError("alignment: representations is empty")
    return tuple(result)


def parallel_sentences(data: ParallelSet) -> list[str]:
    """The sentences in the row layout measure_alignment encodes: each language's n sentences, data.languages order."""
    return [sentence for language in data.languages for sentence in data.sentences(language)]


@dataclasses.dataclass
class AlignmentReport:
    """Scores of every (pivot, target) pair and metric, with the data, settings and timing that produced them.

    `scores[pair][metric]` is a `scoring.PairScore`. `to_dict()` is the CLI JSON; `from_dict()` reads it back.
    """

    model: str | None
    data_origin: str
    data_ids: list[str]
    languages: list[str]
    num_layers: int
    scores: dict[str, dict[str, PairScore]]
    settings: dict[str, Any]
    timing: dict[str, float | None]
    # pair -> measure key ("cka", "anc:nas") -> similarity.similarity_per_layer() result + "representation"
    similarity: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    # Float16 overflow, empty without one: {"overflow": [{"layer", "reason"}], "upcast_batches", "upcast",
    # "invalid_layers": [{"layer", "reason"}]} (see numerics_of).
    numerics: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def pairs(self) -> list[str]:
        """Pair names ("eng_Latn-isl_Latn", ...) in target-language order."""
        return list(self.scores)

    @property
    def pivot(self) -> str:
        return self.languages[0]

    @property
    def metrics(self) -> list[str]:
        return [METRIC_FOR_REPRESENTATION[r] for r in self.settings["representations"]]

    def score(self, metric: str, pair: str | None = None) -> PairScore:
        """The PairScore of `metric` ("nasca"/"navca"/"mexa" or "nas"/"nav"/"embedding") for `pair`.

        pair may be left out when the report has one pair.
        """
        metric = METRIC_FOR_REPRESENTATION.get(metric, metric)
        if pair is None:
            if len(self.scores) != 1:
                raise AlignmentError(f"AlignmentReport: several pairs {self.pairs}; name one")
            pair = self.pairs[0]
        if pair not in self.scores:
            raise AlignmentError(f"AlignmentReport: no pair {pair!r}; pairs are {self.pairs}")
        if metric not in self.scores[pair]:
            measured = list(self.scores[pair])
            raise AlignmentError(f"AlignmentReport: no metric {metric!r} for {pair}; measured {measured}")
        return self.scores[pair][metric]

    def mean(self, metric: str, pair: str | None = None) -> float:
        """Layer mean of `metric` for `pair` (over the selected layers); also a similarity measure ("cka", "anc:nas")."""
        key = metric.lower()
        if any(key in by_key for by_key in self.similarity.values()):
            if pair is None:
                if len(self.scores) != 1:
                    raise AlignmentError(f"AlignmentReport: several pairs {self.pairs}; name one")
                pair = self.pairs[0]
            if key not in self.similarity.get(pair, {}):
                raise AlignmentError(f"AlignmentReport: no similarity measure {metric!r} for {pair}")
            return self.similarity[pair][key]["mean"]
        return self.score(metric, pair).mean

    def flat_metrics(self, prefix: str = "neuronxa") -> dict[str, float]:
        """{"<prefix>/<pair>/nasca_mean": x, "<prefix>/<pair>/nasca/layer_07": x, ...} for W&B and Trainer logs."""
        flat: dict[str, float] = {}
        for pair, by_metric in self.scores.items():
            for metric, score in by_metric.items():
                values = {f"{prefix}/{pair}/{metric}_mean": score.mean}
                values.update(
                    {
                        f"{prefix}/{pair}/{metric}/layer_{layer:02d}": value
                        for layer, value in enumerate(score.per_layer)
                    }
                )
                # An invalid layer (NaN) has no score: it is left out rather than logged as a number.
                flat.update({key: value for key, value in values.items() if not math.isnan(value)})
        return flat

    def to_dict(self) -> dict[str, Any]:
        """The CLI JSON: {"model", "data": {"origin", "ids"}, "settings", "timing", "pairs": {pair: {...}}}."""
        pairs = {}
        for pair, by_metric in self.scores.items():
            entry: dict[str, Any] = {"num_layers": self.num_layers}
            for metric, score in by_metric.items():
                # NaN (an invalid layer, or a mean with no valid layer) is None: JSON has no NaN.
                entry[metric] = nan_to_none(list(score.per_layer))
                entry[f"{metric}_mean"] = nan_to_none(score.mean)
                entry[f"{metric}_pvalue"] = nan_to_none(score.mean_pvalue)
                entry[f"{metric}_layer_pvalues"] = nan_to_none(list(score.layer_pvalues))
            entry["retrieval"] = {
                metric: nan_to_none(_copy_retrieval(score.retrieval)) for metric, score in by_metric.items()
            }
            entry["signature"] = {metric: score.signature() for metric, score in by_metric.items()}
            # Each sentence's Eq. 4 verdict per layer (hex bitmasks): what alignment/statistics.py tests changes on.
            aligned = {
                metric: {"n": score.n, "layers": list(score.layers), "masks": list(score.aligned)}
                for metric, score in by_metric.items()
                if score.aligned
            }
            if aligned:
                entry["aligned"] = aligned
            if self.similarity.get(pair):
                entry["similarity"] = {key: _json_copy(value) for key, value in self.similarity[pair].items()}
            invalid = {
                metric: list(score.invalid_layers) for metric, score in by_metric.items() if score.invalid_layers
            }
            if invalid:
                entry["invalid_layers"] = invalid
            if self.numerics:  # in every pair: a measurement record keeps only the "pairs" block
                entry["numerics"] = _numerics_copy(self.numerics)
            pairs[pair] = entry
        return {
            "model": self.model,
            "data": {"origin": self.data_origin, "ids": list(self.data_ids)},
            "settings": _json_copy(self.settings),
            "timing": dict(self.timing),
            "pairs": pairs,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> AlignmentReport:
        """Rebuild a report from to_dict()'s output (e.g. a CLI JSON file)."""
        try:
            settings = dict(payload["settings"])
            data = payload["data"]
            pairs = payload["pairs"]
            model = payload.get("model")
            languages = list(settings["languages"])
            n = len(data["ids"])
            scores: dict[str, dict[str, PairScore]] = {}
            similarity: dict[str, dict[str, dict[str, Any]]] = {}
            num_layers = 0
            numerics: dict[str, Any] = {}
            for pair, entry in pairs.items():
                num_layers = int(entry["num_layers"])
                numerics = _numerics_copy(entry.get("numerics") or {})
                scores[pair] = {}
                if entry.get("similarity"):
                    similarity[pair] = {key: _json_copy(value) for key, value in entry["similarity"].items()}
                for representation in settings["representations"]:
                    metric = METRIC_FOR_REPRESENTATION[representation]
                    scores[pair][metric] = PairScore(
                        metric=metric,
                        pair=pair,
                        n=n,
                        per_layer=none_to_nan(list(entry[metric])),
                        layers=list(settings["layers_used"]),
                        mean=none_to_nan(entry[f"{metric}_mean"]),
                        layer_pvalues=none_to_nan(list(entry[f"{metric}_layer_pvalues"])),
                        mean_pvalue=none_to_nan(entry[f"{metric}_pvalue"]),
                        retrieval=none_to_nan(_copy_retrieval(entry["retrieval"][metric])),
                        settings=_metric_settings(settings, representation, model, data["origin"]),
                        invalid_layers=list((entry.get("invalid_layers") or {}).get(metric, [])),
                        aligned=list(((entry.get("aligned") or {}).get(metric) or {}).get("masks") or []),
                    )
        except (KeyError, TypeError) as error:
            problem = f"{type(error).__name__}: {error}"
            raise AlignmentError(f"AlignmentReport.from_dict: not a report dict ({problem})") from error
        timing = dict(payload.get("timing") or {})
        return cls(
            model=model,
            data_origin=data["origin"],
            data_ids=list(data["ids"]),
            languages=languages,
            num_layers=num_layers,
            scores=scores,
            settings=settings,
            timing={key: timing.get(key) for key in ("load_seconds", "forward_seconds", "scoring_seconds")},
            similarity=similarity,
            numerics=numerics,
        )


def _numerics_copy(numerics: dict[str, Any]) -> dict[str, Any]:
    return {
        key: ([dict(item) for item in value] if isinstance(value, list) else value) for key, value in numerics.items()
    }


def numerics_of(encoded: Encoded, invalid_layers: set[int]) -> dict[str, Any]:
    """The report's record of float16 trouble in `encoded` (empty when there was none).

    invalid_layers: the layers some metric could not score. Their reason comes from encode(); a layer it did not flag
    (its reasons do not survive a DDP gather) had non-finite pooled values all the same.
    """
    numerics: dict[str, Any] = {}
    overflow = encoded.overflow
    if overflow:
        numerics["overflow"] = [{"layer": layer, "reason": overflow[layer]} for layer in sorted(overflow)]
    if encoded.upcast_batches:
        from neuronxa_callback.instrument.activations import UPCAST

        numerics["upcast_batches"] = encoded.upcast_batches
        numerics["upcast"] = UPCAST
    known = encoded.invalid_layers
    if invalid_layers:
        numerics["invalid_layers"] = [
            {"layer": layer, "reason": known.get(layer, "non-finite pooled values (inf or NaN in the model)")}
            for layer in sorted(invalid_layers)
        ]
    return numerics


def _copy_retrieval(retrieval: dict[str, Any]) -> dict[str, Any]:
    return {key: (dict(value) if isinstance(value, dict) else list(value)) for key, value in retrieval.items()}


def _json_copy(settings: dict[str, Any]) -> dict[str, Any]:
    copied = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            value = dict(value)
        elif isinstance(value, (list, tuple)):
            value = list(value)
        copied[key] = value
    return copied


def _metric_settings(settings: dict[str, Any], representation: str, model: str | None, origin: str) -> dict[str, Any]:
    """A PairScore's settings, derived from the report's (so from_dict rebuilds them identically)."""
    return {
        "model": model,
        "representation": representation,
        "pooling": settings.get("pooling"),
        "layers": settings.get("layers", "all"),
        "center": bool(settings.get("center", False)),
        "data_origin": origin,
        "versions": dict(settings.get("versions") or {}),
    }


def score_encoded(
    encoded: Encoded,
    data: ParallelSet,
    *,
    pooling: str = "weighted",
    layers: LayerSpec = None,
    center: bool = False,
    model_name: str | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    representations: str | Sequence[str] | None = None,
    similarity: Sequence[str] = (),
    svcca_directions: int = DEFAULT_SVCCA_DIRECTIONS,
) -> AlignmentReport:
    """Score representations that cover every row of parallel_sentences(data) (e.g. after gather_encoded under DDP).

    Rows of `encoded` may come in any order; encoded.indices says which sentence each row is. pooling, batch_size
    and max_length are the encode() settings, recorded in the report (they cannot be read back from `encoded`).
    center=True is BEYOND THE PAPER (each language's mean representation is subtracted per layer).
    representations: which of the encoded representations get the weak-alignment score (default: all encoded);
    similarity: extra measures ("cka", "svcca", "anc", "anc:nas", ...; similarity.py), whose representation must
    be encoded too.
    """
    import torch

    started = time.perf_counter()
    languages = list(data.languages)
    n = len(data)
    total = n * len(languages)
    if len(languages) < 2:
        raise AlignmentError(f"score_encoded: data needs a pivot and at least one target language; got {languages}")
    if sorted(encoded.indices) != list(range(total)):
        raise AlignmentError(
            f"score_encoded: encoded rows must cover all {total} sentences of parallel_sentences(data) "
            f"({len(languages)} languages x {n}); got {len(encoded.indices)} rows. Under DDP gather the shards first "
            "(distributed.gather_encoded)."
        )
    extras = measure_names(similarity) if similarity else []
    if representations is None:
        representations = normalize_representations(tuple(encoded.representations))
    else:
        representations = normalize_representations(representations)
    missing = sorted(({*representations} | {r for _, _, r in extras}) - set(encoded.representations))
    if missing:
        raise AlignmentError(
            f"score_encoded: representations {missing} were not encoded (encoded: {sorted(encoded.representations)})"
        )
    order = torch.as_tensor(sorted(range(total), key=lambda row: encoded.indices[row]))
    in_order = list(encoded.indices) == list(range(total))
    versions = library_versions()
    settings: dict[str, Any] = {
        "representations": list(representations),
        "pooling": pooling,
        "batch_size": batch_size,
        "max_length": max_length,
        "layers": layers_label(layers),
        "layers_used": [],
        "center": bool(center),
        "pivot": languages[0],
        "languages": languages,
        "n": n,
        "versions": versions,
    }
    if extras:  # only when asked, so default outputs stay exactly as they were
        settings["similarity"] = [key for key, _, _ in extras]
        settings["svcca_directions"] = svcca_directions
    scores: dict[str, dict[str, PairScore]] = {data.pair_name(language): {} for language in languages[1:]}
    for representation in representations:
        reps = encoded.representations[representation]
        if reps.shape[1] != total:
            raise AlignmentError(
                f"score_encoded: representations[{representation!r}] has {reps.shape[1]} rows, indices {total}"
            )
        if not in_order:
            reps = reps[:, order]
        metric = METRIC_FOR_REPRESENTATION[representation]
        metric_settings = _metric_settings(settings, representation, model_name, data.origin)
        pivot_reps = reps[:, 0:n]
        for position, language in enumerate(languages[1:], start=1):
            score = score_pair(
                pivot_reps,
                reps[:, position * n : (position + 1) * n],
                metric=metric,
                pair=data.pair_name(language),
                layers=layers,
                center=center,
                settings=metric_settings,
            )
            scores[data.pair_name(language)][metric] = score
            settings["layers_used"] = list(score.layers)
    similarity_scores: dict[str, dict[str, dict[str, Any]]] = {}
    for key, measure, representation in extras:
        reps = encoded.representations[representation]
        if not in_order:
            reps = reps[:, order]
        for position, language in enumerate(languages[1:], start=1):
            result = similarity_per_layer(
                reps[:, 0:n],
                reps[:, position * n : (position + 1) * n],
                measure=measure,
                layers=layers,
                directions=svcca_directions,
            )
            similarity_scores.setdefault(data.pair_name(language), {})[key] = {
                "representation": representation,
                **result,
            }
            if not settings["layers_used"]:
                settings["layers_used"] = list(result["layers"])
    invalid = {layer for by_metric in scores.values() for score in by_metric.values() for layer in score.invalid_layers}
    return AlignmentReport(
        model=model_name,
        data_origin=data.origin,
        data_ids=list(data.ids),
        languages=languages,
        num_layers=encoded.num_layers,
        scores=scores,
        settings=settings,
        timing={
            "load_seconds": None,
            "forward_seconds": encoded.forward_seconds,
            "scoring_seconds": time.perf_counter() - started,
        },
        similarity=similarity_scores,
        numerics=numerics_of(encoded, invalid),
    )


def measure_alignment(
    model: Any,
    tokenizer: Any,
    data: ParallelSet,
    *,
    representations: str | Sequence[str] = ("nas", "nav"),
    pooling: str = "weighted",
    batch_size: int = 16,
    max_length: int = 256,
    layers: LayerSpec = None,
    center: bool = False,
    model_name: str | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    similarity: Sequence[str] = (),
    svcca_directions: int = DEFAULT_SVCCA_DIRECTIONS,
) -> AlignmentReport | None:
    """Encode every language of `data` in one encode() call and score the pivot against each target language.

    representations: names from ("nas", "nav", "embedding") or "all". layers: None / "all", (start, stop) or a
    list of indices — selects the layers of the layer mean and of max-pooled retrieval (every layer is reported).
    center=True is BEYOND THE PAPER. shard=(rank, world_size), this process's place in the process group: a
    collective, call it on every rank: each encodes its share the callback's way (sharding.engine_for: DDP, FSDP or
    ZeRO-3), the shares are gathered and rank 0 gets the report, other ranks None. A rank's own failure is raised
    there; rank 0 raises AlignmentError for another rank's.
    similarity: extra baselines ("cka", "svcca", "anc"; "anc:nas" for another representation), see similarity.py.
    """
    from neuronxa_callback.instrument.activations import encode

    representations = normalize_representations(representations)
    extras = measure_names(similarity) if similarity else []
    encoded_representations = tuple(dict.fromkeys([*representations, *(r for _, _, r in extras)]))
    options: dict[str, Any] = {
        "representations": encoded_representations,
        "pooling": pooling,
        "batch_size": batch_size,
        "max_length": max_length,
        "progress": progress,
    }
    encoded: Encoded | None
    if shard is None:
        encoded = encode(model, tokenizer, parallel_sentences(data), **options)
    else:
        encoded = _encode_across_ranks(model, tokenizer, data, shard, options)
        if encoded is None:
            return None
    return score_encoded(
        encoded,
        data,
        pooling=pooling,
        layers=layers,
        center=center,
        model_name=model_name,
        batch_size=batch_size,
        max_length=max_length,
        representations=representations,
        similarity=similarity,
        svcca_directions=svcca_directions,
    )


def _encode_across_ranks(
    model: Any, tokenizer: Any, data: ParallelSet, shard: tuple[int, int], options: dict[str, Any]
) -> Encoded | None:
    """Collective, the callback's route: this rank's share through the model's engine, released, then gathered.
    Rank 0 gets every row in sentence order; other ranks None."""
    from neuronxa_callback.parallel.agreement import gather_encoded_attempts
    from neuronxa_callback.parallel.collectives import rank_and_world
    from neuronxa_callback.parallel.sharding import engine_for

    if not isinstance(shard, (tuple, list)) or tuple(shard) != rank_and_world():
        raise AlignmentError(
            f"measure_alignment: shard={shard!r} is not this process's (rank, world_size) "
            f"{rank_and_world()}; leave shard out in a single process"
        )
    engine = engine_for(model)
    local, failure = None, None
    try:
        try:
            local = engine.encode(tokenizer, parallel_sentences(data), **options)
        finally:
            engine.release()
    except Exception as error:  # noqa: BLE001 - the other ranks learn of it at the gather, then it is raised here
        failure = error
    reason = None if failure is None else f"{type(failure).__name__}: {failure}"
    encoded, reason = gather_encoded_attempts(local, reason, len(data) * len(data.languages))
    if failure is not None:
        raise failure
    if reason is not None:
        raise AlignmentError(f"measure_alignment: the ranks' encode failed ({reason})")
    return encoded
