"""The benchmarks' --quick modes (tiny random model, bundled sample) run in the default suite, so bench/ cannot rot.

Each script's main(["--quick"]) runs in-process (imports are already paid by the session) and must print only
`name: value` lines with its headline last. The schedule arithmetic of bench_callback.py is checked exactly.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
LINE = re.compile(r"^([a-z0-9_]+): (.+)$")


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, capsys, extra: tuple = ()) -> tuple[dict[str, str], list[str]]:
    module = load_bench(name)
    capsys.readouterr()
    module.main(["--quick", *extra])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    bad = [line for line in lines if not LINE.match(line)]
    assert not bad, f"{name}: lines that are not `name: value`: {bad[:5]}"
    names = [LINE.match(line).group(1) for line in lines]
    assert len(names) == len(set(names)), f"{name}: a name printed twice"
    return {n: LINE.match(line).group(2) for n, line in zip(names, lines)}, names


def test_alternating_reverses_the_order_every_other_round():
    sys.path.insert(0, str(BENCH))
    from _benchlib import alternating

    calls = []
    rounds = alternating({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert [r["a"][1] for r in rounds] == [1, 1, 1] and all(r["b"][0] >= 0 for r in rounds)


def test_schedule_arithmetic_of_bench_callback():
    bench = load_bench("bench_callback")
    # 10 s per alignment, 30 s per translation, 1 s per step, measured every 90 steps, translated every 2nd.
    align, total = bench.schedule_shares(10.0, 30.0, 1.0, 90, 2)
    assert align == pytest.approx(10 / 115) and total == pytest.approx(25 / 115)
    assert bench.schedule_shares(10.0, 30.0, 1.0, 90, 0) == pytest.approx((0.1, 0.1))
    for cost, step, target in ((10.0, 1.0, 0.05), (22.0, 2.7, 0.05), (80.0, 2.7, 0.10), (0.01, 5.0, 0.05)):
        steps = bench.min_eval_steps(cost, step, target)
        assert bench.schedule_shares(cost, 0.0, step, steps, 0)[0] <= target + 1e-12
        if steps > 1:  # one step fewer misses the target: the smallest schedule that meets it
            assert bench.schedule_shares(cost, 0.0, step, steps - 1, 0)[0] > target
    assert bench.min_eval_steps(10.0, 1.0, 0.05) == 190


def test_bench_callback_quick(capsys, tmp_path):
    values, names = run_quick("bench_callback", capsys, ["--output-dir", str(tmp_path)])
    assert names[-1] == "overhead_ratio"
    ratio = float(values["overhead_ratio"])
    assert math.isfinite(ratio) and ratio > 0
    # --quick: 4 steps, eval_steps=2, quality every measurement: steps 0, 2 and 4 measured, each with quality.
    assert values["measured_steps"] == "0,2,4"
    assert values["measurements_with_quality_per_run"] == "3"
    for part in ("alignment", "generation", "quality", "unaccounted", "total"):
        assert math.isfinite(float(values[f"run_share_{part}"]))
    assert 0 < float(values["computed_share_alignment_eval_steps_2"]) < 1
    assert int(values["min_eval_steps_for_alignment_5pct"]) >= 1
    assert {"min_eval_steps_for_total_10pct_quality_every_1", "min_eval_steps_for_total_10pct_quality_every_2"} <= set(
        names
    )


def test_bench_generation_quick(capsys):
    values, names = run_quick("bench_generation", capsys)
    assert names[-1] == "speedup"
    assert float(values["speedup"]) > 0
    assert values["outputs_repeat_across_rounds"] == "yes"  # greedy decoding of the same input is deterministic
    # Batching only pads (left, masked, positions from the mask): greedy decoding gives each sentence the same text
    # as alone, so a count below the total means padding leaked into a translation.
    assert values["identical_outputs"] == "6/6"
    for side in ("batched", "one_at_a_time"):
        assert (
            float(values[f"{side}_seconds_min"])
            <= float(values[f"{side}_seconds_median"])
            <= float(values[f"{side}_seconds_max"])
        )


def test_bench_reference_likelihood_quick(capsys):
    values, names = run_quick("bench_reference_likelihood", capsys)
    assert names[-1] == "likelihood_vs_alignment" and float(values["likelihood_vs_alignment"]) > 0
    assert float(values["ref_logprob_nats_per_byte"]) < 0
    assert float(values["batch1_vs_batched_max_abs_diff_nats"]) < 1e-3  # batching only pads
    assert "unshared_batch_vs_half_batch_max_abs_diff_nats" not in values  # the bf16 noise floor only in bf16


def test_bench_reference_likelihood_quick_bf16_measures_the_noise_floor(capsys):
    values, names = run_quick("bench_reference_likelihood", capsys, ("--dtype", "bfloat16"))
    assert values["dtype"] == "bfloat16" and names[-1] == "likelihood_vs_alignment"
    assert 0 <= float(values["unshared_batch_vs_half_batch_max_abs_diff_nats"]) < 1.0
    assert 0 <= int(values["translations_differing_unshared_batch_vs_half_batch"]) <= int(values["sentences"])


def test_bench_capture_quick(capsys):
    values, names = run_quick("bench_capture", capsys)
    assert names[-1] == "capture_time_ratio_interleaved"
    assert float(values["capture_time_ratio_interleaved"]) > 0
    assert {"interleaved_pass_0_ratio", "interleaved_pass_1_ratio", "capture_time_ratio_rounds_median"} <= set(names)
    assert int(values["capture_peak_bytes_32_tokens"]) > 0


def test_bench_comet_quick(capsys, shared_dir):
    pytest.importorskip("comet", reason="unbabel-comet is not installed (the [comet] extra)")
    if not (shared_dir / "data" / "ntrex128").is_dir():
        pytest.skip("NTREX-128 not found (set NEURONXA_SHARED)")
    values, names = run_quick("bench_comet", capsys)
    assert names[-1] == "comet_loop_seconds_per_100_segments"
    assert values["segments"] == "10"
    # Our loop and comet's own predict() score the same model on the same segments.
    assert float(values["max_abs_score_difference_vs_predict"]) < 1e-4


@pytest.mark.slow  # three modes, each warmed up, and a worker process started per out-of-band run
def test_bench_out_of_band_quick(capsys):
    values, names = run_quick("bench_out_of_band", capsys)
    assert names[-1] == "out_of_band_training_throughput_ratio"
    assert float(values["out_of_band_training_throughput_ratio"]) > 0
    # --quick: 6 steps, eval_steps=3: steps 0, 3 and 6 measured in both modes that measure.
    assert values["process_measurements_per_run"] == values["worker_measurements_per_run"] == "3"
    assert float(values["worker_queue_wait_seconds_median"]) >= 0
    assert len(values["load_average_before"].split()) == 3
