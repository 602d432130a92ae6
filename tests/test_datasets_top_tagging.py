"""The generated top_tagging config builds offline and loads through tfds and the hepflow CLI."""
from __future__ import annotations

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("pythia8mc")

from hepflow.datasets import TopTagging, TopTaggingConfig  # noqa: E402


def test_tiny_generated_config_builds_and_loads(tmp_path):
    cfg = TopTaggingConfig(name="tiny", n_train=8, n_validation=4, n_test=4, workers=1, mpi=False)
    builder = TopTagging(config=cfg, data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 8
    ds = builder.as_dataset(split="train")
    ex = list(ds.as_numpy_iterator())
    labels = sorted(int(e["label"]) for e in ex)
    assert labels == [0] * 4 + [1] * 4
    top = [e for e in ex if e["label"] == 1]
    assert all(550 < e["pt"] < 650 for e in ex) and all(e["constituents"].shape == (200, 4) for e in ex)
    assert np.median([e["mass"] for e in top]) > 120
    # as_supervised gives (constituents, label) for Keras
    x, y = next(iter(builder.as_dataset(split="test", as_supervised=True)))
    assert x.shape == (200, 4) and y.dtype.name == "int64"


def test_registered_name_and_configs():
    import hepflow.datasets  # noqa: F401

    assert "top_tagging" in tfds.list_builders()
    assert [c.name for c in TopTagging.BUILDER_CONFIGS] == ["generated", "generated_beam", "pileup_mu20", "pileup_mu60",
                                                           "pileup_mu140", "reference"]


@pytest.mark.slow
def test_tiny_pileup_config_keeps_the_pileup_free_jets(tmp_path):
    """Same seeds with and without pileup: the pileup config's nopu_* jets are the generated config's jets."""
    kw = dict(n_train=4, n_validation=2, n_test=2, workers=1, mpi=False)
    plain = TopTagging(config=TopTaggingConfig(name="tiny", **kw), data_dir=str(tmp_path / "plain"))
    pileup = TopTagging(config=TopTaggingConfig(name="tiny_pu", pileup_mu=20.0, minbias_events=40, **kw),
                        data_dir=str(tmp_path / "pu"))
    for b in (plain, pileup):
        b.download_and_prepare()
    a = {e["pt"]: e for e in plain.as_dataset(split="train").as_numpy_iterator()}
    b = list(pileup.as_dataset(split="train").as_numpy_iterator())
    assert len(b) == 4 and all(e["constituents"].shape == (512, 4) for e in b)
    for e in b:
        twin = a[e["nopu_pt"]]
        np.testing.assert_array_equal(e["nopu_constituents"], twin["constituents"])
        assert e["pt"] > e["nopu_pt"] and 5 < e["n_pileup"] < 40 and set(np.unique(e["track_vertex"])) <= {-1, 0, 1}


def test_cli_builds_the_reference_config_from_a_manual_dir(tmp_path, capsys):
    import os

    from hepflow.cli.main import main

    manual = os.path.join(os.path.dirname(__file__), "..", "datasets", "top_tagging", "dummy_data", "reference")
    assert main(["datasets", "build", "top_tagging", "--config", "reference", "--data-dir", str(tmp_path),
                 "--manual-dir", manual]) == 0
    assert "train 10, validation 4, test 4" in capsys.readouterr().out
    import hepflow.datasets  # noqa: F401

    ds = tfds.load("top_tagging/reference", split="train", data_dir=str(tmp_path))
    assert len(list(ds)) == 10


def test_jet_classes_builds_trees_and_reads_as_a_hepflow_sample(tmp_path):
    """A tiny jet_classes config (W vs QCD with trees) builds offline and feeds the pipeline as tfds samples."""
    import dataclasses

    from hepflow.data import SampleSpec, make_dataset
    from hepflow.datasets import JetClasses

    base = JetClasses.BUILDER_CONFIGS[1]
    cfg = dataclasses.replace(base, name="tiny", n_train=4, n_validation=2, n_test=2, workers=2, mpi=False)
    builder = JetClasses(config=cfg, data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 8
    assert builder.info.features["label"].names == ["QCD", "W"]
    specs = [SampleSpec(name=n, tfds="jet_classes/tiny", data_dir=str(tmp_path), label=lab, selection=f"label == {lab}",
                        keys={"constituents": "constituents", "tree": "tree_kt", "lund": "lund"})
             for n, lab in (("qcd", 0), ("w", 1))]
    x, y = next(iter(make_dataset(specs, batch_size=8, epoch="all", shuffle=0)))
    assert x["tree"].dtype.name == "int16" and x["tree"].shape == (8, 199, 2) and x["lund"].shape == (8, 199, 5)
    assert sorted(y.numpy().tolist()) == [0] * 4 + [1] * 4
    n = (x["constituents"].numpy()[..., 0] > 0).sum(axis=1)
    assert all((x["tree"].numpy()[i, :n[i] - 1] >= 0).all() for i in range(8))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_beam_engine_gives_the_process_pool_examples(tmp_path, workers):
    """Same seeds, same examples under the same keys, whatever generates the chunks."""
    from apache_beam.options.pipeline_options import PipelineOptions

    kw = dict(n_train=8, n_validation=2, n_test=2, workers=1, mpi=False)
    pool = TopTagging(config=TopTaggingConfig(name="tiny", **kw), data_dir=str(tmp_path / "pool"))
    pool.download_and_prepare()
    beam = TopTagging(config=TopTaggingConfig(name="tiny", engine="beam", **kw), data_dir=str(tmp_path / "beam"))
    options = PipelineOptions(direct_num_workers=workers, direct_running_mode="multi_processing")
    beam.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
    for split, n in (("train", 8), ("validation", 2)):
        a = list(pool.as_dataset(split=split).as_numpy_iterator())
        b = list(beam.as_dataset(split=split).as_numpy_iterator())
        assert len(a) == len(b) == n
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            for k in x:
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    with pytest.raises(ValueError, match="engine must be 'processes' or 'beam'"):
        TopTagging(config=TopTaggingConfig(name="bad", engine="spark", **kw),
                   data_dir=str(tmp_path / "bad")).download_and_prepare()


@pytest.mark.slow
def test_jet_classes_beam_engine_gives_the_process_pool_examples(tmp_path):
    import dataclasses

    from apache_beam.options.pipeline_options import PipelineOptions

    from hepflow.datasets import JetClasses

    base = dataclasses.replace(JetClasses.BUILDER_CONFIGS[1], name="tiny", n_train=3, n_validation=1, n_test=1,
                               workers=1, mpi=False)
    pool = JetClasses(config=base, data_dir=str(tmp_path / "pool"))
    pool.download_and_prepare()
    beam = JetClasses(config=dataclasses.replace(base, engine="beam"), data_dir=str(tmp_path / "beam"))
    options = PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing")
    beam.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
    a = list(pool.as_dataset(split="train").as_numpy_iterator())
    b = list(beam.as_dataset(split="train").as_numpy_iterator())
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_tiny_lhc_events_config_builds_with_rates(tmp_path):
    import dataclasses

    from hepflow.datasets import LhcEvents, LhcEventsConfig

    cfg = LhcEventsConfig(name="tiny", processes=("w", "leptoquark"), n_train=3, n_validation=1, n_test=1,
                          n_signal=(2, 1, 1), workers=1, mpi=False)
    builder = LhcEvents(config=dataclasses.replace(cfg), data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 5
    ex = list(builder.as_dataset(split="train").as_numpy_iterator())
    assert sorted(int(e["label"]) for e in ex) == [0, 0, 0, 1, 1]
    for e in ex:
        assert e["objects"].shape == (23, 3) and e["mask"].sum() >= 2 and e["rate_pb"] > 0
        np.testing.assert_array_equal(e["mask"], e["object_type"] > 0)
    assert len({float(e["rate_pb"]) for e in ex if e["label"] == 0}) == 1  # one rate per process
