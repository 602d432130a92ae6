"""Atomic file writes: a temporary file beside the target, then a rename.

A reader sees the old file or the new one, never half of one; a writer that dies leaves only
a ``.<name>.tmp-<pid>`` file (which the generators' ``remove_stale_tmp`` cleans up).
"""
from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["write_atomic", "write_json_atomic"]


def write_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str, obj: Any, **kwargs) -> None:
    """``json.dump`` of ``obj`` (``kwargs`` as for it) to ``path``, atomically."""
    write_atomic(path, json.dumps(obj, **kwargs))
