"""Hand-made measurement records (the JSONL schema) and a reader of W&B offline run files, shared by the tests."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

PAIR = "eng_Latn-isl_Latn"


def make_record(step: int, nasca: list[float], *, chrf: float | None = None, index: int = 0) -> dict:
    """A record in the schema of docs/DESIGN.md ("JSONL record"), with synthetic numbers."""
    record = {
        "schema": 1,
        "event": "measurement",
        "step": step,
        "epoch": step / 100,
        "trigger": "step",
        "time": "2026-11-22T01:00:00+00:00",
        "measurement_index": index,
        "pairs": {
            PAIR: {
                "num_layers": len(nasca),
                "nasca": nasca,
                "nasca_mean": sum(nasca) / len(nasca),
                "nasca_pvalue": 0.01,
                "navca": [v / 2 for v in nasca],
                "navca_mean": sum(nasca) / len(nasca) / 2,
            }
        },
        "timing": {"alignment_seconds": 1.5},
        "data": {"origin": "synthetic", "ids": [f"s{i}" for i in range(10)]},
    }
    if chrf is not None:
        record["quality"] = {
            PAIR: {
                "direction": "isl_Latn->eng_Latn",
                "chrf": chrf,
                "bleu": chrf / 2,
                "comet": None,
                "cometkiwi": None,
                "signatures": {"chrf": "chrF2|test"},
                "translations": [
                    {"id": "s0", "source": "Halló heimur", "hypothesis": "Hello world", "reference": "Hello, world"}
                ],
            }
        }
    return record


RECORDS = [
    make_record(0, [0.1, 0.2, 0.1], chrf=19.0),
    make_record(50, [0.1, 0.3, 0.2], chrf=19.5, index=1),
    make_record(100, [0.2, 0.4, 0.2], chrf=20.5, index=2),
]


def read_wandb_records(run_file: Path):
    """Records of a .wandb file: a LevelDB-style log (7-byte ':W&B' header, 32 KiB blocks of
    [crc32 u32, length u16, type u8] chunks: 1 full, 2 first, 3 middle, 4 last) of wandb_internal_pb2.Record.
    wandb 0.31 has no Python reader any more (its Go core writes the file), so this is the format, read directly."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0)
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # block trailer too small for a header: padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        position += 7
        chunk = data[position : position + length]
        position += length
        if kind == 0:
            continue
        if kind in (1, 2):
            pending = chunk
        else:
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wait_for_run_file(run_file: Path, timeout: float = 30.0):
    """run.finish() can return before wandb-core has flushed the file (seen in 1 of 4 runs): wait for the exit record."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_wandb_records(run_file)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def items_to_dict(items) -> dict:
    """History/summary items -> {metric name: value}; W&B splits a dict value (an image, a table) over
    nested_key [name, field], so those are rebuilt as dicts."""
    result: dict = {}
    for item in items:
        keys = [item.key] if item.key else list(item.nested_key)
        value = json.loads(item.value_json)
        if len(keys) == 1:
            result[keys[0]] = value
        else:
            target = result.setdefault(keys[0], {})
            for key in keys[1:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = value
    return result
