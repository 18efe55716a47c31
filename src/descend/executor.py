"""Independent trials run serially or through Dask distributed, stored as they finish.

A study (``compare`` over optimizers × grid × seeds, ``lr-find`` over seeds, the built-in
studies) is a list of independent trials. :func:`run_trials` runs ``fn(common, trial)`` for
each:

- ``workers=None`` (default) and no ``address``: in this process, one after another;
- ``workers=N``: a Dask ``LocalCluster`` of N worker *processes* on 127.0.0.1 (one thread
  each, no dashboard), started for the study and closed when it ends, whatever happens;
- ``address="tcp://host:port"``: the Dask scheduler of a running cluster.

Why Dask distributed rather than Ray: it is a pip-installable pure-Python package whose local
cluster starts in seconds without a separate daemon, it ships the functions with cloudpickle
(closures such as ``lr-find``'s model builder work), ``as_completed`` lets each result be
stored the moment it arrives, and the same code talks to a cluster by its scheduler address.

Same numbers as serial: every trial seeds torch, numpy and ``random`` itself and sets torch's
thread count (``threads``) inside the worker, so where it runs does not change what it
computes. A trial that raises is returned as a failure with its error (type, message and the
last lines of its traceback) and the others go on. With ``store`` (a JSON-lines file) every
finished trial is appended as soon as it completes, under a key that names the trial and the
study's settings; a rerun skips every key already stored (an interrupted study resumes from
what finished) and runs the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Outcome:
    """What one trial gave: its result, or the error it raised."""

    key: str
    result: Any = None
    error: str | None = None
    resumed: bool = False  # read back from the store, not run now

    @property
    def ok(self) -> bool:
        return self.error is None


def trial_key(*parts: Any) -> str:
    """A stable key for a trial: a short hash of its JSON description."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def check_workers(workers: int | None, address: str | None) -> None:
    """Reject bad executor options with the accepted values."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    if address is not None:
        if workers is not None:
            raise ValueError("give workers (a local cluster) or address (a running one), not both")
        if not isinstance(address, str) or "://" not in address:
            raise ValueError(
                f"address must be a Dask scheduler address such as tcp://127.0.0.1:8786, "
                f"got {address!r}"
            )


def _call(fn: Callable, common: Any, trial: Any, threads: int | None) -> tuple[Any, str | None]:
    """Run one trial; never raises (the error is returned)."""
    import torch

    saved = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        return fn(common, trial), None
    except Exception as exc:  # noqa: BLE001 - a failing trial must not lose the others
        tb = traceback.format_exc().strip().splitlines()
        return None, f"{type(exc).__name__}: {exc} [{' | '.join(tb[-3:])}]"
    finally:
        torch.set_num_threads(saved)


def _load_store(path: Path | None) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path is None or not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: that trial runs again
        if record.get("error") is None and "key" in record:
            done[record["key"]] = record
    return done


class _Store:
    def __init__(self, path: Path | None, encode: Callable[[Any], Any]):
        self.path, self.encode = path, encode
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, outcome: Outcome) -> None:
        if self.path is None:
            return
        record = {"key": outcome.key, "error": outcome.error}
        if outcome.ok:
            record["result"] = self.encode(outcome.result)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


@contextlib.contextmanager
def dask_client(workers: int | None = None, address: str | None = None):
    """A Dask client on a fresh local cluster of ``workers`` processes (127.0.0.1, closed on
    exit) or on the running scheduler at ``address``."""
    from dask.distributed import Client, LocalCluster

    if address is not None:
        client = Client(address, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def run_trials(
    fn: Callable[[Any, Any], Any],
    common: Any,
    trials: Sequence[tuple[str, Any]],
    *,
    workers: int | None = None,
    address: str | None = None,
    threads: int | None = None,
    store: str | Path | None = None,
    encode: Callable[[Any], Any] = lambda r: r,
    decode: Callable[[Any], Any] = lambda r: r,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run ``fn(common, trial)`` for every ``(key, trial)``; outcomes in the order given.

    ``encode``/``decode`` turn a result into JSON and back for the store. ``on_done`` is called
    in this process as each trial finishes (or is read back from the store).
    """
    check_workers(workers, address)
    keys = [k for k, _ in trials]
    if len(set(keys)) != len(keys):
        raise ValueError("trial keys must be unique")
    path = Path(store) if store is not None else None
    done = _load_store(path)
    sink = _Store(path, encode)
    outcomes: dict[str, Outcome] = {}
    for key, _ in trials:
        if key in done:
            outcomes[key] = Outcome(key, decode(done[key]["result"]), None, resumed=True)
            if on_done is not None:
                on_done(outcomes[key])
    todo = [(k, t) for k, t in trials if k not in outcomes]

    def finish(key: str, value: tuple[Any, str | None]) -> None:
        result, error = value
        outcome = Outcome(key, result, error)
        sink.add(outcome)
        if outcome.ok:  # what the store gives back on a resume, given now as well
            outcome.result = decode(encode(result))
        outcomes[key] = outcome
        if on_done is not None:
            on_done(outcome)

    if todo and workers is None and address is None:
        for key, trial in todo:
            finish(key, _call(fn, common, trial, threads))
    elif todo:
        from dask.distributed import as_completed

        with dask_client(workers, address) as client:
            # Keys of this run only: the cluster may hold another client's (a study still
            # running, or one killed whose data the scheduler is releasing). Scattering the
            # dict itself would key each value by its name ("model", "updates", …) and a trial
            # by its name alone, shared with any such client: the scheduler then lost them
            # while that client's were released, and the trials failed.
            run = uuid.uuid4().hex[:12]
            [shared] = client.scatter([common], broadcast=True, hash=False)
            futures = {
                client.submit(
                    _call, fn, shared, trial, threads, pure=False, key=f"trial-{key}-{run}"
                ): key
                for key, trial in todo
            }
            for future in as_completed(futures):
                key = futures[future]
                try:
                    value = future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a worker process that died
                    value = (None, f"{type(exc).__name__}: {exc}")
                finish(key, value)
    return [outcomes[k] for k in keys]
