"""The `neuronxa` command line: score any model outside training, translate, and report on a run.

neuronxa score --model gemma-3-270m --data ntrex --languages isl_Latn,deu_Latn --output result.json --plot layers.png
neuronxa score --model ./my-model --source-file en.txt --target-file is.txt --source-lang eng_Latn --target-lang isl_Latn
neuronxa translate --model gemma-3-270m --data ntrex --languages ita --direction x2en --output translations.json
neuronxa report runs/demo
neuronxa score runs/demo --languages isl_Latn --quality      # every checkpoint-N of a run -> its metrics.jsonl
neuronxa score runs/demo --workers 2                          # the checkpoints side by side in 2 worker processes
neuronxa score-models llama=./llama qwen=./qwen --languages deu,isl --output-dir scores --workers 2
neuronxa correlate llama=llama.json qwen=qwen.json --benchmarks results.csv --measures nasca,mexa
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("neuronxa")

_REPRESENTATIONS = {"nas": ("nas",), "nav": ("nav",), "embedding": ("embedding",), "all": ("nas", "nav", "embedding")}


def _comma_list(value: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty value")
    return items


ALL_PAIRS = "all"


def _pair_count(value: str) -> int | str:
    """--num-pairs N or "all" (every pair of the data)."""
    return ALL_PAIRS if value.strip().lower() == ALL_PAIRS else _positive_int(value)


def _pairs_or_none(value: int | str | None, default: int | None) -> int | None:
    """The num_pairs for the loaders: None (every pair) for "all", `default` when not given."""
    if value == ALL_PAIRS:
        return None
    return default if value is None else value


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {number}")
    return number


def _layer_range(value: str) -> tuple[int, int]:
    """'4:12' -> (4, 12): layers 4..11, Python slice semantics."""
    try:
        start, stop = (int(part) for part in value.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers expects START:STOP (e.g. 4:12), got {value!r}") from None
    if not 0 <= start < stop:
        raise argparse.ArgumentTypeError(f"--layers expects 0 <= START < STOP, got {value!r}")
    return start, stop


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="gemma-3-270m",
        help="local directory, hub id (online), or the embedded default 'gemma-3-270m' (default) / 'smollm2-135m'",
    )
    group.add_argument("--gguf-file", default=None, help="GGUF file name inside --model's directory")
    _add_loading_arguments(group)


def _add_loading_arguments(group: argparse._ArgumentGroup) -> None:
    """How a model is loaded, whichever model: --dtype, --device, --trust-remote-code, --hf-token."""
    group.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="weights dtype")
    group.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    group.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model repository's own code (off by default)"
    )
    group.add_argument(
        "--hf-token",
        default=None,
        help="Hugging Face token for gated models/data (default: $HF_TOKEN); never written to any output",
    )


def _add_fan_out_arguments(group, items: str, held: str) -> None:
    """--workers N | --ray [ADDRESS], --ray-actors, --worker-threads: `items` (checkpoints, models) scored side by
    side in worker processes or Ray actors, each holding `held`; one after another in this process by default."""
    spread = group.add_mutually_exclusive_group()
    spread.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"score the {items} side by side in N local worker processes, each holding {held} "
        "(default: one after another in this process)",
    )
    spread.add_argument(
        "--ray",
        nargs="?",
        const=True,
        default=False,
        metavar="ADDRESS",
        help=f"score the {items} in Ray actors (--ray-actors of them): a local Ray instance, or the cluster at "
        "ADDRESS (the files must be on storage every node sees)",
    )
    group.add_argument("--ray-actors", type=_positive_int, default=2, metavar="N", help="Ray actors (default 2)")
    group.add_argument(
        "--worker-threads", type=_positive_int, default=None, metavar="N", help="torch threads per worker or actor"
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parallel data (either --source-file/--target-file or --data)")
    group.add_argument("--source-file", type=Path, help="one sentence per line, aligned with --target-file")
    group.add_argument("--target-file", type=Path)
    group.add_argument("--source-lang", default="eng_Latn", help="language of --source-file (default eng_Latn)")
    group.add_argument("--target-lang", default=None, help="language of --target-file (required with --target-file)")
    group.add_argument(
        "--data",
        default=None,
        help="'ntrex' (default: the packaged NTREX-128 subset), 'bundled', 'flores' (hub, gated), a "
        "FLORES-200 or NTREX-128 directory, a .tsv or .jsonl file",
    )
    group.add_argument("--pivot", default="eng_Latn", help="pivot language for --data (default eng_Latn)")
    group.add_argument(
        "--languages", type=_comma_list, default=None, help="comma-separated target languages for --data"
    )
    group.add_argument("--split", default="devtest", help="FLORES split (default devtest)")
    group.add_argument(
        "--num-pairs",
        type=_pair_count,
        default=None,
        help="number of parallel pairs, or 'all' (default: 100 with --data, every line with --source-file)",
    )
    group.add_argument(
        "--sample",
        choices=["first", "random"],
        default="first",
        help="first N pairs (default) or a seeded random sample",
    )
    group.add_argument("--seed", type=int, default=0)


def _add_scoring_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """What is measured and how (`score` and `score-models`)."""
    group = parser.add_argument_group("scoring")
    group.add_argument(
        "--representation",
        choices=sorted(_REPRESENTATIONS),
        default="all",
        help="nas (NASCA), nav (NAVCA), embedding (MEXA baseline) or all (default)",
    )
    group.add_argument(
        "--measures",
        type=_comma_list,
        default=None,
        help="instead of --representation: any of nasca,navca,mexa,cka,svcca,anc (CKA/SVCCA/ANC on the "
        "hidden-state embedding; 'anc:nas' etc. for another representation). Appendix C.2 baselines",
    )
    group.add_argument(
        "--svcca-directions",
        type=_positive_int,
        default=10,
        help="SVD directions kept per side for SVCCA (default 10; must be < n-1)",
    )
    group.add_argument("--pooling", choices=["weighted", "mean", "last"], default="weighted")
    group.add_argument("--batch-size", type=_positive_int, default=16)
    group.add_argument(
        "--max-length", type=_positive_int, default=256, help="tokens per sentence (longer ones are cut)"
    )
    group.add_argument("--layers", type=_layer_range, default=None, help="layer range START:STOP for the layer mean")
    group.add_argument(
        "--center",
        action="store_true",
        help="BEYOND THE PAPER: subtract each language's mean representation before the cosine",
    )
    return group


def _version() -> str:
    from neuronxa_callback import __version__

    return __version__


def _global_options(*, in_subcommand: bool) -> argparse.ArgumentParser:
    """Options that work before and after the subcommand (`neuronxa --quiet score` and `neuronxa score --quiet`).

    In a subcommand the default is SUPPRESS: otherwise the subparser's default False would overwrite a --quiet given
    before the subcommand.
    """
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS if in_subcommand else False,
        help="no progress bars or info messages on stderr",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuronxa", description=__doc__.split("\n\n")[0], parents=[_global_options(in_subcommand=False)]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    shared = [_global_options(in_subcommand=True)]

    score = commands.add_parser(
        "score", parents=shared, help="layer-wise NASCA / NAVCA / MEXA of a model on parallel sentences"
    )
    score.add_argument(
        "run_dir",
        type=Path,
        nargs="?",
        default=None,
        help="a training output directory: score each of its checkpoint-N folders into the callback's "
        "JSONL (--output, default RUN_DIR/neuronxa/metrics.jsonl); --model is then not used",
    )
    _add_model_arguments(score)
    _add_data_arguments(score)
    runs = score.add_argument_group("checkpoints of a run (with RUN_DIR)")
    runs.add_argument(
        "--base-model",
        default=None,
        help="the model the run started from: the base of PEFT adapter checkpoints (default: "
        "adapter_config.json's base_model_name_or_path), and the step-0 baseline of full "
        "fine-tuning checkpoints (whose config.json names none under transformers 5)",
    )
    runs.add_argument(
        "--include-base",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score the base model as step 0, the baseline before fine-tuning (default: when it is "
        "known; --include-base makes an unknown base an error)",
    )
    runs.add_argument(
        "--rescore",
        action="store_true",
        help="score checkpoints already in the JSONL again (their records are replaced)",
    )
    runs.add_argument(
        "--watch",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep polling for new checkpoints every SECONDS (Ctrl-C to stop)",
    )
    runs.add_argument("--quality", action="store_true", help="translate and score (chrF, ...) at every checkpoint")
    runs.add_argument(
        "--quality-num-pairs", type=_pair_count, default=None, help="sentences translated, or 'all' (default all)"
    )
    runs.add_argument("--direction", choices=["x2en", "en2x", "both"], default="x2en")
    runs.add_argument("--quality-metrics", type=_comma_list, default=["chrf"], help="chrf[,bleu] (default chrf)")
    runs.add_argument("--comet-model", default=None, help="COMET model name or local directory")
    runs.add_argument("--max-new-tokens", type=_positive_int, default=64)
    runs.add_argument("--num-fewshot", type=int, default=3)
    _add_fan_out_arguments(runs, "checkpoints", "the base model once")
    group = _add_scoring_arguments(score)
    group.add_argument("--output", type=Path, default=None, help="write the result JSON here (default: stdout)")
    group.add_argument("--plot", type=Path, default=None, help="write the layer profile per pair as a PNG")

    translate = commands.add_parser(
        "translate", parents=shared, help="the model's own translations of the parallel pairs, scored"
    )
    _add_model_arguments(translate)
    _add_data_arguments(translate)
    group = translate.add_argument_group("translation")
    group.add_argument(
        "--direction",
        choices=["x2en", "en2x", "both"],
        default="x2en",
        help="x2en: target languages into the pivot (default); en2x: pivot into them",
    )
    group.add_argument("--prompt", default="auto", help="'auto', 'fewshot', 'chat' or a template with {source} etc.")
    group.add_argument(
        "--num-fewshot",
        type=int,
        default=3,
        help="few-shot examples: unscored lines of the --data source (NTREX lines after the scored ones, "
        "FLORES dev for devtest), else the bundled pool; 0 = zero-shot",
    )
    group.add_argument("--batch-size", type=_positive_int, default=16)
    group.add_argument("--max-new-tokens", type=_positive_int, default=128)
    group.add_argument("--metrics", type=_comma_list, default=["chrf", "bleu"], help="chrf,bleu[,comet,cometkiwi]")
    group.add_argument("--comet-model", default=None, help="COMET model name or local directory (enables COMET)")
    group.add_argument(
        "--cometkiwi-model", default=None, help="CometKiwi model name or local directory (enables CometKiwi)"
    )
    group.add_argument(
        "--output", type=Path, default=None, help="write hypotheses and scores as JSON (default: stdout)"
    )

    correlate = commands.add_parser(
        "correlate", parents=shared, help="Pearson/Spearman r across languages of alignment vs benchmarks"
    )
    correlate.add_argument(
        "scores", nargs="+", help="score files (neuronxa score JSON or metrics.jsonl), as PATH or MODEL=PATH"
    )
    correlate.add_argument(
        "--benchmarks", type=Path, required=True, help="CSV with columns model,language,benchmark,score"
    )
    correlate.add_argument(
        "--measures",
        type=_comma_list,
        default=["nasca"],
        help="nasca (default), navca, mexa, or similarity keys such as cka, svcca, anc",
    )
    correlate.add_argument("--output-csv", type=Path, default=None, help="write the table as CSV")
    correlate.add_argument("--output-json", type=Path, default=None, help="write the table (and the data) as JSON")
    correlate.add_argument(
        "--plot-dir", type=Path, default=None, help="write one scatter PNG per benchmark and measure"
    )

    models = commands.add_parser(
        "score-models",
        parents=shared,
        help="score several models on the same pairs, one JSON each (for correlate), side by side with --workers",
    )
    models.add_argument(
        "models", nargs="+", metavar="[NAME=]MODEL", help="local directories or hub ids; NAME names the output file"
    )
    models.add_argument(
        "--output-dir", type=Path, required=True, help="one NAME.json per model (the JSON of `score --output`)"
    )
    _add_loading_arguments(models.add_argument_group("models"))
    _add_data_arguments(models)
    _add_scoring_arguments(models)
    _add_fan_out_arguments(
        models.add_argument_group("fan-out (default: one model after another in this process)"),
        "models",
        "one model at a time",
    )

    report = commands.add_parser(
        "report", parents=shared, help="figures and a Markdown summary from a run's metrics.jsonl"
    )
    report.add_argument(
        "run_dir", type=Path, help="the Trainer output_dir (holding neuronxa/metrics.jsonl) or a .jsonl file"
    )
    report.add_argument(
        "--output-dir", type=Path, default=None, help="where to write (default: <run_dir>/neuronxa/report)"
    )

    doctor = commands.add_parser(
        "doctor", parents=shared, help="what this environment can do, and the install line for what it cannot"
    )
    doctor.add_argument(
        "--imports", action="store_true", help="also import bitsandbytes and COMET to prove they load (~15 s)"
    )
    doctor.add_argument("--strict", action="store_true", help="exit 1 when a check finds something missing or broken")
    return parser


def _load_data(args: argparse.Namespace, parser: argparse.ArgumentParser):
    from neuronxa_callback.data.loaders import load_file_pair, load_parallel

    if args.source_file or args.target_file:
        if args.data:
            parser.error("give either --source-file/--target-file or --data, not both")
        if not (args.source_file and args.target_file):
            parser.error("--source-file and --target-file go together")
        if not args.target_lang:
            parser.error("--target-file needs --target-lang (e.g. isl_Latn)")
        return load_file_pair(
            args.source_file,
            args.target_file,
            args.source_lang,
            args.target_lang,
            num_pairs=_pairs_or_none(args.num_pairs, None),
            sample=args.sample,
            seed=args.seed,
        )
    # Without --data or files: the packaged NTREX-128 subset (lines 1-100, 121 languages), offline.
    args.data = args.data or "ntrex"
    return load_parallel(
        args.data,
        pivot=args.pivot,
        languages=tuple(args.languages or ("isl_Latn",)),
        num_pairs=_pairs_or_none(args.num_pairs, 100),
        sample=args.sample,
        seed=args.seed,
        split=args.split,
        token=_token(args),
    )


def _token(args: argparse.Namespace) -> str | None:
    return args.hf_token or os.environ.get("HF_TOKEN") or None


def _load_model(args: argparse.Namespace):
    import torch

    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    dtype = getattr(torch, args.dtype) if args.dtype else None
    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(
        args.model,
        gguf_file=args.gguf_file,
        dtype=dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        token=_token(args),
    )
    return model, tokenizer, time.perf_counter() - started


def _write_json(payload: dict, output: Path | None) -> None:
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    if output is None:
        sys.stdout.write(text + "\n")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n", encoding="utf-8")
    logger.info("wrote %s", output)


def _score_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`neuronxa score RUN_DIR`: every checkpoint of a training run into the callback's JSONL schema."""
    import torch

    from neuronxa_callback.offline.checkpoints import score_checkpoints

    if args.source_file or args.target_file:
        parser.error("with RUN_DIR give --data/--languages (the callback's data options), not --source-file")
    if args.num_pairs == ALL_PAIRS:
        parser.error(
            "--num-pairs all is not available with RUN_DIR: the callback's settings measure a fixed number "
            "of pairs (give a number)"
        )
    representations, similarity = _split_measures(args, parser)
    kwargs = dict(
        pivot=args.pivot,
        num_pairs=args.num_pairs or 100,
        sample=args.sample,
        seed=args.seed,
        representations=representations,
        pooling=args.pooling,
        batch_size=args.batch_size,
        max_length=args.max_length,
        quality_num_pairs=_pairs_or_none(args.quality_num_pairs, None),
        direction=args.direction,
        quality_metrics=tuple(args.quality_metrics),
        comet_model=args.comet_model,
        max_new_tokens=args.max_new_tokens,
        num_fewshot=args.num_fewshot,
    )
    if args.data:  # otherwise the callback's defaults, so `score RUN_DIR` measures what the callback would have
        kwargs["data"] = args.data
    if args.languages:
        kwargs["languages"] = tuple(args.languages)

    def announce(record: dict) -> None:
        means = ", ".join(
            f"{pair} nasca {scores.get('nasca_mean', float('nan')):.3f}" for pair, scores in record["pairs"].items()
        )
        logger.info("step %d (%s): %s", record["step"], record.get("checkpoint"), means)

    written = score_checkpoints(
        args.run_dir,
        output=args.output,
        base_model=args.base_model,
        quality=args.quality,
        similarity=similarity,
        svcca_directions=args.svcca_directions,
        include_base=args.include_base,
        rescore=args.rescore,
        watch=args.watch,
        dtype=getattr(torch, args.dtype) if args.dtype else None,
        device=args.device,
        token=_token(args),
        on_record=announce,
        workers=args.ray_actors if args.ray else args.workers,
        ray=args.ray,
        worker_threads=args.worker_threads,
        **kwargs,
    )
    logger.info("%d checkpoint(s) scored", len(written))
    return 0


def _score(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from neuronxa_callback.alignment.report import measure_alignment

    if args.run_dir is not None:
        return _score_run(args, parser)
    representations, similarity = _split_measures(args, parser)
    data = _load_data(args, parser)  # data errors surface before the (slow) model load
    model, tokenizer, load_seconds = _load_model(args)
    report = measure_alignment(
        model,
        tokenizer,
        data,
        representations=representations,
        pooling=args.pooling,
        batch_size=args.batch_size,
        max_length=args.max_length,
        layers=args.layers,
        center=args.center,
        model_name=args.model,
        progress=not args.quiet,
        similarity=similarity,
        svcca_directions=args.svcca_directions,
    )
    payload = report.to_dict()
    payload["timing"]["load_seconds"] = round(load_seconds, 3)
    _write_json(payload, args.output)
    if args.plot:
        from neuronxa_callback.sinks.figures import plot_layer_profile

        plot_layer_profile(payload, args.plot)
        logger.info("wrote %s", args.plot)
    for pair in report.pairs:
        summary = ", ".join(f"{metric} {report.mean(metric, pair):.3f}" for metric in _metrics_in(payload, pair))
        logger.info("%s: %s (n=%d)", pair, summary, len(data))
    return 0


def _metrics_in(payload: dict, pair: str) -> list[str]:
    entry = payload["pairs"][pair]
    return [metric for metric in ("nasca", "navca", "mexa") if f"{metric}_mean" in entry] + list(
        entry.get("similarity", {})
    )


def _split_measures(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[tuple[str, ...], list[str]]:
    """--measures nasca,mexa,cka -> (("nas", "embedding"), ["cka"]); without it, --representation as before."""
    from neuronxa_callback.alignment.scoring import REPRESENTATION_FOR_METRIC
    from neuronxa_callback.alignment.similarity import parse_measure

    if not args.measures:
        return _REPRESENTATIONS[args.representation], []
    representations, similarity = [], []
    for name in args.measures:
        lowered = name.lower()
        if lowered in REPRESENTATION_FOR_METRIC:
            representations.append(REPRESENTATION_FOR_METRIC[lowered])
            continue
        try:
            parse_measure(lowered)
        except ValueError as error:
            parser.error(f"--measures: {error}; weak-alignment measures are nasca, navca, mexa")
        similarity.append(lowered)
    if not representations:
        parser.error("--measures needs at least one of nasca, navca, mexa (the NeuronXA score itself)")
    return tuple(representations), similarity


def _translate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from neuronxa_callback.quality.copies import mask_copies
    from neuronxa_callback.quality.fewshot import select_fewshot_examples
    from neuronxa_callback.quality.generation import translate, translation_prompts
    from neuronxa_callback.quality.language_id import identify_languages
    from neuronxa_callback.quality.likelihood import reference_likelihood, summarize_likelihood
    from neuronxa_callback.quality.metrics import make_scorers

    data = _load_data(args, parser)
    metrics = [metric.lower() for metric in args.metrics]
    if args.comet_model and "comet" not in metrics:
        metrics.append("comet")
    if args.cometkiwi_model and "cometkiwi" not in metrics:
        metrics.append("cometkiwi")
    scorers = make_scorers(metrics, comet_model=args.comet_model, cometkiwi_model=args.cometkiwi_model)
    model, tokenizer, load_seconds = _load_model(args)
    directions = {
        "x2en": [(lang, data.pivot) for lang in data.targets],
        "en2x": [(data.pivot, lang) for lang in data.targets],
        "both": [(lang, data.pivot) for lang in data.targets] + [(data.pivot, lang) for lang in data.targets],
    }
    results = {}
    started = time.perf_counter()
    for source_lang, target_lang in directions[args.direction]:
        sources, references = list(data.sentences(source_lang)), list(data.sentences(target_lang))
        # Examples from the scored pairs' own source, never a scored line (two plain files: the bundled pool).
        chosen = select_fewshot_examples(
            args.data or "bundled",
            source_lang,
            target_lang,
            k=args.num_fewshot,
            scored=data,
            split=args.split,
            token=_token(args),
        )
        examples = list(chosen.pairs)
        hypotheses = translate(
            model,
            tokenizer,
            sources,
            source_lang=source_lang,
            target_lang=target_lang,
            prompt=args.prompt,
            examples=examples,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            progress=not args.quiet,
        )
        # The reference's log-likelihood after the same prompts (quality/likelihood.py): nats per UTF-8 byte.
        prompts, add_special_tokens = translation_prompts(
            tokenizer, sources, source_lang=source_lang, target_lang=target_lang, prompt=args.prompt, examples=examples
        )
        likelihood = summarize_likelihood(
            reference_likelihood(
                model,
                tokenizer,
                prompts,
                references,
                batch_size=args.batch_size,
                add_special_tokens=add_special_tokens,
            )
        )
        # Keyed by the metric names asked for ("chrf", "comet"), as in the callback's JSONL, not the display names.
        # A hypothesis that copies a prompt example or echoes its source is scored as empty (copies.py); the rate sits
        # next to the scores.
        scored_hypotheses, copies = mask_copies(hypotheses, examples, sources=sources)
        languages = identify_languages(hypotheses, expected=target_lang)  # off-target: another language than the target
        scores = {
            name: scorer.score(sources, scored_hypotheses, references).to_dict()
            for name, scorer in zip(metrics, scorers)
        }
        results[f"{source_lang}->{target_lang}"] = {
            "scores": scores,
            "likelihood": likelihood,
            **copies.to_dict(ids=data.ids),
            **languages.to_dict(),
            "fewshot": chosen.to_dict(),
            "translations": [
                {"id": sid, "source": s, "hypothesis": h, "reference": r, "language": lang}
                for sid, s, h, r, lang in zip(data.ids, sources, hypotheses, references, languages.detected)
            ],
        }
        logger.info(
            "%s->%s: %s, ref_logprob %s nats/byte; %d of %d hypotheses copy a prompt example (scored as empty); "
            "off-target (not in %s): %s",
            source_lang,
            target_lang,
            ", ".join(f"{name} {score['system']:.2f}" for name, score in scores.items()),
            "-" if likelihood["ref_logprob"] is None else f"{likelihood['ref_logprob']:.4f}",
            copies.count,
            len(hypotheses),
            target_lang,
            "-" if languages.rate is None else f"{languages.count} of {languages.judged}",
        )
    payload = {
        "model": args.model,
        "data": {"origin": data.origin, "ids": list(data.ids)},
        "settings": {
            "direction": args.direction,
            "prompt": args.prompt,
            "num_fewshot": args.num_fewshot,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
        },
        "timing": {
            "load_seconds": round(load_seconds, 3),
            "translate_and_score_seconds": round(time.perf_counter() - started, 3),
        },
        "directions": results,
    }
    _write_json(payload, args.output)
    return 0


def _correlate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from neuronxa_callback.offline.correlation import (
        correlate_benchmarks,
        load_alignment_scores,
        load_benchmarks,
        plot_correlations,
    )

    rows = load_benchmarks(args.benchmarks)
    tables = []
    for measure in args.measures:
        table = correlate_benchmarks(load_alignment_scores(args.scores, measure=measure), rows, measure=measure)
        tables.append(table)
        print(f"# {measure}: r across languages per model; AVG = plain mean of the models' r (as in the paper)")
        print(table.format())
        if args.plot_dir:
            for _benchmark, path in plot_correlations(table, args.plot_dir / measure).items():
                logger.info("wrote %s", path)
    if args.output_csv:
        import csv

        args.output_csv.parent.mkdir(parents=True, exist_ok=True)
        flat = [row for table in tables for row in table.rows()]
        with open(args.output_csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
            writer.writeheader()
            writer.writerows(flat)
        logger.info("wrote %s", args.output_csv)
    if args.output_json:
        _write_json({"tables": [table.to_dict() for table in tables]}, args.output_json)
    return 0


def _named_model(spec: str) -> tuple[str, str]:
    """'NAME=MODEL' -> (NAME, MODEL); a bare MODEL is named after its last path component."""
    if "=" in spec and not Path(spec).exists():
        name, _, model = spec.partition("=")
        return name.strip(), model.strip()
    return Path(spec.rstrip("/")).name or spec, spec


def _score_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`neuronxa score-models`: each model's scores on the same pairs into OUTPUT_DIR/NAME.json (what
    `neuronxa correlate NAME=OUTPUT_DIR/NAME.json ...` reads), in order, or fanned out over workers."""
    import torch

    from neuronxa_callback.offline.fanout import score_models

    named = [_named_model(spec) for spec in args.models]
    names = [name for name, _ in named]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or not all(names):
        parser.error(f"score-models: every model needs its own NAME (NAME=MODEL); repeated or empty: {repeated}")
    representations, similarity = _split_measures(args, parser)
    data = _load_data(args, parser)
    load = {
        "dtype": getattr(torch, args.dtype) if args.dtype else None,
        "device": args.device,
        "trust_remote_code": args.trust_remote_code,
        "token": _token(args),
    }
    measure = {
        "representations": representations,
        "pooling": args.pooling,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "layers": args.layers,
        "center": args.center,
        "similarity": similarity,
        "svcca_directions": args.svcca_directions,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    scored = score_models(
        [model for _, model in named],
        data,
        load=load,
        measure=measure,
        workers=args.ray_actors if args.ray else args.workers,
        ray=args.ray,
        threads=args.worker_threads,
        spool_dir=args.output_dir / "workers",
    )
    written = []
    for name, (model, payload) in zip(names, scored):
        path = args.output_dir / f"{name}.json"
        _write_json(payload, path)
        written.append(f"{name}={path}")
        means = ", ".join(
            f"{pair} nasca {entry.get('nasca_mean', float('nan')):.3f}" for pair, entry in payload["pairs"].items()
        )
        logger.info("%s (%s): %s", name, model, means)
    logger.info("next: neuronxa correlate %s --benchmarks BENCHMARKS.csv", " ".join(written))
    return 0


def _report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from neuronxa_callback.offline.report import write_report

    written = write_report(args.run_dir, out_dir=args.output_dir)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


# Arguments that name where a command writes: checked before any data or model is loaded, so that minutes of
# computing are never lost to a path that cannot be written at the end.
_OUTPUT_FILES = {"output": "--output", "plot": "--plot", "output_csv": "--output-csv", "output_json": "--output-json"}
_OUTPUT_DIRS = {"output_dir": "--output-dir", "plot_dir": "--plot-dir"}


class OutputPathError(ValueError):
    """An output argument names a path that cannot be written; the message names the argument and the path."""


def _check_outputs(args: argparse.Namespace) -> None:
    for names, directory in ((_OUTPUT_FILES, False), (_OUTPUT_DIRS, True)):
        for attribute, flag in names.items():
            path = getattr(args, attribute, None)
            reason = None if path is None else _unwritable(Path(path), directory=directory)
            if reason:
                raise OutputPathError(f"{flag} {path}: {reason}")


def _unwritable(path: Path, *, directory: bool) -> str | None:
    """Why `path` cannot be written (None when it can). Tried for real rather than judged from permission bits,
    which say nothing about read-only mounts, root, ACLs or sandboxes ("Operation not permitted")."""
    if path.exists():
        if path.is_dir() != directory:
            return "is a directory" if path.is_dir() else "exists and is not a directory"
        if directory:
            return _cannot_create_in(path)
        try:
            with open(path, "a", encoding="utf-8"):  # append mode: the file is left as it is
                pass
        except OSError as error:
            return f"cannot be written ({error.strerror or error})"
        return None
    # Missing folders are created when the result is written: what matters is the nearest one that exists.
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    return _cannot_create_in(ancestor)


def _cannot_create_in(directory: Path) -> str | None:
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".neuronxa-write-test-", dir=directory))
    except OSError as error:
        return f"cannot create files in {directory} ({error.strerror or error})"
    return None


def _configure_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _one_handler_per_record(args.command)
    if args.quiet:
        _silence_libraries(args.command)


def _one_handler_per_record(command: str) -> None:
    """huggingface_hub (always) and transformers (with CI=1) print through a handler of their own and also pass each
    record on to the root handler set up above: every line (each download retry) came out twice. They keep their
    own handler only."""
    from huggingface_hub.utils import logging as hub_logging  # configures the library's handler on import

    libraries = [hub_logging.get_logger()]
    if command in ("score", "score-models", "translate"):  # these load transformers; `report` never imports it
        from transformers.utils import logging as transformers_logging

        libraries.append(transformers_logging.get_logger("transformers"))
    for library in libraries:
        if library.handlers:
            library.propagate = False


def _silence_libraries(command: str) -> None:
    """--quiet: no progress bars or info messages from transformers / the hub either (only warnings and errors)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if command in ("score", "score-models", "translate"):  # these load a model; `report` never imports transformers
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()


def _doctor(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from neuronxa_callback.doctor import doctor

    return doctor(strict=args.strict, imports=args.imports)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "score": _score,
        "score-models": _score_models,
        "translate": _translate,
        "report": _report,
        "correlate": _correlate,
        "doctor": _doctor,
    }
    try:
        _configure_logging(args)
        _check_outputs(args)
        return handlers[args.command](args, parser)
    except (ValueError, FileNotFoundError, OSError) as error:
        # Input errors already name the file/line/argument: print them without a traceback.
        print(f"neuronxa {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C is the user's own doing: no traceback, and the status a shell gives a command stopped by SIGINT.
        # Whatever was written before (each scored checkpoint's JSONL line) stays.
        print(f"neuronxa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
