"""Gemma 3 270M on NTREX-128 (English vs German, first 100 lines): reference figures measured independently.

Reference (measured independently, float32, weighted pooling, <bos> fed but not pooled, strict inequality):
NASCA layer mean 0.494 and the per-layer profile below; NAVCA layer mean 0.319.
"""

from __future__ import annotations

import pytest

from neuronxa_callback.alignment.report import measure_alignment
from neuronxa_callback.alignment.scoring import chance_probability
from neuronxa_callback.data.loaders import ParallelSet

pytestmark = pytest.mark.integration

NASCA_PROFILE_ENG_DEU = [
    0.02,
    0.15,
    0.23,
    0.42,
    0.75,
    0.74,
    0.87,
    0.89,
    0.86,
    0.88,
    0.82,
    0.75,
    0.49,
    0.42,
    0.30,
    0.15,
    0.10,
    0.05,
]
NUM_LINES = 100


def _first_lines(path, count: int) -> list[str]:
    # NTREX files use CRLF line endings: strip them with the rest of the trailing whitespace.
    with open(path, encoding="utf-8", newline="") as handle:
        lines = [line.rstrip("\r\n").strip() for _, line in zip(range(count), handle)]
    assert len(lines) == count and all(lines), f"{path}: expected {count} non-empty lines"
    return lines


@pytest.fixture(scope="module")
def eng_deu(ntrex_dir) -> ParallelSet:
    folder = ntrex_dir / "NTREX-128"
    if not folder.is_dir():
        folder = ntrex_dir
    return ParallelSet(
        languages=("eng_Latn", "deu_Latn"),
        texts={
            "eng_Latn": tuple(_first_lines(folder / "newstest2019-src.eng.txt", NUM_LINES)),
            "deu_Latn": tuple(_first_lines(folder / "newstest2019-ref.deu.txt", NUM_LINES)),
        },
        ids=tuple(f"ntrex-{i + 1}" for i in range(NUM_LINES)),
        origin="NTREX-128 newstest2019 lines 1-100",
    )


@pytest.fixture(scope="module")
def report(gemma, eng_deu):
    model, tokenizer = gemma
    return measure_alignment(
        model, tokenizer, eng_deu, representations=("nas", "nav"), pooling="weighted", model_name="gemma-3-270m"
    )


def test_nasca_matches_reference_profile(report):
    score = report.score("nasca", "eng_Latn-deu_Latn")
    assert score.num_layers == len(NASCA_PROFILE_ENG_DEU) == 18
    assert score.mean == pytest.approx(0.494, abs=0.01)
    for layer, (got, expected) in enumerate(zip(score.per_layer, NASCA_PROFILE_ENG_DEU)):
        assert got == pytest.approx(expected, abs=0.03), f"layer {layer}: {got} vs {expected}"
    # Middle layers align best, the first and last layers least (paper Fig. 2).
    middle = max(score.per_layer[6:12])
    assert middle > 3 * max(score.per_layer[0], score.per_layer[-1])
    # Far above chance: with n = 100 the chance probability of the mean is astronomically small.
    assert score.mean_pvalue == chance_probability(round(score.mean * NUM_LINES), NUM_LINES) < 1e-30


def test_navca_mean_near_reference(report):
    assert report.mean("navca", "eng_Latn-deu_Latn") == pytest.approx(0.319, abs=0.015)


def test_report_settings(report):
    payload = report.to_dict()
    assert payload["settings"]["n"] == NUM_LINES and payload["pairs"]["eng_Latn-deu_Latn"]["num_layers"] == 18
    signature = payload["pairs"]["eng_Latn-deu_Latn"]["signature"]["nasca"]
    assert "|pair:eng_Latn-deu_Latn|n:100|pool:weighted|layers:all|center:no|" in signature
