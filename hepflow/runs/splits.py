"""Samples split by file into train, validation and test, and independent test folders.

Splitting by file keeps the test jets out of training whatever the shuffling, and every run
on the same ``data`` section sees the same test files.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from hepflow.data import SampleSpec
from hepflow.errors import ConfigError, DataError

__all__ = ["SPLITS", "split_specs", "specs_in_dir", "refuse_seen_files"]

SPLITS = ("train", "validation", "test")


def split_specs(config: Mapping[str, Any]) -> dict[str, list[SampleSpec]]:
    """The config's samples split by file into ``train``, ``validation`` and ``test`` specs.

    Each sample's files are sorted; the last ``round(test · n)`` files (at least one when the
    fraction is > 0) go to test, the ones before to validation, the rest to train.

    A tfds sample uses the dataset's own splits: its ``split`` (default ``train``) trains, and
    the dataset's ``validation`` and ``test`` splits validate and test when the config asks for
    them (a fraction > 0; the fraction's value is then not used).

    Raises:
        DataError: a sample has too few files for the split, or a tfds dataset lacks a split
            the config asks for.
    """
    data = config["data"]
    base = data.get("dir") or "."
    fractions = data["split"]
    out: dict[str, list[SampleSpec]] = {s: [] for s in SPLITS}
    for entry, files in _sample_entries(config):
        if entry.get("tfds") is not None:
            if entry.get("data_dir") is not None and not os.path.isabs(entry["data_dir"]):
                entry["data_dir"] = os.path.join(base, entry["data_dir"])
            spec = SampleSpec(files=files, **entry)
            out["train"].append(spec)
            for split, part in _tfds_splits(spec, fractions).items():
                out[split].append(part)
            continue
        spec = SampleSpec(files=[f if os.path.isabs(f) else os.path.join(base, f) for f in files], **entry)
        paths = spec.resolve_files()
        n = len(paths)
        n_test = _count(fractions.get("test", 0), n)
        n_val = _count(fractions.get("validation", 0), n)
        n_train = n - n_val - n_test
        if n_train < 1:
            raise DataError(f"Sample '{spec.name}': {n} file(s) cannot be split into train/validation/test "
                            f"with {dict(fractions)}; write more, smaller files. Received: files={list(spec.files)!r}")
        parts = {"train": paths[:n_train], "validation": paths[n_train:n_train + n_val],
                 "test": paths[n_train + n_val:]}
        for split, chunk in parts.items():
            if chunk:
                out[split].append(SampleSpec(**{**spec.to_dict(), "files": chunk}))
    return out


def _tfds_splits(spec: SampleSpec, fractions: Mapping[str, float]) -> dict[str, SampleSpec]:
    """The tfds dataset's own validation/test splits that the config asks for."""
    from hepflow.data.sources.tfds_source import load_builder  # optional extra [tfds]

    have = load_builder(spec).info.splits
    out = {}
    for split in ("validation", "test"):
        if fractions.get(split, 0) <= 0:
            continue
        if split not in have or split == spec.split:
            raise DataError(f"Sample '{spec.name}': the config asks for a {split} part (data.split.{split} > 0) but "
                            f"tfds dataset '{spec.tfds}' has no '{split}' split other than the training one; "
                            f"available: {sorted(have)}. Set data.split.{split}: 0 or use a dataset with that split. "
                            f"Received: split={spec.split!r}")
        out[split] = SampleSpec(**{**spec.to_dict(), "split": split})
    return out


def _sample_entries(config: Mapping[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    """Each sample of the config as (its SampleSpec fields without ``files``, its file patterns).

    Raises:
        DataError: a sample is not a mapping.
    """
    out = []
    for entry in config["data"]["samples"]:
        if not isinstance(entry, Mapping):
            raise ConfigError(f"Each sample must be a mapping of SampleSpec fields. Received: {entry!r}")
        entry = dict(entry)
        files = entry.pop("files", None)
        out.append((entry, [files] if isinstance(files, str) else list(files or [])))
    return out


def specs_in_dir(config: Mapping[str, Any], directory: str | Sequence[str]) -> list[SampleSpec]:
    """The config's samples read from the files of ``directory`` instead of ``data.dir``.

    Each sample keeps its name, keys, label and selection; its file patterns (relative to
    ``data.dir``, or the file names of absolute ones) are looked up in ``directory``. Used to
    score trained runs on an independent, larger test sample (``hepflow evaluate --test-dir``);
    check it with :func:`refuse_seen_files`.

    Args:
        config: A training config.
        directory: A folder, or several: each sample then holds the matching files of every
            folder, in the order given (e.g. two test samples generated with other seeds).

    Raises:
        DataError: a folder is missing, a sample has no file in one, or two folders hold the
            same file (by path or by content), which would count its jets twice.
    """
    directories = [directory] if isinstance(directory, str) else list(directory)
    if not directories:
        raise DataError("specs_in_dir needs at least one test directory. Received: []")
    for d in directories:
        if not os.path.isdir(d):
            raise DataError(f"The test directory does not exist. Received: test_dir={d!r}")
    out = []
    for entry, files in _sample_entries(config):
        per_dir = []
        for d in directories:
            spec = SampleSpec(files=[os.path.join(d, os.path.basename(f) if os.path.isabs(f) else f)
                                     for f in files], **entry)
            per_dir.append(spec.resolve_files())
        for i in range(1, len(per_dir)):
            twice = _same_files(per_dir[i], [p for earlier in per_dir[:i] for p in earlier])
            if twice:
                raise DataError(f"Sample '{entry['name']}': test directory {directories[i]!r} holds files that an "
                                f"earlier test directory holds too (same path or bytes), so their jets would count "
                                f"twice. Received: {sorted(twice)[:3]}{' …' if len(twice) > 3 else ''}")
        out.append(SampleSpec(files=[p for paths in per_dir for p in paths], **entry))
    return out


def refuse_seen_files(specs: Sequence[SampleSpec], configs: Sequence[Mapping[str, Any]], *, where: str) -> None:
    """Raises if a file of ``specs`` is one the configs' runs trained or validated on.

    Files are compared by path and by content (a copy, or a chunk generated again with the
    training sample's seed); each file is read at most once.

    Raises:
        DataError: naming ``where`` and the offending files.
    """
    seen = [p for config in configs for split in ("train", "validation")
            for s in split_specs(config)[split] for p in s.files]
    overlap = sorted(_same_files([p for s in specs for p in s.files], seen))
    if overlap:
        raise DataError(f"{where} holds files the run trained or validated on, so it is no independent test "
                        f"sample. Received: {overlap[:3]}{' …' if len(overlap) > 3 else ''}")


def _same_files(candidates: Sequence[str], reference: Sequence[str]) -> list[str]:
    """The candidates that are one of the reference files: the same path or the same bytes."""
    ref_paths = set(reference)
    by_size: dict[int, list[str]] = {}
    for p in reference:
        by_size.setdefault(os.path.getsize(p), []).append(p)
    digests: dict[str, str] = {}

    def digest(path: str) -> str:
        if path not in digests:
            h = hashlib.sha1()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digests[path] = h.hexdigest()
        return digests[path]

    out = []
    for p in candidates:
        same_size = by_size.get(os.path.getsize(p), [])
        if p in ref_paths or (same_size and digest(p) in {digest(r) for r in same_size}):
            out.append(p)
    return out


def _count(fraction: float, n: int) -> int:
    return 0 if fraction <= 0 else max(1, round(fraction * n))
