"""Where the monitor writes: the tools people already read.

- :class:`TensorBoard` — event files with ``torch.utils.tensorboard``'s summaries (scalars,
  and histograms of each layer's update, gradient and effective lr);
- :class:`MLflow` — metrics of one MLflow run, in a local SQLite file by default or on any
  tracking server given by URI;
- :class:`JSONLines` — the monitor log: one JSON object per line, ``{"step": t, tag: value…}``
  (what ``descend diagnose`` reads best);
- :class:`CSV` — one wide CSV written on close; :meth:`Monitor.frame` gives the same table as
  a pandas DataFrame at any time.

A sink is any object with ``write(step, scalars)`` and ``close()`` (and optionally
``write_histograms(step, tensors)``).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import struct
import time
from array import array
from itertools import accumulate, chain, compress, repeat
from operator import is_not, itemgetter
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Sink(Protocol):
    def write(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class JSONLines:
    """Append ``{"step": t, **scalars}`` per write to ``path`` (NaN/Inf written as null)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")

    def write(self, step: int, scalars: dict[str, float]) -> None:
        row = {"step": step, **{k: _finite_or_none(v) for k, v in scalars.items()}}
        self._file.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class CSV:
    """Collect rows and write one wide CSV (one row per step) to ``path`` on close."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def write(self, step: int, scalars: dict[str, float]) -> None:
        self.rows.append({"step": step, **scalars})

    def frame(self):
        import pandas as pd

        if not self.rows:
            return pd.DataFrame({"step": []})
        return pd.DataFrame(self.rows).groupby("step", sort=True).first().reset_index()

    def close(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frame().to_csv(self.path, index=False)


def _fast_crc() -> None:
    """Give TensorBoard's record writer a C CRC-32C (google-crc32c) instead of its pure-Python
    one, which costs ~0.3 ms per kilobyte on the writer thread and holds the GIL meanwhile.
    The masked checksum is the same (checked here); without the package nothing changes."""
    try:
        import google_crc32c
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
        from tensorboard.summary.writer import record_writer
    except ImportError:
        return
    if getattr(record_writer.masked_crc32c, "_descend_fast", False):
        return

    def fast(data: bytes) -> int:
        x = google_crc32c.value(bytes(data))
        return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    probe = b"descend monitor \x00\xff" * 7
    if fast(probe) == masked_crc32c(probe):
        fast._descend_fast = True  # type: ignore[attr-defined]
        record_writer.masked_crc32c = fast


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


def tag_prefix(tag: str) -> bytes:
    """The bytes of a ``Summary.Value`` holding ``tag`` up to its float: field 1 (the Value,
    its length counting the 5 bytes of the float to come), field 1 within it (the tag),
    then the key of field 2 (``simple_value``, a fixed32)."""
    name = tag.encode("utf-8")
    head = b"\x0a" + _varint(len(name)) + name
    return b"\x0a" + _varint(len(head) + 5) + head + b"\x15"


def scalar_event(wall_time: float, step: int, scalars: dict[str, float], cache: dict) -> bytes:
    """The serialized ``Event(wall_time, step, summary=Summary(value=[Value(tag,
    simple_value)…]))`` of TensorBoard's ``event.proto``, written directly in the protobuf
    wire format (field 1 double, field 2 varint, field 5 message; in ``Value``, field 1 the
    tag string and field 2 the float32): the same bytes as ``SerializeToString`` (tested),
    a few µs instead of ~1 µs per tag of protobuf objects. ``cache`` keeps each tag's
    encoded bytes up to its value (the value's field is always 5 bytes long)."""
    parts = []
    for tag, value in scalars.items():
        prefix = cache.get(tag)
        if prefix is None:
            prefix = cache[tag] = tag_prefix(tag)
        value = float(value)
        try:
            packed = _F32.pack(value)
        except OverflowError:  # beyond float32: ±inf, as protobuf stores it
            packed = _F32.pack(math.copysign(math.inf, value))
        parts.append(prefix)
        parts.append(packed)
    body = b"".join(parts)
    step = int(step)
    out = b"\x09" + _F64.pack(wall_time)
    if step:  # proto3 leaves a zero out (int64: negatives as ten-byte varints)
        out += b"\x10" + _varint(step & 0xFFFFFFFFFFFFFFFF)
    return out + b"\x2a" + _varint(len(body)) + body


_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _masked_crc():
    """TensorBoard's masked CRC-32C (the C one :func:`_fast_crc` installs where it can)."""
    from tensorboard.summary.writer import record_writer

    return record_writer.masked_crc32c


def tf_record(data: bytes, crc) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data (what
    TensorBoard's ``RecordWriter.write`` writes)."""
    header = _U64.pack(len(data))
    return header + _U32.pack(crc(header)) + data + _U32.pack(crc(data))


_FIRST, _SECOND = itemgetter(0), itemgetter(1)


class _NativeEvents:
    """Scalar events encoded and framed as TFRecords in C++ (``descend_monitor_events`` in
    ``native/monitor.cpp``; CRC-32C there too): the bytes of :func:`tf_record` of
    :func:`scalar_event`, for a whole batch of rows in one call. Tags get ids and their
    encoded prefixes (:func:`tag_prefix`) on first sight; rows whose keys come again reuse
    their list of ids. Calling it gives the bytes, or None where a value is not a number
    or the kernels refuse (the caller then encodes in Python)."""

    @classmethod
    def make(cls) -> _NativeEvents | None:
        from descend.monitor import fused

        lib = fused.library()
        return None if lib is None else cls(lib)

    def __init__(self, lib) -> None:
        self.lib = lib
        self.ids: dict[str, int] = {}
        self.layouts: dict[tuple[str, ...], bytes] = {}  # a row's keys: its tags' ids
        self.counts: dict[tuple[str, ...], int] = {}
        self.prefixes = bytearray()
        self.off = array("q", [0])
        self.blob = np.zeros(1, np.uint8)
        self.widest = 0
        # the last call's arrangement: (rows, loss rows' places, tag ids, offsets, tags)
        self.frame: tuple = (-1, None, None, None, None)

    def _layout(self, keys: tuple[str, ...]) -> bytes:
        ids = array("q")
        for tag in keys:
            t = self.ids.get(tag)
            if t is None:
                prefix = tag_prefix(tag)
                t = self.ids[tag] = len(self.off) - 1
                self.prefixes += prefix
                self.off.append(len(self.prefixes))
                self.widest = max(self.widest, len(prefix))
                self.blob = np.frombuffer(bytes(self.prefixes), np.uint8)
            ids.append(t)
        packed = self.layouts[keys] = ids.tobytes()  # int64 ids, joined per call
        self.counts[keys] = len(ids)
        return packed

    def __call__(self, wall_time: float, rows: list[tuple[int, dict[str, float] | float]]):
        try:
            # every pass over all rows a C-level map (no Python frame per row)
            steps = array("q", map(_FIRST, rows))
            items = list(map(_SECOND, rows))
            kinds = list(map(type, items))
            losses = kinds.count(float)  # loss rows given as their value (see write_many)
            if losses:
                at = list(compress(range(len(items)), map(is_not, kinds, repeat(float))))
                dicts = list(map(items.__getitem__, at))
            else:
                dicts = items
            keys = list(map(tuple, dicts))
            ids = list(map(self.layouts.get, keys))
            if None in ids:
                ids = [self._layout(k) if i is None else i for i, k in zip(ids, keys)]
            if losses:  # the loss rows' runs between the others: one tag and value each
                values, prev = [], 0
                for i, row in zip(at, dicts):
                    values += items[prev:i]
                    values += row.values()
                    prev = i + 1
                values += items[prev:]
            else:
                at = None
                values = list(chain.from_iterable(map(dict.values, dicts)))
            # the rows' offsets and tag ids: as the last call's where its rows came in the
            # same arrangement (the same rows, loss rows at the same places, the same keys)
            frame = self.frame
            if frame[0] == len(items) and frame[1] == at and frame[2] == ids:
                first, tags = frame[3], frame[4]
            else:
                counts = list(map(self.counts.__getitem__, keys))
                if losses:
                    loss = self.layouts.get(_LOSS) or self._layout(_LOSS)
                    per, parts, prev = [1] * len(items), [], 0
                    for i, packed, count in zip(at, ids, counts):
                        per[i] = count
                        parts += (loss * (i - prev), packed)
                        prev = i + 1
                    parts.append(loss * (len(items) - prev))
                    tags = b"".join(parts)
                    counts = per
                else:
                    tags = b"".join(ids)  # int64 ids end to end
                first = array("q", accumulate(counts, initial=0))
                self.frame = (len(items), at, ids, first, tags)
            values = array("d", values)
        except (TypeError, ValueError, OverflowError):  # not numbers, a step past int64
            return None
        items = first[-1]
        if len(tags) != 8 * items or len(values) != items:
            return None
        cap = 48 * len(rows) + (self.widest + 4) * items
        out = np.empty(cap, np.uint8)
        written = ctypes.c_int64(0)
        rc = self.lib.descend_monitor_events(
            len(rows), float(wall_time), steps.buffer_info()[0], first.buffer_info()[0],
            items, tags, values.buffer_info()[0], len(self.off) - 1,
            self.off.buffer_info()[0], len(self.blob), self.blob.ctypes.data, cap,
            out.ctypes.data, ctypes.byref(written),
        )  # fmt: skip
        return None if rc else memoryview(out)[: written.value]


_LOSS = ("loss",)


def loss_dicts(rows: list[tuple[int, dict[str, float] | float]]) -> list:
    """``rows`` with each loss row given as its value (a float) made ``{"loss": value}``."""
    return [(s, {"loss": x}) if type(x) is float else (s, x) for s, x in rows]


class TensorBoard:
    """Scalars (one event per step holding all of that step's tags) and histograms in the
    TensorBoard run directory ``logdir`` (default ``runs/<date>``, as ``SummaryWriter``).

    Events are built with ``torch.utils.tensorboard.summary`` and written synchronously by
    TensorBoard's own ``RecordWriter`` into an ``events.out.tfevents.*`` file, flushed every
    ``flush_every`` events and on close. ``SummaryWriter`` hands each event to a background
    thread instead: measured here, ~0.1 ms of GIL hand-off per event on the training thread,
    which at one loss per step was most of the monitor's cost. ``writer=`` an existing
    ``SummaryWriter`` writes through it instead (flushed on close, not closed).
    """

    loss_rows = True  # write_many takes a loss row as its float value (see Monitor._held)

    def __init__(
        self, logdir: str | Path | None = None, *, writer: Any = None, flush_every: int = 200
    ) -> None:
        _fast_crc()
        self.writer = writer
        self.flush_every = flush_every
        self._count = 0
        self._tags: dict[str, bytes] = {}
        self._native: Any = False  # the C++ encoder, made on the first write_many
        if writer is not None:
            self.logdir = Path(writer.log_dir)
            self._file = None
            return
        import socket

        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        if logdir is None:
            logdir = Path("runs") / time.strftime("%b%d_%H-%M-%S")
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.0"
        self._file = (self.logdir / name).open("wb")
        self._records = RecordWriter(self._file)
        self._crc = _masked_crc()
        self._event = event_pb2.Event
        first = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        self._records.write(first.SerializeToString())

    def _add(self, summary: Any, step: int) -> None:
        if self._file is None:
            self.writer.file_writer.add_summary(summary, step)
            return
        event = self._event(wall_time=time.time(), step=int(step), summary=summary)
        self._record(event.SerializeToString())

    def _record(self, data: bytes) -> None:
        self._records.write(data)
        self._count += 1
        if self._count % self.flush_every == 0:
            self._file.flush()

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if self._file is None:
            from tensorboard.compat.proto.summary_pb2 import Summary

            values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
            self._add(Summary(value=values), step)
            return
        self._record(scalar_event(time.time(), step, scalars, self._tags))

    def write_many(self, rows: list[tuple[int, dict[str, float]]]) -> None:
        """Write several steps' scalars (one event each) with one write to the file, the
        events encoded and framed in C++ where the kernels load (:class:`_NativeEvents`:
        the same bytes), else here. A row's scalars may be a float, the monitor's loss row
        ``{"loss": value}`` given as its value (:attr:`loss_rows`; no dict per step)."""
        if self._file is None:
            for step, scalars in loss_dicts(rows):
                self.write(step, scalars)
            return
        now = time.time()
        if self._native is False:
            self._native = _NativeEvents.make()
        data = self._native(now, rows) if self._native is not None else None
        if data is None:
            rows = loss_dicts(rows)
            tags, crc = self._tags, self._crc
            data = b"".join(tf_record(scalar_event(now, s, d, tags), crc) for s, d in rows)
        self._file.write(data)
        before = self._count
        self._count += len(rows)
        if self._count // self.flush_every != before // self.flush_every:
            self._file.flush()

    def write_histograms(self, step: int, tensors: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import histogram

        for tag, values in tensors.items():
            values = values.detach().float()
            values = values[values.isfinite()]
            if values.numel():
                self._add(histogram(tag, values.numpy(), bins=64), step)

    def close(self) -> None:
        if self._file is None:
            self.writer.flush()
        elif not self._file.closed:
            self._file.flush()
            self._file.close()


def default_mlflow_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite file ``mlflow.db`` in the working
    directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


class MLflow:
    """Log to one MLflow run: ``tracking_uri`` (default :func:`default_mlflow_uri`; any
    ``sqlite:///…``, ``file:…`` or ``http(s)://`` server), experiment ``experiment``.

    Metrics are sent in batches of ``batch`` writes (``log_batch``) and on close; ``run_id``
    continues an existing run (e.g. the one Lightning's or Hugging Face's logger opened)."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        experiment: str = "descend",
        run_name: str | None = None,
        run_id: str | None = None,
        batch: int = 50,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri or default_mlflow_uri()
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        if run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
            run = self.client.create_run(exp_id, run_name=run_name)
            run_id = run.info.run_id
            self._own = True
        else:
            self._own = False
        self.run_id = run_id
        self.batch = batch
        self._pending: list[Any] = []
        self._writes = 0

    def write(self, step: int, scalars: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [
            Metric(key=k, value=float(v), timestamp=now, step=int(step))
            for k, v in scalars.items()
            if math.isfinite(v)
        ]
        self._writes += 1
        if self._writes % self.batch == 0:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def close(self) -> None:
        self.flush()
        if self._own:
            self.client.set_terminated(self.run_id)
            self._own = False


def as_sinks(log: Any) -> list[Any]:
    """Sinks from ``log``: None, a sink, a string/path, or a list of those."""
    if log is None:
        return []
    if isinstance(log, list | tuple):
        return [s for item in log for s in as_sinks(item)]
    if isinstance(log, str | Path):
        text = str(log)
        if text == "mlflow" or text.startswith("mlflow:"):
            uri = text.partition(":")[2] or None
            return [MLflow(uri)]
        if text.endswith(".jsonl"):
            return [JSONLines(text)]
        if text.endswith(".csv"):
            return [CSV(text)]
        return [TensorBoard(text)]
    if hasattr(log, "write") and hasattr(log, "close"):
        return [log]
    raise ValueError(
        "log must be None, a sink (write/close), a path (*.jsonl, *.csv, a TensorBoard "
        f"directory), 'mlflow' or 'mlflow:URI', or a list of these; got {log!r}"
    )
