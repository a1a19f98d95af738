"""Read scalars back from tensorboard event files without TensorFlow or tensorboard.

An event file is a sequence of records: uint64 length, uint32 masked CRC of the length,
the serialized `Event` protobuf, uint32 masked CRC of the data. CRCs are not checked:
a truncated last record (a run still writing) simply ends the file.
"""
from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

from tensorboardX.proto import event_pb2


def iter_events(path: Path):
    with open(path, "rb") as handle:
        while True:
            header = handle.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = handle.read(length)
            if len(data) < length or len(handle.read(4)) < 4:
                return
            event = event_pb2.Event()
            event.ParseFromString(data)
            yield event


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file under `folder`, in file order."""
    scalars: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path in sorted(Path(folder).rglob("events.out.tfevents.*")):
        for event in iter_events(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars[value.tag].append((event.step, value.simple_value))
    return dict(scalars)
