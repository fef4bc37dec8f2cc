"""The peak memory in a measurement record is the measurement's own: a known allocation inside encode() and inside
translate() shows up in alignment_peak_memory_mb and generation_peak_memory_mb respectively."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

from neuronxa_callback.hosts.trainer import NeuronXACallback
from neuronxa_callback.instrument import activations
from neuronxa_callback.quality import generation
from tests._runs import FAST, PAIR, make_trainer, records_of

MIB = 2**20


def allocating(function, mib: int):
    """`function` that first allocates and touches `mib` MiB (above glibc's 32 MiB mmap ceiling: always fresh pages,
    so the resident set grows by that much whatever the allocator holds), then frees it."""

    def wrapped(*args, **kwargs):
        block = torch.ones(mib * MIB // 4)
        # Held a while: where the high-water mark cannot be reset, the RSS is sampled every 5 ms and must see it.
        time.sleep(0.1)
        del block
        return function(*args, **kwargs)

    return wrapped


def check_known_allocations(tmp_path: Path) -> None:
    # Different sizes in the two blocks, so a record that swapped or merged them would fail too.
    activations.encode = allocating(activations.encode, 64)
    generation.translate = allocating(generation.translate, 160)
    callback = NeuronXACallback(eval_steps=0, quality_every=1, quality_num_pairs=2, **FAST)
    make_trainer(tmp_path, [callback], max_steps=1).train()
    records = records_of(tmp_path)
    assert [r["step"] for r in records] == [0, 1] and all(PAIR in r["quality"] for r in records)
    for record in records:
        timing = record["timing"]
        assert 48 <= timing["alignment_peak_memory_mb"] < 150, timing
        assert timing["generation_peak_memory_mb"] >= 150, timing


def test_record_peak_memory_includes_a_known_allocation_in_each_block(tmp_path):
    # In a new interpreter: a long test process's allocator may serve the blocks from memory it kept from earlier
    # tests, and the resident set (what PeakMemory reads on a CPU) would not grow.
    code = (
        f"from pathlib import Path; from tests.test_peak_memory_record import check_known_allocations; "
        f"check_known_allocations(Path({str(tmp_path)!r}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
