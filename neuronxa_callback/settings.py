"""Validated settings of NeuronXACallback: one frozen dataclass, checked once, at construction.

Usage::

    from neuronxa_callback.settings import CallbackSettings

    settings = CallbackSettings.from_kwargs(languages="isl_Latn,deu_Latn", eval_steps=25)
    settings.languages            # ("isl_Latn", "deu_Latn")
    settings.to_json()            # JSON-serialisable dict: the callback's ExportableState "args"

Every bad value raises SettingsError (a ValueError) whose message names the argument, so a typo surfaces when the
callback is built, not hours into training. The checks that read files or language tables (unknown language code,
missing data file) are _measurement.check_without_model's, also at construction; what needs the model (unsupported
architecture, a COMET model that will not load) is checked at on_train_begin.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

DIRECTIONS = ("x2en", "en2x", "both")
REPRESENTATIONS = ("nas", "nav", "embedding")
POOLINGS = ("weighted", "mean", "last")
SAMPLES = ("first", "random")
SMOOTHINGS = ("none", "ema", "window")
REPORT_TO = ("auto", "wandb", "none")
STOP_METRICS = ("nasca", "navca")
STOP_CRITERIA = ("min_delta", "paired_test")
QUALITY_METRIC_NAMES = ("chrf", "bleu")
# Where measurements run: inside the training process (training waits), in a worker process on this machine, or in
# a Ray actor (neuronxa_callback/worker/).
MEASURE_IN = ("process", "worker", "ray")


class SettingsError(ValueError):
    """A NeuronXACallback argument has a bad value; the message names the argument."""


def _fail(name: str, value: Any, expected: str) -> SettingsError:
    return SettingsError(f"NeuronXACallback: {name}={value!r} is invalid: expected {expected}")


def _string_tuple(name: str, value: Any, *, allowed: tuple[str, ...] | None = None, empty_ok: bool = False) -> tuple:
    """Accept a tuple/list of strings or one comma-separated string ("isl_Latn,deu_Latn")."""
    if isinstance(value, str):
        items = tuple(part.strip() for part in value.split(",") if part.strip())
    elif isinstance(value, (list, tuple)):
        items = tuple(value)
    else:
        raise _fail(name, value, "a list of strings or a comma-separated string")
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise _fail(name, value, "non-empty strings")
        if allowed is not None and item not in allowed:
            raise _fail(name, value, f"each item one of {allowed}")
    if not items and not empty_ok:
        raise _fail(name, value, "at least one item")
    if len(set(items)) != len(items):
        raise _fail(name, value, "no duplicates")
    return tuple(item.strip() for item in items)


def _int(name: str, value: Any, *, minimum: int, none_ok: bool = False) -> int | None:
    if value is None and none_ok:
        return None
    # bool is an int subclass; eval_steps=True is almost certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(name, value, f"an integer >= {minimum}" + (" or None" if none_ok else ""))
    return value


def _number(name: str, value: Any, *, minimum: float, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < minimum:
        raise _fail(name, value, f"a number >= {minimum}")
    if maximum is not None and value > maximum:
        raise _fail(name, value, f"a number <= {maximum}")
    return float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(name, value, f"one of {choices}")
    return value


def _optional_string(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, value, "a non-empty string or None")
    return value


@dataclass(frozen=True)
class CallbackSettings:
    """Every NeuronXACallback argument, normalised (tuples, floats) and validated. See NeuronXACallback for meanings."""

    data: str = "ntrex"
    languages: tuple[str, ...] = ("isl_Latn",)
    pivot: str = "eng_Latn"
    num_pairs: int = 100
    sample: str = "first"
    seed: int = 0
    eval_steps: int = 50
    measure_on_evaluate: bool = True
    representations: tuple[str, ...] = ("nas", "nav")
    pooling: str = "weighted"
    batch_size: int = 16
    max_length: int = 256
    quality_every: int = 0
    quality_num_pairs: int | None = None
    quality_languages: tuple[str, ...] | None = None
    direction: str = "x2en"
    quality_metrics: tuple[str, ...] = ("chrf",)
    comet_model: str | None = None
    cometkiwi_model: str | None = None
    comet_device: str | None = None
    num_fewshot: int = 3
    max_new_tokens: int = 64
    prompt: str = "auto"
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    early_stopping_metric: str = "nasca"
    early_stopping_pair: str | None = None
    early_stopping_smoothing: str = "none"
    early_stopping_window: int = 3
    early_stopping_factor: float = 0.5
    early_stopping_min_steps: int = 0
    # "min_delta": improvement = the (smoothed) layer mean beats the best by more than min_delta (as before);
    # "paired_test": improvement = a significant paired test over sentences vs the best measurement (p < alpha) and a
    # change above min_delta. The default stays "min_delta" so existing configs and saved detector states keep their
    # meaning; docs/guide/statistics.md recommends "paired_test".
    early_stopping_criterion: str = "min_delta"
    early_stopping_alpha: float = 0.05
    report_to: str = "auto"
    wandb_project: str | None = None
    output_subdir: str = "neuronxa"
    strict: bool | None = None
    measure_in: str = "process"
    worker_device: str = "cpu"
    worker_threads: int | None = None
    worker_max_in_flight: int = 2
    worker_timeout: float = 600.0
    ray_address: str | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> CallbackSettings:
        """Normalise and validate keyword arguments (unknown names are a SettingsError too)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise SettingsError(f"NeuronXACallback: unknown argument(s) {unknown}; known: {sorted(known)}")
        merged = {f.name: f.default for f in fields(cls)}
        merged.update(kwargs)
        return cls(**_validated(merged))

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable kwargs (tuples become lists) that rebuild these settings via from_kwargs."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def encode_options(self) -> dict[str, Any]:
        """The keyword arguments of activations.encode / sharding.encode_sharded these settings fix."""
        return {
            "representations": self.representations,
            "pooling": self.pooling,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
        }

    def translate_options(self) -> dict[str, Any]:
        """The keyword arguments of generation.translate / sharding.translate_sharded these settings fix."""
        return {"prompt": self.prompt, "batch_size": self.batch_size, "max_new_tokens": self.max_new_tokens}

    @property
    def pairs_direction(self) -> tuple[str, ...]:
        """The translation directions to score: ("x2en",), ("en2x",) or both."""
        return ("x2en", "en2x") if self.direction == "both" else (self.direction,)


def _validated(raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    data = raw["data"]
    if hasattr(data, "__fspath__"):  # accept a pathlib.Path but store the JSON-serialisable string
        data = str(data)
    if not isinstance(data, str) or not data.strip():
        raise _fail("data", raw["data"], '"ntrex", "bundled", "flores", or a path to a directory / .tsv / .jsonl file')
    out["data"] = data
    out["languages"] = _string_tuple("languages", raw["languages"])
    if not isinstance(raw["pivot"], str) or not raw["pivot"].strip():
        raise _fail("pivot", raw["pivot"], "a language code such as 'eng_Latn'")
    if raw["pivot"] in out["languages"]:
        raise _fail("languages", raw["languages"], f"languages other than the pivot {raw['pivot']!r}")
    out["num_pairs"] = _int("num_pairs", raw["num_pairs"], minimum=2)
    out["sample"] = _choice("sample", raw["sample"], SAMPLES)
    out["seed"] = _int("seed", raw["seed"], minimum=0)
    # 0 or None: measure only at train begin, evaluations and train end.
    out["eval_steps"] = 0 if raw["eval_steps"] is None else _int("eval_steps", raw["eval_steps"], minimum=0)
    if not isinstance(raw["measure_on_evaluate"], bool):
        raise _fail("measure_on_evaluate", raw["measure_on_evaluate"], "True or False")
    # None (the default): a callback that cannot start stops the run before it trains; True: any failure does;
    # False: failures are logged and training goes on, even without a single measurement.
    if raw["strict"] is not None and not isinstance(raw["strict"], bool):
        raise _fail("strict", raw["strict"], "None, True or False")
    out["representations"] = _string_tuple("representations", raw["representations"], allowed=REPRESENTATIONS)
    out["pooling"] = _choice("pooling", raw["pooling"], POOLINGS)
    out["batch_size"] = _int("batch_size", raw["batch_size"], minimum=1)
    out["max_length"] = _int("max_length", raw["max_length"], minimum=2)
    out["quality_every"] = 0 if raw["quality_every"] is None else _int("quality_every", raw["quality_every"], minimum=0)
    # Translating is the expensive part: users may score quality on the first k of the scored pairs only.
    out["quality_num_pairs"] = (
        None if raw["quality_num_pairs"] is None else _int("quality_num_pairs", raw["quality_num_pairs"], minimum=2)
    )
    # Translating is slow: a control pair can be scored for alignment only (quality_languages = the pairs to translate).
    quality_languages = raw.get("quality_languages")
    out["quality_languages"] = None
    if quality_languages is not None:
        out["quality_languages"] = _string_tuple("quality_languages", quality_languages)
        from neuronxa_callback.data.languages import LanguageCodeError, normalize_language

        try:
            measured = {normalize_language(code) for code in out["languages"]}
            outside = [code for code in out["quality_languages"] if normalize_language(code) not in measured]
        except LanguageCodeError as error:
            raise _fail("quality_languages", quality_languages, f"known language codes ({error})") from None
        if outside:
            raise _fail("quality_languages", quality_languages, f"a subset of languages {list(out['languages'])}")
    out["direction"] = _choice("direction", raw["direction"], DIRECTIONS)
    out["quality_metrics"] = _string_tuple(
        "quality_metrics", raw["quality_metrics"], allowed=QUALITY_METRIC_NAMES, empty_ok=True
    )
    for name in ("comet_model", "cometkiwi_model", "comet_device", "early_stopping_pair", "wandb_project"):
        out[name] = _optional_string(name, raw[name])
    if out["quality_every"] and not (out["quality_metrics"] or out["comet_model"] or out["cometkiwi_model"]):
        raise _fail(
            "quality_metrics", raw["quality_metrics"], "at least one metric (or comet_model) when quality_every > 0"
        )
    out["num_fewshot"] = _int("num_fewshot", raw["num_fewshot"], minimum=0)
    out["max_new_tokens"] = _int("max_new_tokens", raw["max_new_tokens"], minimum=1)
    if not isinstance(raw["prompt"], str) or not raw["prompt"].strip():
        raise _fail("prompt", raw["prompt"], '"auto", "fewshot", "chat" or a template string')
    out["early_stopping_patience"] = _int(
        "early_stopping_patience", raw["early_stopping_patience"], minimum=1, none_ok=True
    )
    out["early_stopping_min_delta"] = _number("early_stopping_min_delta", raw["early_stopping_min_delta"], minimum=0.0)
    out["early_stopping_metric"] = _choice("early_stopping_metric", raw["early_stopping_metric"], STOP_METRICS)
    out["early_stopping_smoothing"] = _choice("early_stopping_smoothing", raw["early_stopping_smoothing"], SMOOTHINGS)
    out["early_stopping_window"] = _int("early_stopping_window", raw["early_stopping_window"], minimum=1)
    factor = _number("early_stopping_factor", raw["early_stopping_factor"], minimum=0.0, maximum=1.0)
    if factor == 0.0:
        raise _fail("early_stopping_factor", raw["early_stopping_factor"], "a smoothing factor in (0, 1]")
    out["early_stopping_factor"] = factor
    out["early_stopping_min_steps"] = _int("early_stopping_min_steps", raw["early_stopping_min_steps"], minimum=0)
    out["early_stopping_criterion"] = _choice(
        "early_stopping_criterion", raw["early_stopping_criterion"], STOP_CRITERIA
    )
    alpha = _number("early_stopping_alpha", raw["early_stopping_alpha"], minimum=0.0, maximum=1.0)
    if alpha in (0.0, 1.0):
        raise _fail("early_stopping_alpha", raw["early_stopping_alpha"], "a significance level in (0, 1)")
    out["early_stopping_alpha"] = alpha
    # A metric is named after its representation: "nasca" needs "nas" measured, "navca" needs "nav".
    stop_metric = out["early_stopping_metric"]
    needed = {"nasca": "nas", "navca": "nav"}[stop_metric]
    if out["early_stopping_patience"] is not None and needed not in out["representations"]:
        raise _fail(
            "early_stopping_metric", stop_metric, f"a metric that is measured: add {needed!r} to representations"
        )
    if out["early_stopping_pair"] is not None and "-" not in out["early_stopping_pair"]:
        raise _fail("early_stopping_pair", raw["early_stopping_pair"], "a pair name such as 'eng_Latn-isl_Latn'")
    report_to = raw["report_to"]
    if isinstance(report_to, (list, tuple)):  # report_to=["wandb"] like TrainingArguments
        report_to = "wandb" if "wandb" in report_to else "none"
    out["report_to"] = _choice("report_to", report_to, REPORT_TO)
    out.update(_validated_worker(raw))
    subdir = raw["output_subdir"]
    if not isinstance(subdir, str) or not subdir.strip() or subdir.startswith("/") or ".." in subdir.split("/"):
        raise _fail("output_subdir", subdir, "a relative directory name inside args.output_dir")
    return out


def _validated_worker(raw: dict[str, Any]) -> dict[str, Any]:
    """The out-of-band settings: where measurements run and how far they may lag behind training."""
    out: dict[str, Any] = {"measure_in": _choice("measure_in", raw["measure_in"], MEASURE_IN)}
    device = raw["worker_device"]
    if not isinstance(device, str) or not (
        device == "cpu" or device == "cuda" or device.startswith(("cuda:", "xpu", "mps"))
    ):
        raise _fail("worker_device", device, '"cpu", "cuda" or "cuda:<index>"')
    out["worker_device"] = device
    out["worker_threads"] = _int("worker_threads", raw["worker_threads"], minimum=1, none_ok=True)
    out["worker_max_in_flight"] = _int("worker_max_in_flight", raw["worker_max_in_flight"], minimum=1)
    timeout = _number("worker_timeout", raw["worker_timeout"], minimum=0.0)
    if timeout == 0.0:
        raise _fail("worker_timeout", raw["worker_timeout"], "a number of seconds > 0")
    out["worker_timeout"] = timeout
    out["ray_address"] = _optional_string("ray_address", raw["ray_address"])
    if out["ray_address"] is not None and out["measure_in"] != "ray":
        raise _fail("ray_address", raw["ray_address"], 'None unless measure_in="ray"')
    return out
