"""Atomic file writes: a temporary file beside the target, then a rename.

A reader sees the old file or the new one, never half of one; a writer that dies leaves only
a ``.<name>.tmp-<pid>`` file or folder, which :func:`remove_stale_tmp` cleans up once that process
is gone (the generators and the pipeline cache call it before writing).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import psutil

__all__ = ["atomic_path", "write_atomic", "write_json_atomic", "writer_pid", "remove_stale_tmp", "remove_path"]

_TMP = re.compile(r"\.tmp-(\d+)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[str]:
    """A temporary path beside ``path`` that is renamed onto it when the block succeeds.

    Args:
        path: The file (or folder) to write.
        suffix: Appended to the temporary name, for writers that insist on an extension
            (``".keras"``).

    Yields:
        ``<dir>/.<name>.tmp-<pid><suffix>``, for the block to write. If the block raises, what
        it wrote there is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        remove_path(tmp, ignore_errors=True)


def write_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json_atomic(path: str, obj: Any, **kwargs) -> None:
    """``json.dump`` of ``obj`` (``kwargs`` as for it) to ``path``, atomically."""
    write_atomic(path, json.dumps(obj, **kwargs))


def writer_pid(name: str) -> int | None:
    """The id of the process writing a temporary ``….tmp-<pid>…`` file or folder, or ``None``."""
    match = _TMP.search(name)
    return int(match.group(1)) if match else None


def remove_stale_tmp(folder: str) -> list[str]:
    """Removes the temporary files and folders in ``folder`` whose writing process has died.

    Only names hepflow's writers make (``….tmp-<pid>…``) are touched, and never those of a live
    process (this one included).

    Returns:
        The names removed.
    """
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        pid = writer_pid(name)
        if pid is None or pid == os.getpid() or psutil.pid_exists(pid):
            continue
        remove_path(os.path.join(folder, name), ignore_errors=True)
        removed.append(name)
    return removed


def remove_path(path: str, *, ignore_errors: bool = False) -> bool:
    """Removes a file, a link (not what it points to) or a folder with its contents.

    Returns:
        Whether there was something at ``path``.
    """
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=ignore_errors)
    elif os.path.lexists(path):
        os.remove(path)
    else:
        return False
    return True
