"""Out-of-band snapshots under parameter sharding (2 CPU processes, gloo): every rank takes part in gathering the
full state dict through the engine's own API (FSDP1, FSDP2, DeepSpeed ZeRO-3), rank 0 holds it, and the worker's
rebuilt model equals the unsharded one."""

from __future__ import annotations

import json

import pytest

from tests.test_sharded import torchrun


@pytest.mark.slow
def test_sharded_snapshots_gather_the_full_weights_on_rank_0(tmp_path):
    torchrun("_worker_sharded_snapshot.py", str(tmp_path), port=29745, timeout=240)
    rank0 = json.loads((tmp_path / "snapshots-0.json").read_text())
    rank1 = json.loads((tmp_path / "snapshots-1.json").read_text())
    for engine in rank0:  # fsdp1, fsdp2, and zero3 where deepspeed is installed
        assert rank0[engine]["kind"] == "full"
        assert rank0[engine]["keys_equal"] and rank0[engine]["tensors_equal"], engine
        assert rank0[engine]["rebuilt_equal"], engine
        assert rank0[engine]["class"].endswith(":LlamaForCausalLM")  # not FSDP2's FSDPLlamaForCausalLM
        assert rank1[engine] == {"none_off_rank_0": True}
    assert {"fsdp1", "fsdp2"} <= set(rank0)
