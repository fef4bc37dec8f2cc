"""Translation quality within a measurement: which directions, which few-shot examples, the model's own
translations (split across DDP ranks) and their scores (chrF, BLEU, COMET, CometKiwi).

Usage (what _measurement.run_measurement and the callback's rank-0 record step do)::

    examples = fewshot_examples(data, settings)                      # at set-up, every rank: FewShotExamples
    scorers = load_scorers(settings)                                 # at set-up, rank 0
    mine = translate_share(model, tokenizer, data, settings, examples, engine=engine)  # every rank; engine_for(model)
    translations = merge_translations(parts)                         # rank 0, after gathering `mine`
    quality = score_quality(translations, data, scorers, settings, examples)        # rank 0 -> record["quality"]
    mine = likelihood_share(tokenizer, data, settings, examples, engine=engine)     # every rank, every measurement
    likelihood = score_likelihood(gathered_parts, data)                              # rank 0 -> record["likelihood"]
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from neuronxa_callback.parallel.agreement import report_failure

if TYPE_CHECKING:
    from neuronxa_callback.data.loaders import ParallelSet
    from neuronxa_callback.settings import CallbackSettings

logger = logging.getLogger("neuronxa_callback")  # the callback's logger: the name users configure


def directions(data: ParallelSet, settings: CallbackSettings) -> list[tuple[str, str]]:
    """(source_lang, target_lang) for every translation direction scored (only quality_languages' pairs when set)."""
    from neuronxa_callback.data.languages import normalize_language

    pivot = data.pivot
    only = getattr(settings, "quality_languages", None)
    wanted = None if only is None else {normalize_language(code) for code in only}
    out = []
    for lang in data.targets:
        if wanted is not None and lang not in wanted:
            continue
        for direction in settings.pairs_direction:
            out.append((lang, pivot) if direction == "x2en" else (pivot, lang))
    return out


def quality_slice(sentences, settings: CallbackSettings):
    """The sentences translated for quality: the first quality_num_pairs of the scored ones (all when None)."""
    limit = settings.quality_num_pairs
    return sentences if limit is None else sentences[:limit]


def fewshot_examples(data: ParallelSet, settings: CallbackSettings) -> dict[tuple[str, str], Any]:
    """(source_lang, target_lang) -> FewShotExamples from the scored pairs' own source (its unscored lines: NTREX lines
    after the scored ones, FLORES dev for devtest), else the bundled pool; never a scored sentence (fewshot.py).
    Chosen once per train(): translating prompts with them, and scoring recognises copies of them."""
    from neuronxa_callback.quality.fewshot import FewShotExamples, select_fewshot_examples

    chosen = {}
    for source_lang, target_lang in directions(data, settings):
        try:
            chosen[(source_lang, target_lang)] = select_fewshot_examples(
                settings.data, source_lang, target_lang, k=settings.num_fewshot, scored=data
            )
        except (ValueError, OSError) as error:  # neither the source nor the pool has this pair: zero-shot, said loudly
            logger.warning(
                "NeuronXACallback: no few-shot examples for %s->%s (%s); translating zero-shot",
                source_lang,
                target_lang,
                error,
            )
            chosen[(source_lang, target_lang)] = FewShotExamples((), f"none (zero-shot: {error})", ())
    return chosen


def example_pairs(examples: dict[tuple[str, str], Any], direction: tuple[str, str]) -> list[tuple[str, str]]:
    """The (source, target) prompt examples of one direction from fewshot_examples' result ([] when it has none)."""
    chosen = examples.get(direction)
    return list(chosen.pairs) if chosen is not None else []


def load_scorers(settings: CallbackSettings) -> list[tuple[str, Any]]:
    """[(metric key, scorer)]. A COMET model that cannot load is an error now (strict) or dropped (logged)."""
    from neuronxa_callback.quality.metrics import make_scorers

    scorers = [(name, scorer) for name, scorer in zip(settings.quality_metrics, make_scorers(settings.quality_metrics))]
    device = settings.comet_device or "cpu"
    for key, argument, model_name in (
        ("comet", "comet_model", settings.comet_model),
        ("cometkiwi", "cometkiwi_model", settings.cometkiwi_model),
    ):
        if model_name is None:
            continue
        try:
            (scorer,) = make_scorers([key], **{argument: model_name}, device=device)
            scorer.model  # noqa: B018 - loads now, so a bad path fails at train begin, not at the first score
            scorers.append((key, scorer))
        except Exception as error:
            # Only strict=False trains on without it: by default a run must not look measured when it is not.
            report_failure(
                f"NeuronXACallback: {argument}={model_name!r} could not be loaded ({type(error).__name__}: {error})",
                settings.strict is not False,
            )
    return scorers


def translate_share(
    model,
    tokenizer,
    data: ParallelSet,
    settings: CallbackSettings,
    examples: dict[tuple[str, str], Any],
    *,
    engine: Any = None,
) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """This rank's translations {(src, tgt): [(i, hypothesis), ...]}, its share of each direction's sentences
    (distributed.my_share) through `engine` (sharding.engine_for(model): a collective under sharded parameters).
    Without an engine: a ReplicatedEngine for one process holding the whole model (checkpoint scoring)."""
    from neuronxa_callback.parallel.sharding import ReplicatedEngine

    if engine is None:
        engine = ReplicatedEngine(model, 0, 1)
    out = {}
    for source_lang, target_lang in directions(data, settings):
        out[(source_lang, target_lang)] = engine.translate(
            tokenizer,
            quality_slice(data.sentences(source_lang), settings),
            source_lang=source_lang,
            target_lang=target_lang,
            examples=example_pairs(examples, (source_lang, target_lang)),
            progress=engine.rank == 0,  # translating is the long part of a measurement: show it moving
            **settings.translate_options(),
        )
    return out


def merge_translations(parts: list[dict]) -> dict[tuple[str, str], list[str]]:
    """The ranks' (index, hypothesis) lists merged into one list per direction, in sentence order."""
    merged: dict[tuple[str, str], list[str]] = {}
    for direction in parts[0]:
        rows = sorted(row for part in parts for row in part[direction])
        merged[direction] = [hypothesis for _, hypothesis in rows]
    return merged


def likelihood_share(
    tokenizer,
    data: ParallelSet,
    settings: CallbackSettings,
    examples: dict[tuple[str, str], Any],
    *,
    engine: Any,
) -> dict[tuple[str, str], list[tuple[int, Any]]]:
    """This rank's reference likelihoods {(src, tgt): [(i, ReferenceLikelihood), ...]} of every quality direction, on
    the sentences translate_share translates, after the very prompts it translates with (quality/likelihood.py);
    through `engine` (a collective under sharded parameters)."""
    from neuronxa_callback.quality.generation import translation_prompts

    out = {}
    for source_lang, target_lang in directions(data, settings):
        sources = quality_slice(data.sentences(source_lang), settings)
        prompts, add_special_tokens = translation_prompts(
            tokenizer,
            sources,
            source_lang=source_lang,
            target_lang=target_lang,
            prompt=settings.prompt,
            examples=example_pairs(examples, (source_lang, target_lang)),
        )
        out[(source_lang, target_lang)] = engine.reference_likelihood(
            tokenizer,
            prompts,
            list(quality_slice(data.sentences(target_lang), settings)),
            batch_size=settings.batch_size,
            add_special_tokens=add_special_tokens,
        )
    return out


LIKELIHOOD_SCORES = ("ref_logprob", "ref_logprob_per_char", "ref_logprob_per_token")


def score_likelihood(parts: list[dict], data: ParallelSet) -> dict[str, dict]:
    """The record's "likelihood" section from the ranks' likelihood_share results: {pair: {"direction",
    "ref_logprob" (nats per UTF-8 byte of the references), "ref_logprob_per_char", "ref_logprob_per_token",
    "sentences", "tokens", "bytes", "chars"}}; with direction="both" each direction is under "directions" and the
    pair's scores are the mean over the two."""
    from neuronxa_callback.quality.likelihood import summarize_likelihood

    per_pair: dict[str, list[dict]] = {}
    for source_lang, target_lang in parts[0]:
        rows = sorted((row for part in parts for row in part[(source_lang, target_lang)]), key=lambda row: row[0])
        entry = {"direction": f"{source_lang}->{target_lang}", **summarize_likelihood([r for _, r in rows])}
        entry.update({name: finite(entry[name]) for name in LIKELIHOOD_SCORES})  # NaN from a float16 overflow: None
        other = target_lang if source_lang == data.pivot else source_lang
        per_pair.setdefault(data.pair_name(other), []).append(entry)
    out = {}
    for pair, entries in per_pair.items():
        if len(entries) == 1:
            out[pair] = entries[0]
            continue
        combined = _mean_over_directions(entries, LIKELIHOOD_SCORES)
        combined["directions"] = {e["direction"]: e for e in entries}
        out[pair] = combined
    return out


def _mean_over_directions(entries: list[dict], names) -> dict[str, Any]:
    """A pair measured in both directions: each score in `names` as the mean of the directions' values (None when
    a direction lacks it)."""
    combined: dict[str, Any] = {"direction": "both"}
    for name in names:
        values = [e.get(name) for e in entries]
        combined[name] = sum(values) / len(values) if all(v is not None for v in values) else None
    return combined


def finite(value: Any) -> float | None:
    """float(value), or None for NaN/inf/non-numbers (the JSONL never holds NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def score_quality(
    translations: dict[tuple[str, str], list[str]],
    data: ParallelSet,
    scorers: list[tuple[str, Any]],
    settings: CallbackSettings,
    examples: dict[tuple[str, str], Any],
) -> dict[str, dict]:
    """{pair: {"direction", metric values, "copies", "copy_rate", "copy_policy", "copied_ids", "fewshot",
    "signatures", "translations"}}; with direction="both" each direction is under "directions" and the pair's metric
    values are the mean over the two directions (copies: the sum, copy_rate: over both).

    A hypothesis that copies one of its prompt's few-shot examples, or echoes its own source sentence, is scored as an
    empty string (copies.py): it stays in the set as a failed translation and earns nothing; its row in "translations"
    says "copy_of". `examples`: fewshot_examples' result, the examples the translations were prompted with.

    Language fidelity (language_id.py): "off_target", "off_target_rate" (hypotheses, as the model wrote them, in
    another language than the target among those judged), "language_judged" and "language_id"; each row in
    "translations" says its "language" (and "off_target": true when it is). With direction="both" the counts add up.
    Null when no identifier is installed or it does not know the target language."""
    from neuronxa_callback.quality.copies import mask_copies
    from neuronxa_callback.quality.language_id import LanguageReport, identify_languages

    per_pair: dict[str, list[dict]] = {}
    for (source_lang, target_lang), hypotheses in translations.items():
        other = target_lang if source_lang == data.pivot else source_lang
        sources = quality_slice(data.sentences(source_lang), settings)
        references = quality_slice(data.sentences(target_lang), settings)
        entry: dict[str, Any] = {"direction": f"{source_lang}->{target_lang}"}
        chosen = examples.get((source_lang, target_lang))
        scored_hypotheses, copies = mask_copies(
            list(hypotheses), example_pairs(examples, (source_lang, target_lang)), sources=list(sources)
        )
        signatures = {}
        for name, scorer in scorers:
            try:
                score = scorer.score(list(sources), scored_hypotheses, list(references))
                entry[name] = finite(score.system)
                signatures[name] = getattr(score, "signature", None)
            except Exception as error:  # one broken metric must not cost the others
                report_failure(
                    f"NeuronXACallback: quality metric {name} failed ({type(error).__name__}: {error})", settings.strict
                )
                entry[name] = None
        entry.update(copies.to_dict(ids=data.ids[: len(sources)]))
        # The raw hypotheses: an echoed source is a copy AND in the wrong language; both are worth knowing.
        try:
            languages = identify_languages(list(hypotheses), expected=target_lang)
        except Exception as error:  # like a broken metric: the other scores stand, the rate is null
            report_failure(
                f"NeuronXACallback: language identification failed ({type(error).__name__}: {error})", settings.strict
            )
            languages = LanguageReport(target_lang, (None,) * len(hypotheses), (None,) * len(hypotheses), False, None)
        entry.update(languages.to_dict())
        entry["fewshot"] = chosen.to_dict() if chosen else {"origin": "none", "ids": []}
        entry["signatures"] = signatures
        entry["translations"] = [
            {
                "id": data.ids[i],
                "source": sources[i],
                "hypothesis": hypotheses[i],
                "reference": references[i],
                **({"copy_of": copies.matches[i]} if copies.flags[i] else {}),
                "language": languages.detected[i],
                **({"off_target": True} if languages.off_target[i] else {}),
            }
            for i in range(len(sources))
        ]
        per_pair.setdefault(data.pair_name(other), []).append(entry)
    out = {}
    for pair, entries in per_pair.items():
        if len(entries) == 1:
            out[pair] = entries[0]
            continue
        copy_keys = ("copies", "copy_rate", "copy_policy", "copied_ids", "fewshot")
        language_keys = ("off_target", "off_target_rate", "language_judged", "language_id")
        names = [
            k for k in entries[0] if k not in ("direction", "signatures", "translations") + copy_keys + language_keys
        ]
        combined = _mean_over_directions(entries, names)
        total = sum(len(e["translations"]) for e in entries)
        combined["copies"] = sum(e["copies"] for e in entries)
        combined["copy_rate"] = combined["copies"] / total if total else 0.0
        combined["copy_policy"] = entries[0]["copy_policy"]
        combined.update(_combined_language_fidelity(entries))
        combined["directions"] = {e["direction"]: e for e in entries}
        out[pair] = combined
    return out


def _combined_language_fidelity(entries: list[dict]) -> dict:
    """Both directions' off-target counts added up (null when either direction was not measured)."""
    judged = [e.get("language_judged") for e in entries]
    if any(n is None for n in judged):
        return {"off_target": None, "off_target_rate": None, "language_judged": None, "language_id": None}
    count = sum(e["off_target"] for e in entries)
    return {
        "off_target": count,
        "off_target_rate": count / sum(judged) if sum(judged) else None,
        "language_judged": sum(judged),
        "language_id": entries[0]["language_id"],
    }
