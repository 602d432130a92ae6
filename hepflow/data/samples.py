"""Sample specifications: which files, which keys, which class label, which mixing rate.

A :class:`SampleSpec` is written once and used by training, evaluation and export.
Specs load from YAML (a list of mappings) or from the compact DLKit form
``[[files, [keys], label, rate], ...]``.
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from hepflow.errors import DataError

__all__ = ["SampleSpec", "load_specs", "specs_from_dlkit"]

Label = int | tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """One sample (one physics process, one class) of a mixed dataset.

    Args:
        name: Short name used in logs, record ids and cache paths.
        files: A glob pattern, or a list of paths / glob patterns, of HDF5 files.
        keys: Feature name → HDF5 dataset path inside each file. A list of
            dataset paths is accepted and maps each path to itself.
        label: Integer class index, or a vector (multi-label / soft label).
        rate: Relative mixing weight, finite and > 0. Rates are normalized over
            all samples of a dataset: rates 1 and 3 give 25 % and 75 %.
        selection: Optional row selection, a boolean expression over scalar
            per-row features, e.g. ``"(mass > 100) & (mass < 250)"``. Names
            refer to keys of ``keys``.
        weight_key: Optional HDF5 dataset path holding a per-row weight; when
            any sample of a dataset has one, the dataset yields
            ``(features, label, weight)``.
    """

    name: str
    files: tuple[str, ...]
    keys: Mapping[str, str]
    label: Label = 0
    rate: float = 1.0
    selection: str | None = None
    weight_key: str | None = None

    def __init__(
        self,
        *,
        name: str,
        files: str | Sequence[str],
        keys: Mapping[str, str] | Sequence[str],
        label: int | Sequence[float] = 0,
        rate: float = 1.0,
        selection: str | None = None,
        weight_key: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise DataError(
                "SampleSpec name must be a non-empty string without '/' that does "
                f"not start with '.'. Received: name={name!r}"
            )
        files_t = (files,) if isinstance(files, (str, os.PathLike)) else tuple(files)
        files_t = tuple(os.fspath(f) for f in files_t)
        if not files_t:
            raise DataError(f"Sample '{name}': `files` is empty. Received: files={files!r}")
        if isinstance(keys, Mapping):
            keys_d = {str(k): str(v) for k, v in keys.items()}
        elif isinstance(keys, Sequence) and not isinstance(keys, str):
            keys_d = {str(k).strip("/").replace("/", "_"): str(k) for k in keys}
        else:
            raise DataError(
                f"Sample '{name}': `keys` must map feature names to HDF5 dataset paths. "
                f"Received: keys={keys!r}"
            )
        if not keys_d:
            raise DataError(f"Sample '{name}': `keys` is empty. Received: keys={keys!r}")
        if isinstance(label, bool) or not isinstance(label, (int, Sequence)):
            raise DataError(
                f"Sample '{name}': `label` must be an int class index or a vector. "
                f"Received: label={label!r}"
            )
        if isinstance(label, Sequence):
            try:
                label_v: Label = tuple(float(x) for x in label)
            except (TypeError, ValueError):
                raise DataError(
                    f"Sample '{name}': a vector `label` must hold numbers. Received: label={label!r}"
                ) from None
            if not label_v:
                raise DataError(f"Sample '{name}': `label` vector is empty. Received: label={label!r}")
        else:
            label_v = int(label)
        try:
            rate_f = float("nan") if isinstance(rate, bool) else float(rate)
        except (TypeError, ValueError):
            rate_f = float("nan")
        if not math.isfinite(rate_f) or rate_f <= 0:
            raise DataError(
                f"Sample '{name}': `rate` must be a finite number > 0. Received: rate={rate!r}"
            )
        if selection is not None and (not isinstance(selection, str) or not selection.strip()):
            raise DataError(f"Sample '{name}': `selection` must be an expression string or None. "
                            f"Received: selection={selection!r}")
        if weight_key is not None and (not isinstance(weight_key, str) or not weight_key):
            raise DataError(f"Sample '{name}': `weight_key` must be an HDF5 dataset path or None. "
                            f"Received: weight_key={weight_key!r}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "files", files_t)
        object.__setattr__(self, "keys", dict(keys_d))
        object.__setattr__(self, "label", label_v)
        object.__setattr__(self, "rate", rate_f)
        object.__setattr__(self, "selection", selection)
        object.__setattr__(self, "weight_key", weight_key)

    def __hash__(self) -> int:
        return hash((self.name, self.files, tuple(sorted(self.keys.items())), self.label,
                     self.rate, self.selection, self.weight_key))

    def resolve_files(self) -> list[str]:
        """Expands globs into a sorted, de-duplicated list of existing paths.

        Raises:
            DataError: a pattern matches nothing or a listed file does not exist.
        """
        out: list[str] = []
        for pattern in self.files:
            if glob.has_magic(pattern):
                matches = sorted(glob.glob(pattern))
                if not matches:
                    raise DataError(
                        f"Sample '{self.name}': the glob pattern matches no file. "
                        f"Received: files={pattern!r}"
                    )
                out.extend(matches)
            else:
                if not os.path.isfile(pattern):
                    raise DataError(
                        f"Sample '{self.name}': file not found: {pattern}. "
                        f"Received: files={list(self.files)!r}"
                    )
                out.append(pattern)
        return list(dict.fromkeys(os.path.abspath(p) for p in out))

    def to_dict(self) -> dict[str, Any]:
        """Returns a plain dict that :func:`load_specs` reads back."""
        d: dict[str, Any] = {
            "name": self.name,
            "files": list(self.files),
            "keys": dict(self.keys),
            "label": list(self.label) if isinstance(self.label, tuple) else self.label,
            "rate": self.rate,
        }
        if self.selection is not None:
            d["selection"] = self.selection
        if self.weight_key is not None:
            d["weight_key"] = self.weight_key
        return d


def specs_from_dlkit(compact: Sequence[Sequence[Any]]) -> list[SampleSpec]:
    """Builds specs from the compact DLKit form ``[[files, [keys], label, rate], ...]``.

    Sample names are taken from the label (``class0``, ``class1``, ...), made
    unique when labels repeat.
    """
    specs = []
    for i, entry in enumerate(compact):
        if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 4:
            raise DataError(
                "Each compact sample must be [files, [keys], label, rate]. "
                f"Received: entry {i} = {entry!r}"
            )
        files, keys, label, rate = entry
        name = f"class{label}" if isinstance(label, int) else f"sample{i}"
        if any(s.name == name for s in specs):
            name = f"{name}_{i}"
        specs.append(SampleSpec(name=name, files=files, keys=keys, label=label, rate=rate))
    return specs


def load_specs(source: str | os.PathLike | Sequence[Any]) -> list[SampleSpec]:
    """Loads sample specs from a YAML file, a YAML string or an already-parsed list.

    Accepted forms: a list of mappings with :class:`SampleSpec` fields, a mapping
    with a ``samples`` list, or the compact DLKit form. Relative file paths in a
    YAML file are resolved against the YAML file's folder.
    """
    base = None
    data: Any = source
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        try:
            if os.path.isfile(text):
                base = os.path.dirname(os.path.abspath(text))
                with open(text) as f:
                    data = yaml.safe_load(f)
            else:
                data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = text if base is not None else "the sample specs"
            raise DataError(f"{what}: not valid YAML{at}: {getattr(e, 'problem', None) or e}. "
                            "Received: a YAML syntax error") from None
    if isinstance(data, Mapping) and "samples" in data:
        data = data["samples"]
    if not isinstance(data, Sequence) or isinstance(data, str) or not data:
        raise DataError(f"Expected a non-empty list of samples. Received: {data!r}")
    if all(isinstance(e, Sequence) and not isinstance(e, str) for e in data):
        specs = specs_from_dlkit(data)
    else:
        specs = []
        for i, entry in enumerate(data):
            if not isinstance(entry, Mapping):
                raise DataError(f"Sample {i} must be a mapping. Received: {entry!r}")
            unknown = set(entry) - {f.name for f in dataclasses.fields(SampleSpec)}
            if unknown:
                raise DataError(
                    f"Sample {i}: unknown fields {sorted(unknown)}; expected some of "
                    f"{[f.name for f in dataclasses.fields(SampleSpec)]}. Received: {dict(entry)!r}"
                )
            specs.append(SampleSpec(**entry))
    if base is not None:
        specs = [_rebase(s, base) for s in specs]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise DataError(f"Sample names must be unique. Received: names={names!r}")
    return specs


def _rebase(spec: SampleSpec, base: str) -> SampleSpec:
    files = [f if os.path.isabs(f) else os.path.join(base, f) for f in spec.files]
    d = spec.to_dict()
    d["files"] = files
    return SampleSpec(**d)
