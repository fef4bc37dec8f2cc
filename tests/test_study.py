"""The study analysis (offline/study.py) on synthetic runs with known answers, and recipes/study.py end to end on a
tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neuronxa_callback.offline.study import (
    analyze_study,
    load_study_runs,
    partial_correlation,
    pool_correlations,
    study_series,
    write_study_page,
)

PAIR, CONTROL = "eng_Latn-isl_Latn", "eng_Latn-deu_Latn"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LAYERS = 4


def _record(step: int, layers: list[float], control: list[float], *, likelihood: float, chrf: float | None) -> dict:
    """A measurement record as the monitor writes it (docs/DESIGN.md), with the numbers given."""
    record = {
        "schema": 1,
        "event": "measurement",
        "step": step,
        "trigger": "step",
        "measurement_index": step,
        "pairs": {
            pair: {"num_layers": len(values), "nasca": values, "nasca_mean": sum(values) / len(values)}
            for pair, values in ((PAIR, layers), (CONTROL, control))
        },
        "likelihood": {PAIR: {"direction": "isl_Latn->eng_Latn", "ref_logprob": likelihood}},
    }
    if chrf is not None:
        record["quality"] = {PAIR: {"direction": "isl_Latn->eng_Latn", "chrf": chrf}}
    return record


def _run(nasca: np.ndarray, likelihood: np.ndarray, chrf: np.ndarray, *, rng, layer_noise: float = 0.0) -> list[dict]:
    """Records of one run: layer 0 carries the NASCA signal exactly, the others the signal plus noise (so layer 0
    tracks quality best); chrF at every second measurement and the last; the control pair is independent noise."""
    records = []
    last = len(nasca) - 1
    for i, value in enumerate(nasca):
        # Noise that sums to zero over layers 1..: the layer mean stays the signal itself.
        noise = layer_noise * rng.normal(size=LAYERS - 1)
        layers = [float(value)] + [float(value + e) for e in noise - noise.mean()]
        control = [float(0.5 + 0.01 * rng.normal()) for _ in range(LAYERS)]
        shown_chrf = float(chrf[i]) if i % 2 == 0 or i == last else None
        records.append(_record(i * 5, layers, control, likelihood=float(likelihood[i]), chrf=shown_chrf))
    return records


def _write(tmp_path: Path, runs: dict[str, list[dict]]) -> list[Path]:
    dirs = []
    for name, records in runs.items():
        jsonl = tmp_path / name / "neuronxa" / "metrics.jsonl"
        jsonl.parent.mkdir(parents=True)
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        dirs.append(jsonl.parent.parent)
    return dirs


def test_quality_that_follows_alignment_is_recovered_on_levels_changes_and_partial(tmp_path):
    """quality = a * NASCA + small noise, NASCA a random walk: r ~ 1 in every view, per run and pooled."""
    rng = np.random.default_rng(1)
    runs = {}
    for seed in range(3):
        nasca = 0.1 + np.cumsum(rng.normal(0, 0.01, 13))
        runs[f"seed-{seed}"] = _run(
            nasca, -2.0 + 3 * nasca + rng.normal(0, 0.0005, 13), 20 + 50 * nasca, rng=rng, layer_noise=0.02
        )
    analysis = analyze_study(load_study_runs(_write(tmp_path, runs)), pair=PAIR, control_pair=CONTROL, resamples=999)
    for name in runs:
        likelihood = analysis["runs"][name]["ref_logprob"]
        assert likelihood["points"] == 13
        assert likelihood["levels"]["pearson"] > 0.95 and likelihood["changes"]["pearson"] > 0.95
        assert likelihood["partial"]["pearson"] > 0.95
        assert likelihood["levels"]["pearson_pvalue"] < 0.01
        assert analysis["runs"][name]["chrf"]["points"] == 7  # every second measurement and the last
        assert analysis["runs"][name]["chrf"]["levels"]["pearson"] == pytest.approx(1.0)
    pooled = analysis["pooled"]["ref_logprob"]
    for view in ("levels", "changes", "partial"):
        assert pooled[view]["pearson"] > 0.95 and pooled[view]["pearson_pvalue"] < 1e-4
        low, high = pooled[view]["pearson_ci"]
        assert low < pooled[view]["pearson"] < high
    assert pooled["changes_centred"]["pearson"] > 0.95 and pooled["changes_centred"]["pearson_pvalue"] < 0.01
    # Layer 0 carries the signal exactly, the others with noise: it tracks quality best.
    levels = pooled["layers"]["changes"]
    assert max(range(LAYERS), key=lambda i: levels[i]) == 0
    # The control pair is noise: no correlation to speak of.
    assert abs(pooled["control"]["changes"]["pearson"]) < 0.5


def test_a_shared_time_trend_correlates_levels_but_not_changes_or_partial(tmp_path):
    """NASCA and quality = the same trend + independent noise: levels r high, changes and partial r near 0."""
    rng = np.random.default_rng(7)
    runs = {}
    steps = np.arange(13)
    for seed in range(6):
        nasca = 0.1 + 0.02 * steps + rng.normal(0, 0.01, 13)
        likelihood = -2.0 + 0.05 * steps + rng.normal(0, 0.025, 13)
        runs[f"seed-{seed}"] = _run(nasca, likelihood, 20 + steps + rng.normal(0, 0.5, 13), rng=rng)
    analysis = analyze_study(load_study_runs(_write(tmp_path, runs)), pair=PAIR, control_pair=CONTROL, resamples=999)
    pooled = analysis["pooled"]["ref_logprob"]
    assert pooled["levels"]["pearson"] > 0.9 and pooled["levels"]["pearson_pvalue"] < 1e-6
    assert abs(pooled["changes"]["pearson"]) < 0.3
    assert abs(pooled["partial"]["pearson"]) < 0.3
    assert pooled["changes"]["pearson_ci"][0] < 0 < pooled["changes"]["pearson_ci"][1]
    assert pooled["partial"]["pearson_pvalue"] > 0.05


def test_partial_correlation_and_pooling_agree_with_direct_computation():
    rng = np.random.default_rng(3)
    step = np.arange(20.0)
    x = 0.3 * step + rng.normal(size=20)
    y = 0.5 * step + 0.8 * (x - 0.3 * step) + rng.normal(size=20)
    result = partial_correlation(list(x), list(y), list(step))

    def resid(v):
        return v - np.polyval(np.polyfit(step, v, 1), step)

    assert result["pearson"] == pytest.approx(np.corrcoef(resid(x), resid(y))[0, 1])
    assert result["pearson_ci"][0] < result["pearson"] < result["pearson_ci"][1]
    assert partial_correlation([1.0, 2, 3], [1.0, 2, 4], [0, 1, 2])["reason"].startswith("fewer than 4")
    # Fisher-z pooling: equal r pools to that r; weights follow n - 3.
    pooled = pool_correlations([{"pearson": 0.5, "n": 10}, {"pearson": 0.5, "n": 20}])
    assert pooled["pearson"] == pytest.approx(0.5) and pooled["runs"] == 2 and pooled["n"] == 30
    mixed = pool_correlations([{"pearson": 0.9, "n": 103}, {"pearson": 0.0, "n": 4}])
    assert mixed["pearson"] > 0.85  # the long run dominates
    assert pool_correlations([{"pearson": None, "n": 10}])["pearson"] is None


def test_page_and_figures_are_written(tmp_path):
    rng = np.random.default_rng(2)
    runs = {
        f"seed-{s}": _run(
            0.1 + np.cumsum(rng.normal(0, 0.01, 12)), rng.normal(-2, 0.01, 12), rng.normal(20, 1, 12), rng=rng
        )
        for s in range(2)
    }
    analysis = analyze_study(runs, pair=PAIR, control_pair=CONTROL, resamples=999)
    paths = write_study_page(analysis, tmp_path / "out", intro="Synthetic runs.")
    page = paths["page"].read_text(encoding="utf-8")
    assert page.startswith("# Does alignment track translation quality")
    assert "Synthetic runs." in page and "partial (step)" in page and "time" in page
    assert "| seed-0 | 12 |" in page and f"Control pair {CONTROL}" in page
    for key in ("series", "scatter", "layers"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({paths[key].name})" in page
    numbers = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert numbers["series"]["seed-1"]["steps"] == [5 * i for i in range(12)]


def test_bad_input_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        load_study_runs([tmp_path / "nothing"])
    with pytest.raises(ValueError, match="eng_Latn-fin_Latn"):
        study_series([_record(0, [0.1], [0.5], likelihood=-2.0, chrf=None)], "eng_Latn-fin_Latn")


@pytest.mark.slow
def test_study_recipe_end_to_end_tiny(model_dir, tmp_path):
    """recipes/study.py as users run it, on a tiny model: two seeds side by side, each with 12 measurements carrying
    the likelihood and 7 with chrF, then the page. A second call analyses the finished runs without rerunning them."""
    out = tmp_path / "study"
    command = [
        sys.executable,
        str(RECIPES / "study.py"),
        "--output-dir",
        str(out),
        "--seeds",
        "0,1",
        "--steps",
        "11",
        "--eval-steps",
        "1",
        "--quality-pairs",
        "4",
        # passed on to demo.py
        "--model",
        str(model_dir),
        "--num-pairs",
        "8",
        "--max-new-tokens",
        "4",
        "--batch-size",
        "4",
    ]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    first_seconds = time.monotonic() - started
    for seed in (0, 1):
        records = [json.loads(line) for line in (out / f"seed-{seed}" / "neuronxa" / "metrics.jsonl").open()]
        assert [r["step"] for r in records] == list(range(12))
        assert all(r["likelihood"][PAIR]["ref_logprob"] is not None for r in records)
        assert sum(PAIR in (r.get("quality") or {}) for r in records) == 7
        assert set(records[0]["pairs"]) == {PAIR, CONTROL}
    page = (out / "study.md").read_text(encoding="utf-8")
    assert "| seed-0 | 12 |" in page and "| seed-1 | 7 |" in page
    assert (out / "study_series.png").is_file()
    assert completed.stdout.strip().splitlines()[-1] == f"Results: {out / 'study.md'}"
    # Again, publishing into a docs page: the finished runs are not rerun, the results go under the page's marker.
    docs_page = tmp_path / "docs" / "index.md"
    docs_page.parent.mkdir()
    docs_page.write_text(
        "# Study\n\nHow to reproduce.\n\n<!-- study results: written by recipes/study.py --publish -->\nold\n"
    )
    again = subprocess.run([*command, "--publish", str(docs_page)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("not run again") == 2, again.stderr[-3000:]
    assert time.monotonic() - started - first_seconds < first_seconds
    published = docs_page.read_text(encoding="utf-8")
    assert published.startswith("# Study\n\nHow to reproduce.") and "\nold\n" not in published
    assert "## Does alignment track translation quality" in published and "### Headline" in published
    # The page states the timing of the call that made the runs, not of the call that found them finished.
    assert "min wall for 2 run(s)" in published and "made earlier" not in published
    assert (docs_page.parent / "study_scatter.png").is_file()
