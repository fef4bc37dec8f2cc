"""recipes/worked_example.py end to end on a tiny model (3 languages, 12 NTREX lines): cached units, resume after a
spent budget, the table's r equal to numpy's, the figure, and the README block between its markers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "worked_example.py"


@pytest.fixture
def example(monkeypatch, model_dir, ntrex_dir):
    spec = importlib.util.spec_from_file_location("recipe_worked_example", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("NEURONXA_SHARED", str(ntrex_dir.parent.parent))
    monkeypatch.setattr(module, "LANGUAGES", ("deu_Latn", "isl_Latn", "swh_Latn"))
    monkeypatch.setattr(module, "GROUP_SIZE", 2)
    monkeypatch.setattr(module, "NUM_PAIRS", 12)
    monkeypatch.setattr(module, "SIMILARITY", ("cka", "svcca:nas", "anc"))
    monkeypatch.setattr(
        module,
        "MEASURES",
        (("nasca", "NASCA"), ("mexa", "MEXA"), ("cka", "CKA"), ("svcca:nas", "SVCCA (NAS)"), ("anc", "ANC")),
    )

    class TinyModel(module._Model):
        def get(self):
            from neuronxa_callback.instrument.models import load_model_and_tokenizer

            if self._pair is None:
                self._pair = load_model_and_tokenizer(str(model_dir))
            return self._pair

    monkeypatch.setattr(module, "_Model", TinyModel)
    original = module._align_group

    def small_svcca(loaded, group):  # 12 sentences: SVCCA needs fewer than n-1 = 11 directions
        from neuronxa_callback.alignment import report as alignment

        real = alignment.measure_alignment
        monkeypatch.setattr(alignment, "measure_alignment", lambda *a, **k: real(*a, **{**k, "svcca_directions": 3}))
        try:
            return original(loaded, group)
        finally:
            monkeypatch.setattr(alignment, "measure_alignment", real)

    monkeypatch.setattr(module, "_align_group", small_svcca)
    return module


def test_worked_example_resumes_and_writes_table_figure_and_readme(example, tmp_path):
    cache = tmp_path / "cache.json"
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{example.BEGIN}\nold table\n{example.END}\nafter\n")
    args = [
        "--cache",
        str(cache),
        "--translate-pairs",
        "4",
        "--max-new-tokens",
        "4",
        "--table",
        str(tmp_path / "t.md"),
        "--figure",
        str(tmp_path / "docs" / "f.png"),
        "--readme",
        str(readme),
    ]
    # A budget of 0 s does one unit and stops with status 3; the unit is cached.
    assert example.main(args + ["--budget", "0"]) == 3
    first = json.loads(cache.read_text())
    assert list(first["alignment"]) == ["deu_Latn,isl_Latn"] and first["translation"] == {}
    # --partial writes what is cached so far (no model), marked as such.
    assert example.main(args + ["--partial", "--no-readme"]) == 0
    assert "PARTIAL: 0 of 3 languages" in (tmp_path / "t.md").read_text()
    assert example.main(args) == 0
    done = json.loads(cache.read_text())
    assert done["alignment"]["deu_Latn,isl_Latn"] == first["alignment"]["deu_Latn,isl_Latn"]  # not redone
    assert set(done["translation"]) == {"deu_Latn", "isl_Latn", "swh_Latn"}
    assert all(len(t["hypotheses"]) == 4 for t in done["translation"].values())

    rows, stats = example.results_table(done)
    chrf = [r["chrf"] for r in rows]
    cka = [r["cka"] for r in rows]
    if np.std(cka) > 0 and np.std(chrf) > 0:
        assert stats["cka"]["pearson"] == pytest.approx(float(np.corrcoef(cka, chrf)[0, 1]), abs=1e-9)
    table = (tmp_path / "t.md").read_text()
    assert table.count("\n| ") >= 3 + 4 and "r with chrF++ (n = 3)" in table
    assert (tmp_path / "docs" / "f.png").read_bytes()[:4] == b"\x89PNG"
    text = readme.read_text()
    assert "old table" not in text and "r with chrF++" in text and text.endswith("after\n")
    assert "![alignment measures vs chrF++](docs/f.png)" in text
    # Changing settings against an existing cache is refused rather than mixing numbers.
    with pytest.raises(SystemExit, match="other settings"):
        example.main(args[:2] + ["--translate-pairs", "5"])
