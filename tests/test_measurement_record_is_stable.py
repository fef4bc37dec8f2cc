"""A fixed tiny run (seeded tiny Llama, bundled pairs, alignment every 2 steps, quality every measurement, plateau
detector on) writes the same scores, translations, correlations and early-stopping state as the reference file
tests/data/tiny_run_records.json. Restructuring the package must not change a number: this is the check.

Regenerate the reference only when a change of results is intended:
    python -m tests.test_measurement_record_is_stable --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "data" / "tiny_run_records.json"
# Wall-clock facts of a run (when, how long, how much memory) differ between any two runs; everything else must not.
_VOLATILE = {"time", "timing"}


def stable_part(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in _VOLATILE}


def tiny_run_records(output_dir: Path) -> list[dict]:
    from neuronxa_callback import NeuronXACallback
    from tests._runs import FAST, make_trainer, records_of

    # 16 pairs and a high learning rate: the scores move from measurement to measurement, so the running
    # correlations are numbers, not "constant series".
    callback = NeuronXACallback(eval_steps=2, quality_every=1, early_stopping_patience=5, **{**FAST, "num_pairs": 16})
    make_trainer(output_dir, [callback], max_steps=6, learning_rate=5e-2).train()
    return [stable_part(record) for record in records_of(output_dir)]


def test_a_fixed_tiny_run_writes_the_reference_records(tmp_path):
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    records = json.loads(json.dumps(tiny_run_records(tmp_path / "run")))  # the JSON round trip the file went through
    assert [r["step"] for r in records] == [r["step"] for r in reference] == [0, 2, 4, 6]
    assert reference[-1]["correlation"]["eng_Latn-isl_Latn"]["chrf"]["pearson"] is not None
    for record, expected in zip(records, reference):
        assert record == expected, f"step {record['step']} differs from {REFERENCE.name}"


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        REFERENCE.write_text(
            json.dumps(tiny_run_records(Path(directory) / "run"), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    print(f"wrote {REFERENCE}")
