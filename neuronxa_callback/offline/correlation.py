"""What alignment predicts: correlate alignment scores with downstream results across languages, per model.

Usage::

    from neuronxa_callback.offline.correlation import load_benchmarks, load_alignment_scores, correlate_benchmarks

    rows = load_benchmarks("results.csv")                      # header: model,language,benchmark,score
    scores = load_alignment_scores(["llama=llama.json", "qwen.json"], measure="nasca")
    table = correlate_benchmarks(scores, rows)
    table.averages["m-ARC"]["pearson"]                         # mean over models of Pearson r, as in the paper

    neuronxa correlate llama=llama.json qwen=qwen.json --benchmarks results.csv --measure nasca \
        --output-csv r.csv --output-json r.json --plot-dir plots/

How the paper does it (Tables 3-4, 8-10): for each model, the Pearson r across languages between the alignment score
(English vs X) and the benchmark score in X; the AVG column is the plain mean of the per-model r (not Fisher-z, not
pooled across models). tests/test_correlation.py re-derives every AVG of those tables from the per-model values.
Spearman rho, n (languages in both files) and the p-values (scipy) are reported alongside.

Score files: the JSON of ``neuronxa score --output`` (an AlignmentReport: one model, one score per target language)
or a metrics.jsonl (callback or ``neuronxa score RUN_DIR``; its last record by step). ``NAME=PATH`` names the model;
otherwise the file's "model" field (JSONL: the run directory's name). Language codes are matched after
normalisation (languages.normalize_language), so ``deu``, ``de``, ``deu_Latn`` and ``deu-Latn`` are one language.
Measures: nasca, navca, mexa (layer means) or a similarity key (cka, svcca, anc, anc:nas, ...).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from neuronxa_callback.measure.history import correlate as _correlate

__all__ = [
    "BenchmarkRow",
    "CorrelationInputError",
    "CorrelationTable",
    "correlate_benchmarks",
    "correlate_series",
    "load_alignment_scores",
    "load_benchmarks",
    "mean_over_models",
    "plot_correlations",
]

BENCHMARK_COLUMNS = ("model", "language", "benchmark", "score")


class CorrelationInputError(ValueError):
    """A benchmark CSV or score file that cannot be used; the message names the file (and line)."""


@dataclasses.dataclass(frozen=True)
class BenchmarkRow:
    model: str
    language: str  # canonical FLORES-style code
    benchmark: str
    score: float


def correlate_series(x: Sequence[float], y: Sequence[float]) -> dict:
    """Pearson and Spearman r of two equal-length series with n and p ({"n", "pearson", "pearson_pvalue", ...})."""
    return _correlate(list(x), list(y))


def _language(code: str, where: str) -> str:
    from neuronxa_callback.data.languages import normalize_language

    try:
        return normalize_language(code)
    except ValueError as error:
        raise CorrelationInputError(f"{where}: {error}") from None


def load_benchmarks(path: str | Path) -> list[BenchmarkRow]:
    """Rows of a CSV with the columns model,language,benchmark,score (any order, more columns ignored)."""
    path = Path(path)
    if not path.is_file():
        raise CorrelationInputError(f"{path}: no such benchmark CSV")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise CorrelationInputError(f"{path}:1: empty file; expected the header {','.join(BENCHMARK_COLUMNS)}")
        header = [cell.strip().lower() for cell in header]
        missing = [c for c in BENCHMARK_COLUMNS if c not in header]
        if missing:
            raise CorrelationInputError(
                f"{path}:1: header lacks column(s) {missing}; expected "
                f"{','.join(BENCHMARK_COLUMNS)}, got {','.join(header)}"
            )
        index = {c: header.index(c) for c in BENCHMARK_COLUMNS}
        rows: list[Any] = []
        seen: dict[Any, int] = {}
        for line_number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            where = f"{path}:{line_number}"
            if len(cells) < len(header):
                raise CorrelationInputError(f"{where}: {len(cells)} field(s), the header has {len(header)}")
            values = {c: cells[i].strip() for c, i in index.items()}
            empty = [c for c, v in values.items() if not v]
            if empty:
                raise CorrelationInputError(f"{where}: empty {', '.join(empty)}")
            try:
                score = float(values["score"])
            except ValueError:
                raise CorrelationInputError(f"{where}: score {values['score']!r} is not a number") from None
            if not math.isfinite(score):
                raise CorrelationInputError(f"{where}: score {values['score']!r} is not finite")
            row = BenchmarkRow(values["model"], _language(values["language"], where), values["benchmark"], score)
            key = (row.model, row.language, row.benchmark)
            if key in seen:
                raise CorrelationInputError(
                    f"{where}: {row.model} / {row.language} / {row.benchmark} again (first on line {seen[key]})"
                )
            seen[key] = line_number
            rows.append(row)
    if not rows:
        raise CorrelationInputError(f"{path}: no data rows under the header")
    return rows


def _measure_value(entry: dict, measure: str, where: str) -> float | None:
    if f"{measure}_mean" in entry:
        return entry[f"{measure}_mean"]
    similarity = entry.get("similarity") or {}
    if measure in similarity:
        return similarity[measure].get("mean")
    available = [k[:-5] for k in entry if k.endswith("_mean")] + list(similarity)
    raise CorrelationInputError(f"{where}: no measure {measure!r}; the file has {available}")


def _read_score_file(path: Path) -> tuple[str | None, dict[str, dict]]:
    """(model name or None, {pair: entry}) from an AlignmentReport JSON or a metrics.jsonl (last record by step)."""
    if not path.is_file():
        raise CorrelationInputError(f"{path}: no such score file")
    if path.suffix == ".jsonl":
        from neuronxa_callback.sinks.jsonl import read_jsonl

        records = [r for r in read_jsonl(path) if isinstance(r.get("step"), int) and r.get("pairs")]
        if not records:
            raise CorrelationInputError(f"{path}: no measurement records with scores")
        last = max(records, key=lambda r: r["step"])
        name = path.parent.parent.name if path.parent.name == "neuronxa" else path.stem
        return name, last["pairs"]
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CorrelationInputError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("pairs"), dict):
        raise CorrelationInputError(f"{path}: not a `neuronxa score` result (no 'pairs' object)")
    return payload.get("model"), payload["pairs"]


def load_alignment_scores(specs: Iterable[str | Path], *, measure: str = "nasca") -> dict[tuple[str, str], float]:
    """{(model, target language): layer-mean score} from score files given as PATH or NAME=PATH."""
    scores: dict[tuple[str, str], float] = {}
    origin: dict[tuple[str, str], str] = {}
    for spec in specs:
        text = str(spec)
        name, path = None, Path(text)
        if "=" in text and not Path(text).exists():
            name, _, rest = text.partition("=")
            name, path = name.strip(), Path(rest.strip())
        file_model, pairs = _read_score_file(path)
        model = name or file_model
        if not model:
            raise CorrelationInputError(f"{path}: the file names no model; give it as NAME={path}")
        for pair, entry in pairs.items():
            where = f"{path} ({pair})"
            if "-" not in pair:
                raise CorrelationInputError(f"{where}: pair names look like eng_Latn-deu_Latn")
            # FLORES codes hold '_' not '-', so the last '-' separates pivot and target.
            target = _language(pair.rsplit("-", 1)[1], where)
            value = _measure_value(entry, measure.lower(), where)
            if value is None:
                continue
            key = (model, target)
            if key in scores:
                raise CorrelationInputError(f"{where}: {model} / {target} is also in {origin[key]}")
            scores[key], origin[key] = float(value), str(path)
    if not scores:
        raise CorrelationInputError("no alignment scores in the given files")
    return scores


def mean_over_models(values: Iterable[float | None]) -> float | None:
    """The paper's average: the plain mean of the per-model r (None entries skipped; None when none is left)."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


@dataclasses.dataclass
class CorrelationTable:
    """per_model[benchmark][model] = correlate() result + "languages"; averages[benchmark] = means over models."""

    measure: str
    per_model: dict[str, dict[str, dict[str, Any]]]
    averages: dict[str, dict[str, Any]]

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows (one per benchmark and model, then "AVG"): the CSV/stdout table."""
        out = []
        for benchmark, by_model in self.per_model.items():
            for model, entry in by_model.items():
                out.append(
                    {
                        "benchmark": benchmark,
                        "model": model,
                        "measure": self.measure,
                        "n": entry["n"],
                        "pearson": entry["pearson"],
                        "pearson_pvalue": entry["pearson_pvalue"],
                        "spearman": entry["spearman"],
                        "spearman_pvalue": entry["spearman_pvalue"],
                    }
                )
            average = self.averages[benchmark]
            out.append(
                {
                    "benchmark": benchmark,
                    "model": "AVG",
                    "measure": self.measure,
                    "n": average["models"],
                    "pearson": average["pearson"],
                    "pearson_pvalue": None,
                    "spearman": average["spearman"],
                    "spearman_pvalue": None,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "per_model": self.per_model,
            "averages": self.averages,
            "averaging": "plain mean over models of the per-model r (as in the paper's AVG columns)",
        }

    def format(self) -> str:
        def cell(value, digits=4):
            return "–" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))

        def p_cell(value):
            return "–" if value is None else (f"{value:.3f}" if value >= 1e-3 else f"{value:.1e}")

        lines = [f"{'benchmark':<14} {'model':<24} {'n':>4} {'pearson':>8} {'p':>8} {'spearman':>9} {'p':>8}"]
        for row in self.rows():
            n_label = f"{row['n']}" if row["model"] != "AVG" else f"{row['n']}m"
            lines.append(
                f"{row['benchmark']:<14} {row['model']:<24} {n_label:>4} {cell(row['pearson']):>8} "
                f"{p_cell(row['pearson_pvalue']):>8} {cell(row['spearman']):>9} {p_cell(row['spearman_pvalue']):>8}"
            )
        return "\n".join(lines)


def correlate_benchmarks(
    scores: dict[tuple[str, str], float], rows: Sequence[BenchmarkRow], *, measure: str = "nasca"
) -> CorrelationTable:
    """Per (benchmark, model): r across the languages present in both; per benchmark: mean over models."""
    per_model: dict[str, dict[str, dict[str, Any]]] = {}
    models_with_scores = {model for model, _ in scores}
    for benchmark in dict.fromkeys(row.benchmark for row in rows):
        for model in dict.fromkeys(row.model for row in rows if row.benchmark == benchmark):
            if model not in models_with_scores:
                continue
            pairs = sorted(
                (row.language, scores[(model, row.language)], row.score)
                for row in rows
                if row.benchmark == benchmark and row.model == model and (model, row.language) in scores
            )
            entry = correlate_series([x for _, x, _ in pairs], [y for _, _, y in pairs])
            entry["languages"] = [language for language, _, _ in pairs]
            entry["alignment"] = [x for _, x, _ in pairs]
            entry["benchmark"] = [y for _, _, y in pairs]
            per_model.setdefault(benchmark, {})[model] = entry
    if not per_model:
        benchmark_models = sorted({row.model for row in rows})
        raise CorrelationInputError(
            f"no model is in both the score files {sorted(models_with_scores)} and the benchmark CSV {benchmark_models}"
        )
    averages = {}
    for benchmark, by_model in per_model.items():
        averages[benchmark] = {
            "pearson": mean_over_models(e["pearson"] for e in by_model.values()),
            "spearman": mean_over_models(e["spearman"] for e in by_model.values()),
            "models": sum(e["pearson"] is not None for e in by_model.values()),
        }
    return CorrelationTable(measure, per_model, averages)


def plot_correlations(table: CorrelationTable, out_dir: str | Path) -> dict[str, Path]:
    """One scatter per benchmark (alignment vs benchmark score, a colour per model); {benchmark: png path}."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for benchmark, by_model in table.per_model.items():
        figure = Figure(figsize=(5.5, 4.2), constrained_layout=True)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot(1, 1, 1)
        for model, entry in by_model.items():
            r = entry["pearson"]
            label = f"{model} (r = {r:.2f}, n = {entry['n']})" if r is not None else f"{model} (n = {entry['n']})"
            axes.scatter(entry["alignment"], entry["benchmark"], s=16, label=label)
            for language, x, y in zip(entry["languages"], entry["alignment"], entry["benchmark"]):
                axes.annotate(language[:3], (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        average = table.averages[benchmark]["pearson"]
        axes.set_title(f"{benchmark}: mean r over models = {average:.3f}" if average is not None else benchmark)
        axes.set_xlabel(f"{table.measure} (English vs X)")
        axes.set_ylabel(f"{benchmark} score")
        axes.legend(fontsize=7)
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in benchmark)
        written[benchmark] = out_dir / f"correlation_{slug}.png"
        figure.savefig(written[benchmark], dpi=110)
    return written
