"""Translation prompts: few-shot lines for base models, the tokenizer's chat template for instruct models, or a template.

Usage::

    from neuronxa_callback.quality.prompts import build_prompt

    build_prompt("Guten Morgen.", source_lang="deu_Latn", target_lang="eng_Latn",
                 examples=[("Danke.", "Thank you.")])
    # 'German: Danke.\\nEnglish: Thank you.\\n\\nGerman: Guten Morgen.\\nEnglish:'

    build_prompt("Guten Morgen.", source_lang="deu_Latn", target_lang="eng_Latn",
                 prompt="Translate {source_lang} to {target_lang}: {source} =>")

Prompts name languages in words ("German"), since models have read "German:" far more often than "deu_Latn:".
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

PROMPT_STYLES = ("auto", "fewshot", "chat")
TEMPLATE_FIELDS = ("source_lang", "target_lang", "source", "examples")

# FLORES-200 style codes -> English names. A fallback for when neuronxa_callback.data.languages has no answer.
_LANGUAGE_NAMES = {
    "eng_Latn": "English",
    "isl_Latn": "Icelandic",
    "deu_Latn": "German",
    "fra_Latn": "French",
    "spa_Latn": "Spanish",
    "ita_Latn": "Italian",
    "por_Latn": "Portuguese",
    "nld_Latn": "Dutch",
    "dan_Latn": "Danish",
    "swe_Latn": "Swedish",
    "nob_Latn": "Norwegian Bokmål",
    "fin_Latn": "Finnish",
    "fao_Latn": "Faroese",
    "pol_Latn": "Polish",
    "ces_Latn": "Czech",
    "rus_Cyrl": "Russian",
    "ukr_Cyrl": "Ukrainian",
    "ell_Grek": "Greek",
    "tur_Latn": "Turkish",
    "arb_Arab": "Arabic",
    "heb_Hebr": "Hebrew",
    "hin_Deva": "Hindi",
    "ben_Beng": "Bengali",
    "jpn_Jpan": "Japanese",
    "kor_Hang": "Korean",
    "zho_Hans": "Chinese",
    "zho_Hant": "Chinese (Traditional)",
    "vie_Latn": "Vietnamese",
    "tha_Thai": "Thai",
    "ind_Latn": "Indonesian",
    "swh_Latn": "Swahili",
}


class PromptError(ValueError):
    """A prompt style, template or few-shot example that cannot be used."""


def language_name(code: str) -> str:
    """'isl_Latn' -> 'Icelandic'. Asks neuronxa_callback.data.languages first (if present), then a small table; else the code."""
    try:
        from neuronxa_callback.data import languages  # written by a colleague; optional here
    except ImportError:
        lookup = None
    else:
        lookup = getattr(languages, "language_name", None)
    if callable(lookup):
        try:
            name = lookup(code)
        except (KeyError, ValueError):
            name = None
        if name:
            return str(name)
    return _LANGUAGE_NAMES.get(code, code)


def _one_line(text: str) -> str:
    # Line-based prompts end an answer at the newline, so a newline inside a sentence would end it early.
    return " ".join(text.splitlines()).strip()


def check_examples(examples: Sequence[Sequence[str]], sources: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Validate few-shot (source, target) pairs and refuse any whose source is also a sentence being scored.

    Few-shot examples must come from a separate pool: an example that is also a scored sentence hands the model its
    answer and inflates the score.
    """
    checked = []
    for i, example in enumerate(examples):
        if isinstance(example, str) or len(example) != 2 or not all(isinstance(t, str) for t in example):
            raise PromptError(f"examples[{i}]: expected a (source, target) pair of strings, got {example!r}")
        checked.append((example[0], example[1]))
    scored = {_one_line(s) for s in sources}
    for i, (source, _) in enumerate(checked):
        if _one_line(source) in scored:
            raise PromptError(
                f"examples[{i}]: its source {source[:60]!r} is also one of the sentences to translate; "
                "draw few-shot examples from a separate pool"
            )
    return checked


def template_fields(template: str) -> list[str]:
    """The {fields} a template uses; PromptError for a field other than TEMPLATE_FIELDS or a malformed template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise PromptError(
            f"prompt template {template!r} is malformed ({error}); write literal braces as {{{{ }}}}"
        ) from None
    fields = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            raise PromptError(
                f"prompt template has an unknown field {{{field}}}; allowed fields: "
                + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                + " (write literal braces as {{ }})"
            )
        fields.append(field)
    return fields


def resolve_style(prompt: str, tokenizer: Any = None) -> str:
    """'auto' -> 'chat' when the tokenizer has a chat template, else 'fewshot'; a template string -> 'template'."""
    if not isinstance(prompt, str):
        raise PromptError(f"prompt: expected one of {PROMPT_STYLES} or a template string, got {type(prompt).__name__}")
    if prompt == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "fewshot"
    if prompt in PROMPT_STYLES:
        return prompt
    if "{" in prompt:
        return "template"
    raise PromptError(
        f"prompt={prompt!r}: expected one of {PROMPT_STYLES} or a template string with {{source}} "
        f"(fields: {', '.join(TEMPLATE_FIELDS)})"
    )


def _fewshot_block(examples: Sequence[tuple[str, str]], source_name: str, target_name: str) -> str:
    return "".join(f"{source_name}: {_one_line(s)}\n{target_name}: {_one_line(t)}\n\n" for s, t in examples)


def _chat_instruction(source: str, source_name: str, target_name: str) -> str:
    return (
        f"Translate the following {source_name} text into {target_name}. "
        f"Reply with the {target_name} translation only, on one line.\n\n{_one_line(source)}"
    )


def build_prompt(
    source: str,
    *,
    source_lang: str,
    target_lang: str,
    prompt: str = "fewshot",
    examples: Sequence[Sequence[str]] = (),
    tokenizer: Any = None,
) -> str:
    """The prompt text for one source sentence (see the module docstring for the styles).

    "chat" (and "auto" with a chat tokenizer) renders the tokenizer's chat template, each example as a user/assistant
    turn, and ends with the generation prompt; the text already holds the template's special tokens (e.g. <bos>), so
    tokenize it with add_special_tokens=False.
    """
    examples = check_examples(examples)
    source_name, target_name = language_name(source_lang), language_name(target_lang)
    style = resolve_style(prompt, tokenizer)
    if style == "fewshot":
        return (
            _fewshot_block(examples, source_name, target_name) + f"{source_name}: {_one_line(source)}\n{target_name}:"
        )
    if style == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise PromptError(
                "prompt='chat' needs a tokenizer with a chat_template; use prompt='fewshot' for base models"
            )
        messages = []
        for example_source, example_target in examples:
            messages.append({"role": "user", "content": _chat_instruction(example_source, source_name, target_name)})
            messages.append({"role": "assistant", "content": _one_line(example_target)})
        messages.append({"role": "user", "content": _chat_instruction(source, source_name, target_name)})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    fields = template_fields(prompt)
    if "source" not in fields:
        raise PromptError(
            f"prompt template {prompt!r} has no {{source}} field: the sentence would never reach the model"
        )
    if examples and "examples" not in fields:
        raise PromptError(
            f"prompt template {prompt!r} has no {{examples}} field, so the {len(examples)} examples would be ignored"
        )
    return prompt.format(
        source_lang=source_name,
        target_lang=target_name,
        source=_one_line(source),
        examples=_fewshot_block(examples, source_name, target_name),
    )


def training_example(source: str, target: str, *, source_lang: str, target_lang: str) -> tuple[str, str]:
    """(prompt, completion) to fine-tune on, in the zero-shot prompt format the callback translates with, e.g.
    ("Icelandic: Halló.\nEnglish:", " Hello."): training and measuring then read alike."""
    return build_prompt(source, source_lang=source_lang, target_lang=target_lang, prompt="fewshot"), f" {target}"
