"""How each rank takes part in a measurement: one engine per model, chosen once (engine_for), replicated weights
(one process, DDP) or sharded parameters (FSDP1, FSDP2 `fully_shard`, DeepSpeed ZeRO-3).

Usage (the same calls on every rank, in the same order)::

    from neuronxa_callback.parallel.sharding import engine_for

    engine = engine_for(model)            # ReplicatedEngine, or ShardedEngine when sharding_engine(model) is set
    local = engine.encode(tokenizer, sentences, batch_size=16)     # this rank's rows (an Encoded): gather them
    rows = engine.translate(tokenizer, sources, source_lang="isl_Latn", target_lang="eng_Latn")  # [(i, hypothesis)]
    rows = engine.reference_likelihood(tokenizer, prompts, references, batch_size=16)  # [(i, ReferenceLikelihood)]
    engine.release()                      # parameters back into their shards once the measurement is over

    sharding_engine(model)                # "fsdp1" | "fsdp2" | "zero3" | None (replicated weights)
    encode_sharded(model, tokenizer, sentences) / translate_sharded(...) / reshard(model)   # the sharded engine's steps

Both engines split the work the same way (distributed.my_share): rank r encodes batches r, r + world, ... of one
length-sorted plan over all sentences (activations.encode_plan) and translates sentences r, r + world, ...; the union
of the ranks' results equals the single-process one. A replicated rank runs its share alone.

Under parameter sharding only the *parameters* are split: a forward hook on `mlp.act_fn` still sees the full
activation, so NeuronXA's capture works unchanged. What changes is that every forward pass is a collective (each
layer all-gathers its weights), so all ranks must run the same NUMBER of forward passes in the same order; their
batch sizes and sequence lengths may differ. Hence the sharded engine:

- encode: counts this rank's forwards on encode's own plan (activations.encode_plan, handed to encode), then runs
  dummy forwards until it has made as many as the busiest rank. The count is agreed by a collective BEFORE the first
  forward, which also checks that every rank is encoding the same sentences with the same settings and that none
  failed while preparing: a disagreement is a ShardedMeasurementError on every rank, not a hang. The capture's hooks
  are removed before the dummy forwards, so their activations are never pooled. A float16 overflow is flagged, never
  recomputed (that would add forwards on one rank). torch.no_grad, never inference_mode (a forward under
  inference_mode breaks the next FSDP training forward).
- translate: the same number of `generate` calls on every rank (translate's own plan, generation.translate_plan,
  gives this rank's count; one-token dummy prompts pad it) with `synced_gpus=True`, so a rank whose sentences end
  early keeps running forwards until every rank is done. FSDP1 generates through `model.module` inside
  `FSDP.summon_full_params(model, recurse=False, writeback=False)` (the root unit's embedding and head gathered; the
  wrapped decoder layers gather themselves).
- reference_likelihood: like encode (the same frame, ShardedEngine._agreed_forwards), one forward per batch of its own
  plan (likelihood.likelihood_plan) over this rank's sentences and one for the prompt prefix they share, counted,
  agreed, and evened out with dummy forwards.
- release: `reshard` puts parameters back into their shards. A no-grad forward leaves the root unit of FSDP1 and
  FSDP2 unsharded (they expect a backward next), and ZeRO-3 can keep gathered parameters until the next training
  step; a measurement between steps must not keep that memory.

Every collective here has a timeout (`timeout`, seconds): a rank that never arrives gives an error naming the step.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from neuronxa_callback.parallel.collectives import my_share, rank_and_world
from neuronxa_callback.quality.generation import DEFAULT_MAX_NEW_TOKENS

if TYPE_CHECKING:
    from torch import nn

    from neuronxa_callback.instrument.activations import Encoded
    from neuronxa_callback.quality.likelihood import ReferenceLikelihood

logger = logging.getLogger(__name__)
_Result = TypeVar("_Result")

ENGINES = ("fsdp1", "fsdp2", "zero3")
# Seconds a rank waits for the others at an agreement point before giving up with a clear error. Generous: the
# other ranks may still be finishing a slow training step or a checkpoint save.
DEFAULT_TIMEOUT_S = 600.0


class ShardedMeasurementError(RuntimeError):
    """Ranks cannot take part in a sharded measurement together (different inputs, a failed rank, a timeout)."""


# ----- detection ------------------------------------------------------------------------------------------------------
def _fsdp_classes() -> tuple[type | None, type | None]:
    """(FullyShardedDataParallel, FSDPModule), None where this torch build lacks one."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # torch built without distributed
        FullyShardedDataParallel = None  # noqa: N806
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        try:  # torch < 2.6 kept FSDP2 under _composable
            from torch.distributed._composable.fsdp import FSDPModule
        except ImportError:
            FSDPModule = None  # noqa: N806
    return FullyShardedDataParallel, FSDPModule


def sharding_engine(model: Any) -> str | None:
    """ "fsdp1" (a FullyShardedDataParallel wrapper inside), "fsdp2" (a module with the FSDPModule mixin of
    `fully_shard`), "zero3" (parameters carrying DeepSpeed's ds_id / ds_status) or None (replicated weights).

    Looks at every submodule, so a PEFT wrapper around a sharded model and a sharded model around a PEFT model are
    both found. The Trainer passes the FSDP1 wrapper, the FSDP2 model, or the plain module under DeepSpeed.
    """
    if model is None or not hasattr(model, "modules"):
        return None
    fsdp1, fsdp2 = _fsdp_classes()
    for module in model.modules():
        if fsdp1 is not None and isinstance(module, fsdp1):
            return "fsdp1"
        if fsdp2 is not None and isinstance(module, fsdp2):
            return "fsdp2"
    for parameter in model.parameters():
        if hasattr(parameter, "ds_id") and hasattr(parameter, "ds_status"):
            return "zero3"
    return None


# ----- engines --------------------------------------------------------------------------------------------------------
class MeasurementEngine(Protocol):
    """What a measurement asks of the model, whatever holds its weights. Every rank calls the same methods in the
    same order with the same arguments; each returns this rank's share, to be gathered."""

    model: Any
    rank: int
    world: int

    def encode(self, tokenizer: Any, sentences: Sequence[str], **options: Any) -> Encoded:
        """This rank's rows of activations.encode(model, tokenizer, sentences, **options)."""

    def translate(self, tokenizer: Any, sources: Sequence[str], **options: Any) -> list[tuple[int, str]]:
        """This rank's [(i, hypothesis)] of generation.translate(model, tokenizer, sources, **options)."""

    def reference_likelihood(
        self, tokenizer: Any, prompts: Sequence[str], references: Sequence[str], **options: Any
    ) -> list[tuple[int, ReferenceLikelihood]]:
        """This rank's [(i, row)] of likelihood.reference_likelihood(model, tokenizer, prompts, references, ...)."""

    def release(self, optimizer: Any = None) -> None:
        """Leave the model as training needs it (parameters back in their shards)."""


def engine_for(model: Any, *, timeout: float = DEFAULT_TIMEOUT_S) -> MeasurementEngine:
    """The engine of `model` on this rank: ShardedEngine when sharding_engine(model) finds FSDP1 / FSDP2 / ZeRO-3,
    else ReplicatedEngine (one process, DDP). `timeout`: seconds a sharded agreement waits for the other ranks."""
    kind = sharding_engine(model)
    return ReplicatedEngine(model) if kind is None else ShardedEngine(model, timeout=timeout)


class ReplicatedEngine:
    """Every rank holds the whole model (one process, DDP): each runs its share alone, with no collective."""

    def __init__(self, model: Any, rank: int | None = None, world: int | None = None) -> None:
        """rank / world: this process's place (default: the process group's, (0, 1) without one)."""
        self.model = model
        self.rank, self.world = rank_and_world() if rank is None or world is None else (rank, world)

    def encode(self, tokenizer: Any, sentences: Sequence[str], **options: Any) -> Encoded:
        """activations.encode of this rank's batches (all of them in one process)."""
        from neuronxa_callback.instrument.activations import encode

        shard = (self.rank, self.world) if self.world > 1 else None
        return encode(self.model, tokenizer, sentences, shard=shard, **options)

    def translate(self, tokenizer: Any, sources: Sequence[str], **options: Any) -> list[tuple[int, str]]:
        """generation.translate of this rank's sentences: [(i, hypothesis)] in sentence order."""
        from neuronxa_callback.quality.generation import translate

        sources = list(sources)
        mine = my_share(len(sources), self.rank, self.world)
        if not mine:
            return []
        return list(zip(mine, translate(self.model, tokenizer, [sources[i] for i in mine], **options)))

    def reference_likelihood(
        self, tokenizer: Any, prompts: Sequence[str], references: Sequence[str], **options: Any
    ) -> list[tuple[int, ReferenceLikelihood]]:
        """likelihood.reference_likelihood of this rank's sentences: [(i, row)] in sentence order."""
        from neuronxa_callback.quality.likelihood import reference_likelihood

        mine = my_share(len(prompts), self.rank, self.world)
        if not mine:
            return []
        rows = reference_likelihood(
            self.model, tokenizer, [prompts[i] for i in mine], [references[i] for i in mine], **options
        )
        return list(zip(mine, rows))

    def release(self, optimizer: Any = None) -> None:
        """Nothing to put back: the weights were never sharded."""


class ShardedEngine:
    """Parameters sharded across ranks (FSDP1, FSDP2, ZeRO-3): every forward is a collective, so every rank runs as
    many forwards and generate calls as the busiest one (see the module docstring). Works on any model, replicated
    too (encode_sharded / translate_sharded use it so); `timeout`: seconds an agreement waits for the other ranks."""

    def __init__(self, model: nn.Module, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.model, self.timeout = model, timeout
        self.rank, self.world = rank_and_world()

    def encode(
        self,
        tokenizer: Any,
        sentences: Sequence[str],
        *,
        representations: Sequence[str] = ("nas", "nav"),
        pooling: str = "weighted",
        batch_size: int = 16,
        max_length: int = 256,
        progress: bool = False,
    ) -> Encoded:
        """Collective: this rank's rows of activations.encode(..., shard=(rank, world)), every rank making the same
        number of forward passes."""
        from neuronxa_callback.instrument.activations import encode, encode_plan
        from neuronxa_callback.instrument.architectures import activation_modules

        sentences = list(sentences)
        representations = tuple(representations)
        plan = None

        def prepare() -> tuple[int, list[int]]:
            nonlocal plan
            plan = encode_plan(tokenizer, sentences, batch_size=batch_size, max_length=max_length)
            activation_modules(self.model)  # an unsupported architecture fails here, before any collective forward
            # encode() makes one forward per batch of its share; the dummy is the cheapest forward.
            return len(plan.share(self.rank, self.world)), plan.shortest()

        def run() -> Encoded:
            return encode(
                self.model,
                tokenizer,
                sentences,
                representations=representations,
                pooling=pooling,
                batch_size=batch_size,
                max_length=max_length,
                shard=(self.rank, self.world),
                progress=progress,
                plan=plan,
            )

        key = fingerprint("encode", sentences, representations, pooling, batch_size, max_length)
        return self._agreed_forwards("NeuronXA encode under sharded parameters", key, prepare, run)

    def _agreed_forwards(
        self, what: str, key: int, prepare: Callable[[], tuple[int, list[int]]], run: Callable[[], _Result]
    ) -> _Result:
        """The collective frame of encode and reference_likelihood. prepare() -> (the forwards this rank's run() will
        make at most, a dummy input): its checks run before the agreement, so a failure on one rank raises on all.
        The ranks agree on the largest count; run() makes this rank's forwards and dummy ones fill the gap, also after
        a failure between forwards (the other ranks are waiting for this rank's share)."""
        count, dummy, error = 0, None, None
        try:
            count, dummy = prepare()
        except Exception as failure:  # noqa: BLE001 - sent to the other ranks, raised on all of them
            error = f"{type(failure).__name__}: {failure}"
        total = agree_on_count(count, key, what=what, timeout=self.timeout, error=error)
        with _ForwardCounter(self.model) as counter:
            try:
                result = run()
            finally:
                if dummy is not None:
                    dummy_forwards(self.model, dummy, total - counter.calls)
        if counter.calls > total:
            raise ShardedMeasurementError(
                f"{what}: {counter.calls} forwards on rank {self.rank} but the ranks agreed on {total}"
            )
        return result

    def translate(
        self,
        tokenizer: Any,
        sources: Sequence[str],
        *,
        source_lang: str,
        target_lang: str,
        prompt: str = "auto",
        examples: Sequence[Sequence[str]] = (),
        batch_size: int = 16,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        progress: bool = False,
    ) -> list[tuple[int, str]]:
        """Collective: this rank's translations [(i, hypothesis)] of its sources (distributed.my_share), every rank
        making the same number of synced `generate` calls."""
        from neuronxa_callback.quality.generation import translate, translate_plan

        rank, world = self.rank, self.world
        sources, examples = list(sources), list(examples)
        mine = my_share(len(sources), rank, world)
        settings = {
            "source_lang": source_lang,
            "target_lang": target_lang,
            "prompt": prompt,
            "examples": examples,
            "batch_size": batch_size,
        }
        plan, calls, dummy, pad_id, error = None, 0, None, 0, None
        try:
            # translate()'s own plan and checks, before the agreement: a bad input fails on every rank at once.
            plan = translate_plan(tokenizer, [sources[i] for i in mine], **settings)
            calls = len(plan.batches)  # translate() makes one generate call per batch
            dummy = list(tokenizer("a", add_special_tokens=True)["input_ids"]) or [0]
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        except Exception as failure:  # noqa: BLE001 - sent to the other ranks, raised on all of them
            error = f"{type(failure).__name__}: {failure}"
        key = fingerprint(
            "translate",
            sources,
            source_lang,
            target_lang,
            prompt,
            [tuple(e) for e in examples],
            batch_size,
            max_new_tokens,
        )
        total = agree_on_count(
            calls,
            key,
            what=f"translation {source_lang}->{target_lang} under sharded parameters",
            timeout=self.timeout,
            error=error,
        )
        synced = world > 1
        hypotheses: list[str] = []
        with generation_target(self.model) as target:
            try:
                if mine:
                    hypotheses = translate(
                        target,
                        tokenizer,
                        [sources[i] for i in mine],
                        max_new_tokens=max_new_tokens,
                        progress=progress,
                        synced_gpus=synced,
                        plan=plan,
                        **settings,
                    )
            finally:
                if synced and dummy is not None:
                    _dummy_generate(target, dummy, pad_id, total - calls)
        return list(zip(mine, hypotheses))

    def reference_likelihood(
        self,
        tokenizer: Any,
        prompts: Sequence[str],
        references: Sequence[str],
        *,
        batch_size: int = 16,
        add_special_tokens: bool = True,
    ) -> list[tuple[int, ReferenceLikelihood]]:
        """Collective: this rank's [(i, row)] of likelihood.reference_likelihood over its sentences
        (distributed.my_share), every rank making the same number of forward passes (dummy ones fill the gap)."""
        from neuronxa_callback.quality.likelihood import likelihood_plan, reference_likelihood

        prompts, references = list(prompts), list(references)
        mine = my_share(len(prompts), self.rank, self.world)
        settings = {"batch_size": batch_size, "add_special_tokens": add_special_tokens}
        my_prompts, my_references = [prompts[i] for i in mine], [references[i] for i in mine]
        plan = None

        def prepare() -> tuple[int, list[int]]:
            nonlocal plan
            plan = likelihood_plan(tokenizer, my_prompts, my_references, **settings)
            return plan.forwards, list(tokenizer("a", add_special_tokens=True)["input_ids"]) or [0]

        def run() -> list[ReferenceLikelihood]:
            if not mine:
                return []
            return reference_likelihood(self.model, tokenizer, my_prompts, my_references, plan=plan, **settings)

        key = fingerprint("reference_likelihood", prompts, references, batch_size, add_special_tokens)
        rows = self._agreed_forwards("reference likelihood under sharded parameters", key, prepare, run)
        return list(zip(mine, rows))

    def release(self, optimizer: Any = None) -> None:
        """reshard(model, optimizer): parameters back into their shards (local, no collective)."""
        reshard(self.model, optimizer)


def encode_sharded(
    model: nn.Module,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    representations: Sequence[str] = ("nas", "nav"),
    pooling: str = "weighted",
    batch_size: int = 16,
    max_length: int = 256,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Encoded:
    """Collective: ShardedEngine(model).encode(...): this rank's rows of activations.encode(..., shard=(rank, world)),
    every rank making the same number of forward passes. Call it on every rank with the same sentences and settings;
    gather the results as under DDP (distributed.gather_encoded). In a single process it is encode() itself.
    """
    return ShardedEngine(model, timeout=timeout).encode(
        tokenizer,
        sentences,
        representations=representations,
        pooling=pooling,
        batch_size=batch_size,
        max_length=max_length,
    )


def translate_sharded(
    model: nn.Module,
    tokenizer: Any,
    sources: Sequence[str],
    *,
    source_lang: str,
    target_lang: str,
    prompt: str = "auto",
    examples: Sequence[Sequence[str]] = (),
    batch_size: int = 16,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[tuple[int, str]]:
    """Collective: ShardedEngine(model).translate(...): this rank's translations [(i, hypothesis)] of its sources.

    Every rank makes the same number of `generate` calls (dummy one-token prompts fill the gap) with synced_gpus, so
    uneven output lengths keep the ranks in step. In a single process it is generation.translate() itself.
    """
    return ShardedEngine(model, timeout=timeout).translate(
        tokenizer,
        sources,
        source_lang=source_lang,
        target_lang=target_lang,
        prompt=prompt,
        examples=examples,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )


# ----- agreement ------------------------------------------------------------------------------------------------------
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def fingerprint(*parts: Any) -> int:
    """A 32-bit checksum of the reprs of `parts`: equal on two ranks iff they hold the same inputs and settings."""
    return zlib.crc32(repr(parts).encode("utf-8"))


def agree_on_count(
    count: int, key: int, *, what: str, timeout: float = DEFAULT_TIMEOUT_S, error: str | None = None
) -> int:
    """Collective: the largest `count` over all ranks, once every rank has arrived with the same `key`.

    `error` (this rank's failure while preparing, or None) travels with the count, so one rank's failure becomes a
    ShardedMeasurementError on every rank instead of a hang in the next forward. Raises ShardedMeasurementError when
    the keys differ (ranks about to run different work) or when not every rank arrives within `timeout` seconds.
    """
    import torch

    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        if error is not None:
            raise ShardedMeasurementError(f"{what}: {error}")
        return count
    world = dist.get_world_size()
    device = torch.device("cpu")
    if "nccl" in str(dist.get_backend()).lower():  # NCCL moves CUDA tensors only
        device = torch.device("cuda", torch.cuda.current_device())
    local = torch.tensor([int(count), int(key), 1 if error is not None else 0], dtype=torch.int64, device=device)
    rows = [torch.zeros_like(local) for _ in range(world)]
    work = dist.all_gather(rows, local, async_op=True)
    try:
        finished = work.wait(timeout=datetime.timedelta(seconds=timeout))
    except Exception as failure:  # gloo/NCCL raise on timeout; the message names neither the step nor the cause
        raise ShardedMeasurementError(
            f"{what}: not every rank reached the agreement point within {timeout:.0f} s ({type(failure).__name__}: "
            f"{failure}). Under FSDP / ZeRO-3 every rank must measure at the same steps."
        ) from failure
    if finished is False:
        raise ShardedMeasurementError(f"{what}: not every rank reached the agreement point within {timeout:.0f} s")
    table = [row.tolist() for row in rows]
    failed = [rank for rank, row in enumerate(table) if row[2]]
    if failed:
        detail = f"; this rank: {error}" if error is not None else ""
        raise ShardedMeasurementError(f"{what}: rank(s) {failed} failed before the first forward{detail}")
    if len({row[1] for row in table}) > 1:
        raise ShardedMeasurementError(
            f"{what}: ranks disagree on the work (checksums {[row[1] for row in table]}): every rank must measure "
            "the same sentences with the same settings"
        )
    return max(row[0] for row in table)


# ----- forwards -------------------------------------------------------------------------------------------------------
class _ForwardCounter:
    """Counts calls of the model's (root) forward while the block runs."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.calls, self._handle = model, 0, None

    def __enter__(self) -> _ForwardCounter:
        def count(module: Any, args: Any) -> None:
            self.calls += 1

        self._handle = self.model.register_forward_pre_hook(count)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def dummy_forwards(model: nn.Module, input_ids: list[int], count: int) -> None:
    """`count` forward passes of one short sequence, in eval mode under no_grad, outputs thrown away.

    They exist only to join the collectives of the other ranks' real forwards; run them with no capture hooks on.
    """
    if count <= 0:
        return
    import torch

    from neuronxa_callback.instrument.activations import _accepted_kwargs, _input_device
    from neuronxa_callback.instrument.isolation import left_as_found

    accepted = _accepted_kwargs(model)
    kwargs: dict[str, Any] = {}
    if "use_cache" in accepted:
        kwargs["use_cache"] = False
    if "logits_to_keep" in accepted:
        kwargs["logits_to_keep"] = 1
    device = _input_device(model)
    ids = torch.tensor([input_ids], dtype=torch.long, device=device)
    with left_as_found(model):
        model.eval()
        with torch.no_grad():
            for _ in range(count):
                model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)


# ----- generation -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def generation_target(model: nn.Module) -> Iterator[nn.Module]:
    """The module to call `generate` on: FSDP1's wrapped module with the root unit's parameters gathered (writeback
    off: generation never changes them); the model itself for FSDP2, ZeRO-3 and replicated weights."""
    fsdp1, _ = _fsdp_classes()
    if fsdp1 is not None and isinstance(model, fsdp1):
        with fsdp1.summon_full_params(model, recurse=False, writeback=False):
            yield model.module
    else:
        yield model


def _dummy_generate(model: nn.Module, input_ids: list[int], pad_id: int, count: int) -> None:
    """`count` one-token generate calls with synced_gpus: each keeps stepping until every rank's real generate ends."""
    if count <= 0:
        return
    import torch

    from neuronxa_callback.quality.generation import _input_device, generation_mode

    ids = torch.tensor([input_ids], dtype=torch.long, device=_input_device(model))
    with generation_mode(model):
        for _ in range(count):
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                num_beams=1,
                max_new_tokens=1,
                pad_token_id=pad_id,
                synced_gpus=True,
            )


# ----- back to the shards ---------------------------------------------------------------------------------------------
def _zero3_offload(model: nn.Module, optimizer: Any) -> Any:
    """DeepSpeed's parameter-offload object (it owns the ZeRO-3 parameter coordinator), or None."""
    for candidate in (optimizer, getattr(optimizer, "optimizer", None)):
        offload = getattr(candidate, "parameter_offload", None)
        if offload is not None and hasattr(offload, "empty_partition_cache"):
            return offload
    # Without the optimizer: the offload object registered a forward pre-hook on the root module, a closure over it
    # (wrapped by DeepSpeed's instrument_w_nvtx decorator, hence the few levels of closures).
    pending = [(hook, 0) for hook in getattr(model, "_forward_pre_hooks", {}).values()]
    while pending:
        function, depth = pending.pop()
        for cell in getattr(function, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if hasattr(value, "empty_partition_cache") and hasattr(value, "get_param_coordinator"):
                return value
            if callable(value) and depth < 3:
                pending.append((value, depth + 1))
    return None


def reshard(model: nn.Module, optimizer: Any = None) -> None:
    """Put the parameters back into their shards after a measurement (no-op without sharding).

    FSDP2: FSDPModule.reshard() on every fully_shard'ed module (the root stays unsharded after a no-grad forward).
    FSDP1: frees the padded unsharded flat parameter the root unit keeps after a forward (torch's own `_reshard`,
    as its post-backward does). ZeRO-3: DeepSpeed's `empty_partition_cache` (the engine's documented call), found
    through the Trainer's `optimizer` or the hook DeepSpeed put on the module; else GatheredParameters-style
    partitioning of every parameter left gathered.
    """
    engine = sharding_engine(model)
    if engine == "fsdp2":
        _, fsdp2 = _fsdp_classes()
        for module in model.modules():
            if isinstance(module, fsdp2):
                module.reshard()
    elif engine == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp._runtime_utils import _reshard

        for state in FullyShardedDataParallel.fsdp_modules(model):
            handle = getattr(state, "_handle", None)
            if handle is not None and handle.uses_sharded_strategy and not handle.needs_unshard():
                _reshard(state, handle, free_unsharded_flat_param=True)
    elif engine == "zero3":
        offload = _zero3_offload(model, optimizer)
        if offload is not None:
            offload.empty_partition_cache()
        else:
            for parameter in model.parameters():
                status = getattr(parameter, "ds_status", None)
                if (
                    status is not None
                    and status.name == "AVAILABLE"
                    and not getattr(parameter, "ds_active_sub_modules", None)
                ):
                    parameter.partition()


def unsharded_parameters(model: nn.Module) -> list[str]:
    """Names of parameters currently held in full (gathered) on this rank; [] when everything is in its shard.

    FSDP2: parameters that are not DTensors. FSDP1: units whose padded unsharded flat parameter is allocated.
    ZeRO-3: parameters whose ds_status is not NOT_AVAILABLE (DeepSpeed's small persistent parameters, which
    stay gathered by design, are left out).
    """
    engine = sharding_engine(model)
    if engine == "fsdp2":
        from torch.distributed.tensor import DTensor

        return [name for name, p in model.named_parameters() if not isinstance(p, DTensor)]
    if engine == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        out = []
        for number, state in enumerate(FullyShardedDataParallel.fsdp_modules(model)):
            handle = getattr(state, "_handle", None)
            if handle is not None and handle.uses_sharded_strategy and not handle.needs_unshard():
                out.append(f"fsdp unit {number} ({type(state.module).__name__})")
        return out
    if engine == "zero3":
        return [
            name
            for name, p in model.named_parameters()
            if getattr(p, "ds_status", None) is not None
            and p.ds_status.name != "NOT_AVAILABLE"
            and not getattr(p, "ds_persist", False)
        ]
    return []
