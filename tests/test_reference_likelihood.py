"""Reference likelihood (quality/likelihood.py): equal to a direct one-sentence computation, independent of padding,
batch size and BOS handling; in the record at every measurement; published to trackers; correlated by the history;
the same under 2-process DDP as in one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuronxa_callback.quality.likelihood import likelihood_plan, reference_likelihood, summarize_likelihood
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer
from tests._runs import FAST

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"
SENTENCES = corpus_sentences()
# German sources (corpus lines 17-19), Icelandic ones, and a few-shot block: prompts of different lengths.
PROMPTS = [f"German: {s}\nEnglish:" for s in SENTENCES[16:19]] + [
    f"Icelandic: {SENTENCES[10]}\nEnglish: {SENTENCES[0]}\n\nIcelandic: {s}\nEnglish:" for s in SENTENCES[11:16]
]
REFERENCES = SENTENCES[1:9]
# Prompts as translate() builds them with examples: a long few-shot block every sentence starts with.
FEWSHOT_BLOCK = "".join(f"Icelandic: {SENTENCES[19 + k]}\nEnglish: {SENTENCES[22 + k]}\n\n" for k in range(3))
FEWSHOT_PROMPTS = [f"{FEWSHOT_BLOCK}Icelandic: {s}\nEnglish:" for s in SENTENCES[11:19]]


def direct(model, tokenizer, prompt: str, reference: str, *, add_special_tokens: bool = True) -> tuple[float, int]:
    """One sentence, full logits, the reference tokens' log-probs gathered by hand: (sum, tokens)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
    plain = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    joined = tokenizer(prompt + " " + reference, add_special_tokens=False)["input_ids"]
    assert joined[: len(plain)] == plain  # the tiny tokenizer splits at spaces: no merge at the boundary
    reference_ids = joined[len(plain) :]
    ids = torch.tensor([prompt_ids + reference_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    log_probs = torch.log_softmax(logits, dim=-1)
    total = sum(log_probs[len(prompt_ids) + k - 1, token].item() for k, token in enumerate(reference_ids))
    return total, len(reference_ids)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_equals_a_direct_computation_with_the_prompt_excluded(tokenizer, add_special_tokens):
    model = tiny_model("llama", tokenizer=tokenizer, seed=1)
    rows = reference_likelihood(
        model, tokenizer, PROMPTS, REFERENCES, batch_size=3, add_special_tokens=add_special_tokens
    )
    for prompt, reference, row in zip(PROMPTS, REFERENCES, rows):
        total, tokens = direct(model, tokenizer, prompt, reference, add_special_tokens=add_special_tokens)
        assert row.logprob == pytest.approx(total, abs=1e-4)
        assert row.tokens == tokens and row.bytes == len(reference.encode("utf-8")) and row.chars == len(reference)
        assert row.logprob < 0


def test_bos_is_fed_as_generation_feeds_it(tokenizer):
    """With add_special_tokens the prompt starts with <bos> (as translate() tokenizes it), without it does not; the
    reference tokens are the same and so is their count, but the context differs, and so does the value."""
    model = tiny_model("llama", tokenizer=tokenizer, seed=1)
    with_bos = likelihood_plan(tokenizer, PROMPTS[:1], REFERENCES[:1], add_special_tokens=True)
    without = likelihood_plan(tokenizer, PROMPTS[:1], REFERENCES[:1], add_special_tokens=False)
    assert with_bos.input_ids[0][0] == tokenizer.bos_token_id and without.input_ids[0][0] != tokenizer.bos_token_id
    assert with_bos.input_ids[0][1:] == without.input_ids[0]
    assert with_bos.starts[0] == without.starts[0] + 1
    a = reference_likelihood(model, tokenizer, PROMPTS[:1], REFERENCES[:1], add_special_tokens=True)[0]
    b = reference_likelihood(model, tokenizer, PROMPTS[:1], REFERENCES[:1], add_special_tokens=False)[0]
    assert a.tokens == b.tokens and a.logprob != pytest.approx(b.logprob, abs=1e-6)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
def test_padding_side_and_batch_size_do_not_change_the_values(tokenizer, model_type):
    """gpt2 has absolute position embeddings: left padding agrees only because position ids count real tokens."""
    model = tiny_model(model_type, tokenizer=tokenizer, seed=2)
    reference = None
    for padding_side in ("left", "right"):
        for batch_size in (1, 3, 8):
            rows = reference_likelihood(
                model, tokenizer, PROMPTS, REFERENCES, batch_size=batch_size, padding_side=padding_side
            )
            values = [row.logprob for row in rows]
            if reference is None:
                reference = values
            assert values == pytest.approx(reference, abs=1e-4), (padding_side, batch_size)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
def test_the_shared_prefix_runs_once_and_changes_no_value(tokenizer, model_type):
    """The few-shot block every prompt starts with is one forward; each batch continues from its cache. The values
    equal a direct one-sentence computation and the uncached path, on both padding sides and at any batch size."""
    model = tiny_model(model_type, tokenizer=tokenizer, seed=2)
    plan = likelihood_plan(tokenizer, FEWSHOT_PROMPTS, REFERENCES, batch_size=3)
    common = len(tokenizer(FEWSHOT_BLOCK + "Icelandic:")["input_ids"])
    assert plan.shared >= common - 1 and plan.forwards == len(plan.batches) + 1
    assert all(ids[: plan.shared] == plan.input_ids[0][: plan.shared] for ids in plan.input_ids)
    widths = []
    hook = model.register_forward_pre_hook(lambda _, __, kw: widths.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        shared = reference_likelihood(model, tokenizer, FEWSHOT_PROMPTS, REFERENCES, batch_size=3)
    finally:
        hook.remove()
    assert widths[0] == (1, plan.shared) and len(widths) == plan.forwards
    assert all(width[1] < min(map(len, plan.input_ids)) - plan.shared + 40 for width in widths[1:])
    plain = reference_likelihood(model, tokenizer, FEWSHOT_PROMPTS, REFERENCES, batch_size=3, share_prefix=False)
    assert [r.logprob for r in shared] == pytest.approx([r.logprob for r in plain], abs=1e-4)
    assert [r.tokens for r in shared] == [r.tokens for r in plain]
    for prompt, reference, row in zip(FEWSHOT_PROMPTS[:3], REFERENCES[:3], shared[:3]):
        assert row.logprob == pytest.approx(direct(model, tokenizer, prompt, reference)[0], abs=1e-4)
    for padding_side in ("left", "right"):
        for batch_size in (1, 8):
            rows = reference_likelihood(
                model, tokenizer, FEWSHOT_PROMPTS, REFERENCES, batch_size=batch_size, padding_side=padding_side
            )
            assert [r.logprob for r in rows] == pytest.approx([r.logprob for r in plain], abs=1e-4)


def test_the_shared_prefix_under_lora_and_bf16(tokenizer):
    """Through a PEFT wrapper (the cache argument reaches the base model) and in bf16 (its rounding, not the cache,
    sets the tolerance), the shared prefix gives the values of the full forward."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_model("llama", tokenizer=tokenizer, seed=3),
        LoraConfig(r=4, target_modules=["gate_proj", "up_proj"], init_lora_weights=False),
    )
    for candidate, tolerance in ((model, 1e-4), (tiny_model("llama", tokenizer=tokenizer, seed=3).bfloat16(), 0.05)):
        shared = reference_likelihood(candidate, tokenizer, FEWSHOT_PROMPTS, REFERENCES, batch_size=3)
        plain = reference_likelihood(
            candidate, tokenizer, FEWSHOT_PROMPTS, REFERENCES, batch_size=3, share_prefix=False
        )
        assert [r.logprob for r in shared] == pytest.approx([r.logprob for r in plain], abs=tolerance)


def test_the_shared_prefix_on_gemma_with_the_callbacks_own_prompt(gemma):
    """The real model, the 3-shot prompt the monitor translates with: the same values within float32 tolerance."""
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.quality.fewshot import load_fewshot_examples
    from neuronxa_callback.quality.generation import translation_prompts

    model, gemma_tokenizer = gemma
    data = load_parallel("bundled", languages=("isl_Latn",), num_pairs=6)
    sources, references = data.sentences("isl_Latn"), data.sentences("eng_Latn")
    examples = load_fewshot_examples("isl_Latn", "eng_Latn", k=3, exclude=sources + references)
    prompts, add_special_tokens = translation_prompts(
        gemma_tokenizer, sources, source_lang="isl_Latn", target_lang="eng_Latn", prompt="fewshot", examples=examples
    )
    options = dict(batch_size=4, add_special_tokens=add_special_tokens)
    plan = likelihood_plan(gemma_tokenizer, prompts, references, **options)
    assert plan.shared > sum(len(p.split()) for p in prompts) / len(prompts)  # the examples: most of each prompt
    shared = reference_likelihood(model, gemma_tokenizer, prompts, references, **options)
    plain = reference_likelihood(model, gemma_tokenizer, prompts, references, share_prefix=False, **options)
    assert [r.logprob for r in shared] == pytest.approx([r.logprob for r in plain], abs=5e-4)


def test_the_shared_prefix_stops_before_the_first_scored_token():
    from neuronxa_callback.quality.prefix import MIN_SHARED_PREFIX_TOKENS, shared_prefix_length

    long = list(range(100, 100 + 3 * MIN_SHARED_PREFIX_TOKENS))
    # Identical rows: the prefix leaves the prediction of each row's first scored token (start - 1) to the batch.
    assert shared_prefix_length([long, long], [len(long) - 2, len(long) - 2]) == len(long) - 3
    # A row whose reference starts early bounds the prefix for all.
    assert (
        shared_prefix_length([long, long + [1]], [MIN_SHARED_PREFIX_TOKENS + 1, len(long)]) == MIN_SHARED_PREFIX_TOKENS
    )
    # Rows that part early, one sentence, or an empty reference that would otherwise let the prefix cover a row.
    assert shared_prefix_length([long, [7] + long], [5, 5]) == 0
    assert shared_prefix_length([long], [5]) == 0
    assert shared_prefix_length([long, long + [1, 2]], [len(long), len(long)]) == len(long) - 1
    assert shared_prefix_length([long, long + [1, 2]]) == len(long) - 1  # no starts: each row keeps its last token


def test_model_and_tokenizer_are_left_as_found(tokenizer):
    model = tiny_model("llama", tokenizer=tokenizer, seed=1)
    model.train()
    tokenizer.padding_side = "right"
    try:
        reference_likelihood(model, tokenizer, PROMPTS[:2], REFERENCES[:2])
        assert model.training and tokenizer.padding_side == "right"
    finally:
        tokenizer.padding_side = "left"


def test_summary_is_nats_per_byte_and_bad_input_is_named(tokenizer):
    model = tiny_model("llama", tokenizer=tokenizer, seed=1)
    rows = reference_likelihood(model, tokenizer, PROMPTS, REFERENCES)
    summary = summarize_likelihood(rows)
    total = sum(row.logprob for row in rows)
    assert summary["ref_logprob"] == pytest.approx(total / sum(len(r.encode("utf-8")) for r in REFERENCES))
    assert summary["ref_logprob_per_char"] == pytest.approx(total / sum(len(r) for r in REFERENCES))
    assert summary["ref_logprob_per_token"] == pytest.approx(total / sum(row.tokens for row in rows))
    assert summary["sentences"] == len(REFERENCES)
    with pytest.raises(ValueError, match="references has 1"):
        reference_likelihood(model, tokenizer, PROMPTS[:2], REFERENCES[:1])
    with pytest.raises(ValueError, match="padding_side"):
        reference_likelihood(model, tokenizer, PROMPTS[:1], REFERENCES[:1], padding_side="middle")


def test_sharded_engine_in_one_process_equals_the_replicated_one(tokenizer):
    from neuronxa_callback.parallel.sharding import ReplicatedEngine, ShardedEngine

    model = tiny_model("llama", tokenizer=tokenizer, seed=1)
    replicated = ReplicatedEngine(model, 0, 1).reference_likelihood(tokenizer, PROMPTS, REFERENCES, batch_size=3)
    sharded = ShardedEngine(model).reference_likelihood(tokenizer, PROMPTS, REFERENCES, batch_size=3)
    assert [i for i, _ in sharded] == list(range(len(PROMPTS)))
    assert [row.logprob for _, row in sharded] == pytest.approx([row.logprob for _, row in replicated], abs=1e-6)
    # Two ranks' shares (rank r: sentences r, r + 2, ...) together are the whole.
    halves = [ReplicatedEngine(model, r, 2).reference_likelihood(tokenizer, PROMPTS, REFERENCES) for r in range(2)]
    merged = sorted(row for half in halves for row in half)
    assert [row.logprob for _, row in merged] == pytest.approx([row.logprob for _, row in replicated], abs=1e-4)


def test_sharded_engine_counts_the_shared_prefix_forward(tokenizer):
    """Under sharded parameters every forward is a collective the ranks agree on in advance: the prefix's forward
    is one of them (counted short, the engine would see more forwards than agreed and fail)."""
    from neuronxa_callback.parallel.sharding import ReplicatedEngine, ShardedEngine

    model = tiny_model("llama", tokenizer=tokenizer, seed=1)
    replicated = ReplicatedEngine(model, 0, 1).reference_likelihood(tokenizer, FEWSHOT_PROMPTS, REFERENCES)
    sharded = ShardedEngine(model).reference_likelihood(tokenizer, FEWSHOT_PROMPTS, REFERENCES, batch_size=3)
    assert [row.logprob for _, row in sharded] == pytest.approx([row.logprob for _, row in replicated], abs=1e-4)


# ----- in the record, at every measurement ------------------------------------------------------------------------
def single_process_likelihood(model, tokenizer, settings) -> dict:
    """The record's "likelihood" section computed in one process through the quality step's own functions."""
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.measure import quality_step
    from neuronxa_callback.parallel.sharding import ReplicatedEngine

    data = load_parallel(
        settings.data, pivot=settings.pivot, languages=settings.languages, num_pairs=settings.num_pairs
    )
    examples = quality_step.fewshot_examples(data, settings)
    mine = quality_step.likelihood_share(tokenizer, data, settings, examples, engine=ReplicatedEngine(model, 0, 1))
    return quality_step.score_likelihood([mine], data)


def test_every_measurement_records_it_and_trackers_and_history_get_it(tmp_path, tokenizer):
    from neuronxa_callback import AlignmentMonitor
    from neuronxa_callback.sinks import names
    from neuronxa_callback.sinks.jsonl import read_jsonl

    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    monitor = AlignmentMonitor(eval_steps=1, quality_every=3, quality_num_pairs=4, **FAST)
    monitor.begin(model, tokenizer, output_dir=tmp_path)
    expected = []
    for step in range(4):
        if step:  # a different model at every step, so the likelihood moves
            with torch.no_grad():
                model.lm_head.weight.mul_(1.5)
        expected.append(single_process_likelihood(model, tokenizer, monitor.settings)[PAIR])
        monitor.measure(model, tokenizer, step=step)
    monitor.end(model, tokenizer, step=3)
    records = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert ["quality" in r for r in records] == [True, False, False, True]  # translations only every 3rd
    for record, want in zip(records, expected):
        entry = record["likelihood"][PAIR]
        assert entry["direction"] == "isl_Latn->eng_Latn" and entry["sentences"] == 4
        assert entry["ref_logprob"] == pytest.approx(want["ref_logprob"], abs=1e-6) and entry["ref_logprob"] < 0
        assert record["timing"]["likelihood_seconds"] > 0
        headline = names.headline_scalars(record)
        assert headline[f"{PAIR}/ref_logprob"] == entry["ref_logprob"]
        assert names.trainer_scalars(record)[f"eval_neuronxa/{PAIR}/ref_logprob"] == entry["ref_logprob"]
        details = names.detail_scalars(record)
        assert details[f"neuronxa/{PAIR}/ref_logprob_per_token"] == entry["ref_logprob_per_token"]
        assert f"neuronxa/{PAIR}/ref_logprob" not in details  # published once, in the headline
    assert len({r["likelihood"][PAIR]["ref_logprob"] for r in records}) == 4
    # Three measurements carry it by step 2, before a third translation exists: the history correlates it.
    assert "ref_logprob" in records[2]["correlation"][PAIR] and "chrf" not in records[2]["correlation"][PAIR]
    assert records[2]["correlation"][PAIR]["ref_logprob"]["n"] == 3


def test_history_correlates_it_with_a_meaningful_sign():
    """Higher is better: a likelihood rising with alignment gives r > 0; the report's trend and table show it."""
    from neuronxa_callback.measure.record import add_to_history, new_history
    from neuronxa_callback.offline.run_summary import summary_lines
    from neuronxa_callback.sinks import names
    from tests._records import make_record

    history = new_history()
    records = []
    for index, (nasca, logprob) in enumerate([(0.1, -1.2), (0.2, -1.1), (0.25, -1.05), (0.4, -0.9)]):
        record = make_record(10 * index, [nasca, nasca], index=index)
        record["likelihood"] = {PAIR: {"direction": "isl_Latn->eng_Latn", "ref_logprob": logprob}}
        record["correlation"] = add_to_history(history, record)
        records.append(record)
    entry = records[-1]["correlation"][PAIR]["ref_logprob"]
    assert entry["n"] == 4 and entry["pearson"] > 0.9 and entry["spearman"] == pytest.approx(1.0)
    assert names.headline_scalars(records[-1])[f"{PAIR}/r_ref_logprob"] == entry["pearson"]
    assert history.series(PAIR)["quality"]["ref_logprob"] == [-1.2, -1.1, -1.05, -0.9]
    assert "-0.900" in summary_lines(records, PAIR)[-1]


def test_quality_off_means_no_likelihood(tmp_path, tokenizer):
    from neuronxa_callback import AlignmentMonitor
    from neuronxa_callback.sinks.jsonl import read_jsonl

    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    monitor = AlignmentMonitor(eval_steps=1, **FAST)
    monitor.begin(model, tokenizer, output_dir=tmp_path)
    monitor.measure(model, tokenizer, step=0)
    (record,) = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    assert "likelihood" not in record and "likelihood_seconds" not in record["timing"]


@pytest.mark.slow
def test_ddp_two_processes_give_the_single_process_values(tmp_path, tokenizer):
    """tests/_ddp_worker.py: 2 gloo ranks, learning rate 0, so every measurement sees the step-0 weights."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed next to the python interpreter")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    command = [torchrun, "--nproc_per_node", "2", "--master_port", "29761", "tests/_ddp_worker.py", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    from neuronxa_callback.settings import CallbackSettings
    from neuronxa_callback.sinks.jsonl import read_jsonl

    records = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    settings = CallbackSettings.from_kwargs(**records[0]["settings"])
    single = single_process_likelihood(tiny_model("llama", tokenizer=tokenizer, seed=0), tokenizer, settings)[PAIR]
    assert len(records) >= 2
    for record in records:  # each rank scored half of the sentences; rank 0 merged them
        entry = record["likelihood"][PAIR]
        assert entry["sentences"] == single["sentences"] == FAST["num_pairs"]
        assert entry["tokens"] == single["tokens"] and entry["bytes"] == single["bytes"]
        for key in ("ref_logprob", "ref_logprob_per_char", "ref_logprob_per_token"):
            assert entry[key] == pytest.approx(single[key], abs=1e-5), key


# ----- the CLI and checkpoint scoring ---------------------------------------------------------------------------------
def test_cli_translate_writes_the_likelihood_next_to_the_scores(model_dir, tmp_path):
    import json

    from neuronxa_callback.cli import main

    out = tmp_path / "translations.json"
    arguments = ["--data", "bundled", "--num-pairs", "3", "--max-new-tokens", "2", "--num-fewshot", "1"]
    code = main(
        ["--quiet", "translate", "--model", str(model_dir), *arguments, "--metrics", "chrf", "--output", str(out)]
    )
    assert code == 0
    entry = json.loads(out.read_text())["directions"]["isl_Latn->eng_Latn"]
    likelihood = entry["likelihood"]
    references = [row["reference"] for row in entry["translations"]]
    assert likelihood["sentences"] == 3 and likelihood["bytes"] == sum(len(r.encode("utf-8")) for r in references)
    assert likelihood["ref_logprob"] < 0 and "chrf" in entry["scores"]


def test_checkpoint_scoring_records_it_like_training(model_dir, tmp_path, tokenizer):
    import shutil

    from neuronxa_callback.instrument.models import load_model_and_tokenizer
    from neuronxa_callback.offline.checkpoints import score_checkpoints
    from neuronxa_callback.settings import CallbackSettings

    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "checkpoint-1")
    settings = dict(data="bundled", num_pairs=6, quality_num_pairs=3, max_new_tokens=2, num_fewshot=1)
    (record,) = score_checkpoints(run, quality=True, **settings)
    model, loaded_tokenizer = load_model_and_tokenizer(str(run / "checkpoint-1"))
    expected = single_process_likelihood(
        model, loaded_tokenizer, CallbackSettings.from_kwargs(quality_every=1, **settings)
    )
    assert record["likelihood"][PAIR]["ref_logprob"] == pytest.approx(expected[PAIR]["ref_logprob"], abs=1e-6)
    assert record["likelihood"][PAIR]["sentences"] == 3 and "likelihood_seconds" in record["timing"]
    (plain,) = score_checkpoints(run, output=tmp_path / "plain.jsonl", **settings)
    assert "likelihood" not in plain  # quality off: neither translations nor the likelihood
