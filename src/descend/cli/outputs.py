"""Output paths of a command: checked before the computation, removed again if it fails.

A command calls :func:`output_dir` / :func:`output_file` while it validates its arguments (so a
read-only folder, a file where a folder is wanted or a folder where a file is wanted is refused
before any work), and :func:`descend.cli.main` calls :func:`rollback` when the command stops
with an error or Ctrl-C: files and folders the command created are removed (files that existed
before are left as they are), so an interrupted run leaves no half-written outputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from descend.cli import CommandError

# What this command created or may create: (path, "dir" | "file", entries present before).
_tracked: list[tuple[Path, str, set[str] | None]] = []
# Files a rollback leaves in place: a study's store of finished trials, which a rerun resumes.
_kept: set[Path] = set()


def reset() -> None:
    """Forget every tracked path (start of a command)."""
    _tracked.clear()
    _kept.clear()


def keep(path: str | os.PathLike) -> Path:
    """Exempt ``path`` from :func:`rollback`: what an interrupted study already finished stays
    (with the folders that hold it), so running the command again resumes from it."""
    path = Path(path)
    _kept.add(path.resolve())
    return path


def _is_kept(path: Path) -> bool:
    """``path`` is a kept file or a folder on the way to one."""
    full = path.resolve()
    return any(full == k or full in k.parents for k in _kept)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _probe(directory: Path, flag: str) -> None:
    """Create and delete a file in ``directory``: the only test of writability that also
    holds for root and read-only file systems."""
    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=".descend-probe-")
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise CommandError(f"{flag}: cannot write in folder {directory} ({_reason(exc)})") from None


def output_dir(text: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the output folder ``text`` (and its parents) now and check that files can be
    written in it; refuse a path that is a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{flag}: {path} exists and is not a folder; give a folder path")
    # The first missing ancestor is what a rollback removes.
    missing = None
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise CommandError(f"{flag}: {parent} is a file, so {path} cannot be a folder")
            break
        missing = parent
    before = {str(p) for p in path.rglob("*")} if path.is_dir() else None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{flag}: cannot create folder {path} ({_reason(exc)})") from None
    if missing is not None:
        _tracked.append((missing, "dir", None))
    else:
        _tracked.append((path, "dir", before))
    _probe(path, flag)
    return path


def output_file(text: str | os.PathLike, flag: str) -> Path:
    """Check that the file ``text`` can be written (its folder exists and is writable, the
    path is not a folder); it is removed on rollback unless it existed before."""
    path = Path(text)
    if path.is_dir():
        raise CommandError(f"{flag}: {path} is a folder; give a file name such as {path}/out")
    parent = path.parent
    if not parent.is_dir():
        raise CommandError(f"{flag}: folder {parent} does not exist")
    _probe(parent, flag)
    if not path.exists():
        _tracked.append((path, "file", None))
    return path


def rollback() -> list[Path]:
    """Remove what the command created; returns the removed top-level paths."""
    removed = []
    for path, kind, before in reversed(_tracked):
        try:
            if kind == "file":
                if path.exists():
                    path.unlink()
                    removed.append(path)
            elif before is None and not _is_kept(path):
                if path.exists():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            elif path.is_dir():
                new = [
                    p
                    for p in path.rglob("*")
                    if (before is None or str(p) not in before) and not _is_kept(p)
                ]
                for p in sorted(new, key=lambda p: len(p.parts), reverse=True):
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                if new:
                    removed.append(path)
        except OSError:
            pass
    _tracked.clear()
    _kept.clear()
    return removed
