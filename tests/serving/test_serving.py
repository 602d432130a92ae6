"""Export with preprocessing inside, parity in a process without hepflow, batch prediction, bad input."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from hepflow.cli.main import main
from hepflow.errors import ConfigError, DataError
from hepflow.serving import export, export_ensemble, export_run, predict_file
from hepflow.serving.predict import load_metadata
from hepflow.training import train
from hepflow.runs import build_transform, load_config, split_specs

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "top_tagging")
QUICK = ["training.epochs=1", "training.steps_per_epoch=3", "training.batch_size=16", "training.cache=null"]


@pytest.fixture(scope="module")
def pfn_export(pythia_jets_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    run = train(os.path.join(CONFIGS, "pfn.yaml"), run_dir=str(root / "run"), verbose=0,
                overrides=QUICK + [f"data.dir={pythia_jets_dir}"])["run_dir"]
    return run, export_run(run, str(root / "models"), progress=False)


def test_export_layout_signatures_and_metadata(pfn_export):
    run, path = pfn_export
    assert path.endswith(os.path.join("models", "pfn", "1"))
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) >= {"serving_default", "serve", "serve_features"}
    meta = load_metadata(path)
    assert meta["classes"] == {"0": ["qcd"], "1": ["top"]}
    assert meta["raw_inputs"] == {"constituents": {"shape": [None, 200, 4], "dtype": "float32"}}
    assert set(meta["thresholds_at_signal_efficiency"]) == {"0.3", "0.5"}
    assert meta["versions"]["tensorflow-cpu"] == tf.__version__ and "keras" in meta["versions"]
    assert meta["transform"] == [{"constituent_features": {"max_particles": 100}}]


def test_savedmodel_in_a_fresh_process_without_hepflow_matches_keras(pfn_export, pythia_jets_dir, tmp_path):
    run, path = pfn_export
    cfg = load_config(os.path.join(run, "config.yaml"))
    test_file = split_specs(cfg)["test"][1].files[0]
    with h5py.File(test_file, "r") as f:
        constituents = f["constituents"][...]
    model = keras.saving.load_model(os.path.join(run, "model.keras"))
    features = build_transform(cfg)({"constituents": tf.constant(constituents)})
    want = model({k: features[k] for k in ("particles", "mask")}, training=False).numpy()[:, 0]
    script = textwrap.dedent(f"""
        import sys, h5py, numpy as np, tensorflow as tf
        f = tf.saved_model.load({path!r}).signatures["serving_default"]
        c = h5py.File({test_file!r}, "r")["constituents"][...]
        np.save({str(tmp_path / "scores.npy")!r}, f(constituents=tf.constant(c))["score"].numpy())
        assert not any(m == "hepflow" or m.startswith("hepflow.") for m in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path), env=env, timeout=240)
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), want, rtol=1e-5, atol=1e-5)
    # the preprocessed-input signature gives the same scores
    serve_features = tf.saved_model.load(path).signatures["serve_features"]
    got = serve_features(particles=features["particles"], mask=features["mask"])["score"].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_an_ensemble_export_scores_the_mean_of_its_members(pfn_export, pythia_jets_dir, tmp_path, capsys):
    """PFN (constituents) + high-level DNN (mass, pt, tau): one raw signature, the mean of both scores."""
    pfn_run, _ = pfn_export
    dnn_run = train(os.path.join(CONFIGS, "high_level_dnn.yaml"), run_dir=str(tmp_path / "dnn"), verbose=0,
                    overrides=QUICK + [f"data.dir={pythia_jets_dir}"])["run_dir"]
    # the option between the runs and OUT, as people write it
    assert main(["export", pfn_run, dnn_run, "--ensemble-name", "pair", str(tmp_path / "models")]) == 0
    path = str(tmp_path / "models" / "pair" / "1")
    assert "mean of 2 runs" in capsys.readouterr().out
    meta = load_metadata(path)
    assert set(meta["raw_inputs"]) == {"constituents", "mass", "pt", "tau"}
    assert [m["config"]["name"] for m in meta["members"]] == ["pfn", "high_level_dnn"]
    assert set(meta["thresholds_at_signal_efficiency"]) == {"0.3", "0.5"}
    test_file = split_specs(load_config(os.path.join(pfn_run, "config.yaml")))["test"][1].files[0]
    with h5py.File(test_file, "r") as f:
        raw = {k: tf.constant(f[k][...]) for k in meta["raw_inputs"]}
    want = []
    for run in (pfn_run, dnn_run):
        cfg = load_config(os.path.join(run, "config.yaml"))
        model = keras.saving.load_model(os.path.join(run, "model.keras"))
        features = build_transform(cfg)(dict(raw))
        want.append(model({t.name: features[t.name] for t in model.inputs}, training=False).numpy()[:, 0])
    assert np.abs(want[0] - want[1]).max() > 1e-3  # the members disagree, so the mean is a real check
    got = tf.saved_model.load(path).signatures["serving_default"](**raw)["score"].numpy()
    np.testing.assert_allclose(got, np.mean(want, axis=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="two or more runs"):
        export_ensemble([pfn_run], str(tmp_path / "m"), name="one", progress=False)
    other = train(os.path.join(CONFIGS, "high_level_dnn.yaml"), run_dir=str(tmp_path / "dnn2"), verbose=0,
                  overrides=QUICK + [f"data.dir={pythia_jets_dir}", "data.split.validation=0.4"])["run_dir"]
    with pytest.raises(DataError, match="other validation files"):
        export_ensemble([pfn_run, other], str(tmp_path / "m"), name="bad", progress=False)
    assert main(["export", pfn_run, dnn_run, str(tmp_path / "m")]) == 2
    assert "need --ensemble-name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", pfn_run, "--no-such-option", str(tmp_path / "m")])
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_wrong_shape_or_dtype_is_named(pfn_export):
    _, path = pfn_export
    serve = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"constituents \[2,100,4\] is not compatible.*\[\?,200,4\]"):
        serve(constituents=tf.zeros((2, 100, 4)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="float tensor but is a double tensor"):
        serve(constituents=tf.zeros((2, 200, 4), tf.float64))


def test_predict_scores_every_row_in_order(pfn_export, pythia_jets_dir, tmp_path, capsys):
    _, path = pfn_export
    src = str(pythia_jets_dir / "top_00003.h5")
    with h5py.File(src, "r") as f:
        c = f["constituents"][...]
    want = tf.saved_model.load(path).signatures["serving_default"](constituents=tf.constant(c))["score"].numpy()
    out = tmp_path / "scores.h5"
    assert main(["predict", "--model", path, "--input", src, "--output", str(out), "--batch-size", "5"]) == 0
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["score"][...], want, rtol=1e-5, atol=1e-6)  # other batch size
        assert f.attrs["input"] == os.path.abspath(src)
    assert "12 scores" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["scores.h5"]  # no temporary file left


def test_predict_reads_big_endian_inputs_in_the_machines_byte_order(pfn_export, pythia_jets_dir, tmp_path):
    _, path = pfn_export
    with h5py.File(pythia_jets_dir / "top_00003.h5", "r") as f:
        c = f["constituents"][...]
    with h5py.File(tmp_path / "be.h5", "w") as f:
        f.create_dataset("constituents", data=c.astype(">f4"))
    predict_file(path, str(tmp_path / "be.h5"), str(tmp_path / "be_scores.h5"), progress=False)
    want = tf.saved_model.load(path).signatures["serving_default"](constituents=tf.constant(c))["score"].numpy()
    with h5py.File(tmp_path / "be_scores.h5", "r") as f:
        np.testing.assert_allclose(f["score"][...], want, rtol=1e-5, atol=1e-6)


def test_predict_on_nan_input_is_one_line_and_writes_nothing(pfn_export, pythia_jets_dir, tmp_path, capsys):
    _, path = pfn_export
    with h5py.File(pythia_jets_dir / "top_00003.h5", "r") as f:
        c = f["constituents"][...]
    c[7, 3, 0] = np.nan
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["constituents"] = c
    rc = main(["predict", "--model", path, "--input", str(tmp_path / "nan.h5"), "--output", str(tmp_path / "s.h5")])
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if "predicting:" not in line)  # tqdm
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "nan.h5" in err and "NaN or Inf at row 7" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.h5"]


def test_predict_rejects_mismatched_files(pfn_export, tmp_path):
    _, path = pfn_export
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["constituents"] = np.zeros((4, 100, 4), "f4")
        f["other"] = np.zeros((4, 200, 4), "f8")
    with pytest.raises(DataError, match=r"bad.h5: dataset 'constituents' has rows of shape \(100, 4\)"):
        predict_file(path, str(bad), str(tmp_path / "o.h5"), progress=False)
    with pytest.raises(DataError, match="expects \\(200, 4\\) float32"):
        predict_file(path, str(bad), str(tmp_path / "o.h5"), keys={"constituents": "other"}, progress=False)
    with pytest.raises(DataError, match="takes inputs"):
        predict_file(path, str(bad), str(tmp_path / "o.h5"), keys={"x": "other"}, progress=False)
    assert not (tmp_path / "o.h5").exists()


def test_export_versions_are_immutable(tmp_path):
    inputs = {"x": keras.Input((3,), name="x")}
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs["x"]), name="tiny")
    first = export(model, str(tmp_path), metadata={"note": "a"})
    second = export(model, str(tmp_path))
    assert first.endswith(os.path.join("tiny", "1")) and second.endswith(os.path.join("tiny", "2"))
    with pytest.raises(ValueError, match="versions are immutable"):
        export(model, str(tmp_path), version=1)
    assert load_metadata(first)["note"] == "a"


def test_saved_model_cli_lists_the_signatures(pfn_export):
    _, path = pfn_export
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True, check=True,
                         timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
    for want in ("signature_def['serving_default']", "signature_def['serve_features']", "inputs['constituents']",
                 "shape: (-1, 200, 4)", "inputs['particles']", "outputs['score']"):
        assert want in out, want


def test_predict_scores_published_layout_and_root_files(pfn_export, pythia_jets_dir, tmp_path):
    """A file in the published top-tagging layout (pandas table) and a ROOT ntuple with per-particle
    branches in shuffled order score like the HDF5 jets they were written from."""
    pytest.importorskip("pandas")
    pytest.importorskip("uproot")
    from hepflow.data.formats import write_reference
    from hepflow.data.formats.ntuples import write_jets_root

    _, path = pfn_export
    src = pythia_jets_dir / "top_00003.h5"
    with h5py.File(src, "r") as f:
        c, label = f["constituents"][...], f["label"][...]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    write_reference(tmp_path / "test.h5", {"constituents": c, "label": label}, layout="table")
    assert main(["predict", "--model", path, "--input", str(tmp_path / "test.h5"), "--output",
                 str(tmp_path / "published_scores.h5")]) == 0
    with h5py.File(tmp_path / "published_scores.h5", "r") as f:
        np.testing.assert_allclose(f["score"][...], serve(constituents=tf.constant(c))["score"].numpy(),
                                   rtol=1e-5, atol=1e-6)
    write_jets_root(str(src), str(tmp_path / "jets.root"), seed=3)
    assert main(["predict", "--model", path, "--input", str(tmp_path / "jets.root"), "--output",
                 str(tmp_path / "root_scores.h5"), "--key", "constituents=part_E,part_px,part_py,part_pz",
                 "--sort-by", "part_pt"]) == 0
    pt = np.hypot(c[..., 1], c[..., 2])
    ordered = np.take_along_axis(c, np.argsort(-pt, axis=1, kind="stable")[..., None], axis=1)
    with h5py.File(tmp_path / "root_scores.h5", "r") as f:
        np.testing.assert_allclose(f["score"][...], serve(constituents=tf.constant(ordered))["score"].numpy(),
                                   rtol=1e-5, atol=1e-6)
