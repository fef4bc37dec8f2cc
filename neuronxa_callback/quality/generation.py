"""The model's own translations: greedy, batched, left-padded, length-sorted, one line per sentence.

Usage::

    from neuronxa_callback.quality.generation import make_translations, translate, translate_plan

    hypotheses = translate(model, tokenizer, ["Guten Morgen.", "Wie geht es dir?"],
                           source_lang="deu_Latn", target_lang="eng_Latn",
                           examples=[("Danke.", "Thank you."), ("Ja.", "Yes.")], max_new_tokens=48)
    rows = make_translations(sources, hypotheses, references)   # [Translation(id, source, hypothesis, reference)]
    plan = translate_plan(tokenizer, sources, source_lang="deu_Latn", target_lang="eng_Latn")  # one generate per batch

translate() may be called in the middle of training (from a callback): it leaves the model and tokenizer as it found
them (train/eval flags of every module, gradient checkpointing, config.use_cache, tokenizer.padding_side) and runs under
torch.no_grad(). It works on plain, PEFT-wrapped and bitsandbytes 4-bit models alike, since it only calls generate().
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from neuronxa_callback.instrument.isolation import left_as_found
from neuronxa_callback.quality.prompts import build_prompt, check_examples, resolve_style

logger = logging.getLogger(__name__)

__all__ = [
    "Translation",
    "TranslatePlan",
    "make_translations",
    "translate",
    "translate_plan",
    "translation_prompts",
    "build_prompt",
    "generation_mode",
]


@dataclass(frozen=True)
class Translation:
    """One scored sentence: its id, the source, the model's hypothesis and the reference (None when reference-free)."""

    id: str
    source: str
    hypothesis: str
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_translations(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> list[Translation]:
    """Zip sources, hypotheses and (optional) references and ids into Translations; ids default to "0", "1", ..."""
    n = len(sources)
    for name, values in (("hypotheses", hypotheses), ("references", references), ("ids", ids)):
        if values is not None and len(values) != n:
            raise ValueError(f"make_translations: {name} has {len(values)} entries but sources has {n}")
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)]
    refs = list(references) if references is not None else [None] * n
    return [Translation(ids[i], sources[i], hypotheses[i], refs[i]) for i in range(n)]


@contextlib.contextmanager
def generation_mode(model: Any, tokenizer: Any = None) -> Iterator[None]:
    """Eval mode, no gradient checkpointing, use_cache=True and no_grad inside; everything put back exactly on exit
    (see _isolation.ModelState for how checkpointing is switched off without disturbing it)."""
    import torch

    with left_as_found(model, tokenizer) as state:
        model.eval()
        for module in state.checkpointing_modules():
            module.gradient_checkpointing = False
        for config in state.configs():
            config.use_cache = True  # Trainer turns it off for gradient checkpointing; decoding without it is O(n^2)
        with torch.no_grad():
            yield


def _newline_stopper(tokenizer: Any, prompt_length: int):
    """A StoppingCriteria that marks each row done once its generated text holds a newline.

    Decoding the generated tail is robust to how a tokenizer spells "\\n" (its own token, byte fallback "<0x0A>",
    byte-level "Ċ", or merged with other characters), which a fixed set of token ids would not be.
    """
    import torch
    from transformers import StoppingCriteria

    class StopAtNewline(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
            return torch.tensor(["\n" in text for text in texts], dtype=torch.bool, device=input_ids.device)

    return StopAtNewline()


def _eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    generation_config = getattr(model, "generation_config", None)
    for value in (getattr(generation_config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        for token_id in value if isinstance(value, (list, tuple)) else [value]:
            if token_id is not None and int(token_id) not in ids:
                ids.append(int(token_id))
    return ids


def _input_device(model: Any):
    device = getattr(model, "device", None)
    if device is None:
        device = next(model.parameters()).device
    return device


def _left_pad(rows: list[list[int]], pad_id: int, device):
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        if row:
            input_ids[r, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[r, width - len(row) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def _decode_new_tokens(tokenizer: Any, new_tokens: list[int], eos_ids: set[int]) -> str:
    # Rows that finished early are filled with pad ids; cut at the first EOS in case pad is not a special token.
    for position, token_id in enumerate(new_tokens):
        if token_id in eos_ids:
            new_tokens = new_tokens[:position]
            break
    return _first_line(tokenizer.decode(new_tokens, skip_special_tokens=True))


# Room for a long sentence: generation stops at the first newline or EOS, so the cap rarely costs anything.
DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class TranslatePlan:
    """What translate() runs, decided before the model is touched: each source's prompt token ids and the batches
    (one generate call each; source indices, length-sorted by plan_batches)."""

    sources: tuple[str, ...]
    settings: tuple[Any, ...]  # (source_lang, target_lang, prompt, checked examples, batch_size)
    input_ids: list[list[int]]
    batches: list[list[int]]
    # How many leading prompt tokens all sources share (the few-shot block; 0: too few to run on their own).
    shared: int = 0

    def made_for(
        self,
        sources: Sequence[str],
        *,
        source_lang: str,
        target_lang: str,
        prompt: str,
        examples: Sequence[Sequence[str]],
        batch_size: int,
    ) -> bool:
        settings = (source_lang, target_lang, prompt, tuple(check_examples(examples)), batch_size)
        return self.settings == settings and self.sources == tuple(sources)


def translation_prompts(
    tokenizer: Any,
    sources: Sequence[str],
    *,
    source_lang: str,
    target_lang: str,
    prompt: str = "auto",
    examples: Sequence[Sequence[str]] = (),
) -> tuple[list[str], bool]:
    """(the prompt text of each source, add_special_tokens to tokenize them with): what translate() feeds the model,
    and what the reference likelihood (quality.likelihood) scores the reference after."""
    checked = check_examples(examples)
    style = resolve_style(prompt, tokenizer)
    prompts = [
        build_prompt(
            s, source_lang=source_lang, target_lang=target_lang, prompt=prompt, examples=checked, tokenizer=tokenizer
        )
        for s in sources
    ]
    # A rendered chat template already holds its special tokens (<bos>, turn markers): adding them again doubles <bos>.
    return prompts, style != "chat"


def translate_plan(
    tokenizer: Any,
    sources: Sequence[str],
    *,
    source_lang: str,
    target_lang: str,
    prompt: str = "auto",
    examples: Sequence[Sequence[str]] = (),
    batch_size: int = 16,
) -> TranslatePlan:
    """translate()'s prompts and batches for `sources`, with its checks of the arguments, the examples and the prompt
    style (ValueError / PromptError before any generate call)."""
    if isinstance(sources, str):
        raise ValueError("translate: sources must be a sequence of sentences, not one string")
    sources = tuple(sources)
    for i, source in enumerate(sources):
        if not isinstance(source, str):
            raise ValueError(f"translate: sources[{i}] is {type(source).__name__}, expected str")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"translate: batch_size must be a positive int, got {batch_size!r}")
    from neuronxa_callback.instrument.activations import plan_batches
    from neuronxa_callback.quality.prefix import shared_prefix_length

    checked = check_examples(examples, sources)
    resolve_style(prompt, tokenizer)  # a bad prompt fails here, with no sources too
    settings = (source_lang, target_lang, prompt, tuple(checked), batch_size)
    if not sources:
        return TranslatePlan(sources, settings, [], [])
    prompts, add_special_tokens = translation_prompts(
        tokenizer, sources, source_lang=source_lang, target_lang=target_lang, prompt=prompt, examples=checked
    )
    encoded = tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
    # Length-sorted (little padding), longest first (a memory error shows at once), ties by position (deterministic).
    batches = plan_batches([len(ids) for ids in encoded], batch_size)
    # The shared prefix leaves every row its last prompt token: generation's first step needs one of its own.
    return TranslatePlan(sources, settings, encoded, batches, shared_prefix_length(encoded))


def translate(
    model: Any,
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
    synced_gpus: bool | None = None,
    share_prefix: bool = True,
    plan: TranslatePlan | None = None,
) -> list[str]:
    """Greedy translations of `sources`, one line each, in the order of `sources`.

    prompt: "auto" (chat template if the tokenizer has one, else few-shot), "fewshot", "chat", or a template string
    with {source_lang}, {target_lang}, {source} and optionally {examples}. examples: (source, target) pairs from a
    pool separate from `sources` (ValueError if an example's source is one of them). Generation stops at the first
    newline or EOS, or after max_new_tokens; text after a newline is dropped. progress=True shows a bar on stderr over
    the sentences, with the batch and its tokens generated so far (a batch can take minutes). synced_gpus is passed to
    generate() when given (True under parameter sharding: every rank keeps stepping until all are done; see
    sharding.translate_sharded).
    share_prefix: run the prompt tokens all sources start with (a few-shot block) once and start every batch from
    their key/value cache (quality.prefix; not with synced_gpus, whose ranks agree on their forwards in advance).
    plan: translate_plan()'s result for these arguments, when the caller made it already (one generate call per
    batch: sharding.ShardedEngine counts its calls from it).
    """
    import torch

    from neuronxa_callback.quality.prefix import cache_for_batch, prefix_cache

    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"translate: max_new_tokens must be a positive int, got {max_new_tokens!r}")
    settings: dict[str, Any] = {
        "source_lang": source_lang,
        "target_lang": target_lang,
        "prompt": prompt,
        "examples": examples,
        "batch_size": batch_size,
    }
    if plan is None:
        plan = translate_plan(tokenizer, sources, **settings)
    elif not plan.made_for(sources, **settings):
        raise ValueError("translate: `plan` was made for other sources or settings (use translate_plan)")
    if not plan.sources:
        return []

    encoded, batches = plan.input_ids, plan.batches
    eos_ids = _eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = eos_ids[0] if eos_ids else 0
    device = _input_device(model)
    sources = plan.sources
    bar = _progress_bar(len(sources), f"translate {source_lang}->{target_lang}") if progress else None

    hypotheses: list[str | None] = [None] * len(sources)
    try:
        with generation_mode(model, tokenizer):
            prefix = None
            if share_prefix and plan.shared and not synced_gpus:
                prefix = prefix_cache(model, encoded[0][: plan.shared])
            if prefix is not None:
                head = torch.tensor([encoded[0][: prefix.length]], dtype=torch.long, device=device)
            for number, batch in enumerate(batches, start=1):
                if prefix is None:
                    input_ids, attention_mask = _left_pad([encoded[i] for i in batch], pad_id, device)
                    cache = {}
                else:
                    # The prefix, then each row left-padded: [prefix][pads][row's own tokens]; the mask hides the pads
                    # and generate counts positions over the mask, so every row reads as if alone.
                    rest, rest_mask = _left_pad([encoded[i][prefix.length :] for i in batch], pad_id, device)
                    input_ids = torch.cat([head.expand(len(batch), -1), rest], dim=1)
                    attention_mask = torch.cat([torch.ones_like(head).expand(len(batch), -1), rest_mask], dim=1)
                    cache = {prefix.argument: cache_for_batch(prefix, len(batch))}
                prompt_length = input_ids.shape[1]
                criteria = [_newline_stopper(tokenizer, prompt_length)]
                if bar is not None:
                    batch_name = f"batch {number}/{len(batches)}"
                    criteria.append(_token_progress(bar, batch_name, prompt_length, max_new_tokens))
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    do_sample=False,
                    num_beams=1,
                    max_new_tokens=max_new_tokens,
                    use_cache=True,
                    pad_token_id=pad_id,
                    eos_token_id=eos_ids or None,
                    stopping_criteria=criteria,
                    **cache,
                    **({} if synced_gpus is None else {"synced_gpus": synced_gpus}),
                )
                for row, index in enumerate(batch):
                    new_tokens = output[row, prompt_length:].tolist()
                    hypotheses[index] = _decode_new_tokens(tokenizer, new_tokens, set(eos_ids))
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.set_postfix_str("", refresh=False)  # the last batch's token count would read as still running
            bar.close()
    return hypotheses  # type: ignore[return-value]


def _progress_bar(total: int, description: str):
    """Counts sentences, not batches: the rate and the time left then read in sentences, whatever the batch size."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="sentence")


# Seconds between refreshes of the token count: often enough to see a long batch move, not a redraw per token.
_TOKEN_REFRESH_SECONDS = 0.5


def _token_progress(bar: Any, batch: str, prompt_length: int, max_new_tokens: int):
    """A StoppingCriteria that never stops: it shows the tokens generated so far in the current batch.

    One batch of a slow model can take minutes (longest sentences first); without this the bar sits still meanwhile.
    """
    import time

    import torch
    from transformers import StoppingCriteria

    class ShowTokens(StoppingCriteria):
        shown_at = None

        def __call__(self, input_ids, scores, **kwargs):
            now = time.monotonic()
            generated = input_ids.shape[1] - prompt_length
            if self.shown_at is None or now - self.shown_at >= _TOKEN_REFRESH_SECONDS:
                bar.set_postfix_str(f"{batch}, token {generated}/{max_new_tokens}")
                self.shown_at = now
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return ShowTokens()
