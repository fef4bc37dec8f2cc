"""sharding.py and memory.py in one process: detection, the engine seam (engine_for, the plans it counts from, the
one rank split), the agreement rules, the single-process equivalences, and the peak-memory probe. The multi-process
runs (FSDP1, FSDP2, ZeRO-3) are in tests/test_sharded.py."""

from __future__ import annotations

import pytest
import torch

from neuronxa_callback.instrument.activations import encode, encode_plan
from neuronxa_callback.parallel.collectives import my_share
from neuronxa_callback.parallel.sharding import (
    ReplicatedEngine,
    ShardedEngine,
    ShardedMeasurementError,
    _ForwardCounter,
    agree_on_count,
    dummy_forwards,
    encode_sharded,
    engine_for,
    fingerprint,
    reshard,
    sharding_engine,
    translate_sharded,
    unsharded_parameters,
)
from neuronxa_callback.quality.generation import translate, translate_plan
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model("llama", tokenizer=tokenizer, seed=0)


def test_plain_model_is_not_sharded_and_reshard_is_a_no_op(model):
    assert sharding_engine(model) is None
    assert sharding_engine(None) is None
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    reshard(model)
    assert unsharded_parameters(model) == []
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())


def test_zero3_is_detected_from_deepspeed_parameter_attributes(tokenizer):
    import enum

    class Status(enum.Enum):  # the shape of deepspeed's ZeroParamStatus
        NOT_AVAILABLE = 1
        AVAILABLE = 2

    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    for number, parameter in enumerate(model.parameters()):
        parameter.ds_id, parameter.ds_status, parameter.ds_persist = number, Status.NOT_AVAILABLE, False
    assert sharding_engine(model) == "zero3"
    assert unsharded_parameters(model) == []
    model.lm_head.weight.ds_status = Status.AVAILABLE
    model.model.norm.weight.ds_status, model.model.norm.weight.ds_persist = Status.AVAILABLE, True  # kept by design
    assert unsharded_parameters(model) == ["lm_head.weight"]


def test_fsdp2_is_detected_from_the_fsdp_module_mixin(tokenizer):
    from torch.distributed.fsdp import FSDPModule

    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    # fully_shard swaps a module's class for a subclass of FSDPModule; do the same without a process group.
    layer = model.model.layers[0]
    layer.__class__ = type("FSDP" + type(layer).__name__, (FSDPModule, type(layer)), {})
    assert sharding_engine(model) == "fsdp2"


def test_engine_for_chooses_replicated_for_plain_weights_and_sharded_for_fsdp(tokenizer):
    from torch.distributed.fsdp import FSDPModule

    plain = tiny_model("llama", tokenizer=tokenizer, seed=0)
    engine = engine_for(plain)
    assert isinstance(engine, ReplicatedEngine) and (engine.rank, engine.world) == (0, 1)
    engine.release()  # nothing to put back
    layer = plain.model.layers[0]
    layer.__class__ = type("FSDP" + type(layer).__name__, (FSDPModule, type(layer)), {})
    sharded = engine_for(plain, timeout=5)
    assert isinstance(sharded, ShardedEngine) and sharded.timeout == 5 and sharded.model is plain


def test_my_share_is_the_one_rank_split():
    assert my_share(7, 0, 3) == [0, 3, 6] and my_share(7, 2, 3) == [2, 5] and my_share(1, 1, 2) == []
    shares = [my_share(11, rank, 4) for rank in range(4)]
    assert sorted(i for share in shares for i in share) == list(range(11))


def test_encode_plan_is_the_plan_encode_runs(model, tokenizer):
    sentences = corpus_sentences()[:9]
    plan = encode_plan(tokenizer, sentences, batch_size=4, max_length=32)
    assert [len(batch) for batch in plan.batches] == [4, 4, 1]
    assert [plan.share(rank, 2) for rank in range(2)] == [[plan.batches[0], plan.batches[2]], [plan.batches[1]]]
    assert plan.shortest() == plan.input_ids[plan.batches[-1][-1]]
    assert encode_plan(tokenizer, [], batch_size=4).shortest() is None
    with _ForwardCounter(model) as counter:
        planned = encode(model, tokenizer, sentences, batch_size=4, max_length=32, plan=plan)
    assert counter.calls == len(plan.batches)  # one forward per planned batch: what the sharded engine counts
    plain = encode(model, tokenizer, sentences, batch_size=4, max_length=32)
    for name, value in plain.representations.items():
        assert torch.equal(planned.representations[name], value)
    with pytest.raises(ValueError, match="plan` was made for other"):
        encode(model, tokenizer, sentences, batch_size=2, max_length=32, plan=plan)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        encode_plan(tokenizer, sentences, batch_size=0)


def test_translate_plan_is_the_plan_translate_runs(model, tokenizer):
    sources = corpus_sentences()[10:15]
    settings = {"source_lang": "isl_Latn", "target_lang": "eng_Latn", "batch_size": 2}
    plan = translate_plan(tokenizer, sources, **settings)
    assert len(plan.batches) == 3  # one generate call per batch
    assert translate(model, tokenizer, sources, max_new_tokens=3, plan=plan, **settings) == translate(
        model, tokenizer, sources, max_new_tokens=3, **settings
    )
    with pytest.raises(ValueError, match="plan` was made for other"):
        translate(model, tokenizer, sources, max_new_tokens=3, plan=plan, **{**settings, "target_lang": "deu_Latn"})
    with pytest.raises(ValueError, match="separate pool"):  # translate's checks run when the plan is made
        translate_plan(tokenizer, sources, examples=[(sources[0], "leak")], **settings)


def test_replicated_shares_cover_every_sentence_once(model, tokenizer):
    """The replicated engine at rank r of 2 (what DDP runs): encode rows and translations, merged, are the
    single-process ones."""
    from neuronxa_callback.parallel.collectives import merge_encoded

    sentences = corpus_sentences()[:9]
    engines = [ReplicatedEngine(model, rank, 2) for rank in range(2)]
    parts = [engine.encode(tokenizer, sentences, batch_size=4, max_length=32) for engine in engines]
    plain = encode(model, tokenizer, sentences, batch_size=4, max_length=32)
    merged = merge_encoded(parts, len(sentences))
    for name, value in plain.representations.items():
        assert torch.equal(merged.representations[name], value)
    sources = corpus_sentences()[10:13]
    options = {"source_lang": "isl_Latn", "target_lang": "eng_Latn", "batch_size": 2, "max_new_tokens": 3}
    rows = [engine.translate(tokenizer, sources, **options) for engine in engines]
    assert [[i for i, _ in share] for share in rows] == [[0, 2], [1]]
    assert rows[1] == [(1, translate(model, tokenizer, [sources[1]], **options)[0])]


def test_float16_overflow_is_flagged_by_the_sharded_engine_and_recomputed_by_the_replicated_one(tokenizer):
    """A sharded rank may not add a forward (the others would not join it): it flags the layers instead. One process
    with whole weights recomputes under bfloat16 autocast (tests/test_float16_overflow.py has the numbers)."""
    model = tiny_model("llama", tokenizer=tokenizer, num_layers=3)
    gate = model.model.layers[1].mlp.gate_proj.weight
    with torch.no_grad():
        gate.mul_(2e4 / gate.abs().max())  # layer 1's gate leaves the float16 range
    model = model.to(torch.float16)
    sentences = corpus_sentences()[:12]
    with _ForwardCounter(model) as counter:
        flagged = ShardedEngine(model).encode(tokenizer, sentences, representations=("nas",), batch_size=4)
    assert counter.calls == 3 and flagged.upcast_batches == 0
    assert sorted(flagged.invalid_layers) == [1, 2] and "sharded" in flagged.invalid_layers[1]
    recomputed = engine_for(model).encode(tokenizer, sentences, representations=("nas",), batch_size=4)
    assert recomputed.upcast_batches == 3 and recomputed.invalid_layers == {}


def test_measure_alignment_shard_route_in_one_process_is_the_plain_report(model, tokenizer):
    from neuronxa_callback.alignment.report import AlignmentError, measure_alignment
    from neuronxa_callback.data.loaders import load_parallel

    data = load_parallel("bundled", languages=("isl_Latn",), num_pairs=6)
    plain = measure_alignment(model, tokenizer, data, batch_size=4, max_length=32).to_dict()["pairs"]
    routed = measure_alignment(model, tokenizer, data, batch_size=4, max_length=32, shard=(0, 1)).to_dict()["pairs"]
    assert routed == plain
    with pytest.raises(AlignmentError, match="not this process's"):
        measure_alignment(model, tokenizer, data, batch_size=4, shard=(1, 2))


def test_no_caller_splits_ranks_or_branches_on_sharding_itself():
    """The rank split lives in distributed.my_share and the choice of engine in sharding.engine_for only."""
    import re
    from pathlib import Path

    import neuronxa_callback

    package = Path(neuronxa_callback.__file__).parent
    assert not (package / "_sharded_step.py").exists()
    for path in sorted(package.glob("*.py")):
        code = path.read_text(encoding="utf-8")
        splits = re.findall(r"%\s*(?:world|shard\[1\])|range\(\s*rank\s*,", code)
        assert len(splits) == (1 if path.name == "distributed.py" else 0), (path.name, splits)  # my_share's own
        if path.name not in ("sharding.py", "__init__.py"):
            assert not re.search(r"\bsharding_engine\(", code), path.name


def test_fingerprint_tells_inputs_apart():
    assert fingerprint("encode", ["a", "b"], 4) == fingerprint("encode", ["a", "b"], 4)
    assert fingerprint("encode", ["a", "b"], 4) != fingerprint("encode", ["b", "a"], 4)
    assert fingerprint("encode", ["a", "b"], 4) != fingerprint("encode", ["a", "b"], 8)


def test_agreement_in_one_process_returns_the_count_and_raises_a_preparation_error():
    assert agree_on_count(3, 7, what="test") == 3
    with pytest.raises(ShardedMeasurementError, match="test: ValueError: bad"):
        agree_on_count(0, 7, what="test", error="ValueError: bad")


def test_encode_sharded_in_one_process_is_encode(model, tokenizer):
    sentences = corpus_sentences()[:9]
    plain = encode(model, tokenizer, sentences, batch_size=4, max_length=32)
    with _ForwardCounter(model) as counter:
        sharded = encode_sharded(model, tokenizer, sentences, batch_size=4, max_length=32)
    assert counter.calls == 3  # 9 sentences in batches of 4: no dummy forward with one rank
    assert sharded.indices == plain.indices
    for name, value in plain.representations.items():
        assert torch.equal(sharded.representations[name], value)


def test_encode_sharded_fails_on_an_unsupported_model_before_any_forward(tokenizer):
    class Unknown(torch.nn.Module):
        config = type("Config", (), {"model_type": "no_such_arch"})()

        def forward(self, **kwargs):  # pragma: no cover - must not be reached
            raise AssertionError("forward ran")

    with pytest.raises(ShardedMeasurementError, match="no_such_arch"):
        encode_sharded(Unknown(), tokenizer, ["One sentence."], batch_size=2)


def test_dummy_forwards_run_in_eval_mode_without_gradients_and_restore_the_flags(model):
    model.train()
    seen = []
    handle = model.register_forward_pre_hook(
        lambda m, a: seen.append((m.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
    )
    try:
        dummy_forwards(model, [2, 10, 11], 2)
        dummy_forwards(model, [2, 10, 11], 0)
    finally:
        handle.remove()
        training_after = model.training
        model.eval()
    assert seen == [(False, False, False)] * 2  # eval, no_grad, never inference_mode
    assert training_after is True


def test_translate_sharded_in_one_process_is_translate(model, tokenizer):
    sources = corpus_sentences()[10:13]
    expected = translate(
        model, tokenizer, sources, source_lang="isl_Latn", target_lang="eng_Latn", batch_size=2, max_new_tokens=4
    )
    rows = translate_sharded(
        model, tokenizer, sources, source_lang="isl_Latn", target_lang="eng_Latn", batch_size=2, max_new_tokens=4
    )
    assert rows == list(enumerate(expected))


def test_translate_sharded_has_the_defaults_of_translate():
    """In one process translate_sharded is translate: a caller that leaves an option out gets the same output
    (max_new_tokens was 64 here and 128 there)."""
    import inspect

    plain, sharded = inspect.signature(translate).parameters, inspect.signature(translate_sharded).parameters
    shared = [name for name in plain if name in sharded and plain[name].default is not inspect.Parameter.empty]
    assert "max_new_tokens" in shared
    assert {name: sharded[name].default for name in shared} == {name: plain[name].default for name in shared}


def test_translate_sharded_checks_examples_before_generating(model, tokenizer):
    sources = corpus_sentences()[10:12]
    with pytest.raises(ShardedMeasurementError, match="translation isl_Latn->eng_Latn"):
        translate_sharded(
            model, tokenizer, sources, source_lang="isl_Latn", target_lang="eng_Latn", examples=[(sources[0], "leak")]
        )


def _in_a_fresh_process(code: str) -> None:
    """Run `code` in a new interpreter: a long test process's allocator may serve a 64 MiB block from memory it
    kept from earlier tests, so the resident set would not grow and there would be nothing to measure."""
    import subprocess
    import sys
    import textwrap

    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_peak_memory_sees_a_temporary_allocation_on_cpu():
    _in_a_fresh_process("""
        import torch
        from neuronxa_callback.instrument.memory import PeakMemory

        with PeakMemory("cpu") as peak:
            block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
            del block
        assert peak.method in ("cpu_rss_hwm", "cpu_rss_sampled"), peak.method
        assert peak.delta_bytes is not None and peak.delta_bytes >= 48 * 2**20, peak.delta_bytes
        assert peak.to_dict("alignment")["alignment_peak_memory_mb"] >= 48
    """)


def test_peak_memory_falls_back_to_sampling_without_clear_refs():
    _in_a_fresh_process("""
        import time
        import torch
        from neuronxa_callback.instrument import memory

        memory._reset_hwm = lambda: False
        with memory.PeakMemory("cpu") as peak:
            block = torch.ones(64 * 2**20 // 4)
            time.sleep(0.05)  # the sampler runs every 5 ms
            del block
        assert peak.method == "cpu_rss_sampled", peak.method
        assert peak.delta_bytes >= 48 * 2**20, peak.delta_bytes
    """)
