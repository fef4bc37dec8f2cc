"""The prompt prefix every sentence shares, run once: its key/value cache, copied for each batch.

Usage::

    from neuronxa_callback.quality.prefix import shared_prefix_length, prefix_cache, cache_for_batch

    shared = shared_prefix_length(input_ids, starts)      # leading tokens all rows have in common (0: not worth it)
    cache = prefix_cache(model, input_ids[0][:shared])    # one forward of the prefix; None if the model has no cache
    kwargs = {cache.argument: cache_for_batch(cache, len(batch))}   # then feed each row's tokens after the prefix

With a few-shot prompt most of every prompt is the same block of examples (174 of 228 tokens on average for Gemma 3
with three NTREX examples, bench/bench_reference_likelihood.py). The reference likelihood and translate() run that
block once and continue every batch from its cache; the rows after it are padded between the prefix and their own
tokens, the attention mask hides the pads and position ids count real tokens, so each row sees exactly the tokens it
would see alone.

Not under parameter sharding with synced generation: the prefix's forward is a collective there, and the ranks agree
on their forwards in advance (sharding.ShardedEngine counts the likelihood's; its translate does not share).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MIN_SHARED_PREFIX_TOKENS",
    "PrefixCache",
    "cache_argument",
    "cache_for_batch",
    "prefix_cache",
    "shared_prefix_length",
]

# A shared prefix shorter than this is not run on its own: a forward and a cache copy per batch cost more than it saves.
MIN_SHARED_PREFIX_TOKENS = 8


def shared_prefix_length(input_ids: Sequence[Sequence[int]], starts: Sequence[int] | None = None) -> int:
    """How many leading tokens every row has in common, kept short enough that each row has a token after it and,
    with `starts`, that the first position each row needs a prediction from (starts[i] - 1) comes after it; 0 for
    fewer than two rows or a prefix under MIN_SHARED_PREFIX_TOKENS. A row with starts[i] >= its length needs no
    prediction."""
    if len(input_ids) < 2:
        return 0
    first = input_ids[0]
    limit = min(len(ids) for ids in input_ids) - 1
    needed = [start for ids, start in zip(input_ids, starts or ()) if start < len(ids)]
    if needed:
        limit = min(limit, min(needed) - 1)
    length = 0
    while length < limit and all(ids[length] == first[length] for ids in input_ids):
        length += 1
    return length if length >= MIN_SHARED_PREFIX_TOKENS else 0


def cache_argument(accepted: set[str]) -> str | None:
    """The keyword a forward (and generate) with these `accepted` keywords takes a key/value cache by: "cache"
    (transformers 5), "past_key_values" (earlier versions), None when it takes none or cannot be given positions."""
    if "use_cache" not in accepted or "position_ids" not in accepted:
        return None
    return next((name for name in ("cache", "past_key_values") if name in accepted), None)


@dataclass
class PrefixCache:
    """A prefix's key/value cache (batch 1), its length in tokens, and the keyword the model takes it by."""

    cache: Any
    length: int
    argument: str


def prefix_cache(model: Any, prefix: Sequence[int]) -> PrefixCache | None:
    """One forward of `prefix` (batch 1, under the caller's no_grad and eval mode); None when the model takes no
    cache. Only the last position's logits are asked for where the model allows it."""
    import torch

    from neuronxa_callback.instrument.activations import _accepted_kwargs, _input_device

    accepted = _accepted_kwargs(model)
    argument = cache_argument(accepted)
    if argument is None or not prefix:
        return None
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=_input_device(model))
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
    output = model(input_ids=ids, use_cache=True, **kwargs)
    cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return None
    return PrefixCache(cache, len(prefix), argument)


def cache_for_batch(prefix: PrefixCache, batch_size: int) -> Any:
    """A copy of the prefix's cache repeated for `batch_size` rows: a forward or generate call appends to the cache
    it is given, so every batch starts from its own copy."""
    cache = copy.deepcopy(prefix.cache)
    cache.batch_repeat_interleave(batch_size)
    return cache
