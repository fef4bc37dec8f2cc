"""`neuronxa translate` works for every language it can score: examples from the data's own source."""

from __future__ import annotations

import json

from neuronxa_callback.cli import main


def test_translate_italian_from_an_ntrex_directory(model_dir, ntrex_dir, tmp_path):
    out = tmp_path / "ita.json"
    code = main(
        [
            "--quiet",
            "translate",
            "--model",
            str(model_dir),
            "--data",
            str(ntrex_dir),
            "--languages",
            "ita",
            "--num-pairs",
            "3",
            "--max-new-tokens",
            "4",
            "--metrics",
            "chrf",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    direction = result["directions"]["ita_Latn->eng_Latn"]
    # Lines 1-3 are scored; the three prompt examples are the next NTREX lines, never a scored one.
    assert result["data"]["ids"] == ["1", "2", "3"] and result["data"]["origin"].startswith("NTREX-128")
    assert direction["fewshot"]["ids"] == ["4", "5", "6"] and direction["fewshot"]["origin"].startswith("NTREX-128")
    assert len(direction["translations"]) == 3
    assert 0 <= direction["copies"] <= 3 and direction["copy_policy"] == "scored as empty"
    assert direction["copy_rate"] == direction["copies"] / 3 and len(direction["copied_ids"]) == direction["copies"]


def test_translate_defaults_to_the_packaged_ntrex_subset(model_dir, tmp_path):
    out = tmp_path / "default.json"
    code = main(
        [
            "--quiet",
            "translate",
            "--model",
            str(model_dir),
            "--languages",
            "jpn",
            "--num-pairs",
            "2",
            "--max-new-tokens",
            "2",
            "--metrics",
            "chrf",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["data"]["origin"].startswith("NTREX-128 lines 1-100 (packaged subset")
    assert result["directions"]["jpn_Jpan->eng_Latn"]["fewshot"]["ids"] == ["3", "4", "5"]
