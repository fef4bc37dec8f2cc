"""AccelerateTrackers: AlignmentMonitor's measurements into the trackers of an ``accelerate.Accelerator``.

A loop written with Accelerate needs no callback: AlignmentMonitor (monitor.py) is the plain-loop API. This sink adds
what ``accelerator.log`` gives every tracker the Accelerator was built with (TensorBoard, W&B, MLflow, ...): each
measurement's headline numbers, ``neuronxa/<pair>/nasca_mean`` ..., on the measured step. The lines a loop adds::

    from neuronxa_callback import AlignmentMonitor
    from neuronxa_callback.hosts.accelerate import AccelerateTrackers

    accelerator = Accelerator(log_with="tensorboard", project_dir="out"); accelerator.init_trackers("run")
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    monitor = AlignmentMonitor(languages=["isl_Latn"], eval_steps=50)
    monitor.begin(accelerator.unwrap_model(model), tokenizer, output_dir="out",                    # 1
                  sinks=lambda measured: [AccelerateTrackers(accelerator)])
    monitor.measure(accelerator.unwrap_model(model), tokenizer, step=0, trigger="train_begin")      # 2 the baseline
    step = 0
    for batch in loader:
        with accelerator.accumulate(model):
            ...                                                   # forward, accelerator.backward, optimizer.step
        if accelerator.sync_gradients:                            # an optimizer step: count it
            step += 1
            if monitor.due(step):                                                                  # 3
                monitor.measure(accelerator.unwrap_model(model), tokenizer, step=step)             # 4
            if monitor.should_stop:                               # plateau; every process agrees  # 5
                break
    monitor.end(accelerator.unwrap_model(model), tokenizer, step=step)                             # 6 final
    accelerator.end_training()

Every process runs the monitor's calls (they are collectives); only the main process writes the JSONL and logs.
"""

from __future__ import annotations

from typing import Any

from neuronxa_callback.hosts._scalars import HostScalarSink

__all__ = ["AccelerateTrackers"]


class AccelerateTrackers(HostScalarSink):
    """A monitor sink: each of the Accelerator's trackers gets ``tracker.log(scalars, step=record["step"])`` on the
    main process, except W&B: there the scalars go through the package's W&B sink (sinks/trackers.WandbSink), on its
    own step metric ``train/global_step`` instead of ``step=``. Out of band (measure_in="worker"/"ray") a record
    arrives after the loop has logged later steps, and W&B drops a ``step=`` lower than its current step."""

    name = "Accelerate trackers"

    def __init__(self, accelerator: Any) -> None:
        self._accelerator = accelerator
        self._wandb = None  # sinks.trackers.WandbSink on the W&B tracker's run, made when first needed

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        # The monitor builds its sinks on rank 0 only; the check keeps a sink built elsewhere by hand from logging
        # once per process.
        if not self._accelerator.is_main_process:
            return
        for tracker in self._accelerator.trackers:
            if tracker.name == "wandb":
                self._wandb_sink().log(step, dict(scalars), {}, {})
            else:
                tracker.log(dict(scalars), step=step)

    def _wandb_sink(self):
        if self._wandb is None:
            from neuronxa_callback.sinks.trackers import WandbSink

            # init=False: Accelerate's W&B tracker started the run (wandb.run); the sink joins it and never ends it.
            self._wandb = WandbSink(init=False, heatmaps=False, tables=False)
        return self._wandb
