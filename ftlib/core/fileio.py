"""Atomic file writes: a reader, or a run after a crash, sees the old file or the new one, never half of one.

Every write goes to a temporary file in the target's folder (same file system, so the rename is atomic), is
flushed and fsynced, then ``os.replace``-d over the target; the folder is fsynced too where the platform allows,
so the rename itself survives a power cut. Named ``fileio`` rather than ``io`` so that it never shadows the
standard library's ``io``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename, a new file) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:  # some file systems refuse fsync on a folder: the data itself is already synced
        pass
    finally:
        os.close(handle)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that wants a file name (a GGUF writer, a library's ``save``).

    On a clean exit the file is fsynced and moved over ``path``; if the block raises, it is removed and ``path`` is
    left as it was. Creates the parent folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name: two processes writing the same file never share a temporary one.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(descriptor)
    try:
        yield Path(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(
    path: str | Path, write: Callable[[TextIO], Any], *, encoding: str = "utf-8", newline: str | None = None
) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it over ``path``.

    If ``write`` (or anything after it) raises, the temporary file is removed and ``path`` is left as it was.
    Creates the parent folder. Returns ``path``.
    """
    with atomic_path(path) as temporary, open(temporary, "w", encoding=encoding, newline=newline) as handle:
        write(handle)
        handle.flush()
    return Path(path)


def write_text(text: str, path: str | Path, encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text), encoding=encoding)


def write_json(value: Any, path: str | Path, indent: int | None = 1) -> Path:
    """Write ``value`` as UTF-8 JSON (non-ASCII kept as is) with a final newline, atomically.

    Dataclasses (a typed result, anywhere inside ``value``) are written as their fields. The text is built before
    the file is opened, so a value JSON cannot encode leaves no file behind.
    """
    return write_text(json.dumps(value, indent=indent, ensure_ascii=False, default=_fields) + "\n", path)


def _fields(value: Any) -> Any:
    """``json.dumps``'s fallback: a dataclass instance as a dict of its fields (nested ones too)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_jsonl(records: Iterable[Mapping], path: str | Path) -> Path:
    """Write one JSON object a line, atomically."""

    def write(handle: TextIO) -> None:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    return atomic_write(path, write)


def write_csv(rows: Iterable[Mapping], columns: Sequence[str], path: str | Path, encoding: str = "utf-8") -> Path:
    """Write a header of ``columns`` and one line per row, atomically (``newline=""``, as the csv module wants)."""

    def write(handle: TextIO) -> None:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)

    return atomic_write(path, write, encoding=encoding, newline="")


def replace_dir(partial: str | Path, final: str | Path, keep_previous: bool = True) -> Path:
    """Move a finished folder into place at ``final``.

    With ``keep_previous`` the folder it replaces is kept as ``<name>.previous`` (one generation); otherwise it
    is deleted. ``partial`` must be on the same file system as ``final`` (make it beside ``final``).
    """
    partial, final = Path(partial), Path(final)
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()  # an empty folder (made ahead, or left by a user) is not a generation worth keeping
    if final.exists():
        if keep_previous:
            previous = final.with_name(final.name + ".previous")
            if previous.exists():
                shutil.rmtree(previous)
            final.rename(previous)
        else:
            shutil.rmtree(final)
    partial.rename(final)
    fsync_dir(final.parent)
    return final
