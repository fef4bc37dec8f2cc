"""Tests for neuronxa_callback.quality.generation / prompts: prompt building, batching, stopping, state restoration.

Most tests use a "successor" model: a real LlamaForCausalLM whose weights are set so that the next token is a fixed
function of the last one (identity embeddings, zeroed attention/MLP outputs, a permutation-like lm_head). Its output is
known in advance, so stopping and ordering can be checked exactly without a trained model.
"""

from __future__ import annotations

import pytest
import torch

from neuronxa_callback.quality.generation import Translation, generation_mode, make_translations, translate
from neuronxa_callback.quality.prompts import PromptError, build_prompt, language_name, resolve_style
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

WORDS = [
    "one",
    "eins",
    "two",
    "zwei",
    "drei",
    "dog",
    "spin",
    "loop",
    "la",
    "German:",
    "English:",
    "user",
    "assistant",
    ":",
]
# next token after each token; anything else is followed by <eos>
SUCCESSOR = {
    "one": "eins",
    "eins": "\n",
    "\n": "loop",
    "two": "zwei",
    "zwei": "drei",
    "drei": "\n",
    "dog": "<eos>",
    "spin": "loop",
    "loop": "loop",
    "English:": "one",
}

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}"
    "{% if not loop.last %} \n {% endif %}{% endfor %}"
)


def word_tokenizer(chat_template: str | None = None):
    """A WordLevel tokenizer over WORDS with its own "\\n" token; prepends <bos>."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = ["<pad>", "<unk>", "<bos>", "<eos>", "\n"] + WORDS
    tokens += [f"filler{i}" for i in range(len(tokens) % 2)]  # even vocabulary = even rotary head dim
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.add_tokens([AddedToken("\n", normalized=False)])  # keep "\n" out of the whitespace split
    tokenizer.padding_side = "left"
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def successor_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = tokenizer.get_vocab()
    size = len(vocab)
    config = LlamaConfig(
        vocab_size=size,
        hidden_size=size,
        intermediate_size=4,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=size,
        tie_word_embeddings=False,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(size))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for token, token_id in vocab.items():
            model.lm_head.weight[vocab[SUCCESSOR.get(token, "<eos>")], token_id] = 10.0
    model.eval()
    return model


@pytest.fixture(scope="module")
def words():
    tokenizer = word_tokenizer()
    return successor_model(tokenizer), tokenizer


def count_forward_calls(model):
    calls = []
    handle = model.register_forward_hook(lambda module, args, output: calls.append(1))
    return calls, handle


# ---------------------------------------------------------------- prompts


def test_fewshot_prompt_format():
    examples = [("Danke.", "Thank you."), ("Ja, bitte.", "Yes, please.")]
    text = build_prompt("Guten Morgen.", source_lang="deu_Latn", target_lang="eng_Latn", examples=examples)
    assert text == (
        "German: Danke.\nEnglish: Thank you.\n\n"
        "German: Ja, bitte.\nEnglish: Yes, please.\n\n"
        "German: Guten Morgen.\nEnglish:"
    )
    zero_shot = build_prompt("Halló heimur.\nNý lína", source_lang="isl_Latn", target_lang="fra_Latn")
    assert zero_shot == "Icelandic: Halló heimur. Ný lína\nFrench:"  # an inner newline would end the answer early


def test_language_names():
    assert [language_name(c) for c in ("eng_Latn", "isl_Latn", "deu_Latn", "fra_Latn", "spa_Latn")] == [
        "English",
        "Icelandic",
        "German",
        "French",
        "Spanish",
    ]
    assert language_name("zho_Hans").startswith("Chinese")
    assert language_name("qqq_Latn") == "qqq_Latn"
    assert language_name("not a code") == "not a code"


def test_chat_template_prompt_and_auto_style():
    tokenizer = word_tokenizer(CHAT_TEMPLATE)
    text = build_prompt(
        "zwei",
        source_lang="deu_Latn",
        target_lang="eng_Latn",
        prompt="chat",
        examples=[("eins", "one")],
        tokenizer=tokenizer,
    )
    instruction = (
        "Translate the following German text into English. Reply with the English translation only, on one line.\n\n"
    )
    assert text == f"<bos>user : {instruction}eins \nassistant : one \nuser : {instruction}zwei"
    assert build_prompt("zwei", source_lang="deu_Latn", target_lang="eng_Latn", prompt="auto", tokenizer=tokenizer) == (
        build_prompt("zwei", source_lang="deu_Latn", target_lang="eng_Latn", prompt="chat", tokenizer=tokenizer)
    )
    assert resolve_style("auto", tokenizer) == "chat"
    assert resolve_style("auto", word_tokenizer()) == "fewshot"
    with pytest.raises(PromptError, match="chat_template"):
        build_prompt("zwei", source_lang="deu_Latn", target_lang="eng_Latn", prompt="chat", tokenizer=word_tokenizer())


def test_custom_template():
    template = "{examples}Translate from {source_lang} to {target_lang}: {source} =>"
    text = build_prompt(
        "Hallo", source_lang="deu_Latn", target_lang="isl_Latn", prompt=template, examples=[("Ja", "Já")]
    )
    assert text == "German: Ja\nIcelandic: Já\n\nTranslate from German to Icelandic: Hallo =>"
    assert build_prompt("Hallo", source_lang="deu_Latn", target_lang="isl_Latn", prompt="{{x}} {source}") == "{x} Hallo"


@pytest.mark.parametrize(
    "template, examples, message",
    [
        ("{source} in {target_language}", (), r"unknown field \{target_language\}"),
        ("{source} {0}", (), r"unknown field \{0\}"),
        ("Translate {source_lang}", (), r"no \{source\} field"),
        ("{source}", [("a", "b")], r"no \{examples\} field"),
        ("{source", (), "malformed"),
        ("fewshots", (), "expected one of"),
    ],
)
def test_template_errors(template, examples, message):
    with pytest.raises(ValueError, match=message):
        build_prompt("Hallo", source_lang="deu_Latn", target_lang="eng_Latn", prompt=template, examples=examples)


def test_example_equal_to_a_scored_source_is_refused(words):
    model, tokenizer = words
    with pytest.raises(ValueError, match=r"examples\[1\].*separate pool"):
        translate(
            model,
            tokenizer,
            ["one", "two"],
            source_lang="deu_Latn",
            target_lang="eng_Latn",
            examples=[("la", "la"), ("two ", "zwei")],
        )
    with pytest.raises(ValueError, match=r"examples\[0\]: expected a \(source, target\) pair"):
        translate(model, tokenizer, ["one"], source_lang="deu_Latn", target_lang="eng_Latn", examples=["la"])


def test_bad_arguments(words):
    model, tokenizer = words
    kwargs = dict(source_lang="deu_Latn", target_lang="eng_Latn")
    with pytest.raises(ValueError, match="not one string"):
        translate(model, tokenizer, "one", **kwargs)
    with pytest.raises(ValueError, match=r"sources\[1\]"):
        translate(model, tokenizer, ["one", None], **kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        translate(model, tokenizer, ["one"], batch_size=0, **kwargs)
    with pytest.raises(ValueError, match="max_new_tokens"):
        translate(model, tokenizer, ["one"], max_new_tokens=0, **kwargs)
    assert translate(model, tokenizer, [], **kwargs) == []


# ---------------------------------------------------------------- generation


def test_stops_at_newline_eos_or_max_new_tokens(words):
    model, tokenizer = words
    kwargs = dict(source_lang="deu_Latn", target_lang="eng_Latn", prompt="{source}", max_new_tokens=5)
    calls, handle = count_forward_calls(model)
    try:
        assert translate(model, tokenizer, ["one"], **kwargs) == ["eins"]
        assert len(calls) == 2  # "eins", "\n", then the newline stops it (not 5 steps and a cut)
        calls.clear()
        assert translate(model, tokenizer, ["dog"], **kwargs) == [""]
        assert len(calls) == 1  # EOS straight away
        calls.clear()
        assert translate(model, tokenizer, ["spin"], **kwargs) == ["loop loop loop loop loop"]
        assert len(calls) == 5
    finally:
        handle.remove()


def test_fewshot_path_generates_after_target_label(words):
    model, tokenizer = words
    # The prompt ends with "English:", whose successor chain is "one eins \n": the answer is cut at the newline.
    out = translate(
        model,
        tokenizer,
        ["zwei", "la la"],
        source_lang="deu_Latn",
        target_lang="eng_Latn",
        prompt="fewshot",
        examples=[("drei", "dog")],
        max_new_tokens=8,
    )
    assert out == ["one eins", "one eins"]


def test_order_kept_after_length_sorting_and_mixed_stops(words):
    model, tokenizer = words
    sources = ["two", "la la la one", "dog", "la two", "la la la la la spin", "one"]
    expected = ["zwei drei", "eins", "", "zwei drei", "loop loop loop", "eins"]
    for batch_size in (1, 2, 4, 16):
        out = translate(
            model,
            tokenizer,
            sources,
            source_lang="deu_Latn",
            target_lang="eng_Latn",
            prompt="{source}",
            batch_size=batch_size,
            max_new_tokens=3,
        )
        assert out == expected, batch_size


def test_chat_path_feeds_one_bos(words):
    model, _ = words
    tokenizer = word_tokenizer(CHAT_TEMPLATE)
    seen = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["input_ids"].clone()), with_kwargs=True
    )
    try:
        out = translate(
            model,
            tokenizer,
            ["la two", "one"],
            source_lang="deu_Latn",
            target_lang="eng_Latn",
            prompt="auto",
            max_new_tokens=4,
            share_prefix=False,  # whole prompts in the first forward (else the chat preamble comes from a cache)
        )
    finally:
        handle.remove()
    assert out == ["zwei drei", "eins"]
    first_step = seen[0]
    assert (first_step == tokenizer.bos_token_id).sum(dim=1).tolist() == [1, 1]


def test_batched_equals_one_at_a_time_on_random_model():
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=3)
    sources = corpus_sentences()[:9]
    kwargs = dict(
        source_lang="eng_Latn",
        target_lang="isl_Latn",
        max_new_tokens=6,
        examples=[(corpus_sentences()[-1], corpus_sentences()[-2])],
    )
    batched = translate(model, tokenizer, sources, batch_size=4, **kwargs)
    single = [translate(model, tokenizer, [s], batch_size=1, **kwargs)[0] for s in sources]
    assert batched == single
    assert len(set(batched)) > 1  # a random model still gives different outputs for different inputs


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2", "peft"])
def test_the_shared_fewshot_prefix_runs_once_and_changes_no_translation(model_type):
    """The few-shot block every prompt starts with is one forward; each batch's generate starts from its cache, the
    rows padded between the block and their own tokens. The translations equal those without the shared prefix."""
    from neuronxa_callback.quality.generation import translate_plan

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama" if model_type == "peft" else model_type, tokenizer=tokenizer, seed=0)
    base = model
    if model_type == "peft":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["gate_proj"], init_lora_weights=False))
    sentences = corpus_sentences()
    kwargs = dict(
        source_lang="isl_Latn",
        target_lang="eng_Latn",
        max_new_tokens=6,
        batch_size=3,
        examples=[(sentences[20 + k], sentences[23 + k]) for k in range(3)],
    )
    sources = sentences[:8]
    plan = translate_plan(tokenizer, sources, **{k: v for k, v in kwargs.items() if k != "max_new_tokens"})
    assert plan.shared >= 8 and all(ids[: plan.shared] == plan.input_ids[0][: plan.shared] for ids in plan.input_ids)
    widths = []
    hook = base.register_forward_pre_hook(  # PEFT's generate calls the base model's
        lambda _, __, kw: widths.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        shared = translate(model, tokenizer, sources, **kwargs)
    finally:
        hook.remove()
    assert widths[0] == (1, plan.shared)  # the prefix, once
    # Each batch's first step feeds only the rows' own tokens (the prefix comes from the cache).
    assert max(w[1] for w in widths[1:]) <= max(map(len, plan.input_ids)) - plan.shared
    assert shared == translate(model, tokenizer, sources, share_prefix=False, **kwargs)
    assert shared == [translate(model, tokenizer, [s], **{**kwargs, "batch_size": 1})[0] for s in sources]
    assert len(set(shared)) > 1


def _snapshot(model, tokenizer):
    return (
        [m.training for m in model.modules()],
        [m.gradient_checkpointing for m in model.modules() if hasattr(m, "gradient_checkpointing")],
        model.config.use_cache,
        tokenizer.padding_side,
    )


def test_state_restored_and_generation_runs_with_cache_no_grad():
    tokenizer = tiny_tokenizer(padding_side="right")
    model = tiny_model("llama", tokenizer=tokenizer)
    model.train()
    model.model.layers[1].eval()  # a mixed state must survive too
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x name; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    checkpoint_func = model.model.layers[0]._gradient_checkpointing_func
    before = _snapshot(model, tokenizer)
    assert any(before[1]) and before[0][0]

    during = []

    def observe(module, args, kwargs):
        during.append(
            (
                module.training,
                model.model.layers[0].gradient_checkpointing,
                kwargs.get("use_cache"),
                torch.is_grad_enabled(),
                tokenizer.padding_side,
            )
        )

    handle = model.register_forward_pre_hook(observe, with_kwargs=True)
    try:
        translate(
            model,
            tokenizer,
            corpus_sentences()[:3],
            source_lang="eng_Latn",
            target_lang="isl_Latn",
            batch_size=2,
            max_new_tokens=3,
        )
    finally:
        handle.remove()
    assert during and all(d == (False, False, True, False, "right") for d in during)
    assert _snapshot(model, tokenizer) == before
    assert model.model.layers[0]._gradient_checkpointing_func is checkpoint_func


def test_state_restored_after_an_exception():
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer)
    model.train()
    model.config.use_cache = False
    before = _snapshot(model, tokenizer)

    def fail(module, args):
        raise RuntimeError("boom")

    handle = model.model.layers[0].register_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            translate(model, tokenizer, ["The team won."], source_lang="eng_Latn", target_lang="isl_Latn")
    finally:
        handle.remove()
    assert _snapshot(model, tokenizer) == before
    assert torch.is_grad_enabled()


def test_generation_mode_is_reusable_context():
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer)
    model.train()
    with generation_mode(model, tokenizer):
        assert not model.training and not torch.is_grad_enabled()
    assert model.training and torch.is_grad_enabled()


def test_peft_model_translates_like_its_base_and_is_restored():
    from peft import LoraConfig, get_peft_model

    tokenizer = tiny_tokenizer()
    base = tiny_model("llama", tokenizer=tokenizer, seed=5)
    sources = corpus_sentences()[10:14]
    kwargs = dict(source_lang="isl_Latn", target_lang="eng_Latn", max_new_tokens=5, batch_size=3)
    expected = translate(base, tokenizer, sources, **kwargs)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.1))
    peft_model.train()
    before = [m.training for m in peft_model.modules()]
    # LoRA's B matrices start at zero, so the wrapped model computes the same function.
    assert translate(peft_model, tokenizer, sources, **kwargs) == expected
    assert [m.training for m in peft_model.modules()] == before


def test_four_bit_model(tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    # 4-bit blocks hold 64 values: a layer narrower than that cannot be quantized, so this one is wider than tiny_model.
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            tmp_path,
            quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
            device_map="cpu",
        )
    except (ImportError, RuntimeError, ValueError) as error:  # bitsandbytes builds without CPU 4-bit kernels
        pytest.skip(f"4-bit loading unavailable here: {error}")
    out = translate(
        model,
        tokenizer,
        corpus_sentences()[:3],
        source_lang="eng_Latn",
        target_lang="isl_Latn",
        batch_size=2,
        max_new_tokens=4,
    )
    assert len(out) == 3 and all(isinstance(t, str) and "\n" not in t for t in out)


def test_make_translations():
    rows = make_translations(["a", "b"], ["x", "y"], ["ra", "rb"], ids=["s1", "s2"])
    assert rows == [Translation("s1", "a", "x", "ra"), Translation("s2", "b", "y", "rb")]
    assert rows[0].to_dict() == {"id": "s1", "source": "a", "hypothesis": "x", "reference": "ra"}
    assert make_translations(["a"], ["x"]) == [Translation("0", "a", "x", None)]
    with pytest.raises(ValueError, match="hypotheses has 1 entries but sources has 2"):
        make_translations(["a", "b"], ["x"])


# ---------------------------------------------------------------- the real model


def _ntrex_lines(ntrex_dir, name):
    path = ntrex_dir / "NTREX-128" / name
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").splitlines()]  # the files are CRLF


def _short_examples(german, english, k=3):
    # From lines never scored (1000 on) and short (8-14 words), so the 3-shot prompt stays ~150 tokens.
    picked = [i for i in range(1000, len(german)) if 8 <= len(german[i].split()) <= 14][:k]
    return [(german[i], english[i]) for i in picked]


@pytest.mark.integration
def test_gemma_translates_ntrex_deu_eng(gemma, ntrex_dir):
    import sacrebleu

    model, tokenizer = gemma
    german = _ntrex_lines(ntrex_dir, "newstest2019-ref.deu.txt")
    english = _ntrex_lines(ntrex_dir, "newstest2019-src.eng.txt")
    sources, references = german[:6], english[:6]
    kwargs = dict(
        source_lang="deu_Latn",
        target_lang="eng_Latn",
        prompt="fewshot",
        examples=_short_examples(german, english),
        max_new_tokens=48,
    )
    padding_side = tokenizer.padding_side
    batched = translate(model, tokenizer, sources, batch_size=6, **kwargs)
    chrf = sacrebleu.CHRF(word_order=2).corpus_score(batched, [references]).score
    # NOTES: chrF ~43 on 100 sentences; echoing the German source scores far lower (checked in the assertion below).
    assert chrf > 30, (chrf, batched)
    assert chrf > sacrebleu.CHRF(word_order=2).corpus_score(sources, [references]).score + 10
    assert all(h and "\n" not in h for h in batched)
    single = [translate(model, tokenizer, [s], batch_size=1, **kwargs)[0] for s in sources]
    assert single == batched
    assert tokenizer.padding_side == padding_side and not model.training
