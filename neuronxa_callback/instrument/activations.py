"""Sentence representations from a causal LM's MLP neurons, pooled on the fly (NeuronXA, Huang et al., 2025).

Usage::

    from neuronxa_callback.instrument.activations import encode

    enc = encode(model, tokenizer, ["A sentence.", "Another one."], representations=("nas", "nav"))
    enc.representations["nas"]    # float32 CPU tensor [num_layers, 2, d_ff]
    enc.indices                   # [0, 1]: row j is sentences[enc.indices[j]]
    plan = encode_plan(tokenizer, sentences, batch_size=16)     # the batches encode runs (one forward each)
    encode(model, tokenizer, sentences, batch_size=16, plan=plan)  # the same result, without tokenizing again

Per layer l and neuron i, with a the output of the MLP activation function (act(gate(x)) for gated MLPs):
  NAS[l, i] = sum_t w_t * 1(a[l, t, i] > 0)      (activation state)
  NAV[l, i] = sum_t w_t * |a[l, t, i]|           (activation value)
"embedding" pools the decoder layer's output hidden state the same way (the MEXA baseline).
Token weights w_t (paper Sec. 2.2, position-weighted mean): w_t = t / sum_k k over the sentence's own
non-special tokens, t = 1..T counted from the first of them. Special tokens the tokenizer adds (<bos>) and padding
are fed to the model but weigh 0. Alternatives: "mean" (1/T each) and "last" (all weight on the last token).

The hooks never keep token activations: each adds the batch's weighted sums into a [num_layers, batch, dim] float32
accumulator, reading the activation in fixed-size slices so that the capture's own memory does not grow with
sentence length. The sums are float32 whatever the model computes in (bf16/fp16 weights, 4-bit with bf16 compute,
torch.autocast as under Trainer(bf16=True)): each slice is converted into one reused float32 buffer.

Float16 overflow: float16 tops out at 65504, and some models exceed it (Gemma 3's residual stream reaches ~1e5, so
its hidden states turn inf and every later layer NaN). The hooks check every float16 activation and layer output
for inf, NaN or values at the float16 limit (one min/max reduction per layer, read once per batch; nothing for
float32 / bfloat16). A batch that overflowed is run again under bfloat16 autocast (float16's precision is not
needed, its range is), and so are the batches after it; Encoded.overflow and .upcast_batches say so. Where that is
not possible (a sharded encode, whose ranks must run the same forwards) or does not help, the layer's rows are set
to NaN and it is listed in Encoded.invalid_layers: scoring leaves such layers out instead of scoring garbage.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from neuronxa_callback.instrument.architectures import activation_modules, decoder_layers, unwrap_model

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

REPRESENTATIONS = ("nas", "nav", "embedding")
POOLINGS = ("weighted", "mean", "last")

# Elements of one activation slice the hook converts to float32 at a time (4 MiB). For Gemma 3 270M at batch 16
# (d_ff 2048) that is 32 tokens: longer sentences take more slices, not more memory.
SLICE_ELEMENTS = 1 << 20

# What a float16 overflow is recomputed in: bfloat16 has float32's range, and autocast keeps the model's weights as
# they are (no copy, nothing to restore).
UPCAST = "bfloat16 autocast"


@dataclass
class Encoded:
    """Pooled representations of the sentences one process encoded.

    representations: name ("nas", "nav", "embedding") -> float32 CPU tensor [num_layers, len(indices), dim].
    indices: ascending positions in the input `sentences` of the rows (all of them when unsharded).
    num_layers: decoder layers of the model. forward_seconds: wall time of the batched forward passes.
    overflow: layer -> what left the float16 range in the model's own precision (empty when nothing did).
    upcast_batches: batches computed under bfloat16 autocast because of such an overflow.
    invalid_layers: layer -> reason, for layers whose values are unusable even so; their rows are NaN.
    """

    representations: dict[str, torch.Tensor]
    indices: list[int]
    num_layers: int
    forward_seconds: float
    overflow: dict[int, str] = field(default_factory=dict)
    upcast_batches: int = 0
    invalid_layers: dict[int, str] = field(default_factory=dict)


def plan_batches(token_lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Sentence indices grouped into batches of similar length (longest first, ties by index): deterministic.

    Sorting by length keeps padding small; longest first makes an out-of-memory error happen at once.
    """
    if batch_size < 1:
        raise ValueError(f"plan_batches: batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(token_lengths)), key=lambda i: (-int(token_lengths[i]), i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pooling_weights(pooled_mask: torch.Tensor, pooling: str = "weighted") -> torch.Tensor:
    """Per-token weights [batch, tokens] (float32) from a 0/1 mask of the tokens to pool (padding and specials are 0).

    "weighted": w_t = t / sum_k k with t = 1..T over each row's pooled tokens in order (left or right padding alike);
    "mean": 1/T; "last": 1 on the last pooled token. Rows sum to 1; a row with no pooled token is an error.
    """
    import torch

    if pooling not in POOLINGS:
        raise ValueError(f"pooling_weights: pooling must be one of {POOLINGS}, got {pooling!r}")
    mask = pooled_mask.to(torch.float32)
    counts = mask.sum(dim=1, keepdim=True)
    if bool((counts == 0).any()):
        rows = (counts.squeeze(1) == 0).nonzero().flatten().tolist()
        raise ValueError(f"pooling_weights: batch rows {rows} have no token to pool (empty sentence?)")
    position = torch.cumsum(mask, dim=1) * mask  # 1..T on pooled tokens, 0 elsewhere
    if pooling == "weighted":
        return position / (counts * (counts + 1) / 2)
    if pooling == "mean":
        return mask / counts
    return (position == counts).to(torch.float32)


class ActivationCapture:
    """Forward hooks that stream weighted sums of every layer's MLP activation (and/or layer output) per sentence.

    Usage::

        with ActivationCapture(model, representations=("nas", "nav")) as capture:
            capture.begin_batch(weights)          # [batch, tokens] float32, e.g. pooling_weights(mask)
            model(input_ids=ids, attention_mask=mask)
            sums = capture.end_batch()            # {"nas": [num_layers, batch, d_ff], ...} float32, model device
            capture.overflow                      # {layer: "overflow in the MLP activation (float16)"}: that batch

    The hooks are removed when the block exits, also when the forward raises. The capture does not run the model,
    change its mode, or disable gradients: that is the caller's job (encode() does it).
    """

    def __init__(self, model: nn.Module, representations: Sequence[str] = ("nas", "nav")) -> None:
        representations = tuple(representations)
        _check_representations(representations, "ActivationCapture")
        self.model = model
        self.representations = representations
        self.layers = decoder_layers(model)
        self.num_layers = len(self.layers)
        self._activations = activation_modules(model) if {"nas", "nav"} & set(representations) else []
        # Layer outputs can only overflow float16 in a float16 model: under autocast the residual stream keeps the
        # weights' dtype. Other models get no extra hooks.
        self._check_layer_outputs = _has_float16_parameters(model)
        self._handles: list[Any] = []
        self._weights: torch.Tensor | None = None
        self._sums: dict[str, list[torch.Tensor | None]] = {}
        self._scratch: torch.Tensor | None = None
        self._range_flags: list[tuple[int, str, torch.Tensor]] = []
        self.overflow: dict[int, str] = {}
        # False: only float16 values are checked (other dtypes have float32's range). encode() sets it while it
        # recomputes an overflowed batch, to see whether the recomputation is finite.
        self.check_every_dtype = False

    # -- context manager --------------------------------------------------------------------------------------
    def __enter__(self) -> ActivationCapture:
        try:
            for layer_index, module in enumerate(self._activations):
                self._handles.append(module.register_forward_hook(self._activation_hook(layer_index)))
            if "embedding" in self.representations or self._check_layer_outputs:
                for layer_index, layer in enumerate(self.layers):
                    self._handles.append(layer.register_forward_hook(self._layer_hook(layer_index)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this capture registered (safe to call twice)."""
        while self._handles:
            self._handles.pop().remove()
        self._weights = None
        self._sums = {}
        self._scratch = None
        self._range_flags = []

    # -- per batch --------------------------------------------------------------------------------------------
    def begin_batch(self, weights: torch.Tensor) -> None:
        """Set the token weights [batch, tokens] for the next forward pass and clear the sums."""
        import torch

        if weights.dim() != 2:
            raise ValueError(
                f"ActivationCapture.begin_batch: weights must be [batch, tokens], got {tuple(weights.shape)}"
            )
        # [batch, 1, tokens]: the left operand of a batched matmul with [batch, tokens, dim].
        self._weights = weights.to(torch.float32).unsqueeze(1)
        self._sums = {name: [None] * self.num_layers for name in self.representations}
        self._range_flags = []
        self.overflow = {}

    def end_batch(self) -> dict[str, torch.Tensor]:
        """The batch's pooled sums: name -> float32 [num_layers, batch, dim] on the device the model produced them."""
        import torch

        if self._weights is None:
            raise ValueError("ActivationCapture.end_batch: call begin_batch() before the forward pass")
        missing = sorted({i for per_layer in self._sums.values() for i, sums in enumerate(per_layer) if sums is None})
        if missing:
            raise RuntimeError(
                f"ActivationCapture: hooks of layers {missing} did not fire during the forward pass; "
                "is the registered activation_path the module the MLP actually calls?"
            )
        result = {name: torch.stack(per_layer) for name, per_layer in self._sums.items()}  # type: ignore[arg-type]
        self.overflow = self._read_range_flags()
        self._weights = None
        self._sums = {}
        return result

    # -- float16 range --------------------------------------------------------------------------------------------
    def _check_range(self, layer_index: int, where: str, tensor: torch.Tensor) -> None:
        """Queue a flag "some value is inf, NaN or at its dtype's limit" for a float16 tensor (any float tensor when
        check_every_dtype), kept on the device: end_batch reads all flags at once."""
        import torch

        if not tensor.is_floating_point() or (tensor.dtype != torch.float16 and not self.check_every_dtype):
            return
        low, high = torch.aminmax(tensor.detach())  # NaN propagates into both, and fails both comparisons below
        limit = torch.finfo(tensor.dtype).max
        place = f"{where} ({str(tensor.dtype).removeprefix('torch.')})"
        self._range_flags.append((layer_index, place, ~((low > -limit) & (high < limit))))

    def _read_range_flags(self) -> dict[int, str]:
        """Layer -> "overflow in the <where> (<dtype>)" for this batch's flags: one device-to-host copy per batch."""
        import torch

        if not self._range_flags:
            return {}
        device = self._range_flags[0][2].device
        raised = torch.stack([flag.to(device) for _, _, flag in self._range_flags]).tolist()
        places: dict[int, list[str]] = {}
        for (layer_index, where, _), bad in zip(self._range_flags, raised):
            if bad and where not in places.setdefault(layer_index, []):
                places[layer_index].append(where)
        self._range_flags = []
        return {layer: "overflow in the " + " and ".join(where) for layer, where in sorted(places.items()) if where}

    # -- hooks ------------------------------------------------------------------------------------------------
    def _accumulate(self, name: str, layer_index: int, value: torch.Tensor) -> None:
        sums = self._sums[name]
        if sums[layer_index] is None:
            sums[layer_index] = value
        else:  # a module called twice in one forward (unusual): its contributions add up
            sums[layer_index] += value

    def _pooled(self, tensor: torch.Tensor, transforms: Sequence[str]) -> list[torch.Tensor]:
        """sum_t w[b, t] * f(tensor[b, t, :]) for each f in transforms, reading `tensor` in bounded slices."""
        import torch

        weights = self._weights
        if weights is None:
            raise RuntimeError("ActivationCapture: the model ran inside the capture without begin_batch()")
        if tensor.dim() != 3 or tensor.shape[:2] != (weights.shape[0], weights.shape[2]):
            raise RuntimeError(
                f"ActivationCapture: hooked output has shape {tuple(tensor.shape)}, expected [batch, tokens, dim] "
                f"matching the weights {tuple(weights.shape[::2])}"
            )
        if weights.device != tensor.device:
            weights = self._weights = weights.to(tensor.device)
        batch, tokens, dim = tensor.shape
        step = max(1, SLICE_ELEMENTS // max(1, batch * dim))
        scratch = self._scratch_for(batch * min(step, tokens) * dim, tensor.device)
        low_precision = tensor.dtype != torch.float32
        out: list[torch.Tensor | None] = [None] * len(transforms)
        # Trainer(bf16=True / fp16=True) runs the forward, and so these hooks, under torch.autocast, which would run
        # the bmm below in bf16/fp16 and accumulate in it: the sums must stay float32 whatever the model computes in.
        with _autocast_disabled(tensor.device.type):
            for start in range(0, tokens, step):
                piece = tensor[:, start : start + step]
                w = weights[:, :, start : start + step]
                # One reused float32 buffer for every operand: no allocation per layer, no full-size copy.
                operand = scratch[: piece.numel()].view(piece.shape)
                for k, transform in enumerate(transforms):
                    if transform == "state":
                        # A comparison may write across dtypes; bf16/fp16 -> float32 is exact, so the sign is too.
                        torch.gt(piece, 0, out=operand)
                    elif transform == "abs" and not low_precision:
                        torch.abs(piece, out=operand)
                    elif transform == "abs":
                        # abs(out=) refuses a float32 out for a bf16/fp16 input: convert the slice, then abs in place.
                        operand.copy_(piece)
                        operand.abs_()
                    else:
                        operand.copy_(piece)
                    acc = out[k]
                    if acc is None:
                        out[k] = torch.bmm(w, operand)
                    else:
                        acc.baddbmm_(w, operand)  # acc += w @ operand, in place
        # The first slice filled every slot: a hooked output has at least one token (its shape matches the weights).
        return [cast("torch.Tensor", acc).squeeze(1) for acc in out]

    def _scratch_for(self, numel: int, device: torch.device) -> torch.Tensor:
        import torch

        scratch = self._scratch
        if scratch is None or scratch.numel() < numel or scratch.device != device:
            scratch = self._scratch = torch.empty(numel, dtype=torch.float32, device=device)
        return scratch

    def _activation_hook(self, layer_index: int):
        wanted = [
            (name, "state" if name == "nas" else "abs") for name in ("nas", "nav") if name in self.representations
        ]

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self._check_range(layer_index, "MLP activation", output)
            pooled = self._pooled(output.detach(), [transform for _, transform in wanted])
            for (name, _), value in zip(wanted, pooled):
                self._accumulate(name, layer_index, value)

        return hook

    def _layer_hook(self, layer_index: int):
        pool = "embedding" in self.representations

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            self._check_range(layer_index, "layer output", hidden)
            if pool:
                (value,) = self._pooled(hidden.detach(), ["identity"])
                self._accumulate("embedding", layer_index, value)

        return hook


def _has_float16_parameters(model: nn.Module) -> bool:
    import torch

    return any(parameter.dtype == torch.float16 for parameter in model.parameters())


def _upcast_context(device_type: str):
    """bfloat16 autocast on `device_type`, or None where the device cannot run it (e.g. a GPU without bfloat16).

    Where torch merely warns and disables autocast, the recomputed batch overflows again and is flagged as invalid.
    """
    import torch

    try:
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    except (RuntimeError, ValueError):
        return None


def _autocast_disabled(device_type: str):
    """A context that switches autocast off for `device_type` while it is on (a no-op context otherwise)."""
    import contextlib

    import torch

    try:
        enabled = torch.is_autocast_enabled(device_type)
    except (TypeError, RuntimeError):  # a device type autocast does not know: nothing to switch off
        enabled = False
    return torch.autocast(device_type=device_type, enabled=False) if enabled else contextlib.nullcontext()


def _check_representations(representations: tuple[str, ...], where: str) -> None:
    if not representations:
        raise ValueError(f"{where}: representations must name at least one of {REPRESENTATIONS}")
    unknown = [r for r in representations if r not in REPRESENTATIONS]
    if unknown or len(set(representations)) != len(representations):
        raise ValueError(
            f"{where}: representations must be distinct names from {REPRESENTATIONS}, got {representations}"
        )


def _check_shard(shard: tuple[int, int] | None) -> None:
    if shard is None:
        return
    if (
        not isinstance(shard, (tuple, list))
        or len(shard) != 2
        or not all(isinstance(v, int) for v in shard)
        or not 0 <= shard[0] < shard[1]
    ):
        raise ValueError(f"encode: shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")


def _input_device(model: nn.Module) -> torch.device:
    embeddings = unwrap_model(model).get_input_embeddings()
    return embeddings.weight.device


def _accepted_kwargs(model: nn.Module) -> set[str]:
    parameters = inspect.signature(unwrap_model(model).forward).parameters
    return set(parameters)


class _ModelState:
    """Remembers what encode() changes (every module's training flag) and puts it back."""

    def __init__(self, model: nn.Module) -> None:
        self.training = [(module, module.training) for module in model.modules()]

    def restore(self) -> None:
        for module, flag in self.training:
            module.training = flag


@dataclass(frozen=True)
class EncodePlan:
    """What encode() runs, decided before the model is touched: the tokenized sentences and their batches.

    input_ids / special: each sentence's token ids and special-tokens mask (1 on tokens the tokenizer added: fed,
    never pooled). batches: sentence indices per batch over ALL sentences (plan_batches); share(rank, world): the
    batches one rank of a sharded encode runs, one forward each.
    """

    sentences: tuple[str, ...]
    batch_size: int
    max_length: int
    input_ids: list[list[int]]
    special: list[list[int]]
    batches: list[list[int]]

    def share(self, rank: int, world: int) -> list[list[int]]:
        """The batches rank `rank` of `world` encodes (distributed.my_share of the batch numbers), in plan order."""
        from neuronxa_callback.parallel.collectives import my_share

        return [self.batches[number] for number in my_share(len(self.batches), rank, world)]

    def shortest(self) -> list[int] | None:
        """Token ids of the shortest sentence (the last one planned): the cheapest forward. None without sentences."""
        return list(self.input_ids[self.batches[-1][-1]]) if self.batches else None

    def made_for(self, sentences: Sequence[str], batch_size: int, max_length: int) -> bool:
        return (self.batch_size, self.max_length) == (batch_size, max_length) and self.sentences == tuple(sentences)


def encode_plan(tokenizer: Any, sentences: Sequence[str], *, batch_size: int = 16, max_length: int = 256) -> EncodePlan:
    """encode()'s plan for `sentences`: tokenized with the tokenizer's special tokens, truncated to max_length, batched
    by length. Raises ValueError for bad settings, a non-string sentence or one with no token to pool."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"encode: batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"encode: max_length must be an int >= 2, got {max_length!r}")
    sentences = tuple(sentences)
    bad = [i for i, s in enumerate(sentences) if not isinstance(s, str)]
    if bad:
        raise ValueError(f"encode: sentences must be strings; positions {bad[:5]} are not")

    tokenized = (
        tokenizer(
            list(sentences),
            add_special_tokens=True,
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
            return_attention_mask=False,
        )
        if sentences
        else {"input_ids": [], "special_tokens_mask": []}
    )  # a fast tokenizer fails on []
    input_ids: list[list[int]] = tokenized["input_ids"]
    special: list[list[int]] = tokenized["special_tokens_mask"]
    empty = [i for i, mask in enumerate(special) if all(mask)]
    if empty:
        raise ValueError(f"encode: sentences at positions {empty[:5]} have no token to pool (empty text?)")
    return EncodePlan(
        sentences=sentences,
        batch_size=batch_size,
        max_length=max_length,
        input_ids=input_ids,
        special=special,
        batches=plan_batches([len(ids) for ids in input_ids], batch_size),
    )


def encode(
    model: nn.Module,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    representations: Sequence[str] = ("nas", "nav"),
    pooling: str = "weighted",
    batch_size: int = 16,
    max_length: int = 256,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    plan: EncodePlan | None = None,
) -> Encoded:
    """Pooled NAS / NAV / embedding representations of `sentences`, per decoder layer.

    Usage::

        enc = encode(model, tokenizer, texts, representations=("nas", "nav"), batch_size=16)
        enc.representations["nav"].shape     # [num_layers, len(texts), d_ff]

    Sentences are tokenized with the tokenizer's special tokens (fed, never pooled), truncated to max_length,
    batched by length (plan_batches) and padded on tokenizer.padding_side: encode_plan(), or `plan` when the caller
    made it already (sharding.ShardedEngine counts its forwards from it). shard=(rank, world_size) encodes only this
    rank's batches (plan.share: distributed.my_share of the batch numbers) of the plan over ALL sentences, so the
    union of the ranks' rows equals the unsharded result bit for bit. Runs under torch.no_grad in eval mode and
    leaves the model's training flags, its config and the tokenizer as they were. Works through PEFT wrappers and on quantized (bitsandbytes) models.
    Float16 overflow (see the module docstring) is recomputed under bfloat16 autocast when unsharded, else flagged;
    either is logged as a warning and recorded in the result (overflow, upcast_batches, invalid_layers).
    """
    import torch

    representations = tuple(representations)
    _check_representations(representations, "encode")
    if pooling not in POOLINGS:
        raise ValueError(f"encode: pooling must be one of {POOLINGS}, got {pooling!r}")
    _check_shard(shard)
    if plan is None:
        plan = encode_plan(tokenizer, sentences, batch_size=batch_size, max_length=max_length)
    elif not plan.made_for(sentences, batch_size, max_length):
        raise ValueError("encode: `plan` was made for other sentences, batch_size or max_length (use encode_plan)")
    input_ids, special = plan.input_ids, plan.special
    mine = plan.batches if shard is None else plan.share(*shard)
    indices = sorted(i for batch in mine for i in batch)
    row_of = {sentence_index: row for row, sentence_index in enumerate(indices)}

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    left = getattr(tokenizer, "padding_side", "right") == "left"
    accepted = _accepted_kwargs(model)
    extra: dict[str, Any] = {}
    if "use_cache" in accepted:
        extra["use_cache"] = False
    if "logits_to_keep" in accepted:  # the full-vocabulary logits are never needed here
        extra["logits_to_keep"] = 1
    pass_positions = "position_ids" in accepted
    device = _input_device(model)

    results: dict[str, torch.Tensor] = {}
    state = _ModelState(model)
    capture = ActivationCapture(model, representations)
    numerics = _Numerics(recompute=shard is None)
    forward_seconds = 0.0
    batches = mine
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(mine, desc="neuronxa encode", unit="batch")
    try:
        model.eval()
        with torch.no_grad(), capture:
            for batch in batches:
                ids, attention, pooled = _pad_batch(
                    [input_ids[i] for i in batch], [special[i] for i in batch], pad_id, left
                )
                weights = pooling_weights(pooled, pooling)
                kwargs = dict(extra)
                if pass_positions:
                    # Positions count real tokens only, so left padding does not shift them.
                    kwargs["position_ids"] = (attention.cumsum(dim=1) - 1).clamp(min=0).to(device)
                inputs = dict(input_ids=ids.to(device), attention_mask=attention.to(device), **kwargs)
                start = time.perf_counter()
                sums = _run_batch(model, capture, inputs, weights.to(device), numerics, device.type)
                forward_seconds += time.perf_counter() - start
                rows = torch.tensor([row_of[i] for i in batch])
                for name, value in sums.items():
                    if name not in results:
                        results[name] = torch.zeros(
                            capture.num_layers, len(indices), value.shape[-1], dtype=torch.float32
                        )
                    results[name][:, rows] = value.to("cpu", torch.float32)
    finally:
        state.restore()
    if not results:  # this rank got no batch: empty rows, widths from the config so gathers line up
        results = {
            name: torch.zeros(capture.num_layers, 0, _config_width(model, name), dtype=torch.float32)
            for name in representations
        }
    numerics.warn()
    return Encoded(
        representations=results,
        indices=indices,
        num_layers=capture.num_layers,
        forward_seconds=forward_seconds,
        overflow=dict(numerics.overflow),
        upcast_batches=numerics.upcast_batches,
        invalid_layers=dict(numerics.invalid),
    )


class _Numerics:
    """encode()'s float16-overflow bookkeeping: whether batches run upcast, and what overflowed where.

    After the first overflow every later batch runs under bfloat16 autocast at once (an overflowing model overflows
    on most inputs: computing each batch twice would double the cost). recompute=False (a sharded encode, whose ranks
    must run the same number of forwards) flags overflowed layers instead.
    """

    def __init__(self, recompute: bool) -> None:
        self.recompute = recompute
        self.upcast = False
        self.upcast_batches = 0
        self.overflow: dict[int, str] = {}  # in the model's own precision
        self.invalid: dict[int, str] = {}  # left unusable

    def saw_overflow(self, overflow: dict[int, str]) -> None:
        for layer, reason in overflow.items():
            self.overflow.setdefault(layer, reason)

    def give_up(self, overflow: dict[int, str]) -> None:
        """These layers' values are unusable: say why (once per layer)."""
        for layer, reason in overflow.items():
            if self.upcast:
                reason = f"{reason} under {UPCAST}"
            elif not self.recompute:
                reason = f"{reason} (not recomputed: the ranks of a sharded encode must run the same forwards)"
            else:
                reason = f"{reason} (not recomputed: no {UPCAST} on this device)"
            self.invalid.setdefault(layer, reason)

    def warn(self) -> None:
        if self.overflow and self.upcast_batches:
            logger.warning(
                "NeuronXA encode: float16 overflow (inf, NaN or +-65504) in layers %s (%s); recomputed "
                "%d batch(es) under %s",
                sorted(self.overflow),
                _reasons(self.overflow),
                self.upcast_batches,
                UPCAST,
            )
        if self.invalid:
            logger.warning(
                "NeuronXA encode: layers %s of this float16 model hold unusable values (%s); their scores "
                "are reported as missing and left out of layer means",
                sorted(self.invalid),
                _reasons(self.invalid),
            )


def _reasons(by_layer: dict[int, str]) -> str:
    """The reasons with the layers that share one grouped: "7: <reason>; 8-17: <reason>"."""
    groups: dict[str, list[int]] = {}
    for layer, reason in sorted(by_layer.items()):
        groups.setdefault(reason, []).append(layer)
    return "; ".join(f"{_span(layers)}: {reason}" for reason, layers in groups.items())


def _span(layers: list[int]) -> str:
    contiguous = layers == list(range(layers[0], layers[-1] + 1))
    return f"{layers[0]}-{layers[-1]}" if contiguous and len(layers) > 1 else ",".join(map(str, layers))


def _run_batch(
    model: nn.Module,
    capture: ActivationCapture,
    inputs: dict[str, Any],
    weights: torch.Tensor,
    numerics: _Numerics,
    device_type: str,
) -> dict[str, torch.Tensor]:
    """One batch's pooled sums, recomputed under bfloat16 autocast if float16 overflowed; layers that still
    overflow get NaN rows, so that no score is computed from them."""
    upcast = _upcast_context(device_type) if numerics.upcast else None
    sums = _forward(model, capture, inputs, weights, upcast)
    overflow = capture.overflow
    if overflow and not numerics.upcast:
        numerics.saw_overflow(overflow)
        upcast = _upcast_context(device_type) if numerics.recompute else None
        if upcast is not None:
            numerics.upcast = True
            sums = _forward(model, capture, inputs, weights, upcast)
            overflow = capture.overflow
    if numerics.upcast:
        numerics.upcast_batches += 1
    if overflow:
        numerics.give_up(overflow)
        for value in sums.values():
            value[sorted(overflow)] = float("nan")
    return sums


def _forward(
    model: nn.Module, capture: ActivationCapture, inputs: dict[str, Any], weights: torch.Tensor, upcast: Any
) -> dict[str, torch.Tensor]:
    capture.check_every_dtype = upcast is not None
    capture.begin_batch(weights)
    with upcast if upcast is not None else contextlib.nullcontext():
        model(**inputs)
    return capture.end_batch()


def _config_width(model: nn.Module, name: str) -> int:
    """The representation's width read from the config (used only when a shard has no rows to measure it)."""
    config = unwrap_model(model).config
    hidden = getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0)
    if name == "embedding":
        return int(hidden)
    return int(getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden)


def _pad_batch(
    ids: list[list[int]], special: list[list[int]], pad_id: int, left: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and pooled-token mask [batch, longest] (int64), padded on the left or right."""
    import torch

    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    pooled = torch.zeros((len(ids), width), dtype=torch.long)
    for row, (tokens, specials) in enumerate(zip(ids, special)):
        span = slice(width - len(tokens), width) if left else slice(0, len(tokens))
        input_ids[row, span] = torch.tensor(tokens, dtype=torch.long)
        attention[row, span] = 1
        pooled[row, span] = 1 - torch.tensor(specials, dtype=torch.long)
    return input_ids, attention, pooled
