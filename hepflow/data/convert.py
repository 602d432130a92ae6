"""``hepflow convert``: native HDF5 copies of any sample source, the fastest path to stream.

Every source file becomes ``OUT/<sample>/<file>.h5`` holding the sample's features (padded as
the spec says, rows that pass its selection) plus ``entry``, the row's entry number in the
source file. Each output records the source's fingerprint (path, size, mtime, the spec); a
rerun skips outputs whose fingerprint matches, so an interrupted conversion resumes where it
stopped. Files are written to a temporary name and renamed when complete. ``OUT/samples.yaml``
lists the converted samples as HDF5 specs (same names, labels and rates).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import h5py
import numpy as np
import yaml
from tqdm import tqdm

from hepflow.data.readers import BlockReader, inspect_sample
from hepflow.data.samples import SampleSpec
from hepflow.errors import DataError
from hepflow.io import atomic_path, write_atomic

__all__ = ["convert_specs", "SOURCE_ATTR"]

SOURCE_ATTR = "hepflow_source"
_BLOCK_BYTES = 32 << 20


def convert_specs(specs: Sequence[SampleSpec], out_dir: str, *, progress: bool = True) -> dict[str, int]:
    """Converts every file of every sample; returns rows written per sample (skipped files included).

    Raises:
        DataError: bad specs or files (as the pipeline raises them), or an output path that
            holds a file hepflow did not write (it is never replaced).
    """
    os.makedirs(out_dir, exist_ok=True)
    written: dict[str, int] = {}
    entries = []
    for spec in specs:
        layout = inspect_sample(spec, 0)
        reader = BlockReader([layout])
        folder = os.path.join(out_dir, spec.name)
        os.makedirs(folder, exist_ok=True)
        names = []
        for k, info in enumerate(layout.files):
            stem = os.path.splitext(os.path.basename(info.path))[0]
            path = os.path.join(folder, f"{k:04d}_{stem}.h5")
            names.append(os.path.basename(path))
            fp = json.dumps({"path": info.path, "size": info.size, "mtime_ns": info.mtime_ns,
                             "spec": spec.to_dict()}, sort_keys=True)
            if _up_to_date(path, fp):
                continue
            _convert_file(layout, reader, k, path, fp, progress=progress)
        written[spec.name] = layout.n_rows
        entries.append({"name": spec.name, "files": [f"{spec.name}/{n}" for n in names],
                        "keys": sorted(layout.features), "label": spec.to_dict()["label"], "rate": spec.rate})
    write_atomic(os.path.join(out_dir, "samples.yaml"),
                 "# written by hepflow convert: the converted samples as HDF5 specs\n"
                 + yaml.safe_dump(entries, sort_keys=False))
    return written


def _up_to_date(path: str, fp: str) -> bool:
    if not os.path.exists(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            have = f.attrs.get(SOURCE_ATTR)
    except OSError:
        have = None
    if have is None:
        raise DataError(f"{path} exists and was not written by hepflow convert; move it away or choose another "
                        "output folder (hepflow never replaces files it did not write). Received: an unknown file")
    return (have.decode() if isinstance(have, bytes) else str(have)) == fp


def _convert_file(layout, reader: BlockReader, k: int, path: str, fp: str, *, progress: bool) -> None:
    n = int(layout.counts[k])
    row_bytes = sum(int(np.prod(f.row_shape, dtype=np.int64)) * f.dtype.itemsize for f in layout.features.values())
    step = int(np.clip(_BLOCK_BYTES // max(row_bytes, 1), 256, 1 << 18))
    sel = layout.rows[k]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            dsets = {name: out.create_dataset(name, (n,) + f.row_shape, f.dtype) for name, f in layout.features.items()}
            out.create_dataset("entry", data=np.arange(n, dtype=np.int64) if sel is None else sel)
            bar = tqdm(total=n, unit="row", desc=os.path.basename(path), disable=not progress, leave=False)
            for a in range(0, n, step):
                b = min(a + step, n)
                buf = {name: np.empty((b - a,) + f.row_shape, f.dtype) for name, f in layout.features.items()}
                reader.read(0, k, a, b, buf, 0)
                for name, d in dsets.items():
                    d[a:b] = buf[name]
                bar.update(b - a)
            bar.close()
            out.attrs[SOURCE_ATTR] = fp
