"""Out-of-band measurement: training snapshots its weights at a measured step and goes on; a worker process on this
machine (local.py) or a Ray actor (ray_actor.py) scores the snapshot with the same measurement code and sends the
pieces of the record back; the monitor writes the record through the same path as an in-process measurement.

snapshot.py: what is copied (adapter weights under PEFT, else the full state dict; gathered under FSDP / ZeRO-3) and
the base model the worker loads once. scorer.py: the worker's side (SnapshotScorer, one class for both transports).
dispatch.py: the training process's side (OutOfBand: at most k measurements in flight, results in step order,
restarts after a worker died, a bounded wait at the end).
"""
