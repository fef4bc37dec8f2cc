"""write_report: figures and a Markdown summary whose numbers match the JSONL; plots.plot_layer_profile."""

from __future__ import annotations

import json
import re

import pytest
from scipy import stats

from neuronxa_callback.offline.report import ReportError, write_report
from neuronxa_callback.sinks.figures import chance_level, plot_layer_profile

ISL = "eng_Latn-isl_Latn"
DEU = "eng_Latn-deu_Latn"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEPS = [0, 25, 50, 75, 100]
ISL_LAYERS = [
    [0.02, 0.10, 0.16, 0.06],
    [0.03, 0.12, 0.18, 0.05],
    [0.02, 0.15, 0.22, 0.07],
    [0.04, 0.14, 0.21, 0.06],
    [0.03, 0.17, 0.26, 0.08],
]
DEU_LAYERS = [
    [0.1, 0.7, 0.8, 0.3],
    [0.1, 0.69, 0.8, 0.3],
    [0.1, 0.7, 0.79, 0.31],
    [0.1, 0.68, 0.8, 0.3],
    [0.1, 0.7, 0.78, 0.3],
]
CHRF = [19.0, 19.2, 20.4, 19.9, 21.3]
COMET = [0.55, None, 0.58, 0.57, 0.61]  # COMET skipped at one measurement


def mean(values):
    return sum(values) / len(values)


def pair_block(layers, pvalue):
    return {
        "num_layers": len(layers),
        "nasca": layers,
        "nasca_mean": mean(layers),
        "nasca_pvalue": pvalue,
        "nasca_layer_pvalues": [pvalue] * len(layers),
        "navca": [v / 2 for v in layers],
        "navca_mean": mean(layers) / 2,
    }


def write_run(run_dir, with_quality=True):
    path = run_dir / "neuronxa" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    with open(path, "w") as handle:
        for i, step in enumerate(STEPS):
            record = {
                "schema": 1,
                "event": "measurement",
                "step": step,
                "epoch": None,
                "trigger": "step",
                "time": "2026-11-22T01:00:00+00:00",
                "measurement_index": i,
                "pairs": {ISL: pair_block(ISL_LAYERS[i], 10.0 ** -(i + 2)), DEU: pair_block(DEU_LAYERS[i], 1e-30)},
                "data": {"origin": "synthetic test data", "ids": [f"s{k}" for k in range(50)]},
            }
            if with_quality:
                record["quality"] = {
                    ISL: {
                        "direction": "isl_Latn->eng_Latn",
                        "chrf": CHRF[i],
                        "bleu": CHRF[i] / 2,
                        "comet": COMET[i],
                        "cometkiwi": None,
                        "signatures": {},
                        "translations": [],
                    }
                }
            handle.write(json.dumps(record) + "\n")
    return path


def fmt_p(pvalue: float) -> str:
    return f"{pvalue:.3f}" if pvalue >= 1e-3 else f"{pvalue:.1e}"


def table_row(markdown: str, section: str, label: str) -> list[str]:
    """Cells of the row starting with `label` in the `## section` part of the Markdown."""
    part = markdown.split(f"## {section}")[1].split("\n## ")[0]
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in section {section!r}")


def test_report_writes_figures_and_a_summary_matching_the_jsonl(tmp_path):
    write_run(tmp_path)
    files = write_report(tmp_path)
    out = tmp_path / "neuronxa" / "report"
    assert files["summary"] == out / "report.md"
    expected_keys = {
        "summary",
        f"heatmap/{ISL}",
        f"trend/{ISL}",
        f"heatmap/{DEU}",
        f"trend/{DEU}",
        f"scatter/{ISL}/chrf",
        f"scatter/{ISL}/comet",
        f"layer_correlation/{ISL}/chrf",
        f"layer_correlation/{ISL}/comet",
        f"scatter/{ISL}/bleu",
        f"layer_correlation/{ISL}/bleu",
    }
    assert set(files) == expected_keys
    for key, path in files.items():
        assert path.parent == out and path.stat().st_size > 1000
        if key != "summary":
            assert path.read_bytes()[:8] == PNG_MAGIC
    markdown = files["summary"].read_text()

    means = [mean(layers) for layers in ISL_LAYERS]
    baseline, final, best = (table_row(markdown, ISL, label) for label in ("baseline", "final", "best"))
    assert baseline[1:4] == ["0", f"{means[0]:.4f}", "0.010"]
    assert final[1:4] == ["100", f"{means[-1]:.4f}", "1.0e-06"]
    assert best[1] == "100" and best[2] == f"{max(means):.4f}"
    assert final[4] == f"2 ({ISL_LAYERS[-1][2]:.3f})"  # layer 2 has the highest NASCA at the final step
    assert f"Change baseline → final: {means[-1] - means[0]:+.4f}" in markdown
    assert f"chrf {CHRF[0]:.3f} (step 0) → {CHRF[-1]:.3f} (step 100), 5 measurement(s)" in markdown

    chrf_row = table_row(markdown, ISL, "chrf")
    r = stats.pearsonr(means, CHRF, method=stats.PermutationMethod(n_resamples=120))  # five points: exact p
    assert chrf_row[1] == "5"
    assert chrf_row[2] == f"{r.statistic:.3f}" and chrf_row[3] == fmt_p(r.pvalue)
    assert chrf_row[4] == f"{stats.spearmanr(means, CHRF).statistic:.3f}"
    per_layer = [stats.pearsonr([row[k] for row in ISL_LAYERS], CHRF).statistic for k in range(4)]
    best_layer = max(range(4), key=lambda k: per_layer[k])
    assert chrf_row[6] == f"{best_layer} ({per_layer[best_layer]:.3f})"
    assert table_row(markdown, ISL, "bleu")[2] == f"{stats.pearsonr(means, [c / 2 for c in CHRF]).statistic:.3f}"
    comet_row = table_row(markdown, ISL, "comet")
    kept = [i for i, c in enumerate(COMET) if c is not None]
    assert comet_row[1] == "4"
    assert comet_row[2] == f"{stats.pearsonr([means[i] for i in kept], [COMET[i] for i in kept]).statistic:.3f}"
    # German had no quality measured
    assert "fewer than 3 measurements with quality" in markdown.split(f"## {DEU}")[1]
    assert f"chance level {chance_level(50):.4f}" in markdown


def test_report_without_quality_still_has_alignment(tmp_path):
    jsonl = write_run(tmp_path, with_quality=False)
    files = write_report(jsonl, out_dir=tmp_path / "custom")
    assert files["summary"].parent == tmp_path / "custom"
    assert not any(key.startswith(("scatter/", "layer_correlation/")) for key in files)
    assert "no translation quality measured" in files["summary"].read_text()


def test_report_errors_name_the_path(tmp_path):
    with pytest.raises(ReportError, match=re.escape(str(tmp_path / "neuronxa" / "metrics.jsonl"))):
        write_report(tmp_path)
    with pytest.raises(ReportError, match="does not exist"):
        write_report(tmp_path / "nowhere")
    empty = tmp_path / "neuronxa" / "metrics.jsonl"
    empty.parent.mkdir()
    empty.write_text("")
    with pytest.raises(ReportError, match=re.escape(str(empty)) + ".*no measurement records"):
        write_report(tmp_path)


def test_layer_profile_plot_of_an_alignment_report(tmp_path):
    report = {
        "model": "tiny",
        "data": {"origin": "synthetic", "ids": [f"s{k}" for k in range(100)]},
        "pairs": {ISL: pair_block(ISL_LAYERS[0], 0.01), DEU: pair_block(DEU_LAYERS[0], 1e-30)},
    }
    path = plot_layer_profile(report, tmp_path / "profile.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="navca"):
        plot_layer_profile({"pairs": {ISL: {"nasca": [0.1]}}}, tmp_path / "x.png", metric="navca")
    assert chance_level(100) == pytest.approx(1 / 199)
