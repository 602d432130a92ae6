"""ROOT, Parquet, the published top-tagging layout and tfds as sample sources: the same rows as the
HDF5 files they were written from, record ids, mixing, the cache, and errors in the house style."""
from __future__ import annotations

import glob
import os

import h5py
import numpy as np
import pytest

from hepflow.data import SampleSpec, make_dataset
from hepflow.data.pipeline import Pipeline
from hepflow.data.readers import inspect_sample
from hepflow.errors import DataError

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")
pq = pytest.importorskip("pyarrow.parquet")

from hepflow.data.formats.ntuples import PARTICLE_BRANCHES, write_jets_parquet, write_jets_root  # noqa: E402

WRITERS = {"root": write_jets_root, "parquet": write_jets_parquet}


@pytest.fixture(scope="module")
def ntuples(pythia_jets_dir, tmp_path_factory):
    """The Pythia jets of the session as ROOT and Parquet files (small baskets/row groups: 5 entries)."""
    root = tmp_path_factory.mktemp("ntuples")
    for fmt, write in WRITERS.items():
        for src in sorted(glob.glob(str(pythia_jets_dir / "*.h5"))):
            name = os.path.splitext(os.path.basename(src))[0]
            kw = {"basket_entries": 5} if fmt == "root" else {"row_group_rows": 5}
            write(src, str(root / fmt / f"{name}.{fmt}"), seed=7, **kw) if os.makedirs(root / fmt, exist_ok=True) is None else None
    return root


def jet_spec(folder, fmt, cls, label, **kw):
    return SampleSpec(name=cls, files=str(folder / fmt / f"{cls}_*.{fmt}"), label=label,
                      keys={"constituents": list(PARTICLE_BRANCHES), "mass": "jet_mass"}, **kw)


def pt_ordered(c):
    pt = np.hypot(c[..., 1], c[..., 2])
    return np.take_along_axis(c, np.argsort(-pt, axis=1, kind="stable")[..., None], axis=1)


def hdf5_rows(pythia_jets_dir, cls):
    files = sorted(glob.glob(str(pythia_jets_dir / f"{cls}_*.h5")))
    out = []
    for path in files:
        with h5py.File(path, "r") as f:
            out.append((f["constituents"][...], f["mass"][...], f["n_constituents"][...]))
    return out


@pytest.mark.parametrize("fmt", ["root", "parquet"])
def test_jagged_branches_read_back_as_the_hdf5_jets_exactly_once(ntuples, pythia_jets_dir, fmt):
    specs = [jet_spec(ntuples, fmt, "qcd", 0, pad=200, sort_by="part_pt"),
             jet_spec(ntuples, fmt, "top", 1, pad=200, sort_by="part_pt")]
    ref = {i: hdf5_rows(pythia_jets_dir, cls) for i, cls in enumerate(("qcd", "top"))}
    p = Pipeline(specs, batch_size=16, epoch="all", shuffle=64, seed=3, with_record_id=True, cache="memory")
    assert p.layouts[0].features["constituents"].row_shape == (200, 4)
    assert p.layouts[0].features["constituents_mask"].dtype == np.bool_
    epochs = []
    for _ in range(2):  # the second epoch comes from the cache
        seen = []
        for x, y in p.dataset:
            for rid, c, m, mask, lab in zip(x["record_id"].numpy(), x["constituents"].numpy(), x["mass"].numpy(),
                                            x["constituents_mask"].numpy(), y.numpy()):
                s, f, r = (int(v) for v in rid)
                const, mass, n = ref[s][f]
                assert lab == s
                np.testing.assert_array_equal(c, pt_ordered(const[r:r + 1])[0])  # sorted by part_pt, padded
                assert m == mass[r] and mask.sum() == n[r] and mask[:n[r]].all()
                seen.append((s, f, r))
        assert len(seen) == len(set(seen)) == 240  # every jet once
        epochs.append(sorted(seen))
    assert epochs[0] == epochs[1] and p.cache.complete(0) and p.cache.complete(1)


@pytest.mark.parametrize("fmt", ["root", "parquet"])
def test_pad_truncates_the_hardest_particles_and_selection_uses_any_branch(ntuples, pythia_jets_dir, fmt):
    spec = jet_spec(ntuples, fmt, "top", 1, pad=20, sort_by="part_pt", selection="jet_pt > 600")
    lay = inspect_sample(spec, 0)
    with_pt = []
    for path in sorted(glob.glob(str(pythia_jets_dir / "top_*.h5"))):
        with h5py.File(path, "r") as f:
            with_pt.append(f["pt"][...])
    assert lay.n_rows == sum(int((p > 600).sum()) for p in with_pt) and 0 < lay.n_rows < 120
    ref = hdf5_rows(pythia_jets_dir, "top")
    for x, _ in make_dataset([spec], batch_size=8, epoch="all", shuffle=0, with_record_id=True,
                             drop_remainder=False):
        for rid, c in zip(x["record_id"].numpy(), x["constituents"].numpy()):
            _, f, r = (int(v) for v in rid)
            assert with_pt[f][r] > 600
            np.testing.assert_array_equal(c, pt_ordered(ref[f][0][r:r + 1])[0, :20])


def test_without_sort_by_the_file_order_is_kept(ntuples):
    spec = jet_spec(ntuples, "root", "qcd", 0, pad=50)
    x, _ = next(iter(make_dataset([spec], batch_size=4, epoch="all", shuffle=0)))
    with uproot.open(str(ntuples / "root" / "qcd_00000.root")) as f:
        e = f["Events"]["part_E"].array(entry_stop=4)
    for i in range(4):
        n = min(len(e[i]), 50)
        np.testing.assert_array_equal(x["constituents"].numpy()[i, :n, 0], ak.to_numpy(e[i][:n]))


def test_root_errors_name_the_tree_branch_and_what_exists(ntuples, tmp_path):
    files = str(ntuples / "root" / "qcd_00000.root")
    with pytest.raises(DataError, match=r"TTree 'Jets' does not exist .*available: \['Events'\]"):
        inspect_sample(SampleSpec(name="s", files=files, tree="Jets", keys=["jet_pt"]), 0)
    with pytest.raises(DataError, match=r"branch 'part_e' does not exist .*available: \[.*'part_E'"):
        inspect_sample(SampleSpec(name="s", files=files, keys={"c": ["part_e", "part_px"]}, pad=10), 0)
    with pytest.raises(DataError, match=r"holds a list per event .* give `pad`"):
        inspect_sample(SampleSpec(name="s", files=files, keys=["part_pt"]), 0)
    with pytest.raises(DataError, match=r"stacks jagged and flat"):
        inspect_sample(SampleSpec(name="s", files=files, keys={"c": ["part_pt", "jet_pt"]}, pad=10), 0)
    with pytest.raises(DataError, match=r"sort_by 'jet_pt' .* is not a jagged"):
        inspect_sample(SampleSpec(name="s", files=files, keys=["jet_mass"], sort_by="jet_pt"), 0)
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"not a root file" * 10)
    with pytest.raises(DataError, match=r"cannot open .*bad.root as a ROOT file"):
        inspect_sample(SampleSpec(name="s", files=str(bad), keys=["jet_pt"]), 0)
    two = tmp_path / "two.root"
    with uproot.recreate(two) as f:
        f.mktree("A", {"x": np.float32})
        f.mktree("B", {"x": np.float32})
        f["A"].extend({"x": np.ones(3, np.float32)})
        f["B"].extend({"x": np.ones(3, np.float32)})
    with pytest.raises(DataError, match=r"holds 2 TTrees \['A', 'B'\]; name one with `tree:`"):
        inspect_sample(SampleSpec(name="s", files=str(two), keys=["x"]), 0)
    assert inspect_sample(SampleSpec(name="s", files=str(two), tree="B", keys=["x"]), 0).n_rows == 3


def test_branches_of_different_lengths_cannot_be_stacked(tmp_path):
    path = tmp_path / "ragged.root"
    with uproot.recreate(path) as f:
        f.mktree("Events", {"a": "var * float32", "b": "var * float32"})
        f["Events"].extend({"a": ak.Array([[1.0, 2.0], [3.0]]), "b": ak.Array([[1.0], [3.0]])})
    spec = SampleSpec(name="s", files=str(path), keys={"ab": ["a", "b"]}, pad=4)
    with pytest.raises(Exception, match=r"'a' and 'b' have different lengths in entry 0 \(2 and 1\)"):
        list(make_dataset([spec], batch_size=2, epoch="all", shuffle=0))


def test_a_file_changed_mid_epoch_and_the_service_are_refused(ntuples, tmp_path):
    import shutil

    src = tmp_path / "jets.parquet"
    shutil.copy(ntuples / "parquet" / "qcd_00000.parquet", src)
    spec = SampleSpec(name="s", files=str(src), keys={"c": list(PARTICLE_BRANCHES)}, pad=30)
    ds = make_dataset([spec], batch_size=2, epoch="all", shuffle=0, chunk_rows=2, block_rows=2, num_readers=1)
    it = iter(ds)
    next(it)
    shutil.copy(ntuples / "parquet" / "top_00000.parquet", tmp_path / "new.parquet")
    os.replace(tmp_path / "new.parquet", src)  # rewritten as tools do: a new file renamed onto the old name
    with pytest.raises(Exception, match=r"changed while the pipeline was using it"):
        for _ in it:
            pass
    with pytest.raises(DataError, match=r"is a parquet sample .*hepflow convert"):
        Pipeline([jet_spec(ntuples, "parquet", "qcd", 0, pad=10)], batch_size=4, service="grpc://localhost:1")


@pytest.mark.parametrize("kwargs, message", [
    ({"files": "a.root", "keys": ["x"], "format": "csv"}, r"unknown `format`"),
    ({"files": "a.h5", "keys": ["x"], "pad": 10}, r"`pad` applies to the jagged branches of ROOT and Parquet"),
    ({"files": "a.h5", "keys": {"c": ["x", "y"]}}, r"only ROOT and Parquet samples stack"),
    ({"files": "a.root", "keys": ["x"], "weight_key": "w"}, r"`weight_key` is read from HDF5 files only"),
    ({"files": ["a.root", "b.h5"], "keys": ["x"]}, r"its files mix formats"),
    ({"files": "a.root", "keys": ["x"], "pad": {"y": 3}}, r"`pad` names features that are not keys"),
    ({"files": "a.h5", "keys": ["x"], "split": "train"}, r"`split` belongs to a tfds sample"),
    ({"keys": ["x"], "tfds": "a/b/c"}, r"`tfds` must be 'name' or 'name/config'"),
])
def test_bad_source_fields_are_refused_in_one_line(kwargs, message):
    with pytest.raises(DataError, match=message):
        SampleSpec(name="s", **kwargs)


def test_specs_round_trip_through_to_dict():
    spec = SampleSpec(name="s", files="a.root", tree="Events", keys={"c": ["a", "b"], "m": "m"}, pad={"c": 5},
                      sort_by="a", selection="m > 1", label=1)
    again = SampleSpec(**spec.to_dict())
    assert again == spec and hash(again) == hash(spec) and again.keys["c"] == ("a", "b")
    assert SampleSpec(name="t", tfds="top_tagging/reference", keys=["constituents"]).split == "train"


# -- the published top-tagging files -------------------------------------------------------------------------
pd = pytest.importorskip("pandas")


def published_file(path, pythia_file_pair, layout):
    """Both classes of a file pair in the published layout, ``is_signal_new`` as an int64 column
    (its own pandas block, as in the real files)."""
    from hepflow.data.formats import reference_columns

    cols, labels = [], []
    for src in pythia_file_pair:
        with h5py.File(src, "r") as f:
            cols.append(np.concatenate([f["constituents"][...].reshape(-1, 800), f["truth_top"][...]], axis=1))
            labels.append(f["label"][...])
    data = np.concatenate(cols).astype(np.float64)
    df = pd.DataFrame(data, columns=reference_columns()[:804])
    df["ttv"] = np.zeros(len(df), np.int64)
    df["is_signal_new"] = np.concatenate(labels).astype(np.int64)
    df.to_hdf(path, key="table", format=layout, mode="w")
    return data[:, :800].astype(np.float32).reshape(-1, 200, 4), np.concatenate(labels)


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_the_published_layout_is_a_source_with_labels_from_is_signal_new(pythia_jets_dir, tmp_path, layout):
    pair = [pythia_jets_dir / "qcd_00001.h5", pythia_jets_dir / "top_00001.h5"]
    const, labels = published_file(tmp_path / "train.h5", pair, layout)
    specs = [SampleSpec(name=n, files=str(tmp_path / "train.h5"), format="top_tagging", label=lab,
                        keys=["constituents", "is_signal_new", "truth_top"], selection=f"is_signal_new == {lab}")
             for n, lab in (("qcd", 0), ("top", 1))]
    lay = inspect_sample(specs[1], 1)
    assert lay.n_rows == int(labels.sum()) and lay.features["is_signal_new"].dtype == np.int8
    n = 0
    for x, y in make_dataset(specs, batch_size=4, epoch="all", shuffle=0, with_record_id=True, drop_remainder=False):
        rows = x["record_id"].numpy()[:, 2]
        np.testing.assert_array_equal(x["constituents"].numpy(), const[rows])
        np.testing.assert_array_equal(y.numpy(), labels[rows])
        np.testing.assert_array_equal(x["is_signal_new"].numpy(), labels[rows])
        n += len(rows)
    assert n == len(labels)
    with pytest.raises(DataError, match=r"is not in the published top-tagging layout: .*Received: top-level keys"):
        inspect_sample(SampleSpec(name="s", files=str(pair[0]), format="top_tagging", keys=["constituents"]), 0)
    pd.DataFrame({"E_0": [1.0], "is_signal_new": [1]}).to_hdf(tmp_path / "short.h5", key="table", format=layout)
    with pytest.raises(DataError, match=r"feature 'constituents' needs columns \['PX_0', 'PY_0', 'PZ_0', 'E_1'\]…"):
        inspect_sample(SampleSpec(name="s", files=str(tmp_path / "short.h5"), format="top_tagging",
                                  keys=["constituents"]), 0)


# -- tfds ------------------------------------------------------------------------------------------------------
tfds = pytest.importorskip("tensorflow_datasets")
DUMMY = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "top_tagging", "dummy_data", "reference")


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    from hepflow.cli.main import main

    d = tmp_path_factory.mktemp("tfds")
    assert main(["datasets", "build", "top_tagging", "--config", "reference", "--data-dir", str(d),
                 "--manual-dir", DUMMY]) == 0
    return d


def test_a_tfds_split_is_a_source_with_the_same_rows_as_tfds_load(tfds_dir):
    import hepflow.datasets  # noqa: F401 -- registers top_tagging

    want = list(tfds.load("top_tagging/reference", split="train", data_dir=str(tfds_dir),
                          shuffle_files=False).as_numpy_iterator())
    specs = [SampleSpec(name=n, tfds="top_tagging/reference", split="train", data_dir=str(tfds_dir), label=lab,
                        keys=["constituents", "mass"], selection=f"label == {lab}") for n, lab in (("qcd", 0), ("top", 1))]
    got = 0
    for x, y in make_dataset(specs, batch_size=2, epoch="all", shuffle=0, with_record_id=True, drop_remainder=False):
        for rid, c, m, lab in zip(x["record_id"].numpy(), x["constituents"].numpy(), x["mass"].numpy(), y.numpy()):
            ex = want[int(rid[2])]
            np.testing.assert_array_equal(c, ex["constituents"])
            assert m == ex["mass"] and lab == ex["label"]
            got += 1
    assert got == len(want) == 10 and {int(e["label"]) for e in want} == {0, 1}
    with pytest.raises(DataError, match=r"has no split 'tests'; available: \['test', 'train', 'validation'\]"):
        inspect_sample(SampleSpec(name="s", tfds="top_tagging/reference", split="tests", data_dir=str(tfds_dir),
                                  keys=["mass"]), 0)
    with pytest.raises(DataError, match=r"has no feature 'pt_'; available: \[.*'pt'"):
        inspect_sample(SampleSpec(name="s", tfds="top_tagging/reference", data_dir=str(tfds_dir), keys=["pt_"]), 0)
    with pytest.raises(DataError, match=r"is not prepared in .*hepflow datasets build top_tagging"):
        inspect_sample(SampleSpec(name="s", tfds="top_tagging/reference", data_dir=str(tfds_dir / "none"),
                                  keys=["mass"]), 0)


def test_a_config_with_tfds_samples_uses_the_datasets_splits(tfds_dir):
    from hepflow.runs import split_specs

    samples = [{"name": "qcd", "tfds": "top_tagging/reference", "data_dir": str(tfds_dir), "keys": ["constituents"],
                "selection": "label == 0", "label": 0}]
    parts = split_specs({"data": {"dir": ".", "samples": samples, "split": {"validation": 0.1, "test": 0.1}}})
    assert [[s.split for s in parts[k]] for k in ("train", "validation", "test")] == [["train"], ["validation"], ["test"]]
    with pytest.raises(DataError, match=r"has no 'validation' split other than the training one"):
        split_specs({"data": {"dir": ".", "samples": [{**samples[0], "split": "validation"}],
                              "split": {"validation": 0.1, "test": 0.0}}})


# -- hepflow inspect FILE and hepflow convert ------------------------------------------------------------------
def test_inspect_lists_trees_branches_columns_and_the_published_layout(ntuples, pythia_jets_dir, tmp_path, capsys):
    from hepflow.cli.main import main

    assert main(["inspect", str(ntuples / "root" / "qcd_00000.root")]) == 0
    out = capsys.readouterr().out
    assert "tree Events: 12 entries" in out and "part_pt" in out and "float[]" in out and "AsJagged" in out
    assert main(["inspect", str(ntuples / "parquet" / "qcd_00000.parquet")]) == 0
    out = capsys.readouterr().out
    assert "12 rows in 3 row group(s)" in out and "list<element: float>" in out
    published_file(tmp_path / "p.h5", [pythia_jets_dir / "qcd_00000.h5", pythia_jets_dir / "top_00000.h5"], "fixed")
    assert main(["inspect", str(tmp_path / "p.h5")]) == 0
    assert "published top-tagging layout (pandas fixed), 24 jets" in capsys.readouterr().out


def test_convert_writes_hdf5_that_streams_the_same_rows_resumes_and_keeps_foreign_files(ntuples, tmp_path, capsys):
    import yaml

    from hepflow.cli.main import main
    from hepflow.data import load_specs

    specs = [jet_spec(ntuples, "root", "top", 1, pad=40, sort_by="part_pt", selection="jet_pt > 580").to_dict()]
    (tmp_path / "specs.yaml").write_text(yaml.safe_dump(specs))
    out = tmp_path / "converted"
    assert main(["convert", str(tmp_path / "specs.yaml"), str(out)]) == 0
    n = inspect_sample(SampleSpec(**specs[0]), 0).n_rows
    assert f"top: {n:,} rows" in capsys.readouterr().out
    converted = load_specs(str(out / "samples.yaml"))
    assert converted[0].format == "hdf5" and converted[0].label == 1

    def rows(spec_list):
        got = {}
        for x, _ in make_dataset(spec_list, batch_size=4, epoch="all", shuffle=0, with_record_id=True,
                                 drop_remainder=False):
            for rid, c, m in zip(x["record_id"].numpy(), x["constituents"].numpy(), x["constituents_mask"].numpy()):
                got[(int(rid[1]), int(rid[2]))] = (c, m)
        return got

    src = rows([SampleSpec(**specs[0])])
    dst = rows(converted)
    entries = {}
    for path in sorted((out / "top").iterdir()):
        with h5py.File(path, "r") as f:
            entries[len(entries)] = f["entry"][...]
    assert len(src) == len(dst) == n
    for (f, row), (c, m) in dst.items():
        want_c, want_m = src[(f, int(entries[f][row]))]  # the converted row keeps its source entry number
        np.testing.assert_array_equal(c, want_c)
        np.testing.assert_array_equal(m, want_m)
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "top").iterdir()}
    assert main(["convert", str(tmp_path / "specs.yaml"), str(out)]) == 0  # resumes: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (out / "top").iterdir()} == stamp
    first = sorted(stamp)[0]
    (out / "top" / first).unlink()
    (out / "top" / first).write_bytes(b"mine")
    assert main(["convert", str(tmp_path / "specs.yaml"), str(out)]) == 2
    assert "was not written by hepflow convert" in capsys.readouterr().err
    assert (out / "top" / first).read_bytes() == b"mine"
