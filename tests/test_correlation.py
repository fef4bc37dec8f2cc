"""`neuronxa correlate`: golden test against the paper's tables, language-code matching, errors naming file:line.

tests/data/paper_correlations.csv is transcribed from shared/paper/neuronxa-arxiv-2507.14900.txt (Huang et al. 2025):
Table 3 (XNLI, BMLAMA-53), Table 4 (m-ARC, m-MMLU, Belebele), Table 8 and Table 9 (Appendix C.2: CKA, SVCCA, ANC,
MEXA, NASCA, NAVCA). Column `line` is the line of that text file; model "AVG" is the paper's average column.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from neuronxa_callback.cli import main
from neuronxa_callback.offline.correlation import (
    CorrelationInputError,
    correlate_benchmarks,
    load_alignment_scores,
    load_benchmarks,
    mean_over_models,
)

PAPER = Path(__file__).parent / "data" / "paper_correlations.csv"


def _paper_rows():
    groups, averages = defaultdict(dict), {}
    with open(PAPER, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["table"], row["benchmark"], row["pooling"], row["measure"])
            if row["model"] == "AVG":
                averages[key] = float(row["r"])
            else:
                groups[key][row["model"]] = float(row["r"])
    return groups, averages


def test_fixture_covers_the_tables():
    groups, averages = _paper_rows()
    assert len(groups) == 75 and set(groups) == set(averages)
    assert {len(v) for k, v in groups.items() if k[0] in ("Table 3", "Table 4")} == {9}
    assert {len(v) for k, v in groups.items() if k[0] in ("Table 8", "Table 9")} == {7}


def test_mean_over_models_rederives_every_paper_average_column():
    groups, averages = _paper_rows()
    for key, by_model in groups.items():
        # The paper prints 4 decimals: the mean of rounded values is within 5e-5 of the rounded mean, plus 5e-5.
        assert mean_over_models(by_model.values()) == pytest.approx(averages[key], abs=1.0e-4), key


def test_second_level_averages_table_10_and_the_headline_0_9556():
    _, averages = _paper_rows()
    multilingual = ("m-ARC", "m-MMLU", "Belebele")
    transfer = ("XNLI", "BMLAMA")
    table_10 = {
        "CKA": (0.7596, 0.6804),
        "SVCCA": (0.9246, 0.8407),
        "ANC": (0.9313, 0.8537),
        "MEXA": (0.9091, 0.8058),
        "NASCA": (0.9541, 0.8597),
        "NAVCA": (0.9430, 0.8588),
    }
    for measure, (multi, trans) in table_10.items():
        assert mean_over_models(averages[("Table 8", b, "weighted", measure)] for b in multilingual) == pytest.approx(
            multi, abs=1e-4
        )
        assert mean_over_models(averages[("Table 9", b, "weighted", measure)] for b in transfer) == pytest.approx(
            trans, abs=1e-4
        )
    # Abstract: "NeuronXA achieves a Pearson correlation of 0.9556 with downstream tasks performance" = Table 4,
    # NASCA with weighted pooling, averaged over the three benchmarks.
    assert mean_over_models(averages[("Table 4", b, "weighted", "NASCA")] for b in multilingual) == pytest.approx(
        0.9556, abs=1e-4
    )


def _series_with_r(r: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y over n "languages" whose Pearson correlation is exactly r (y = r x + sqrt(1 - r^2) z, z orthogonal)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x = (x - x.mean()) / np.linalg.norm(x - x.mean())
    z = rng.normal(size=n)
    z = z - z.mean() - (z @ x) * x
    z /= np.linalg.norm(z)
    y = r * x + math.sqrt(1 - r * r) * z
    return 0.4 + 0.1 * x, 60 + 15 * y  # alignment-like and benchmark-like scales (affine: r unchanged)


LANGS = [
    "deu_Latn",
    "fra_Latn",
    "spa_Latn",
    "ita_Latn",
    "por_Latn",
    "rus_Cyrl",
    "zho_Hans",
    "jpn_Jpan",
    "hin_Deva",
    "swh_Latn",
    "isl_Latn",
    "tur_Latn",
]


def test_correlate_end_to_end_reproduces_paper_table_4_averages(tmp_path):
    """Score files + CSV built so that each model's r across 12 languages is the paper's Table 4 value (weighted
    pooling); `neuronxa correlate` must print back each model's r and the paper's AVG column for every benchmark."""
    groups, averages = _paper_rows()
    models = list(groups[("Table 4", "m-ARC", "weighted", "NASCA")])
    benchmarks = ("m-ARC", "m-MMLU", "Belebele")
    # One score file per model holds NASCA for every language; each benchmark needs its own alignment series, so
    # each benchmark gets its own "model tag" in the score files: model@benchmark.
    csv_rows = ["model,language,benchmark,score"]
    score_specs = []
    for m_index, model in enumerate(models):
        for b_index, benchmark in enumerate(benchmarks):
            r = groups[("Table 4", benchmark, "weighted", "NASCA")][model]
            x, y = _series_with_r(r, len(LANGS), seed=100 * m_index + b_index)
            tag = f"{model}@{benchmark}"
            pairs = {f"eng_Latn-{lang}": {"nasca_mean": float(v)} for lang, v in zip(LANGS, x)}
            path = tmp_path / f"m{m_index}_b{b_index}.json"
            path.write_text(json.dumps({"model": tag, "pairs": pairs}))
            score_specs.append(str(path))
            # ISO 639-3 in the CSV, FLORES-style in the score files: matched after normalisation.
            csv_rows += [f"{tag},{lang[:3]},{benchmark},{v:.12f}" for lang, v in zip(LANGS, y)]
    bench_csv = tmp_path / "bench.csv"
    bench_csv.write_text("\n".join(csv_rows) + "\n")
    table = correlate_benchmarks(load_alignment_scores(score_specs), load_benchmarks(bench_csv))
    for benchmark in benchmarks:
        key = ("Table 4", benchmark, "weighted", "NASCA")
        for model in models:
            entry = table.per_model[benchmark][f"{model}@{benchmark}"]
            assert entry["n"] == 12 and entry["pearson"] == pytest.approx(groups[key][model], abs=1e-9)
        assert table.averages[benchmark]["pearson"] == pytest.approx(averages[key], abs=1e-4)
        assert table.averages[benchmark]["models"] == 9

    out_json, out_csv, plots = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "plots"
    assert (
        main(
            [
                "--quiet",
                "correlate",
                *score_specs,
                "--benchmarks",
                str(bench_csv),
                "--output-json",
                str(out_json),
                "--output-csv",
                str(out_csv),
                "--plot-dir",
                str(plots),
            ]
        )
        == 0
    )
    saved = json.loads(out_json.read_text())["tables"][0]
    assert saved["averages"]["Belebele"]["pearson"] == pytest.approx(
        averages[("Table 4", "Belebele", "weighted", "NASCA")], abs=1e-4
    )
    csv_avg = [row for row in csv.DictReader(open(out_csv)) if row["model"] == "AVG"]
    assert [row["benchmark"] for row in csv_avg] == list(benchmarks)
    pngs = sorted(p.name for p in (plots / "nasca").glob("*.png"))
    assert pngs == ["correlation_Belebele.png", "correlation_m-ARC.png", "correlation_m-MMLU.png"]


def test_spearman_pvalues_and_a_hand_computed_case(tmp_path):
    scores = tmp_path / "s.json"
    scores.write_text(
        json.dumps(
            {
                "model": "m",
                "pairs": {
                    "eng_Latn-deu_Latn": {"nasca_mean": 0.5, "similarity": {"cka": {"mean": 0.9}}},
                    "eng_Latn-fra_Latn": {"nasca_mean": 0.4, "similarity": {"cka": {"mean": 0.7}}},
                    "eng_Latn-isl_Latn": {"nasca_mean": 0.1, "similarity": {"cka": {"mean": 0.8}}},
                    "eng_Latn-amh_Ethi": {"nasca_mean": 0.0, "similarity": {"cka": {"mean": 0.1}}},
                },
            }
        )
    )
    bench = tmp_path / "b.csv"
    bench.write_text(
        "model,language,benchmark,score\nm,de,xnli,70\nm,fra,xnli,65\nm,isl_Latn,xnli,40\n"
        "m,amh-Ethi,xnli,35\nm,yor,xnli,33\n"
    )  # yor has no alignment score: left out (n = 4)
    rows = load_benchmarks(bench)
    table = correlate_benchmarks(load_alignment_scores([scores]), rows)
    entry = table.per_model["xnli"]["m"]
    x, y = [0.0, 0.5, 0.4, 0.1], [35, 70, 65, 40]  # sorted by language: amh, deu, fra, isl
    assert entry["languages"] == ["amh_Ethi", "deu_Latn", "fra_Latn", "isl_Latn"] and entry["n"] == 4
    assert entry["pearson"] == pytest.approx(float(np.corrcoef(x, y)[0, 1]), abs=1e-12)
    assert entry["spearman"] == pytest.approx(1.0)
    # Four languages: exact p-values over the 24 pairings; no other pairing is as extreme (one-sided p = 1/24),
    # and scipy doubles the smaller one-sided p.
    assert entry["spearman_pvalue"] == pytest.approx(2 / 24)
    assert entry["pearson_pvalue"] == pytest.approx(2 / 24)
    # A similarity measure from the same file, under a NAME=PATH label.
    cka = correlate_benchmarks(load_alignment_scores([f"m={scores}"], measure="cka"), rows, measure="cka")
    assert cka.per_model["xnli"]["m"]["pearson"] == pytest.approx(
        float(np.corrcoef([0.1, 0.9, 0.7, 0.8], y)[0, 1]), abs=1e-12
    )
    with pytest.raises(CorrelationInputError, match=r"no model is in both the score files \['renamed'\]"):
        correlate_benchmarks(load_alignment_scores([f"renamed={scores}"]), rows)


@pytest.mark.parametrize(
    "text,message",
    [
        ("model,language,score\nm,deu,1\n", r"b\.csv:1: header lacks column\(s\) \['benchmark'\]"),
        ("model,language,benchmark,score\nm,deu,x,1\nm,deu,x,abc\n", r"b\.csv:3: score 'abc' is not a number"),
        ("model,language,benchmark,score\nm,deu,x,1\nm,klingon,x,2\n", r"b\.csv:3: unknown language code 'klingon'"),
        (
            "model,language,benchmark,score\nm,deu,x,1\nm,deu_Latn,x,2\n",
            r"b\.csv:3: m / deu_Latn / x again \(first on line 2\)",
        ),
        ("model,language,benchmark,score\nm,,x,1\n", r"b\.csv:2: empty language"),
        ("model,language,benchmark,score\nm,deu\n", r"b\.csv:2: 2 field\(s\)"),
        ("", r"b\.csv:1: empty file"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, text, message):
    bad = tmp_path / "b.csv"
    bad.write_text(text)
    with pytest.raises(CorrelationInputError, match=message):
        load_benchmarks(bad)


def test_cli_bad_input_exits_2_with_file_line(tmp_path, capsys):
    scores = tmp_path / "s.json"
    scores.write_text(json.dumps({"model": "m", "pairs": {"eng_Latn-deu_Latn": {"nasca_mean": 0.5}}}))
    bad = tmp_path / "b.csv"
    bad.write_text("model,language,benchmark,score\nm,deu,x,oops\n")
    assert main(["--quiet", "correlate", str(scores), "--benchmarks", str(bad)]) == 2
    assert "b.csv:2" in capsys.readouterr().err
    assert main(["--quiet", "correlate", str(scores), "--benchmarks", str(bad), "--measures", "cka"]) == 2
    broken = tmp_path / "broken.json"
    broken.write_text("{\n  oops")
    good = tmp_path / "g.csv"
    good.write_text("model,language,benchmark,score\nm,deu,x,1\n")
    assert main(["--quiet", "correlate", str(broken), "--benchmarks", str(good)]) == 2
    assert "broken.json:2" in capsys.readouterr().err
    assert main(["--quiet", "correlate", str(scores), "--benchmarks", str(good), "--measures", "cka"]) == 2
    assert "no measure 'cka'" in capsys.readouterr().err


def test_jsonl_score_file_uses_the_last_step_and_the_run_name(tmp_path):
    run = tmp_path / "my-run" / "neuronxa"
    run.mkdir(parents=True)
    records = [
        {"step": 5, "pairs": {"eng_Latn-deu_Latn": {"nasca_mean": 0.2}}},
        {"step": 10, "pairs": {"eng_Latn-deu_Latn": {"nasca_mean": 0.3}}},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert load_alignment_scores([run / "metrics.jsonl"]) == {("my-run", "deu_Latn"): 0.3}
