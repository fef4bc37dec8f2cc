"""A tiny real Trainer run with NeuronXACallback attached, reporting to the trackers named on the command line.

Usage (a separate process: trackio reads $TRACKIO_DIR when it is first imported)::

    TRACKIO_DIR=... MLFLOW_TRACKING_URI=sqlite:///... WANDB_DIR=... \\
        python -m tests._tracker_run OUTPUT_DIR wandb,tensorboard,mlflow,trackio [--steps 6] [--num-pairs 8] \\
            [--measure-in worker]

Prints the Trainer's console output (PrinterCallback) and one line ``LOG_HISTORY {"log_history": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("report_to")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--eval-steps", type=int, default=2)
    parser.add_argument("--num-pairs", type=int, default=8)
    parser.add_argument("--project", default="neuronxa-test")
    parser.add_argument("--unattached", action="store_true", help="callbacks=[...] only, no attach()")
    parser.add_argument("--measure-in", default="process", help='"worker": out of band, at most 2 in flight')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("neuronxa_callback").setLevel(logging.INFO)

    from neuronxa_callback import NeuronXACallback
    from tests._runs import make_trainer

    out_of_band = {} if args.measure_in == "process" else dict(worker_threads=1, worker_max_in_flight=2)
    callback = NeuronXACallback(
        measure_in=args.measure_in,
        **out_of_band,
        eval_steps=args.eval_steps,
        quality_every=1,
        early_stopping_patience=50,
        num_pairs=args.num_pairs,
        batch_size=8,
        max_length=48,
        max_new_tokens=4,
        num_fewshot=1,
    )
    report_to = [name for name in args.report_to.split(",") if name]
    trainer = make_trainer(
        Path(args.output_dir),
        [callback] if args.unattached else [],
        max_steps=args.steps,
        report_to=report_to,
        logging_steps=1,
        run_name="tiny",
        project=args.project,
    )
    if not args.unattached:
        callback.attach(trainer)
    trainer.train()
    if "wandb" in report_to:
        import wandb

        wandb.finish()
    print("LOG_HISTORY " + json.dumps({"log_history": trainer.state.log_history}), flush=True)


if __name__ == "__main__":
    main()
