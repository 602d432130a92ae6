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

__all__ = ["SampleSpec", "FORMATS", "load_specs", "specs_from_dlkit"]

Label = int | tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """One sample (one physics process, one class) of a mixed dataset.

    Args:
        name: Short name used in logs, record ids and cache paths.
        files: A glob pattern, or a list of paths / glob patterns, of HDF5, ROOT
            (``*.root``) or Parquet (``*.parquet``) files. Not needed with ``tfds``.
        keys: Feature name → HDF5 dataset path inside each file (ROOT: branch
            name; Parquet: column name; tfds: feature name). A list of paths is
            accepted and maps each path to itself (``/`` becomes ``_``). In ROOT
            and Parquet files a feature may list several branches, stacked on a
            new last axis: ``constituents: [part_E, part_px, part_py, part_pz]``.
        label: Integer class index, or a vector (multi-label / soft label).
        rate: Relative mixing weight, finite and > 0. Rates are normalized over
            all samples of a dataset: rates 1 and 3 give 25 % and 75 %.
        selection: Optional row selection, a boolean expression over scalar
            per-row features, e.g. ``"(mass > 100) & (mass < 250)"``. Names
            refer to keys of ``keys``.
        weight_key: Optional HDF5 dataset path holding a per-row weight; when
            any sample of a dataset has one, the dataset yields
            ``(features, label, weight)``.
        format: ``"hdf5"``, ``"root"``, ``"parquet"``, ``"top_tagging"`` (the
            published top-tagging files: pandas tables in HDF5) or ``"tfds"``.
            Default: from the file names (``.root``, ``.parquet``/``.pq``, else
            HDF5), ``"tfds"`` when ``tfds`` is given.
        tree: ROOT only: the TTree's name (may include folders, ``dir/Events``).
            Default: the file's only TTree.
        pad: ROOT and Parquet: entries kept per event of the jagged (per-event
            list) features, an int for all of them or ``{feature: n}``. Shorter
            lists are zero-padded; each padded feature ``f`` comes with a bool
            feature ``f_mask`` (True on real entries). A jagged branch without
            ``pad`` is refused.
        sort_by: ROOT and Parquet: a jagged branch; each event's lists are put in
            decreasing order of it before truncation to ``pad`` (e.g.
            ``part_pt``: the hardest particles are kept). Default: file order.
        tfds: A tfds dataset, ``name`` or ``name/config`` (e.g.
            ``top_tagging/reference``), read from its prepared files under
            ``data_dir``.
        split: The tfds split (default ``train``); with ``tfds`` only.
        data_dir: The tfds data directory (default: tfds' own,
            ``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``).
    """

    name: str
    files: tuple[str, ...]
    keys: Mapping[str, str]
    label: Label = 0
    rate: float = 1.0
    selection: str | None = None
    weight_key: str | None = None
    format: str = "hdf5"
    tree: str | None = None
    pad: int | Mapping[str, int] | None = None
    sort_by: str | None = None
    tfds: str | None = None
    split: str | None = None
    data_dir: str | None = None

    def __init__(
        self,
        *,
        name: str,
        files: str | Sequence[str] | None = None,
        keys: Mapping[str, str] | Sequence[str],
        label: int | Sequence[float] = 0,
        rate: float = 1.0,
        selection: str | None = None,
        weight_key: str | None = None,
        format: str | None = None,
        tree: str | None = None,
        pad: int | Mapping[str, int] | None = None,
        sort_by: str | None = None,
        tfds: str | None = None,
        split: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise DataError(
                "SampleSpec name must be a non-empty string without '/' that does "
                f"not start with '.'. Received: name={name!r}"
            )
        if files is None and tfds is not None:
            files = ()
        if files is None:
            raise DataError(f"Sample '{name}': `files` is missing (only a `tfds` sample has none). Received: files=None")
        files_t = (files,) if isinstance(files, (str, os.PathLike)) else tuple(files)
        files_t = tuple(os.fspath(f) for f in files_t)
        if not files_t and tfds is None:
            raise DataError(f"Sample '{name}': `files` is empty. Received: files={files!r}")
        fmt = _check_format(name, format, files_t, tfds)
        if isinstance(keys, Mapping):
            keys_d = {str(k): _key_path(name, k, v, fmt) for k, v in keys.items()}
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
        _check_source_fields(name, fmt, tree=tree, pad=pad, sort_by=sort_by, tfds=tfds, split=split,
                             data_dir=data_dir, keys=keys_d, files=files_t, weight_key=weight_key)
        object.__setattr__(self, "format", fmt)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "pad", dict(pad) if isinstance(pad, Mapping) else pad)
        object.__setattr__(self, "sort_by", sort_by)
        object.__setattr__(self, "tfds", tfds)
        object.__setattr__(self, "split", split if split is not None or tfds is None else "train")
        object.__setattr__(self, "data_dir", None if data_dir is None else os.fspath(data_dir))

    def __hash__(self) -> int:
        return hash((self.name, self.files, tuple(sorted((k, str(v)) for k, v in self.keys.items())), self.label,
                     self.rate, self.selection, self.weight_key, self.format, self.tree, str(self.pad),
                     self.sort_by, self.tfds, self.split, self.data_dir))

    def pad_of(self, feature: str) -> int | None:
        """Entries kept per event for a jagged feature, or ``None`` when ``pad`` does not name it."""
        if isinstance(self.pad, Mapping):
            return self.pad.get(feature)
        return self.pad

    def resolve_files(self) -> list[str]:
        """Expands globs into a sorted, de-duplicated list of existing paths.

        Raises:
            DataError: a pattern matches nothing or a listed file does not exist.
        """
        if self.format == "tfds":
            from hepflow.data.sources.tfds_source import split_files  # optional extra [tfds]
            return split_files(self)
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
        d["keys"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.keys.items()}
        if self.format != _inferred_format(self.files, self.tfds):
            d["format"] = self.format
        for field in ("tree", "pad", "sort_by", "tfds", "data_dir"):
            if getattr(self, field) is not None:
                d[field] = getattr(self, field)
        if self.tfds is not None:
            d["split"] = self.split
            if not self.files:
                del d["files"]
        return d


FORMATS = ("hdf5", "root", "parquet", "top_tagging", "tfds")
_BRANCH_FORMATS = ("root", "parquet")  # where a feature may stack several branches and lists are padded


def _inferred_format(files: Sequence[str], tfds: str | None) -> str:
    if tfds is not None:
        return "tfds"
    exts = {os.path.splitext(f)[1].lower() for f in files}
    if exts and exts <= {".root"}:
        return "root"
    if exts and exts <= {".parquet", ".pq"}:
        return "parquet"
    return "hdf5"


def _check_format(name: str, fmt: str | None, files: Sequence[str], tfds: str | None) -> str:
    if fmt is None:
        exts = {os.path.splitext(f)[1].lower() for f in files}
        if len({_inferred_format([f], None) for f in files}) > 1:
            raise DataError(f"Sample '{name}': its files mix formats ({sorted(exts)}); one sample reads one "
                            f"format. Received: files={list(files)!r}")
        return _inferred_format(files, tfds)
    if fmt not in FORMATS:
        raise DataError(f"Sample '{name}': unknown `format`; expected one of {list(FORMATS)}. Received: format={fmt!r}")
    if (fmt == "tfds") != (tfds is not None):
        raise DataError(f"Sample '{name}': `format: tfds` and a `tfds` dataset name go together. "
                        f"Received: format={fmt!r}, tfds={tfds!r}")
    return fmt


def _key_path(name: str, feature: Any, path: Any, fmt: str) -> str | tuple[str, ...]:
    if isinstance(path, str) and path:
        return path
    if (isinstance(path, Sequence) and not isinstance(path, str) and path
            and all(isinstance(p, str) and p for p in path)):
        if fmt not in _BRANCH_FORMATS:
            raise DataError(f"Sample '{name}': feature '{feature}' lists several paths, which only ROOT and Parquet "
                            f"samples stack; a {fmt} feature names one dataset. Received: {feature}={list(path)!r}")
        return tuple(path)
    raise DataError(f"Sample '{name}': feature '{feature}' must name a dataset/branch (or, in ROOT and Parquet "
                    f"files, a list of branches). Received: {feature}={path!r}")


def _check_source_fields(name: str, fmt: str, *, tree, pad, sort_by, tfds, split, data_dir, keys, files,
                         weight_key) -> None:
    """Refuses fields that the sample's format does not use, and malformed values."""
    if tree is not None and (fmt != "root" or not isinstance(tree, str) or not tree):
        raise DataError(f"Sample '{name}': `tree` names the TTree of ROOT files (a non-empty string). "
                        f"Received: tree={tree!r}, format={fmt!r}")
    if pad is not None:
        if fmt not in _BRANCH_FORMATS:
            raise DataError(f"Sample '{name}': `pad` applies to the jagged branches of ROOT and Parquet files. "
                            f"Received: pad={pad!r}, format={fmt!r}")
        values = pad.values() if isinstance(pad, Mapping) else [pad]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise DataError(f"Sample '{name}': `pad` must be an int > 0 or a mapping feature → int > 0. "
                            f"Received: pad={pad!r}")
        if isinstance(pad, Mapping) and set(pad) - set(keys):
            raise DataError(f"Sample '{name}': `pad` names features that are not keys: {sorted(set(pad) - set(keys))}; "
                            f"expected some of {sorted(keys)}. Received: pad={dict(pad)!r}")
    if sort_by is not None and (fmt not in _BRANCH_FORMATS or not isinstance(sort_by, str) or not sort_by):
        raise DataError(f"Sample '{name}': `sort_by` names a jagged branch of ROOT or Parquet files. "
                        f"Received: sort_by={sort_by!r}, format={fmt!r}")
    if tfds is not None:
        if not isinstance(tfds, str) or not tfds or tfds.count("/") > 1:
            raise DataError(f"Sample '{name}': `tfds` must be 'name' or 'name/config'. Received: tfds={tfds!r}")
        if files:
            raise DataError(f"Sample '{name}': a tfds sample reads the dataset's own files; drop `files`. "
                            f"Received: files={list(files)!r}")
    for field, value in (("split", split), ("data_dir", data_dir)):
        if value is not None and tfds is None:
            raise DataError(f"Sample '{name}': `{field}` belongs to a tfds sample (with `tfds: name`). "
                            f"Received: {field}={value!r}")
        if value is not None and (not isinstance(value, (str, os.PathLike)) or not os.fspath(value)):
            raise DataError(f"Sample '{name}': `{field}` must be a non-empty string. Received: {field}={value!r}")
    if weight_key is not None and fmt != "hdf5":
        raise DataError(f"Sample '{name}': `weight_key` is read from HDF5 files only; list the weight as a feature "
                        f"of a {fmt} sample. Received: weight_key={weight_key!r}")


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
    d = spec.to_dict()
    if spec.files:
        d["files"] = [f if os.path.isabs(f) else os.path.join(base, f) for f in spec.files]
    if spec.data_dir is not None and not os.path.isabs(spec.data_dir):
        d["data_dir"] = os.path.join(base, spec.data_dir)
    return SampleSpec(**d)
