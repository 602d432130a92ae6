"""Every bad input gets a DataError naming the file and key, what was expected and what was received."""
from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf

from hepflow.data import RECORD_ID, DataError, SampleSpec, load_specs, make_dataset
from tests.conftest import jet_arrays, write_h5


def spec(path, keys=("x",), **kw):
    return SampleSpec(name=kw.pop("name", "a"), files=str(path), keys=list(keys), **kw)


def drain(ds):
    return sum(int(y.shape[0]) for _, y in ds)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"file not found: .*missing\.h5"):
        make_dataset([spec(tmp_path / "missing.h5")])


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(DataError, match=r"matches no file.*Received: files="):
        make_dataset([spec(tmp_path / "*.h5")])


def test_truncated_file(tmp_path):
    path = write_h5(tmp_path / "t.h5", **jet_arrays(2000, seed=1))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(DataError, match=r"cannot open .*t\.h5 as HDF5.*truncated or corrupt"):
        make_dataset([spec(path)])


def test_corrupt_file(tmp_path):
    path = tmp_path / "c.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match=r"cannot open .*c\.h5 as HDF5"):
        make_dataset([spec(path)])


def test_missing_key_lists_available_datasets(tmp_path):
    path = write_h5(tmp_path / "k.h5", **jet_arrays(10, seed=1))
    with pytest.raises(DataError, match=r"key 'nope' does not exist in .*k\.h5.*Available datasets: \['mass', 'pt', 'x'\]"):
        make_dataset([spec(path, keys=("x", "nope"))])


def test_key_naming_a_group(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_group("jets").create_dataset("x", data=np.zeros((4, 2)))
    with pytest.raises(DataError, match="'jets' is a group, not a dataset"):
        make_dataset([spec(path, keys=("jets",))])


def test_non_numeric_dataset(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["names"] = np.array([b"a", b"b"])
    with pytest.raises(DataError, match=r"numeric array.*Received: dtype="):
        make_dataset([spec(path, keys=("names",))])


def test_first_dimension_differs_within_a_file(tmp_path):
    path = write_h5(tmp_path / "d.h5", x=np.zeros((10, 3), "f4"), mass=np.zeros(9, "f4"))
    with pytest.raises(DataError, match=r"'mass' has 9 rows but 'x' has 10.*Received: shape=\(9,\)"):
        make_dataset([spec(path, keys=("x", "mass"))])


def test_shape_differs_between_samples(tmp_path):
    a = write_h5(tmp_path / "a.h5", x=np.zeros((10, 3), "f4"))
    b = write_h5(tmp_path / "b.h5", x=np.zeros((10, 4), "f4"))
    with pytest.raises(DataError, match=r"Feature 'x' differs between samples.*b\.h5.*Received: shape=\(4,\)"):
        make_dataset([spec(a), spec(b, name="b")])


def test_dtype_differs_between_samples(tmp_path):
    a = write_h5(tmp_path / "a.h5", x=np.zeros((10, 3), "f4"))
    b = write_h5(tmp_path / "b.h5", x=np.zeros((10, 3), "f8"))
    with pytest.raises(DataError, match=r"Feature 'x' differs.*dtype=float64"):
        make_dataset([spec(a), spec(b, name="b")])


def test_shape_differs_between_files_of_a_sample(tmp_path):
    write_h5(tmp_path / "s0.h5", x=np.zeros((10, 3), "f4"))
    write_h5(tmp_path / "s1.h5", x=np.zeros((10, 5), "f4"))
    with pytest.raises(DataError, match=r"s1\.h5 has rows of shape \(5,\).*expected \(3,\)"):
        make_dataset([spec(tmp_path / "s*.h5")])


def test_features_differ_between_samples(tmp_path):
    a = write_h5(tmp_path / "a.h5", x=np.zeros((10, 3), "f4"), m=np.zeros(10, "f4"))
    with pytest.raises(DataError, match="same features"):
        make_dataset([spec(a), spec(a, keys=("x", "m"), name="b")])


def test_empty_sample(tmp_path):
    path = write_h5(tmp_path / "e.h5", x=np.zeros((0, 3), "f4"))
    with pytest.raises(DataError, match=r"Sample 'a' is empty: expected at least one row"):
        make_dataset([spec(path)])


def test_empty_after_selection(tmp_path):
    path = write_h5(tmp_path / "e.h5", x=np.zeros((10, 3), "f4"), m=np.zeros(10, "f4"))
    with pytest.raises(DataError, match="empty after its selection"):
        make_dataset([spec(path, keys=("x", "m"), selection="m > 1")])


def test_selection_on_a_non_scalar_feature(tmp_path):
    path = write_h5(tmp_path / "e.h5", x=np.zeros((10, 3), "f4"))
    with pytest.raises(DataError, match=r"one number per row.*shape=\(10, 3\)"):
        make_dataset([spec(path, selection="x > 1")])


@pytest.mark.parametrize("rate", ["0", "-2", ".nan", ".inf"])
def test_bad_rate_from_yaml(tmp_path, rate):
    with pytest.raises(DataError, match="rate"):
        load_specs(f"- {{name: a, files: a.h5, keys: [x], rate: {rate}}}")


def test_too_small_samples_for_one_batch(tmp_path):
    path = write_h5(tmp_path / "small.h5", x=np.zeros((5, 3), "f4"))
    with pytest.raises(DataError, match="too small for one batch"):
        make_dataset([spec(path)], batch_size=10)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_values_raise_naming_file_key_and_row(tmp_path, value):
    x = np.ones((300, 3), "f4")
    x[123, 2] = value
    path = write_h5(tmp_path / "n.h5", x=x)
    ds = make_dataset([spec(path)], batch_size=50, shuffle=0)
    with pytest.raises(tf.errors.OpError, match=r"dataset 'x' in .*n\.h5 holds NaN or Inf at row 123"):
        drain(ds)


def test_nonfinite_rows_dropped_and_logged(tmp_path, caplog):
    x = np.ones((300, 3), "f4")
    x[[5, 123, 124], 1] = [np.nan, np.inf, np.nan]
    m = np.arange(300, dtype="f4")
    m[200] = np.nan
    path = write_h5(tmp_path / "n.h5", x=x, m=m)
    with caplog.at_level(logging.WARNING, logger="hepflow.data.readers"):
        ds = make_dataset([spec(path, keys=("x", "m"))], batch_size=8, epoch="all",
                          drop_remainder=False, on_nonfinite="drop", with_record_id=True)
    assert "dropped 4 rows with NaN/Inf" in caplog.text
    rows = np.concatenate([f[RECORD_ID].numpy()[:, 2] for f, _ in ds])
    assert sorted(rows) == sorted(set(range(300)) - {5, 123, 124, 200})


def _two_file_sample(tmp_path):
    write_h5(tmp_path / "s0.h5", x=np.ones((200, 3), "f4"))
    write_h5(tmp_path / "s1.h5", x=np.ones((200, 3), "f4"))
    return make_dataset([spec(tmp_path / "s*.h5")], batch_size=10, shuffle=0, epoch="all",
                        num_readers=1, chunk_rows=10, prefetch=1)


def test_file_disappearing_mid_epoch(tmp_path):
    ds = _two_file_sample(tmp_path)
    it = iter(ds)
    next(it)
    os.remove(tmp_path / "s1.h5")
    with pytest.raises(tf.errors.OpError, match=r"s1\.h5 disappeared while the pipeline was reading it"):
        for _ in it:
            pass


def test_file_changing_mid_epoch(tmp_path):
    ds = _two_file_sample(tmp_path)
    it = iter(ds)
    next(it)
    write_h5(tmp_path / "s1.h5", x=np.zeros((300, 3), "f4"))
    with pytest.raises(tf.errors.OpError, match=r"s1\.h5 changed while the pipeline was using it"):
        for _ in it:
            pass


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"), (dict(batch_size=2.5), "batch_size"),
    (dict(mix="random"), "mix"), (dict(epoch="forever"), "epoch"), (dict(epoch=0), "epoch"),
    (dict(shuffle=-1), "shuffle"), (dict(on_nonfinite="ignore"), "on_nonfinite"),
    (dict(drop_remainder=False), "drop_remainder=False needs epoch='all'"),
    (dict(cache=3), "cache"), (dict(chunk_rows=0), "chunk_rows"),
    (dict(num_readers=-3), r"num_readers must be None or a positive int. Received: num_readers=-3"),
    (dict(num_readers=0), r"num_readers must be None or a positive int. Received: num_readers=0"),
    (dict(prefetch=-5), r"prefetch must be an int ≥ 0 or tf.data.AUTOTUNE. Received: prefetch=-5"),
    (dict(block_rows=-5), r"block_rows must be None or a positive int. Received: block_rows=-5"),
    (dict(block_rows=0), r"block_rows must be None or a positive int. Received: block_rows=0"),
    (dict(seed="abc"), r"seed must be None or an int in \[0, 2\*\*63\). Received: seed='abc'"),
    (dict(seed=-1), r"seed must be None or an int"),
    (dict(cache=""), r"cache must be None, 'memory', 'auto' or a directory. Received: cache=''"),
    (dict(memory_budget=-1), r"memory_budget must be None or an int ≥ 0"),
    (dict(deterministic="yes"), r"deterministic must be True or False"),
    (dict(transform="normalize"), r"transform must be None or a callable"),
    (dict(service=""), r"service must be None or the address"),
])
def test_bad_options(jet_dir, kwargs, match):
    s = SampleSpec(name="qcd", files=str(jet_dir / "qcd_*.h5"), keys=["x"])
    with pytest.raises(DataError, match=match):
        make_dataset([s], **kwargs)


@pytest.mark.parametrize("field", [dict(rate=True), dict(selection=3), dict(weight_key="")])
def test_bad_spec_fields(jet_dir, field):
    with pytest.raises(DataError, match=f"`{next(iter(field))}` must be"):
        SampleSpec(name="a", files=str(jet_dir / "qcd_0.h5"), keys=["x"], **field)


def test_epoch_all_keeps_the_last_partial_batch_by_default(jet_dir):
    """Every record once means every record: 1200 rows in batches of 512 are 512 + 512 + 176."""
    s = SampleSpec(name="qcd", files=str(jet_dir / "qcd_*.h5"), keys=["x"])
    ds = make_dataset([s], batch_size=512, epoch="all", with_record_id=True, seed=1)
    sizes = [int(y.shape[0]) for _, y in ds]
    assert sizes == [512, 512, 176] and len(ds) == 3
    ids = np.concatenate([f[RECORD_ID].numpy() for f, _ in ds])
    assert len({tuple(r) for r in ids}) == 1200
    assert [int(y.shape[0]) for _, y in make_dataset([s], batch_size=512, epoch="all", drop_remainder=True)] == [512, 512]


def test_bad_label_combinations_and_rates(jet_dir):
    f = str(jet_dir / "qcd_0.h5")
    with pytest.raises(DataError, match="all ints or all vectors"):
        make_dataset([SampleSpec(name="a", files=f, keys=["x"], label=0),
                      SampleSpec(name="b", files=f, keys=["x"], label=[0, 1])])
    with pytest.raises(DataError, match="same length"):
        make_dataset([SampleSpec(name="a", files=f, keys=["x"], label=[1, 0, 0]),
                      SampleSpec(name="b", files=f, keys=["x"], label=[0, 1])])
    with pytest.raises(DataError, match=r"get 0 rows per batch.*mix='sampled'"):
        make_dataset([SampleSpec(name="a", files=f, keys=["x"], rate=1),
                      SampleSpec(name="b", files=f, keys=["x"], rate=1000)], batch_size=16)
    with pytest.raises(DataError, match="unique"):
        make_dataset([SampleSpec(name="a", files=f, keys=["x"])] * 2)


def _all_rows(ds, key):
    return np.concatenate([f[key].numpy() for f, _ in ds])


@pytest.mark.parametrize("chunks", [None, (7, 2)], ids=["contiguous", "chunked"])
def test_big_endian_datasets_are_read_in_the_machines_byte_order(tmp_path, chunks):
    want = np.arange(200, dtype="f4").reshape(100, 2) / 3
    with h5py.File(tmp_path / "be.h5", "w") as f:
        f.create_dataset("x", data=want.astype(">f4"), chunks=chunks)
        f.create_dataset("n", data=np.arange(100, dtype=">i8"), chunks=None if chunks is None else (7,))
    ds = make_dataset([spec(tmp_path / "be.h5", keys=("x", "n"), selection="n != 50")], batch_size=33, epoch="all",
                      shuffle=0, drop_remainder=False)
    np.testing.assert_array_equal(_all_rows(ds, "x"), np.delete(want, 50, axis=0))
    np.testing.assert_array_equal(_all_rows(ds, "n"), np.delete(np.arange(100), 50))
    assert ds.element_spec[0]["x"].dtype == tf.float32


def _linked_files(tmp_path):
    """target.h5 holds y far into the file; link.h5 is larger and links to it (external, soft, virtual)."""
    y = np.arange(300, dtype="f4").reshape(100, 3) + 1000
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f.create_dataset("pad", data=np.full(20_000, 7, "f4"))
        f.create_dataset("y", data=y)
    with h5py.File(tmp_path / "link.h5", "w") as f:
        f.create_dataset("z", data=y - 1000)
        f.create_dataset("big", data=np.full(200_000, -1, "f4"))  # what the linked offset points at here
        f["ext"] = h5py.ExternalLink("target.h5", "y")
        f["soft"] = h5py.SoftLink("/z")
        layout = h5py.VirtualLayout(shape=(100, 3), dtype="f4")
        layout[:50] = h5py.VirtualSource("target.h5", "y", shape=(100, 3))[:50]
        layout[50:] = h5py.VirtualSource(".", "z", shape=(100, 3))[50:]
        f.create_virtual_dataset("virtual", layout)
    return y


def test_external_links_soft_links_and_virtual_datasets_read_the_linked_data(tmp_path, monkeypatch):
    y = _linked_files(tmp_path)
    monkeypatch.chdir(tmp_path)  # external links resolve relative to the linking file or the working folder
    ds = make_dataset([spec(tmp_path / "link.h5", keys=("ext", "soft", "virtual", "z"))], batch_size=40,
                      epoch="all", shuffle=0, drop_remainder=False)
    np.testing.assert_array_equal(_all_rows(ds, "ext"), y)
    np.testing.assert_array_equal(_all_rows(ds, "soft"), y - 1000)
    np.testing.assert_array_equal(_all_rows(ds, "virtual"), np.concatenate([y[:50], y[50:] - 1000]))


def test_a_linked_file_changing_mid_epoch_is_noticed(tmp_path, monkeypatch):
    _linked_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    ds = make_dataset([spec(tmp_path / "link.h5", keys=("ext",))], batch_size=10, epoch="all", shuffle=0,
                      num_readers=1, chunk_rows=10, prefetch=1)
    it = iter(ds)
    next(it)
    os.utime(tmp_path / "target.h5", ns=(1, 1))  # rewritten by someone else
    with pytest.raises(tf.errors.OpError, match=r"target\.h5, which .*link\.h5 links to, changed"):
        for _ in it:
            pass


def test_the_service_refuses_what_its_workers_cannot_read_as_bytes(tmp_path, monkeypatch):
    _linked_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    with h5py.File(tmp_path / "be.h5", "w") as f:
        f.create_dataset("x", data=np.ones((100, 2), ">f4"))
    for path, key in ((tmp_path / "link.h5", "ext"), (tmp_path / "link.h5", "virtual"), (tmp_path / "be.h5", "x")):
        with pytest.raises(DataError, match=r"not native-endian, an external link or a virtual dataset"):
            make_dataset([spec(path, keys=(key,))], batch_size=10, service="grpc://localhost:1")
