"""What a user who ran `pip install neuronxa_callback-*.whl` gets: run by tools/wheel_smoke.py inside the fresh venv,
from a directory outside the checkout, so nothing can come from the source tree.

    <venv>/bin/python tools/wheel_smoke_checks.py EXPECTED_VERSION LICENSE_FILE

Exit 0 when every check passes; each failure is printed with what was expected.
"""

from __future__ import annotations

import subprocess
import sys
import time
from importlib import metadata, resources
from pathlib import Path


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"wheel smoke: {' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main(expected_version: str, license_file: str) -> None:
    started = time.perf_counter()
    bin_dir = Path(sys.executable).parent
    import neuronxa_callback

    location = Path(neuronxa_callback.__file__).resolve()
    assert Path(sys.prefix).resolve() in location.parents, f"imported from {location}, not from the venv {sys.prefix}"
    assert neuronxa_callback.__version__ == expected_version, (neuronxa_callback.__version__, expected_version)

    # The command line: --version, and the help of every subcommand (each builds its parser and imports its module).
    neuronxa = str(bin_dir / "neuronxa")
    printed = _run(neuronxa, "--version").strip()
    assert printed == f"neuronxa {expected_version}", f"neuronxa --version printed {printed!r}"
    from neuronxa_callback.cli import build_parser

    parser = build_parser()
    subcommands = sorted(next(a for a in parser._actions if a.dest == "command").choices)  # argparse keeps them here
    assert {"score", "translate", "report", "correlate", "doctor"} <= set(subcommands), subcommands
    for subcommand in subcommands:
        assert "usage: neuronxa" in _run(neuronxa, subcommand, "--help"), subcommand
    doctor = _run(neuronxa, "doctor")
    assert f"neuronxa_callback {expected_version}" in doctor, doctor

    # The packaged NTREX-128 subset travels with its own licence and README; the code's LICENSE is in the dist-info.
    ntrex = resources.files("neuronxa_callback").joinpath("data", "packaged", "ntrex128")
    for name in ("LICENSE.md", "README.md", "LANGUAGES.tsv", "ntrex128_eval.jsonl.gz", "ntrex128_fewshot.jsonl.gz"):
        assert ntrex.joinpath(name).is_file(), f"packaged NTREX file missing from the wheel: {name}"
    assert "Attribution-ShareAlike 4.0" in ntrex.joinpath("LICENSE.md").read_text(encoding="utf-8")
    files = metadata.distribution("neuronxa_callback").files or []
    licenses = [file for file in files if file.name == "LICENSE" and ".dist-info" in str(file)]
    assert licenses, f"no LICENSE in the dist-info: {[str(f) for f in files if '.dist-info' in str(f)]}"
    assert licenses[0].read_text() == Path(license_file).read_text(), "the dist-info LICENSE differs from LICENSE"
    assert metadata.metadata("neuronxa_callback")["License-Expression"] == "Apache-2.0"

    # A tiny score on the packaged pairs: the library works end to end without the checkout or the hub.
    from neuronxa_callback import load_parallel, measure_alignment
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    data = load_parallel("ntrex", languages=("isl_Latn",), num_pairs=12)
    tokenizer = tiny_tokenizer()
    report = measure_alignment(tiny_model("llama", tokenizer=tokenizer), tokenizer, data, representations="nas")
    score = report.mean("nasca", "eng_Latn-isl_Latn")
    assert 0.0 <= score <= 1.0, score
    print(
        f"wheel smoke: {len(subcommands)} subcommands, tiny NASCA {score:.3f}, checks {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
