"""ONNX export: jet images built by ONNX operators, parity with Keras in a process without TensorFlow."""
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
from hepflow.serving import export_run
from hepflow.serving.onnx import export_onnx, require_onnx
from hepflow.training import train
from hepflow.runs import build_transform, load_config, split_specs

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "top_tagging")
QUICK = ["training.epochs=1", "training.steps_per_epoch=3", "training.batch_size=16", "training.cache=null"]


@pytest.fixture(scope="module")
def colour_cnn_run(pythia_jets_dir, tmp_path_factory):
    """A 4-colour CNN run: its preprocessing (jet images from constituents, charge and type) is the hardest to convert."""
    root = tmp_path_factory.mktemp("onnx")
    return train(os.path.join(CONFIGS, "deeptop_cnn_colour.yaml"), run_dir=str(root / "run"), verbose=0,
                 overrides=QUICK + [f"data.dir={pythia_jets_dir}"])["run_dir"]


def test_onnx_export_matches_keras_in_a_process_without_tensorflow(colour_cnn_run, tmp_path, capsys):
    assert main(["export", colour_cnn_run, str(tmp_path / "models"), "--onnx"]) == 0
    path = str(tmp_path / "models" / "deeptop_cnn_colour" / "1")
    assert sorted(os.listdir(os.path.join(path, "onnx"))) == ["serve_features.onnx", "serving_default.onnx"]
    assert "serving_default.onnx (raw inputs)" in capsys.readouterr().out

    cfg = load_config(os.path.join(colour_cnn_run, "config.yaml"))
    test_file = split_specs(cfg)["test"][1].files[0]
    with h5py.File(test_file, "r") as f:
        raw = {k: f[k][...] for k in ("constituents", "charge", "type")}
    model = keras.saving.load_model(os.path.join(colour_cnn_run, "model.keras"))
    features = build_transform(cfg)({k: tf.constant(v) for k, v in raw.items()})
    want = model({"image": features["image"]}, training=False).numpy()[:, 0]
    assert np.ptp(want) > 0  # the rows differ, so matching scores mean something
    script = textwrap.dedent(f"""
        import sys, h5py, numpy as np, onnxruntime as ort
        f = h5py.File({test_file!r}, "r")
        raw = {{k: f[k][...] for k in ("constituents", "charge", "type")}}
        s = ort.InferenceSession({os.path.join(path, "onnx", "serving_default.onnx")!r})
        np.save({str(tmp_path / "scores.npy")!r}, s.run(["score"], raw)[0])
        assert not any(m.split(".")[0] in ("tensorflow", "keras", "hepflow") for m in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path), env=env, timeout=240)
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), want, rtol=1e-5, atol=1e-5)

    import onnxruntime as ort  # the model-input file takes the images

    session = ort.InferenceSession(os.path.join(path, "onnx", "serve_features.onnx"))
    got = session.run(["score"], {"image": features["image"].numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_disagreeing_conversion_is_refused_and_leaves_no_file(colour_cnn_run, tmp_path):
    path = export_run(colour_cnn_run, str(tmp_path), progress=False)
    cfg = load_config(os.path.join(colour_cnn_run, "config.yaml"))
    with h5py.File(split_specs(cfg)["test"][0].files[0], "r") as f:
        raw = {k: f[k][:8] for k in ("constituents", "charge", "type")}
    with pytest.raises(ValueError, match=r"disagrees with the SavedModel: 100 % of 8 rows differ by more than"):
        export_onnx(path, {"serving_default": raw}, atol=-1.0)  # no difference is below -1
    with pytest.raises(ValueError, match=r"largest score difference .* \(at most -1.0\)"):
        export_onnx(path, {"serving_default": raw}, outlier_atol=-1.0)  # every row is an outlier beyond -1
    assert not os.path.exists(os.path.join(path, "onnx", "serving_default.onnx"))
    assert os.listdir(os.path.join(path, "onnx")) == []  # nor a temporary file
    with pytest.raises(KeyError, match=r"check_inputs lacks \['type'\]"):
        export_onnx(path, {"serving_default": {k: raw[k] for k in ("constituents", "charge")}})
    with pytest.raises(KeyError, match="no signature 'nope'"):
        export_onnx(path, {"nope": raw})


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"needs the \[onnx\] extra: pip install -e '\.\[onnx\]'"):
        require_onnx()


def test_an_ensemble_exports_to_onnx_as_the_mean_of_its_members(colour_cnn_run, pythia_jets_dir, tmp_path, capsys):
    """Colour CNN (jet images from constituents, charge, type) + high-level DNN (mass, pt, tau): one ONNX file."""
    dnn_run = train(os.path.join(CONFIGS, "high_level_dnn.yaml"), run_dir=str(tmp_path / "dnn"), verbose=0,
                    overrides=QUICK + [f"data.dir={pythia_jets_dir}"])["run_dir"]
    assert main(["export", colour_cnn_run, dnn_run, str(tmp_path / "models"), "--ensemble-name", "pair", "--onnx"]) == 0
    path = str(tmp_path / "models" / "pair" / "1")
    assert "serving_default.onnx (raw inputs)" in capsys.readouterr().out
    assert os.listdir(os.path.join(path, "onnx")) == ["serving_default.onnx"]

    test_file = split_specs(load_config(os.path.join(dnn_run, "config.yaml")))["test"][1].files[0]
    with h5py.File(test_file, "r") as f:
        raw = {k: f[k][...] for k in ("constituents", "charge", "type", "mass", "pt", "tau")}
    want = []
    for run in (colour_cnn_run, dnn_run):
        cfg = load_config(os.path.join(run, "config.yaml"))
        model = keras.saving.load_model(os.path.join(run, "model.keras"))
        features = build_transform(cfg)({k: tf.constant(v) for k, v in raw.items()})
        want.append(model({t.name: features[t.name] for t in model.inputs}, training=False).numpy()[:, 0])
    assert np.abs(want[0] - want[1]).max() > 1e-3  # the members disagree, so the mean is a real check

    import onnxruntime as ort

    session = ort.InferenceSession(os.path.join(path, "onnx", "serving_default.onnx"))
    assert sorted(i.name for i in session.get_inputs()) == sorted(raw)
    got = session.run(["score"], raw)[0]
    np.testing.assert_allclose(got, np.mean(want, axis=0), rtol=1e-5, atol=1e-5)
