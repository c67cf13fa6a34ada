"""File contents (batch inputs and outputs) in a directory that every replica mounts."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from monolith.errors import BadRequest, StorageFull


@contextlib.contextmanager
def atomically(path: Path) -> Iterator[BinaryIO]:
    """A file readers on any replica see whole or not at all: written under a temporary name, fsync, rename, fsync
    the directory; nothing is left behind if the writing fails."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with partial.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        partial.rename(path)
        _fsync_dir(path.parent)
    finally:
        partial.unlink(missing_ok=True)


def write_atomically(path: Path, content: bytes) -> None:
    with atomically(path) as out:
        out.write(content)


def copy_lines_atomically(
    source: BinaryIO,
    path: Path,
    check: Callable[[int, bytes], None],
    max_lines: int,
    max_line_bytes: int,
    finish: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Copies an upload line by line into `path` (written as `write_atomically` does), calling `check(n, line)`
    on each line first and `finish()` after the last; (bytes, lines). A line is read with a bound, so a file with
    no newline costs no more memory than one long line. A full disk raises StorageFull; a failed check, its
    BadRequest; either way nothing is left behind."""
    size = lines = 0
    try:
        with atomically(path) as out:
            while line := source.readline(max_line_bytes + 1):
                lines += 1
                if lines > max_lines:
                    raise BadRequest(f"the file has more than {max_lines} lines (files.max_lines)", param="file")
                check(lines, line)
                out.write(line if line.endswith(b"\n") else line + b"\n")
                size += len(line)
            if finish is not None:
                finish()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull("the server's file storage is full; try again later") from None
        raise
    return size, lines


def _fsync_dir(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
