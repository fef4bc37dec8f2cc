"""The one place that adapts unbabel-comet 2.2.7 to this stack (transformers 5, numpy 2).

Usage::

    from neuronxa_callback.quality._comet_compat import import_comet

    comet = import_comet()          # imports comet, applies the patches below once, returns the module
    comet.models.str2model["regression_metric"]

unbabel-comet 2.2.7 pins transformers<5, numpy<2, protobuf<5 and huggingface-hub<1, which would break the
rest of this project, so it is installed with ``--no-deps`` next to transformers 5. What that needs, and why:

* ``encoder_forward_dict`` (transformers >= 5): ``XLMREncoder.forward`` and ``BERTEncoder.forward`` call the
  Hugging Face model with ``return_dict=False`` and unpack three values (last hidden state, pooler output,
  hidden states). comet builds these encoders with ``add_pooling_layer=False``; transformers 4 still kept the
  ``None`` pooler output in the tuple, transformers 5 drops ``None`` entries, so the unpacking fails with
  "not enough values to unpack (expected 3, got 2)". The patched forward asks for the dict output and reads the
  fields by name. Every other comet encoder (MiniLM, RemBERT, XLM-R XL) inherits one of these two forwards.
* ``pair_special_tokens`` (transformers >= 5): ``Encoder.concat_sequences`` (used by ``UnifiedMetric``, i.e.
  CometKiwi / XCOMET) calls ``tokenizer.build_inputs_with_special_tokens``, which the tokenizers-backed
  tokenizers of transformers 5 no longer have. The patch gives comet's own tokenizer instance (never the
  transformers class) the transformers-4 behaviour: ``<s> A </s></s> B </s>`` for XLM-R-style encoders
  (``size_separator == 2``) and ``[CLS] A [SEP] B [SEP]`` for BERT-style ones.
* ``comet/__init__.py`` runs ``logging.basicConfig(level=INFO)`` at import, which puts a handler on the root
  logger of the *user's* program. Library code must not configure logging, so ``import_comet`` removes what
  that call added (only when the root logger had no handlers before, i.e. when the call had an effect).
* torchmetrics 0.10 (comet's pin) imports ``pkg_resources`` and warns that it is deprecated; the warning is
  silenced for the duration of the import only. ``pkg_resources`` itself needs ``setuptools<81``.

Nothing else is patched: numpy 2 needs no change in the code paths used for scoring (tested in
tests/test_comet.py). Each patch is applied at most once (idempotent) and only when the installed versions
need it; ``applied_patches()`` lists what was applied.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import Any

logger = logging.getLogger(__name__)

SUPPORTED_COMET_VERSION = "2.2.7"
INSTALL_HINT = (
    "unbabel-comet is not installed (or one of its run-time dependencies is missing). Install it with\n"
    "    pip install --no-deps unbabel-comet==2.2.7\n"
    "    pip install 'neuronxa_callback[comet]'\n"
    "(--no-deps because comet 2.2.7 pins transformers<5 and numpy<2, which would break this package)."
)

_applied: list[str] = []
_comet_module: Any = None


class CometVersionWarning(UserWarning):
    """The installed unbabel-comet is not the version these patches were written against."""


def transformers_major() -> int:
    """Major version of the installed transformers, e.g. 5."""
    import transformers

    return int(transformers.__version__.split(".")[0])


def comet_version() -> str | None:
    """Installed unbabel-comet version from the package metadata, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("unbabel-comet")
    except metadata.PackageNotFoundError:
        return None


def check_versions() -> tuple[str, int]:
    """Return (comet version, transformers major); ImportError with the install command when comet is missing.

    Warns (CometVersionWarning) when comet is not 2.2.7: the patches target that release's source.
    """
    version = comet_version()
    if version is None:
        raise ImportError(INSTALL_HINT)
    if version != SUPPORTED_COMET_VERSION:
        warnings.warn(
            f"unbabel-comet {version} is installed; neuronxa_callback's compatibility patches were written for "
            f"{SUPPORTED_COMET_VERSION}. Scores may fail or differ; pin unbabel-comet=={SUPPORTED_COMET_VERSION}.",
            CometVersionWarning,
            stacklevel=2,
        )
    return version, transformers_major()


def applied_patches() -> tuple[str, ...]:
    """Names of the patches applied so far in this process (see the module docstring)."""
    return tuple(_applied)


def import_comet():
    """Import unbabel-comet, adapt it to this stack once, and return the ``comet`` module.

    Raises ImportError naming the install command when comet or one of its dependencies is missing.
    """
    global _comet_module
    if _comet_module is not None:
        return _comet_module
    _, major = check_versions()
    root = logging.getLogger()
    handlers_before, level_before = list(root.handlers), root.level
    try:
        with warnings.catch_warnings():
            # torchmetrics 0.10 imports pkg_resources, which warns that it is deprecated.
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            comet = importlib.import_module("comet")
            importlib.import_module("comet.models")
            importlib.import_module("comet.encoders")
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT}\nThe import failed with: {error!r}") from error
    finally:
        _undo_root_logging_config(root, handlers_before, level_before)
    if major >= 5:
        _patch_encoder_forward()
        _patch_pair_special_tokens()
    _comet_module = comet
    return comet


def _undo_root_logging_config(root: logging.Logger, handlers_before: list, level_before: int) -> None:
    """Remove the handler and level that ``logging.basicConfig`` in comet/__init__.py put on the root logger."""
    if handlers_before:
        return  # basicConfig is a no-op when the root logger already has handlers: nothing to undo
    for handler in list(root.handlers):
        if handler not in handlers_before:
            root.removeHandler(handler)
    root.setLevel(level_before)


def _patch_encoder_forward() -> None:
    if "encoder_forward_dict" in _applied:
        return
    from comet.encoders.bert import BERTEncoder
    from comet.encoders.xlmr import XLMREncoder

    def xlmr_forward(self, input_ids, attention_mask, **kwargs):
        output = self.model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, return_dict=True
        )
        last = output.last_hidden_state
        return {
            "sentemb": last[:, 0, :],
            "wordemb": last,
            "all_layers": output.hidden_states,
            "attention_mask": attention_mask,
        }

    def bert_forward(self, input_ids, attention_mask, token_type_ids=None, **kwargs):
        output = self.model(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            return_dict=True,
        )
        return {
            "sentemb": output.pooler_output,
            "wordemb": output.last_hidden_state,
            "all_layers": output.hidden_states,
            "attention_mask": attention_mask,
        }

    xlmr_forward.__doc__ = "neuronxa_callback patch: dict output (transformers 5 drops None from tuples)."
    bert_forward.__doc__ = xlmr_forward.__doc__
    XLMREncoder.forward = xlmr_forward
    BERTEncoder.forward = bert_forward
    _applied.append("encoder_forward_dict")


def _patch_pair_special_tokens() -> None:
    if "pair_special_tokens" in _applied:
        return
    from comet.encoders.base import Encoder

    original = Encoder.concat_sequences

    def concat_sequences(self, inputs, return_label_ids=False):
        _give_tokenizer_pair_builder(self)
        return original(self, inputs, return_label_ids=return_label_ids)

    concat_sequences.__doc__ = original.__doc__
    concat_sequences.__wrapped__ = original
    Encoder.concat_sequences = concat_sequences
    _applied.append("pair_special_tokens")


def _give_tokenizer_pair_builder(encoder) -> None:
    """Attach transformers-4 ``build_inputs_with_special_tokens`` to this encoder's tokenizer instance."""
    tokenizer = encoder.tokenizer
    if hasattr(tokenizer, "build_inputs_with_special_tokens"):
        return
    cls_ids, sep_ids = [tokenizer.cls_token_id], [tokenizer.sep_token_id]
    separator = sep_ids * int(encoder.size_separator)

    def build_inputs_with_special_tokens(token_ids_0, token_ids_1=None):
        if token_ids_1 is None:
            return cls_ids + list(token_ids_0) + sep_ids
        return cls_ids + list(token_ids_0) + separator + list(token_ids_1) + sep_ids

    tokenizer.build_inputs_with_special_tokens = build_inputs_with_special_tokens
