"""One measurement across ranks: what it needs (MeasurementInputs, prepared once per train()) and running it:
encode on every rank, gather, score on rank 0, (quality on) the reference likelihood on every rank, gather, translate
on every rank, gather, record on rank 0, broadcast.
Each rank's share goes through the model's engine (sharding.engine_for: replicated or sharded weights, chosen once
per measurement), which also puts sharded parameters back at the end.

Usage (NeuronXACallback)::

    inputs = prepare_inputs(settings, model, tokenizer, rank)       # at on_train_begin; raises on bad data/model
    outcome = run_measurement(inputs, model, tokenizer, with_quality=True, record=on_rank0)
    # outcome: {"error": str|None, "eval_metrics": {...}, "should_stop": bool, "reason": str|None}, on every rank

`record(report, translations, timing) -> outcome` runs on rank 0 only (scores quality, writes the record);
every rank runs the same sequence of collectives whatever fails (see _rank.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuronxa_callback.measure.quality_step import (
    fewshot_examples,
    likelihood_share,
    load_scorers,
    merge_translations,
    score_likelihood,
    translate_share,
)
from neuronxa_callback.parallel.agreement import attempt, gather_attempts, gather_encoded_attempts
from neuronxa_callback.parallel.collectives import broadcast_object

if TYPE_CHECKING:
    from neuronxa_callback.data.loaders import ParallelSet
    from neuronxa_callback.settings import CallbackSettings


@dataclass
class MeasurementInputs:
    """Everything a measurement needs besides the model: settings, the scored pairs, few-shot examples, and (rank 0)
    the quality scorers."""

    settings: CallbackSettings
    data: ParallelSet
    examples: dict[tuple[str, str], Any] = field(default_factory=dict)  # direction -> FewShotExamples
    scorers: list[tuple[str, Any]] = field(default_factory=list)


_HUB_DATA = ("flores", "flores+", "flores_plus", "floresplus")


def _looks_like_local_path(name: str) -> bool:
    """A model name that can only be a local path (a hub id is "name" or "org/name")."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name


def check_without_model(settings: CallbackSettings) -> ParallelSet | None:
    """Everything that can be checked before there is a model: the language codes, the data source (read now when
    it is local: the packaged sets or a file / directory), the early-stopping pair and local COMET paths.

    Raises SettingsError naming the argument, so a bad setting fails where the callback is built instead of after a
    training run that measured nothing. Returns the scored pairs when they were read (None for the hub's FLORES+,
    which is read at train begin).
    """
    from neuronxa_callback.data.languages import LanguageCodeError, normalize_language
    from neuronxa_callback.data.loaders import ParallelDataError
    from neuronxa_callback.settings import SettingsError

    for argument, codes in (("pivot", (settings.pivot,)), ("languages", settings.languages)):
        for code in codes:
            try:
                normalize_language(code)
            except LanguageCodeError as error:
                raise SettingsError(f"NeuronXACallback: {argument}: {error}") from None
    for argument in ("comet_model", "cometkiwi_model"):
        name = getattr(settings, argument)
        if name is not None and _looks_like_local_path(name) and not Path(name).expanduser().exists():
            raise SettingsError(
                f"NeuronXACallback: {argument}={name!r}: no such directory (a local COMET model "
                f"directory, or a hub name such as 'Unbabel/wmt22-comet-da')"
            )
    if settings.data.strip().lower() in _HUB_DATA:
        return None
    try:
        data = load_scored_pairs(settings)
    except (ParallelDataError, LanguageCodeError, OSError) as error:
        raise SettingsError(f"NeuronXACallback: data={settings.data!r}: {error}") from None
    _check_stop_pair(settings, data)
    return data


def load_scored_pairs(settings: CallbackSettings, token: str | None = None) -> ParallelSet:
    """The pairs every measurement scores, from the data settings (`token`: for a gated hub data set)."""
    from neuronxa_callback.data.loaders import load_parallel

    return load_parallel(
        settings.data,
        pivot=settings.pivot,
        languages=settings.languages,
        num_pairs=settings.num_pairs,
        sample=settings.sample,
        seed=settings.seed,
        token=token,
    )


def _check_stop_pair(settings: CallbackSettings, data: ParallelSet) -> None:
    if settings.early_stopping_pair is not None:
        pairs = [data.pair_name(lang) for lang in data.targets]
        if settings.early_stopping_pair not in pairs:
            from neuronxa_callback.settings import SettingsError

            raise SettingsError(
                f"NeuronXACallback: early_stopping_pair={settings.early_stopping_pair!r} is not one "
                f"of the pairs {pairs}"
            )


def prepare_inputs(
    settings: CallbackSettings, model, tokenizer, rank: int, data: ParallelSet | None = None, *, scorers: bool = True
) -> MeasurementInputs:
    """Load and check everything that needs the model or the data; raises ValueError subclasses naming the problem.
    `data`: the scored pairs when check_without_model already read them. `scorers=False`: leave the quality scorers
    (COMET) unloaded, for a training process whose measurements run out of band (the worker loads them)."""
    from neuronxa_callback.instrument.architectures import activation_modules

    if model is None:
        raise ValueError("the Trainer passed no model to the callback")
    if tokenizer is None:
        raise ValueError("the Trainer has no tokenizer: pass processing_class=tokenizer to Trainer(...)")
    activation_modules(model)  # UnsupportedArchitectureError (with how-to-register) now, not at the first measurement
    if data is None:
        data = load_scored_pairs(settings)
        _check_stop_pair(settings, data)
    inputs = MeasurementInputs(settings=settings, data=data)
    if settings.quality_every:
        inputs.examples = fewshot_examples(data, settings)
        if rank == 0 and scorers:
            inputs.scorers = load_scorers(settings)
    return inputs


def score_translations(inputs: MeasurementInputs, translations: dict) -> tuple[dict, float]:
    """Rank 0: the quality scores of `translations` (quality_step.score_quality) and the seconds they took."""
    from neuronxa_callback.measure.quality_step import score_quality

    start = time.perf_counter()
    quality = score_quality(translations, inputs.data, inputs.scorers, inputs.settings, inputs.examples)
    return quality, time.perf_counter() - start


def record_pieces(
    inputs: MeasurementInputs, report: Any, translations: dict | None, timing: dict, likelihood: dict | None = None
) -> dict:
    """Rank 0: what a record needs from one measurement (run_measurement's `record` arguments), scored where the
    measurement ran (in the training process, or in an out-of-band worker that sends it back): {"report_dict",
    "quality" (None without translations), "likelihood", "timing"}; `timing` gains quality_seconds."""
    quality, seconds = score_translations(inputs, translations) if translations is not None else (None, 0.0)
    timing["quality_seconds"] = seconds
    return {"report_dict": report.to_dict(), "quality": quality, "likelihood": likelihood, "timing": timing}


def encode_all(inputs: MeasurementInputs, engine, tokenizer) -> Any:
    """Every language's sentences in one encode (the pivot once for all pairs): this rank's share, through `engine`."""
    from neuronxa_callback.alignment.report import parallel_sentences

    return engine.encode(tokenizer, parallel_sentences(inputs.data), **inputs.settings.encode_options())


def score_alignment(inputs: MeasurementInputs, encoded: Any, model) -> Any:
    """Rank 0: score every pair of the gathered rows (all sentences, sentence order): an AlignmentReport."""
    from neuronxa_callback.alignment.report import score_encoded

    settings, data = inputs.settings, inputs.data
    config = getattr(model, "config", None)
    return score_encoded(
        encoded,
        data,
        pooling=settings.pooling,
        model_name=getattr(config, "_name_or_path", None) or type(model).__name__,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
    )


def translate_all(inputs: MeasurementInputs, model, tokenizer, engine=None) -> tuple[dict | None, str | None, float]:
    """Collective: every rank translates its share; rank 0 gets (translations in sentence order, first error, seconds).

    engine: run_measurement's (it releases it); without one, engine_for(model), released here."""
    from neuronxa_callback.parallel.sharding import engine_for

    start = time.perf_counter()
    own = engine is None
    if own:
        engine = engine_for(model)
    mine, error = attempt(
        lambda: translate_share(model, tokenizer, inputs.data, inputs.settings, inputs.examples, engine=engine)
    )
    if own:  # local, no collective
        error = error or attempt(engine.release)[1]
    parts, error = gather_attempts(mine, error)
    translations = merge_translations(parts) if parts is not None and error is None else None
    return translations, error, time.perf_counter() - start


def likelihood_all(inputs: MeasurementInputs, tokenizer, engine) -> tuple[dict | None, str | None, float]:
    """Collective: every rank scores the reference likelihood of its share; rank 0 gets (the record's "likelihood"
    section, first error, seconds). It runs at every measurement while quality is on (quality_every > 0): forwards
    of length-sorted batches, no generation."""
    start = time.perf_counter()
    mine, error = attempt(
        lambda: likelihood_share(tokenizer, inputs.data, inputs.settings, inputs.examples, engine=engine)
    )
    parts, error = gather_attempts(mine, error)
    section = None
    if parts is not None and error is None:
        section, error = attempt(lambda: score_likelihood(parts, inputs.data))
    return section, error, time.perf_counter() - start


def run_measurement(
    inputs: MeasurementInputs,
    model,
    tokenizer,
    *,
    with_quality: bool,
    record: Callable[[Any, dict | None, dict[str, float], dict | None], dict],
) -> dict:
    """The collective part: every rank runs the same sequence of gathers and broadcasts, errors travel as data.
    `record(report, translations, timing, likelihood)` runs on rank 0 (likelihood: likelihood_all's section, None
    when quality is off)."""
    from neuronxa_callback.instrument.memory import PeakMemory
    from neuronxa_callback.parallel.sharding import engine_for

    engine = engine_for(model)
    device = _model_device(model)

    start = time.perf_counter()
    with PeakMemory(device) as alignment_memory:
        local, error = attempt(lambda: encode_all(inputs, engine, tokenizer))
    encoded, error = gather_encoded_attempts(local, error, len(inputs.data) * len(inputs.data.languages))
    report = None
    if engine.rank == 0 and error is None:
        report, error = attempt(lambda: score_alignment(inputs, encoded, model))
    alignment_seconds = time.perf_counter() - start

    likelihood, likelihood_seconds = None, 0.0
    if inputs.settings.quality_every:  # every rank, whatever failed before: the same collectives on all of them
        likelihood, likelihood_error, likelihood_seconds = likelihood_all(inputs, tokenizer, engine)
        error = error or likelihood_error

    translations, generation_seconds, generation_memory = None, 0.0, None
    if with_quality:
        with PeakMemory(device) as generation_memory:
            translations, translate_error, generation_seconds = translate_all(inputs, model, tokenizer, engine)
        error = error or translate_error
    # FSDP / ZeRO-3 leave some parameters gathered after no-grad forwards: back into their shards before training
    # resumes (a no-op for replicated weights; local, no collective).
    error = error or attempt(engine.release)[1]

    outcome = {"error": error, "eval_metrics": {}, "should_stop": False, "reason": None}
    if engine.rank == 0 and error is None:
        timing = {
            "alignment_seconds": alignment_seconds,
            "generation_seconds": generation_seconds,
            **({"likelihood_seconds": likelihood_seconds} if likelihood is not None else {}),
            **alignment_memory.to_dict("alignment"),
        }
        if generation_memory is not None:
            timing.update(generation_memory.to_dict("generation"))
        result, error = attempt(lambda: record(report, translations, timing, likelihood))
        outcome = result if error is None else {**outcome, "error": error}
    return broadcast_object(outcome)


def _model_device(model) -> Any:
    """The device the model computes on (for the peak-memory probe); CPU when it has no parameters."""
    import torch

    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")
