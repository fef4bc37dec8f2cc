"""Worked example: which alignment measure predicts a model's own translation quality across languages?

    .venv/bin/python recipes/worked_example.py            # everything, then the README table + docs figure

Gemma 3 270M (embedded "gemma-3-270m"), NTREX-128 ($NEURONXA_SHARED/data/ntrex128), English against 16 languages of
different resource levels. Per language: NASCA, NAVCA, MEXA (weak alignment on NAS / NAV / hidden states) and the
Appendix C.2 baselines debiased CKA, SVCCA (10 directions) and ANC on the hidden states (and on NAS), all on the
first 100 NTREX lines; and the model's own X->English translations of the first --translate-pairs of those lines
(3-shot, examples from NTREX lines 1995-1997, never scored), scored with chrF++. Then Pearson and Spearman r of
each measure against chrF++ across the 16 languages (n = 16), with p-values.

Resumable: every unit of work (alignment of a group of languages, translation of one language) is cached in
--cache as soon as it is done; --budget SECONDS stops starting new units after that many seconds and exits with
status 3 ("run again"), so the heavy work can run in chunks, e.g. on a shared machine:

    until flock /tmp/neuronxa-heavy.lock .venv/bin/python recipes/worked_example.py --budget 240; \
        [ $? -ne 3 ]; do sleep 20; done

When every unit is cached, it writes docs/worked_example.md (the table), docs/worked_example.png (one scatter per
measure) and replaces the README section between the worked-example markers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

logger = logging.getLogger("neuronxa.worked_example")

# 16 languages: high (spa por ita deu fra nld rus jpn), mid (hin tur pol fin), low (isl swh
# amh yor) resource for a small model's pre-training mix.
LANGUAGES = (
    "spa_Latn",
    "por_Latn",
    "ita_Latn",
    "deu_Latn",
    "fra_Latn",
    "nld_Latn",
    "rus_Cyrl",
    "hin_Deva",
    "tur_Latn",
    "jpn_Jpan",
    "pol_Latn",
    "fin_Latn",
    "isl_Latn",
    "swh_Latn",
    "amh_Ethi",
    "yor_Latn",
)
GROUP_SIZE = 4
# Alignment is computed per group of GROUP_SIZE languages (one forward chunk each). Units run group by group (align
# the group, then translate its languages), and the groups after the first mix resource levels, so an interrupted
# run's --partial table already spans high to low resource.
GROUP_ORDER = (
    "spa_Latn",
    "por_Latn",
    "ita_Latn",
    "deu_Latn",
    "fra_Latn",
    "hin_Deva",
    "isl_Latn",
    "amh_Ethi",
    "rus_Cyrl",
    "tur_Latn",
    "swh_Latn",
    "yor_Latn",
    "nld_Latn",
    "jpn_Jpan",
    "pol_Latn",
    "fin_Latn",
)
NUM_PAIRS = 100
FEWSHOT_LINES = (1994, 1995, 1996)  # 0-based NTREX lines 1995-1997: outside the 100 scored lines
SIMILARITY = ("cka", "svcca", "anc", "cka:nas", "svcca:nas", "anc:nas")
# Table columns: (key in the cache, heading)
MEASURES = (
    ("nasca", "NASCA"),
    ("navca", "NAVCA"),
    ("mexa", "MEXA"),
    ("cka", "CKA"),
    ("svcca", "SVCCA"),
    ("anc", "ANC"),
    ("cka:nas", "CKA (NAS)"),
    ("svcca:nas", "SVCCA (NAS)"),
    ("anc:nas", "ANC (NAS)"),
)
BEGIN, END = "<!-- worked-example:begin -->", "<!-- worked-example:end -->"


def _ntrex_dir() -> Path:
    shared = Path(os.environ.get("NEURONXA_SHARED", ROOT.parent / "shared"))
    return shared / "data" / "ntrex128"


def _load_cache(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"alignment": {}, "translation": {}, "settings": {}}


def _save_cache(path: Path, cache: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


class _Model:
    """Loads Gemma once per process, on first use (a process that only writes the table never loads it)."""

    def __init__(self) -> None:
        self._pair = None
        self.load_seconds = None

    def get(self):
        if self._pair is None:
            from neuronxa_callback.instrument.models import load_model_and_tokenizer

            started = time.perf_counter()
            model, tokenizer = load_model_and_tokenizer("gemma-3-270m")
            model.eval()
            self.load_seconds = time.perf_counter() - started
            self._pair = (model, tokenizer)
        return self._pair


def _align_group(loaded: _Model, group: list[str]) -> dict:
    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.data.loaders import load_parallel

    data = load_parallel(str(_ntrex_dir()), languages=tuple(group), num_pairs=NUM_PAIRS)
    model, tokenizer = loaded.get()
    started = time.perf_counter()
    report = measure_alignment(
        model, tokenizer, data, representations="all", similarity=SIMILARITY, model_name="gemma-3-270m"
    )
    seconds = time.perf_counter() - started
    out = {}
    for language in group:
        pair = data.pair_name(language)
        row = {metric: report.mean(metric, pair) for metric in ("nasca", "navca", "mexa")}
        row.update({key: report.mean(key, pair) for key in SIMILARITY})
        row["nasca_pvalue"] = report.score("nasca", pair).mean_pvalue
        row["nasca_per_layer"] = report.score("nasca", pair).per_layer
        out[language] = row
    logger.info("aligned %s in %.0f s", ",".join(group), seconds)
    return {"languages": out, "seconds": seconds, "ids": list(data.ids), "origin": data.origin}


def _translate(loaded: _Model, language: str, num: int, max_new_tokens: int) -> dict:
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.quality.generation import translate
    from neuronxa_callback.quality.metrics import ChrFScorer

    pool = load_parallel(str(_ntrex_dir()), languages=(language,), num_pairs=None)
    sources = pool.sentences(language)[:num]
    references = pool.sentences("eng_Latn")[:num]
    examples = [(pool.sentences(language)[i], pool.sentences("eng_Latn")[i]) for i in FEWSHOT_LINES]
    model, tokenizer = loaded.get()
    started = time.perf_counter()
    hypotheses = translate(
        model,
        tokenizer,
        sources,
        source_lang=language,
        target_lang="eng_Latn",
        prompt="fewshot",
        examples=examples,
        batch_size=16,
        max_new_tokens=max_new_tokens,
    )
    seconds = time.perf_counter() - started
    score = ChrFScorer().score(sources, hypotheses, references)
    logger.info("translated %s (%d sentences) in %.0f s: chrF++ %.1f", language, num, seconds, score.system)
    return {"chrf": score.system, "signature": score.signature, "seconds": seconds, "n": num, "hypotheses": hypotheses}


def run_units(cache_path: Path, budget: float | None, num_translate: int, max_new_tokens: int) -> bool:
    """Do the uncached units until the budget is spent; True when everything is cached."""
    cache = _load_cache(cache_path)
    settings = {
        "num_pairs": NUM_PAIRS,
        "translate_pairs": num_translate,
        "max_new_tokens": max_new_tokens,
        "similarity": list(SIMILARITY),
        "fewshot_lines": [i + 1 for i in FEWSHOT_LINES],
    }
    if cache.get("settings") and cache["settings"] != settings:
        raise SystemExit(f"{cache_path} was made with other settings {cache['settings']}; delete it or match them")
    cache["settings"] = settings
    loaded = _Model()
    started = time.perf_counter()
    order = [lang for lang in GROUP_ORDER if lang in LANGUAGES] + [
        lang for lang in LANGUAGES if lang not in GROUP_ORDER
    ]
    groups = [order[i : i + GROUP_SIZE] for i in range(0, len(order), GROUP_SIZE)]
    units = []
    for group in groups:
        units += [("alignment", ",".join(group))] + [("translation", lang) for lang in group]
    did_one = False
    for kind, key in units:
        if key in cache[kind]:
            continue
        # At least one unit per call, so every chunk makes progress whatever the budget.
        if did_one and budget is not None and time.perf_counter() - started > budget:
            return False
        did_one = True
        if kind == "alignment":
            cache[kind][key] = _align_group(loaded, key.split(","))
        else:
            cache[kind][key] = _translate(loaded, key, num_translate, max_new_tokens)
        _save_cache(cache_path, cache)
    return True


def results_table(cache: dict) -> tuple[list[dict], dict]:
    """Rows per language (measures + chrF++) and {measure: correlate(...)} across languages."""
    from neuronxa_callback.offline.correlation import correlate_series

    rows = []
    for language in LANGUAGES:
        scores = next(
            (group["languages"][language] for group in cache["alignment"].values() if language in group["languages"]),
            None,
        )
        if scores is None or language not in cache["translation"]:
            continue  # only with --partial: a unit not done yet
        rows.append({"language": language, **scores, "chrf": cache["translation"][language]["chrf"]})
    stats = {key: correlate_series([r[key] for r in rows], [r["chrf"] for r in rows]) for key, _ in MEASURES}
    return rows, stats


def _fmt(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value) -> str:
    return "–" if value is None else (f"{value:.3f}" if value >= 1e-3 else f"{value:.0e}")


def write_outputs(cache: dict, table_path: Path, figure_path: Path, readme: Path | None) -> str:
    from neuronxa_callback.data.languages import language_name

    rows, stats = results_table(cache)
    settings = cache["settings"]
    seconds_align = sum(g["seconds"] for g in cache["alignment"].values())
    seconds_translate = sum(t["seconds"] for t in cache["translation"].values())
    head = ["language"] + [name for _, name in MEASURES] + ["chrF++ X→en"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sorted(rows, key=lambda r: -r["chrf"]):
        cells = [f"{language_name(row['language'])} ({row['language'][:3]})"]
        cells += [_fmt(row[key]) for key, _ in MEASURES] + [f"{row['chrf']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| r with chrF++ (n = {len(rows)}) | " + " | ".join(name for _, name in MEASURES) + " |",
        "|---|" + "---|" * len(MEASURES),
    ]
    for label, key in (
        ("Pearson r", "pearson"),
        ("p", "pearson_pvalue"),
        ("Spearman ρ", "spearman"),
        ("p", "spearman_pvalue"),
    ):
        format_ = _p if key.endswith("pvalue") else _fmt
        lines.append(f"| {label} | " + " | ".join(format_(stats[m][key]) for m, _ in MEASURES) + " |")
    note = (
        f"Gemma 3 270M, NTREX-128 lines 1–{settings['num_pairs']} (alignment), chrF++ of the model's own "
        f"3-shot X→English translations of lines 1–{settings['translate_pairs']} (greedy, ≤ "
        f"{settings['max_new_tokens']} new tokens). CKA/SVCCA/ANC on the hidden states unless marked (NAS); SVCCA "
        f"keeps 10 directions. Forward passes {seconds_align:.0f} s, translation {seconds_translate:.0f} s "
        "(2-core CPU shared with other jobs). Regenerate: `.venv/bin/python recipes/worked_example.py`."
    )
    if len(rows) < len(LANGUAGES):
        missing = [language for language in LANGUAGES if language not in {r["language"] for r in rows}]
        note += (
            f" PARTIAL: {len(rows)} of {len(LANGUAGES)} languages; not yet measured: {', '.join(missing)} "
            "(run the command again to finish)."
        )
    table = "\n".join(lines) + "\n\n" + note + "\n"
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(table, encoding="utf-8")
    _figure(rows, stats, figure_path)
    if readme is not None and readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
            figure_rel = os.path.relpath(figure_path, readme.parent)
            block = f"\n{table}\n![alignment measures vs chrF++]({figure_rel})\n"
            readme.write_text(text[:start] + block + text[stop:], encoding="utf-8")
    return table


def _figure(rows: list[dict], stats: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = 3
    count = len(MEASURES)
    figure = Figure(figsize=(4.0 * columns, 3.3 * ((count + columns - 1) // columns)), constrained_layout=True)
    FigureCanvasAgg(figure)
    chrf = [r["chrf"] for r in rows]
    for index, (key, name) in enumerate(MEASURES):
        axes = figure.add_subplot((count + columns - 1) // columns, columns, index + 1)
        values = [r[key] for r in rows]
        axes.scatter(values, chrf, s=18)
        for row, x, y in zip(rows, values, chrf):
            axes.annotate(row["language"][:3], (x, y), fontsize=7, xytext=(2, 2), textcoords="offset points")
        r = stats[key]["pearson"]
        axes.set_title(f"{name}: r = {_fmt(r, 2)}", fontsize=10)
        axes.set_xlabel(name)
        axes.set_ylabel("chrF++ X→en")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "docs" / "worked_example.json")
    parser.add_argument("--budget", type=float, default=None, help="stop starting new units after SECONDS (exit 3)")
    parser.add_argument(
        "--translate-pairs",
        type=int,
        default=20,
        help="sentences translated per language (default 20: what the shared 2-core CPU allowed; "
        "use 100 where you can — chrF on 20 sentences is noisy)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--table", type=Path, default=ROOT / "docs" / "worked_example.md")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "worked_example.png")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="write the table and figure from the cached units only (no model), marked PARTIAL",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.partial:
        print(write_outputs(_load_cache(args.cache), args.table, args.figure, None if args.no_readme else args.readme))
        return 0
    done = run_units(args.cache, args.budget, args.translate_pairs, args.max_new_tokens)
    if not done:
        logger.info("budget spent; run again to continue (cached in %s)", args.cache)
        return 3
    print(write_outputs(_load_cache(args.cache), args.table, args.figure, None if args.no_readme else args.readme))
    return 0


if __name__ == "__main__":
    sys.exit(main())
