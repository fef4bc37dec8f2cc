"""Reference likelihood: how probable the model finds the reference translation after the prompt it translates with.

Usage::

    from neuronxa_callback.quality.likelihood import reference_likelihood, summarize_likelihood

    rows = reference_likelihood(model, tokenizer, prompts, references, batch_size=16)
    rows[0].logprob, rows[0].tokens, rows[0].bytes        # sum of log p(reference tokens | prompt), in nats
    summarize_likelihood(rows)["ref_logprob"]              # nats per UTF-8 byte of the references (negative)

One forward per sentence, no generation: a cheap, smooth quality signal next to chrF / COMET. It rewards *predicting
the reference*, not producing a good translation: a model can find a valid paraphrase more likely than the reference.

What is scored, exactly:

- The prompt is the one translate() feeds the model (generation.translation_prompts), tokenized the same way
  (`add_special_tokens`: True adds the tokenizer's <bos> as generation does; False for a rendered chat template).
- The continuation is the text the model would generate: " " + reference after a prompt that ends in a non-space
  character ("English:" in the few-shot format, whose examples read "English: Thank you."), the reference as is after
  one that ends in whitespace (a chat template's generation prompt). Its tokens are those of the prompt and the
  continuation tokenized together, minus the prompt's tokens, so the reference is cut into the tokens the tokenizer
  gives the joined text; when the joined text's tokens do not start with the prompt's (the prompt's last characters
  merged with the reference's first), the continuation is tokenized on its own. Either way the model reads exactly
  the prompt's tokens that generation starts from, and the sum covers the continuation's tokens only.
- The stop is not scored: generation ends at a newline or EOS, spelled as different tokens by different tokenizers
  ("\\n", "\\n\\n", <eos>); scoring one spelling would penalise a model that stops with another.
- Normalised per UTF-8 byte of the reference (`ref_logprob`, the headline), also per character and per token: bytes
  do not depend on the tokenizer, so models with different vocabularies compare; characters and tokens are
  secondary (tokens do depend on the tokenizer). Totals over the sentences, then divided (a long sentence weighs more).

Batches are length-sorted and padded on the left or right (`padding_side`, same values within float tolerance);
position ids count real tokens, so padding does not shift them. The tokens every sentence starts with (the few-shot
block and the instructions: most of a 3-shot prompt) are run once, and each batch continues from their key/value
cache (`share_prefix`; the same values within float tolerance, the cost of the sentences' own tokens only). Only the
logits at the reference's positions are asked for (`logits_to_keep`), and the log-softmax runs one row at a time in
float32: a 262k vocabulary never makes a [batch, tokens, vocabulary] float32 tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LikelihoodPlan", "ReferenceLikelihood", "likelihood_plan", "reference_likelihood", "summarize_likelihood"]

PADDING_SIDES = ("left", "right")


@dataclass(frozen=True)
class ReferenceLikelihood:
    """One sentence: the sum of log p(reference tokens | prompt) in nats, the number of reference tokens scored, and
    the reference's UTF-8 bytes and characters (the normalisers)."""

    logprob: float
    tokens: int
    bytes: int
    chars: int


@dataclass(frozen=True)
class LikelihoodPlan:
    """What reference_likelihood() runs, decided before the model is touched: each sentence's token ids (prompt then
    reference), where its reference starts, and the batches (one forward each, length-sorted by plan_batches)."""

    prompts: tuple[str, ...]
    references: tuple[str, ...]
    settings: tuple[Any, ...]  # (batch_size, add_special_tokens)
    input_ids: list[list[int]]
    starts: list[int]  # index of the first reference token in input_ids[i]
    batches: list[list[int]]
    # How many leading tokens all sentences share (0: too few to be worth a forward of their own): run once, cached.
    shared: int = 0

    @property
    def forwards(self) -> int:
        """Forward passes reference_likelihood() makes at most: one per batch, one more for the shared prefix."""
        return len(self.batches) + (1 if self.shared else 0)

    def made_for(
        self, prompts: Sequence[str], references: Sequence[str], *, batch_size: int, add_special_tokens: bool
    ) -> bool:
        return (
            self.prompts == tuple(prompts)
            and self.references == tuple(references)
            and self.settings == (batch_size, add_special_tokens)
        )


def continuation(prompt: str, reference: str) -> str:
    """The text the model would generate after `prompt` to produce `reference` (see the module docstring)."""
    if not prompt or prompt[-1].isspace():
        return reference
    return " " + reference


def _check(prompts: Sequence[str], references: Sequence[str], batch_size: int) -> None:
    for name, values in (("prompts", prompts), ("references", references)):
        if isinstance(values, str):
            raise ValueError(f"reference_likelihood: {name} must be a sequence of strings, not one string")
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise ValueError(f"reference_likelihood: {name}[{i}] is {type(value).__name__}, expected str")
    if len(prompts) != len(references):
        raise ValueError(
            f"reference_likelihood: prompts has {len(prompts)} entries but references has {len(references)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"reference_likelihood: batch_size must be a positive int, got {batch_size!r}")


def likelihood_plan(
    tokenizer: Any,
    prompts: Sequence[str],
    references: Sequence[str],
    *,
    batch_size: int = 16,
    add_special_tokens: bool = True,
) -> LikelihoodPlan:
    """reference_likelihood()'s token ids and batches for these sentences (its argument checks: ValueError)."""
    _check(prompts, references, batch_size)
    from neuronxa_callback.instrument.activations import plan_batches
    from neuronxa_callback.quality.prefix import shared_prefix_length

    prompts, references = tuple(prompts), tuple(references)
    settings = (batch_size, bool(add_special_tokens))
    if not prompts:
        return LikelihoodPlan(prompts, references, settings, [], [], [])
    # The prompt as generation sees it (with <bos> when add_special_tokens) ...
    prompt_ids = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    # ... and the continuation's tokens: the joined text's, minus the prompt's (both without special tokens).
    plain_prompts = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    texts = [continuation(p, r) for p, r in zip(prompts, references)]
    joined = tokenizer([p + t for p, t in zip(prompts, texts)], add_special_tokens=False)["input_ids"]
    input_ids, starts = [], []
    for i, text in enumerate(texts):
        plain, whole = list(plain_prompts[i]), list(joined[i])
        if whole[: len(plain)] == plain:
            reference_ids = whole[len(plain) :]
        else:  # the reference's first characters merged into the prompt's last token: tokenize it on its own
            reference_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids = list(prompt_ids[i])
        # A first token with nothing before it has no prediction: it is context, not scored.
        starts.append(max(len(ids), 1) if ids or reference_ids else 0)
        input_ids.append(ids + reference_ids)
    return LikelihoodPlan(
        prompts,
        references,
        settings,
        input_ids,
        starts,
        plan_batches(list(map(len, input_ids)), batch_size),
        shared_prefix_length(input_ids, starts),  # the first scored token's prediction stays in the batch
    )


def reference_likelihood(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    references: Sequence[str],
    *,
    batch_size: int = 16,
    add_special_tokens: bool = True,
    padding_side: str = "left",
    share_prefix: bool = True,
    plan: LikelihoodPlan | None = None,
) -> list[ReferenceLikelihood]:
    """Per sentence, log p(continuation of `references[i]` | `prompts[i]`) summed over the reference's tokens (nats),
    in the order given; see the module docstring for what exactly is scored.

    add_special_tokens: how the prompts are tokenized (False for a rendered chat template, as translate() does).
    padding_side: "left" or "right" (the same values within float tolerance). share_prefix: run the tokens all
    sentences start with once and continue every batch from their cache (quality.prefix, models that take a cache;
    the same values within float tolerance, False recomputes them in every row). plan: likelihood_plan()'s result when
    the caller made it already (sharding.ShardedEngine counts its forwards from it). Runs under torch.no_grad in eval
    mode and leaves the model and tokenizer as found (isolation.left_as_found).
    """
    import torch

    from neuronxa_callback.instrument.activations import _accepted_kwargs, _input_device
    from neuronxa_callback.instrument.isolation import left_as_found
    from neuronxa_callback.quality.prefix import cache_for_batch, prefix_cache

    if padding_side not in PADDING_SIDES:
        raise ValueError(f"reference_likelihood: padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
    if plan is None:
        plan = likelihood_plan(
            tokenizer, prompts, references, batch_size=batch_size, add_special_tokens=add_special_tokens
        )
    elif not plan.made_for(prompts, references, batch_size=batch_size, add_special_tokens=add_special_tokens):
        raise ValueError("reference_likelihood: `plan` was made for other sentences or settings (use likelihood_plan)")
    out: list[ReferenceLikelihood | None] = [None] * len(plan.prompts)
    for i, reference in enumerate(plan.references):
        if plan.starts[i] >= len(plan.input_ids[i]):  # nothing to score (an empty reference)
            out[i] = ReferenceLikelihood(0.0, 0, len(reference.encode("utf-8")), len(reference))
    accepted = _accepted_kwargs(model)
    extra: dict[str, Any] = {}
    if "use_cache" in accepted:
        extra["use_cache"] = False
    keep_logits = "logits_to_keep" in accepted
    pass_positions = "position_ids" in accepted
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = _input_device(model)
    with left_as_found(model, tokenizer):
        model.eval()
        with torch.no_grad():  # never inference_mode: it breaks the next FSDP training forward
            prefix = None
            if share_prefix and plan.shared:
                prefix = prefix_cache(model, plan.input_ids[0][: plan.shared])
            shared = prefix.length if prefix is not None else 0
            for batch in plan.batches:
                # Each row after the shared prefix; positions and indices below are relative to it.
                rows = [plan.input_ids[i][shared:] for i in batch]
                starts = [plan.starts[i] - shared for i in batch]
                width = max(len(row) for row in rows)
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(rows), width), dtype=torch.long)
                offsets = []
                for r, row in enumerate(rows):
                    offset = width - len(row) if padding_side == "left" else 0
                    ids[r, offset : offset + len(row)] = torch.tensor(row, dtype=torch.long)
                    attention[r, offset : offset + len(row)] = 1
                    offsets.append(offset)
                # The first logit needed: the one that predicts the earliest reference token of the batch.
                first = min(offsets[r] + max(starts[r], 1) - 1 for r in range(len(batch)))
                kwargs = dict(extra)
                if keep_logits:
                    kwargs["logits_to_keep"] = max(width - first, 1)
                if prefix is not None:
                    attention = torch.cat([torch.ones((len(rows), shared), dtype=torch.long), attention], dim=1)
                    kwargs.update({prefix.argument: cache_for_batch(prefix, len(rows)), "use_cache": True})
                if pass_positions:
                    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
                    kwargs["position_ids"] = positions[:, shared:].to(device)
                output = model(input_ids=ids.to(device), attention_mask=attention.to(device), **kwargs)
                logits = output.logits if hasattr(output, "logits") else output[0]
                kept = logits.shape[1]
                for r, i in enumerate(batch):
                    start, length = starts[r], len(rows[r])
                    if start >= length:
                        continue
                    # logits at padded position p predict the token at p + 1; row r's logits start at width - kept.
                    predicting = torch.arange(offsets[r] + start - 1, offsets[r] + length - 1) - (width - kept)
                    targets = torch.tensor(rows[r][start:], dtype=torch.long, device=logits.device)
                    log_probs = torch.log_softmax(logits[r, predicting.to(logits.device)].float(), dim=-1)
                    total = log_probs.gather(1, targets[:, None]).sum().item()
                    reference = plan.references[i]
                    out[i] = ReferenceLikelihood(
                        float(total), length - start, len(reference.encode("utf-8")), len(reference)
                    )
    return out  # type: ignore[return-value]


def summarize_likelihood(rows: Sequence[ReferenceLikelihood]) -> dict[str, Any]:
    """{"ref_logprob": nats per UTF-8 byte (the headline; negative, higher is better), "ref_logprob_per_char",
    "ref_logprob_per_token", "sentences", "tokens", "bytes", "chars"}: totals over the sentences, then divided
    (None where the divisor is 0)."""
    logprob = sum(row.logprob for row in rows)
    counts = {
        "tokens": sum(row.tokens for row in rows),
        "bytes": sum(row.bytes for row in rows),
        "chars": sum(row.chars for row in rows),
    }
    return {
        "ref_logprob": logprob / counts["bytes"] if counts["bytes"] else None,
        "ref_logprob_per_char": logprob / counts["chars"] if counts["chars"] else None,
        "ref_logprob_per_token": logprob / counts["tokens"] if counts["tokens"] else None,
        "sentences": len(rows),
        **counts,
    }
