"""Tiny offline models and tokenizers for unit tests (no hub, a few hundred parameters per layer).

Usage::

    from neuronxa_callback.testing.tiny import tiny_tokenizer, tiny_model, TINY_MODEL_TYPES

    tokenizer = tiny_tokenizer()                       # adds <bos>, pads with <pad>, knows non-ASCII words
    model = tiny_model("llama", tokenizer=tokenizer)   # random LlamaForCausalLM, 2 layers, eval mode

Every model type in TINY_MODEL_TYPES builds from its config alone, so tests can cover each architecture that
neuronxa_callback.instrument.architectures supports without downloading anything.
"""

from __future__ import annotations

import functools
from typing import Any

# A few hundred words, with Icelandic, German, French, Spanish and Chinese so that non-ASCII text tokenizes to
# more than <unk>. Fixed text: the tokenizer (and so every test that uses it) is deterministic.
_CORPUS = """
The quick brown fox jumps over the lazy dog while the sun sets behind the old mountains.
A new study of the river shows that the water is cleaner than it was ten years ago.
The government announced on Monday that it will build more schools and hospitals in the north.
Scientists found a small planet that may hold water, about forty light years from the earth.
The team won the final match after a long season, and the fans sang in the streets all night.
Travellers should carry water, a map and warm clothes when they walk in the highlands in winter.
Doctors say that regular exercise and good sleep protect the heart and the mind.
The museum opened a new exhibition of paintings, letters and photographs from the last century.
Prices rose again this month, and many families are worried about the cost of food and heating.
The city council voted to close the bridge for repairs during the summer holidays.
Fljótið rennur hægt í gegnum dalinn og börnin leika sér á bakkanum á sumrin.
Ríkisstjórnin tilkynnti á mánudag að hún myndi byggja fleiri skóla og sjúkrahús á Norðurlandi.
Vísindamenn fundu litla plánetu sem gæti haft vatn, um fjörutíu ljósár frá jörðinni.
Liðið vann úrslitaleikinn eftir langt tímabil og aðdáendurnir sungu á götunum alla nóttina.
Læknar segja að regluleg hreyfing og góður svefn verndi hjartað og hugann.
Þjóðminjasafnið opnaði nýja sýningu á málverkum, bréfum og ljósmyndum frá síðustu öld.
Der schnelle braune Fuchs springt über den faulen Hund, während die Sonne hinter den Bergen untergeht.
Die Regierung kündigte am Montag an, mehr Schulen und Krankenhäuser im Norden zu bauen.
Ärzte sagen, dass regelmäßige Bewegung und guter Schlaf das Herz und den Geist schützen.
Le gouvernement a annoncé lundi qu'il construira davantage d'écoles et d'hôpitaux dans le nord.
Les scientifiques ont découvert une petite planète qui pourrait contenir de l'eau.
Les médecins disent que l'exercice régulier et un bon sommeil protègent le cœur et l'esprit.
El gobierno anunció el lunes que construirá más escuelas y hospitales en el norte.
Los científicos encontraron un pequeño planeta que podría tener agua, a unos cuarenta años luz.
Los médicos dicen que el ejercicio regular y el buen sueño protegen el corazón y la mente.
政府周一宣布将在北方建设更多的学校和医院。
科学家发现了一颗可能有水的小行星。
医生说经常锻炼和良好的睡眠可以保护心脏和大脑。
"""

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")

# Architectures with a tiny config below; keep in step with neuronxa_callback.instrument.architectures.
TINY_MODEL_TYPES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "olmo2",
    "glm4",
    "phi3",
    "gpt2",
    "gpt_neox",
    "bloom",
)

_HEADS = 4


def corpus_sentences() -> list[str]:
    """The fixed multilingual sentences the tiny tokenizer was trained on (handy as test input)."""
    return [line.strip() for line in _CORPUS.strip().splitlines() if line.strip()]


class CorpusDataset:
    """The tiny corpus as causal-LM examples for a Trainer (its collator makes the labels), `repeat` times over."""

    def __init__(self, tokenizer, repeat: int = 2) -> None:
        self.items = [tokenizer(s, truncation=True, max_length=24)["input_ids"] for s in corpus_sentences()] * repeat

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.items[i]}


# Training the BPE is the slow part of every tiny tokenizer: once per process, the JSON reused by each call.
@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.BPEDecoder()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(corpus_sentences(), trainer=trainer)
    bos_id = tokenizer.token_to_id("<bos>")
    # Prepend <bos> like Gemma/Llama tokenizers do, so tests see a special token that is fed but not pooled.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos_id)]
    )
    return tokenizer.to_str()


def tiny_tokenizer(padding_side: str = "left"):
    """A PreTrainedTokenizerFast (BPE, ~400 tokens) that prepends <bos> and pads with <pad>; built offline, cached."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.padding_side = padding_side
    return tokenizer


def _config_kwargs(model_type: str, num_layers: int, hidden: int, special: dict[str, int]) -> dict[str, Any]:
    """Config keyword arguments for a tiny model of `model_type` (each family names its sizes differently)."""
    d_ff = 2 * hidden
    if model_type == "gpt2":
        return dict(n_embd=hidden, n_inner=d_ff, n_layer=num_layers, n_head=_HEADS, n_positions=512, **special)
    if model_type == "bloom":
        return dict(hidden_size=hidden, n_layer=num_layers, n_head=_HEADS, **special)
    common = dict(
        hidden_size=hidden,
        intermediate_size=d_ff,
        num_hidden_layers=num_layers,
        num_attention_heads=_HEADS,
        max_position_embeddings=512,
        **special,
    )
    if model_type == "gpt_neox":
        return common
    common["num_key_value_heads"] = 2
    if model_type in ("gemma", "gemma2", "gemma3_text", "qwen3", "glm4", "mistral"):
        common["head_dim"] = hidden // _HEADS
    if model_type in ("gemma2", "gemma3_text", "mistral", "qwen2", "qwen3"):
        common["sliding_window"] = 16
    return common


def tiny_model(model_type: str = "llama", tokenizer=None, num_layers: int = 2, seed: int = 0, hidden_size: int = 32):
    """A randomly initialised causal LM of `model_type` built from config (float32, eval mode).

    Hidden size `hidden_size` (4 heads), MLP width 2 * hidden_size (BLOOM: 4 * hidden_size, fixed by its config).
    The vocabulary and special-token ids follow `tokenizer` (default: tiny_tokenizer()). Deterministic for a seed.
    bitsandbytes 4-bit needs hidden_size >= 64 (its quantization block size).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if model_type not in TINY_MODEL_TYPES:
        raise ValueError(
            f"neuronxa_callback.testing.tiny: no tiny config for model_type={model_type!r}; known: {TINY_MODEL_TYPES}"
        )
    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    special = dict(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), **_config_kwargs(model_type, num_layers, hidden_size, special)
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model
