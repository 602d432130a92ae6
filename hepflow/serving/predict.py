"""``predict``: score a file with an exported SavedModel, streaming through the pipeline.

The input is an HDF5 file (datasets named like the model's raw inputs, or mapped by ``keys``),
a file in the published top-tagging layout (recognised by its pandas table; ``constituents``
and the other features of :mod:`hepflow.data.sources.published`), or a ROOT/Parquet file
(``keys`` name the branches; jagged branches are padded to the length the model takes).

The output file holds ``score`` ``(n_rows,)`` float32 (``(n_rows, K)`` for K > 2 classes) aligned
with the input file's rows (each batch is written at the rows its record ids name, so reader
order cannot misplace a score). It is written to a temporary name and renamed when complete: an
interrupted run leaves no output.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import h5py
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from hepflow.data import RECORD_ID, DataError, SampleSpec, make_dataset
from hepflow.data.readers import inspect_sample
from hepflow.data.sources.published import is_top_tagging_file
from hepflow.errors import carried_message
from hepflow.io import atomic_path
from hepflow.serving.export import METADATA_FILE

__all__ = ["predict_file", "load_metadata"]


def load_metadata(model_dir: str) -> dict:
    """The ``assets.extra/hepflow.json`` of an export."""
    path = os.path.join(model_dir, METADATA_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{model_dir} is not a hepflow export: {METADATA_FILE} is missing.")
    with open(path) as f:
        return json.load(f)


def predict_file(model_dir: str, input_path: str, output_path: str, *,
                 keys: Mapping[str, str | Sequence[str]] | None = None, batch_size: int = 1024,
                 progress: bool = True, sort_by: str | None = None) -> int:
    """Scores every row of ``input_path`` with the export's ``serving_default`` signature.

    Args:
        model_dir: An export version folder (``.../<name>/<version>``).
        input_path: HDF5 file holding the raw inputs.
        output_path: Output HDF5 file (dataset ``score``); replaced atomically.
        keys: Raw input name → HDF5 dataset path (ROOT/Parquet: branch, or a list of
            branches stacked on a last axis); default each input's own name.
        batch_size: Rows per call of the model.
        progress: Show a progress bar.
        sort_by: ROOT/Parquet: the branch that orders each event's lists (decreasing)
            before they are cut to the length the model takes.

    Returns:
        The number of rows scored.

    Raises:
        DataError: a missing file or key, or a feature whose per-row shape or dtype differs
            from what the export takes (named, with both).
    """
    out_dir = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(out_dir):
        raise DataError(f"The output folder {out_dir} does not exist; create it first. Received: output={output_path!r}")
    if not os.path.isfile(input_path):
        raise DataError(f"Input file not found: {input_path}. Received: input={input_path!r}")
    meta = load_metadata(model_dir)
    raw = meta["raw_inputs"]
    keys = dict(keys or {name: name for name in raw})
    if set(keys) != set(raw):
        raise DataError(f"The model takes inputs {sorted(raw)}. Received: keys={keys!r}")
    spec = _input_spec(input_path, keys, raw, sort_by)
    layout = inspect_sample(spec, 0)
    for name, want in raw.items():
        have = layout.features[name]
        if list(have.row_shape) != list(want["shape"][1:]) or np.dtype(have.dtype).name != want["dtype"]:
            what = "dataset" if spec.format == "hdf5" else f"{spec.format} feature '{name}' from"
            raise DataError(f"{input_path}: {what} '{have.path}' has rows of shape {have.row_shape} and dtype "
                            f"{have.dtype}; the model expects {tuple(want['shape'][1:])} {want['dtype']}. "
                            f"Received: {have.row_shape} {have.dtype}")
    n_rows = int(layout.counts.sum())
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    ds = make_dataset([spec], batch_size=batch_size, epoch="all", shuffle=0, drop_remainder=False,
                      with_record_id=True, cache=None)
    written = np.zeros(n_rows, bool)
    with atomic_path(output_path) as tmp:
        with h5py.File(tmp, "w") as out:
            scores = None  # created at the first batch: (n_rows,) or (n_rows, K) for K classes
            out.attrs["model"] = os.path.abspath(model_dir)
            out.attrs["input"] = os.path.abspath(input_path)
            try:
                for x, _ in tqdm(ds, total=len(ds), unit="batch", desc="predicting", disable=not progress):
                    rows = x[RECORD_ID].numpy()[:, 2]
                    s = serve(**{name: x[name] for name in raw})["score"].numpy()
                    if scores is None:
                        scores = out.create_dataset("score", (n_rows,) + s.shape[1:], "f4")
                    order = np.argsort(rows)
                    scores[rows[order]] = s[order]  # h5py fancy indexing wants increasing rows
                    written[rows] = True
            except tf.errors.OpError as e:  # a bad row met mid-file (NaN, a changed file): no output
                raise DataError(carried_message(str(e)) or " ".join(str(e).splitlines()[0].split())) from None
            if not written.all():
                raise DataError(f"{input_path}: {int((~written).sum())} rows were not scored.")
    return n_rows


def _input_spec(path: str, keys: Mapping[str, str | Sequence[str]], raw: Mapping[str, dict],
                sort_by: str | None) -> SampleSpec:
    """The one-sample spec of a predict input, its format recognised from the file."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".root", ".parquet", ".pq"):
        pad = {name: int(want["shape"][1]) for name, want in raw.items() if len(want["shape"]) >= 2}
        return SampleSpec(name="input", files=[path], keys=keys, pad=pad or None, sort_by=sort_by)
    if sort_by is not None:
        raise DataError(f"sort_by orders the lists of ROOT and Parquet inputs. Received: sort_by={sort_by!r}, "
                        f"input={path!r}")
    fmt = "top_tagging" if is_top_tagging_file(path) else "hdf5"
    return SampleSpec(name="input", files=[path], keys=keys, format=fmt)
