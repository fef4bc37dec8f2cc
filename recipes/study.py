"""Study: does eng-isl alignment (NeuronXA NASCA) track translation quality while Gemma 3 270M is fine-tuned? Several
seeds of the demo, many measurements each, quality at every one, then the analysis page.

Launch (from the repository root; needs no network)::

    make study                                   # = .venv/bin/python recipes/study.py  (3 seeds; see the docs page)
    .venv/bin/python recipes/study.py --seeds 0,1,2,3 --parallel 2 --output-dir runs/study
    .venv/bin/python recipes/study.py --analyze-only --output-dir runs/study     # the page from finished runs

Each seed is one run of recipes/demo.py (its own process and --seed: the order of the training batches) with the
study's settings: full fine-tuning of the MLP weights on the packaged NTREX-128 en-is lines 106-1997 in both
directions, NASCA of eng-isl and of the control pair eng-deu on NTREX lines 1-100 at step 0 and every --eval-steps
steps (12 measurements with the defaults; --language picks another trained language), the reference likelihood
of the first --quality-pairs isl->eng references at every measurement and chrF of the model's own isl->eng
translations of them at every --quality-every-th and the last (7 with the defaults). Runs go side by side
(--parallel, one torch thread each: on 2 shared cores two single-threaded runs get more of the machine than one).
Arguments this script does not know go to every demo run (e.g. --lr 2e-4, --model DIR for a small test). A seed
whose run finished (demo_summary.json present) is not run again.

At the end: <output-dir>/study.md (the results page: per seed and pooled r of NASCA with each quality signal on
levels, changes and controlling for step; per-layer r; the control pair), its figures and study.json
(neuronxa_callback.offline.study).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPES = Path(__file__).resolve().parent
PIVOT, CONTROL_PAIR = "eng_Latn", "eng_Latn-deu_Latn"
RESULTS_MARKER = "<!-- study results: written by recipes/study.py --publish -->"


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--output-dir", type=Path, default=Path("runs/study"))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one demo run each")
    parser.add_argument(
        "--language",
        default="isl_Latn",
        help="the trained language (demo.py --language); another than isl_Latn needs its training lines, e.g. "
        "--train-data $NEURONXA_SHARED/data/ntrex128 --train-range 106:1997",
    )
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--steps", type=int, default=44, help="optimizer steps per run")
    parser.add_argument("--eval-steps", type=int, default=4, help="measure every k steps (44 / 4: 12 measurements)")
    parser.add_argument(
        "--quality-every", type=int, default=2, help="chrF at every k-th measurement and the last (the likelihood: all)"
    )
    parser.add_argument(
        "--quality-pairs", type=int, default=32, help="sentences translated for chrF and scored for the likelihood"
    )
    parser.add_argument("--analyze-only", action="store_true", help="write the page from the runs already there")
    parser.add_argument(
        "--publish",
        type=Path,
        default=None,
        help="also copy the results and figures into this docs page (e.g. docs/study/index.md): everything below "
        f"its {RESULTS_MARKER!r} line is replaced",
    )
    args, demo_args = parser.parse_known_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds expects comma-separated integers, got {args.seeds!r}")
    if not args.seeds:
        parser.error("--seeds: no seed given")
    for name in ("parallel", "threads", "steps", "eval_steps", "quality_every", "quality_pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args, demo_args


def demo_command(args: argparse.Namespace, seed: int, demo_args: list[str]) -> list[str]:
    """The demo run of one seed: the study's settings, then whatever else was passed (later flags win)."""
    return [
        sys.executable,
        str(RECIPES / "demo.py"),
        "--output-dir",
        str(args.output_dir / f"seed-{seed}"),
        "--seed",
        str(seed),
        "--language",
        args.language,
        "--steps",
        str(args.steps),
        "--eval-steps",
        str(args.eval_steps),
        "--quality-every",
        str(args.quality_every),
        "--quality-pairs",
        str(args.quality_pairs),
        "--threads",
        str(args.threads),
        # Every run must reach its last measurement: no early stop for time (the demo's 14-minute promise).
        "--time-budget-minutes",
        "100000",
        "--no-wandb",
        "--no-trackio",
        "--no-report",
        *demo_args,
    ]


def run_seed(args: argparse.Namespace, seed: int, demo_args: list[str]) -> dict:
    """Run (or skip, when finished before) one seed; its output goes to <output-dir>/seed-<seed>/log.txt."""
    run_dir = args.output_dir / f"seed-{seed}"
    if (run_dir / "demo_summary.json").is_file():
        print(f"[study] seed {seed}: finished before, not run again ({run_dir})", flush=True)
        return {"seed": seed, "returncode": 0, "seconds": None, "skipped": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"[study] seed {seed}: started (log: {run_dir / 'log.txt'})", flush=True)
    with open(run_dir / "log.txt", "w", encoding="utf-8") as log:
        completed = subprocess.run(demo_command(args, seed, demo_args), stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    print(f"[study] seed {seed}: exit {completed.returncode} after {seconds / 60:.1f} min", flush=True)
    return {"seed": seed, "returncode": completed.returncode, "seconds": round(seconds, 1), "skipped": False}


def main(argv=None) -> int:
    args, demo_args = parse_args(argv)
    args.output_dir = args.output_dir.resolve()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started, load_before = time.monotonic(), os.getloadavg()
    runs: list[dict] = []
    if not args.analyze_only:
        print(
            f"[study] seeds {args.seeds}, {args.parallel} at a time, {args.threads} torch thread(s) each; "
            f"load average {load_before[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            runs = list(pool.map(lambda seed: run_seed(args, seed, demo_args), args.seeds))
    wall = time.monotonic() - started
    load_after = os.getloadavg()
    record = args.output_dir / "study_runs.json"
    if any(not r["skipped"] for r in runs):
        timing = {"runs": runs, "wall_seconds": round(wall, 1), "load_before": load_before, "load_after": load_after}
        record.write_text(json.dumps(timing) + "\n", encoding="utf-8")
    elif record.is_file():
        # Nothing ran now: the page keeps the timing of the invocation that made the runs.
        made = json.loads(record.read_text(encoding="utf-8"))
        runs, wall, load_before, load_after = (
            made["runs"],
            made["wall_seconds"],
            made["load_before"],
            made["load_after"],
        )

    from neuronxa_callback.offline.study import analyze_study, load_study_runs, write_study_page

    finished = [
        args.output_dir / f"seed-{s}"
        for s in args.seeds
        if (args.output_dir / f"seed-{s}" / "demo_summary.json").is_file()
    ]
    failed = [r["seed"] for r in runs if r["returncode"] != 0]
    if not finished:
        print(f"[study] no finished run under {args.output_dir}; failed seeds: {failed}", flush=True)
        return 1
    summaries = {p.name: json.loads((p / "demo_summary.json").read_text(encoding="utf-8")) for p in finished}
    from neuronxa_callback.data.languages import normalize_language

    pair = f"{PIVOT}-{normalize_language(args.language)}"
    analysis = analyze_study(load_study_runs(finished), pair=pair, control_pair=CONTROL_PAIR)
    paths = write_study_page(
        analysis, args.output_dir, intro=_intro(args, demo_args, summaries, runs, wall, load_before, load_after)
    )
    if args.publish is not None:
        publish(paths, args.publish)
        print(f"[study] results copied into {args.publish}", flush=True)
    print(f"[study] {len(finished)} runs analysed; failed seeds: {failed or 'none'}", flush=True)
    print(f"Results: {paths['page']}")
    return 1 if failed else 0


def publish(paths: dict[str, Path], page: Path) -> None:
    """Replace what follows RESULTS_MARKER in `page` with the results page (its title one level down) and copy the
    figures next to it. A page without the marker raises ValueError naming it."""
    import shutil

    text = page.read_text(encoding="utf-8")
    if RESULTS_MARKER not in text:
        raise ValueError(f"--publish: {page} has no line {RESULTS_MARKER!r} to put the results under")
    results = paths["page"].read_text(encoding="utf-8")
    results = "\n".join(("#" + line if line.startswith("#") else line) for line in results.splitlines())
    page.write_text(text.split(RESULTS_MARKER)[0] + RESULTS_MARKER + "\n\n" + results + "\n", encoding="utf-8")
    for key in ("series", "scatter", "layers"):
        shutil.copyfile(paths[key], page.parent / paths[key].name)


def _intro(args, demo_args, summaries: dict, runs: list[dict], wall: float, load_before, load_after) -> str:
    first = next(iter(summaries.values()))
    per_run = ", ".join(
        f"{name}: {s['steps_done']} steps in {s['wall_seconds'] / 60:.1f} min" for name, s in summaries.items()
    )
    ran = [r for r in runs if not r["skipped"]]
    timing = (
        f"Made in {wall / 60:.1f} min wall for {len(ran)} run(s), {args.parallel} at a time with "
        f"{args.threads} torch thread(s) each; load average {load_before[0]:.1f} at start, {load_after[0]:.1f} at end "
        f"on {os.cpu_count()} cores."
        if ran
        else "Analysis of runs made earlier."
    )
    extra = f" Extra demo arguments: `{' '.join(demo_args)}`." if demo_args else ""
    return (
        f"Made by `recipes/study.py` (`make study`): {len(summaries)} seeds of `recipes/demo.py`, model "
        f"{first['model']}, {first['mode']}, trained on eng-{args.language} ({first['settings']['train_data']}, "
        f"{first['settings']['directions']} directions); NASCA on NTREX lines 1-100 every {args.eval_steps} steps; "
        f"reference likelihood of the first {args.quality_pairs} {args.language}->eng references at every "
        "measurement, chrF of the model's own translations of them at every "
        f"{args.quality_every}th measurement and the last.{extra}\n\nRuns: {per_run}. {timing}"
    )


if __name__ == "__main__":
    sys.exit(main())
