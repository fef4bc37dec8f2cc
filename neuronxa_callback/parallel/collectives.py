"""The few collectives the measurement needs under torch.distributed (DDP, FSDP, ZeRO-3).

Usage::

    from neuronxa_callback.parallel.collectives import rank_and_world, gather_encoded, broadcast_object

    rank, world = rank_and_world()                       # (0, 1) when torch.distributed is not initialised
    mine = my_share(len(sources), rank, world)           # the items rank `rank` handles: rank, rank + world, ...
    local = encode(model, tokenizer, sentences, shard=(rank, world))
    merged = gather_encoded(local, len(sentences))       # rank 0: all rows in sentence order; other ranks: None
    decision = broadcast_object(decision_on_rank0)       # every rank gets rank 0's value

Every function here is a collective: under DDP every rank must call it, in the same order, or the run hangs.
The callback keeps that rule by running the same sequence of calls on every rank and catching its own errors
*between* collectives (an exception is turned into a payload, never skips a collective).
With a single process they are cheap pass-throughs, so the same code path serves both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuronxa_callback.instrument.activations import Encoded


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """(rank, world_size) of the default process group; (0, 1) without torch.distributed."""
    dist = _dist()
    if dist is None:
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def my_share(n: int, rank: int, world: int) -> list[int]:
    """The items of n (sentences, or batches of a plan) rank `rank` of `world` handles: rank, rank + world, ...

    The one rank split of the package: encode's batches, translate's sentences, on every engine.
    """
    return list(range(rank, n, world))


def gather_objects(obj: Any) -> list[Any] | None:
    """All ranks' `obj` in rank order on rank 0 (None elsewhere). Objects are pickled: keep tensors on the CPU.

    Uses all_gather_object rather than gather_object because NCCL supports only the former everywhere.
    """
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered if dist.get_rank() == 0 else None


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (the value passed on other ranks is ignored)."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def merge_encoded(parts: list[Encoded], total: int) -> Encoded:
    """One Encoded with rows 0..total-1 in sentence order, from the shards of encode(..., shard=(r, world)).

    Raises ValueError if the shards do not cover every sentence exactly once (a bug in the sharding, not user input).
    """
    import torch

    from neuronxa_callback.instrument.activations import Encoded

    indices = [i for part in parts for i in part.indices]
    if sorted(indices) != list(range(total)):
        raise ValueError(
            f"neuronxa_callback.parallel.collectives.merge_encoded: shards cover {len(indices)} rows "
            f"({len(set(indices))} distinct) but {total} sentences were encoded"
        )
    order = torch.tensor(sorted(range(len(indices)), key=indices.__getitem__))
    names = parts[0].representations.keys()
    representations = {
        name: torch.cat([part.representations[name] for part in parts], dim=1).index_select(1, order) for name in names
    }
    return Encoded(
        representations=representations,
        indices=list(range(total)),
        num_layers=parts[0].num_layers,
        # The shards ran in parallel: the wall time is the slowest rank's.
        forward_seconds=max(part.forward_seconds for part in parts),
        # A layer that overflowed (or could not be scored) on any rank did so for the whole measurement.
        overflow={layer: why for part in parts for layer, why in part.overflow.items()},
        upcast_batches=sum(part.upcast_batches for part in parts),
        invalid_layers={layer: why for part in parts for layer, why in part.invalid_layers.items()},
    )


def merge_parts(parts: list[Encoded], total: int) -> Encoded:
    """The gathered shares of one encode as one Encoded in sentence order (the single share as it is)."""
    return parts[0] if len(parts) == 1 else merge_encoded(parts, total)


def gather_encoded(local: Encoded, total: int) -> Encoded | None:
    """Collective: rank 0 gets every rank's rows merged in sentence order; other ranks get None."""
    parts = gather_objects(local)
    if parts is None:
        return None
    return merge_parts(parts, total)
