"""The reference top-tagging format: files written by pandas itself read back identically."""
from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("tables")

from hepflow.data.formats import read_reference, reference_columns, write_reference  # noqa: E402


def pandas_reference_file(path, n, layout, seed=0):
    """A file as the publishers wrote it: a pandas DataFrame with the published columns."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, 806)).astype(np.float64)
    data[:, -2] = rng.integers(0, 3, n)
    data[:, -1] = rng.integers(0, 2, n)
    df = pd.DataFrame(data, columns=reference_columns())
    df.to_hdf(path, key="table", format=layout, mode="w")
    return df


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_reads_what_pandas_wrote(tmp_path, layout):
    df = pandas_reference_file(tmp_path / "train.h5", 50, layout)
    got = read_reference(tmp_path / "train.h5")
    ref = df.to_numpy()
    np.testing.assert_array_equal(got["constituents"].reshape(50, 800), ref[:, :800].astype(np.float32))
    assert got["constituents"][3, 7, 2] == np.float32(df["PY_7"].iloc[3])  # (E, px, py, pz) per constituent
    np.testing.assert_array_equal(got["truth_top"], df[["truthE", "truthPX", "truthPY", "truthPZ"]].to_numpy(np.float32))
    np.testing.assert_array_equal(got["label"], df["is_signal_new"].to_numpy().astype(np.int8))
    np.testing.assert_array_equal(got["ttv"], df["ttv"].to_numpy().astype(np.int8))
    part = read_reference(tmp_path / "train.h5", start=10, stop=20)
    np.testing.assert_array_equal(part["constituents"], got["constituents"][10:20])


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_round_trip_through_the_writer(tmp_path, layout):
    rng = np.random.default_rng(1)
    arrays = {"constituents": rng.normal(size=(20, 200, 4)).astype(np.float32),
              "label": rng.integers(0, 2, 20).astype(np.int8),
              "truth_top": rng.normal(size=(20, 4)).astype(np.float32)}
    write_reference(tmp_path / "x.h5", arrays, layout=layout)
    back = read_reference(tmp_path / "x.h5")
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
    assert list(pd.read_hdf(tmp_path / "x.h5", key="table").columns) == reference_columns()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_wrong_files_are_named(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0]}).to_hdf(tmp_path / "other.h5", key="table", mode="w")
    with pytest.raises(ValueError, match=r"other\.h5: key 'table' lacks 806 reference columns"):
        read_reference(tmp_path / "other.h5")
    pd.DataFrame({"a": [1.0]}).to_hdf(tmp_path / "k.h5", key="jets", mode="w")
    with pytest.raises(ValueError, match=r"k\.h5: cannot read key 'table'"):
        read_reference(tmp_path / "k.h5")
