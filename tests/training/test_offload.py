"""hepflow.training.offload: pack through the pipeline, fit with Keras alone, unpack into a run that evaluates."""
from __future__ import annotations

import json
import subprocess
import sys
import os

import keras
import numpy as np
import pytest

from hepflow.cli.main import main
from hepflow.errors import ConfigError, RunError
from hepflow.evaluation.runs import evaluate_runs
from hepflow.training import offload, offload_fit

from hepflow.runs import build_transform, load_config, score_specs, split_specs

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CONFIG = os.path.join(ROOT, "configs", "top_tagging", "macaluso_shih_cnn_colour.yaml")


def test_sparse_images_round_trip_to_float16():
    rng = np.random.default_rng(3)
    images = np.where(rng.random((40, 6, 6, 3)) < 0.15, rng.uniform(0.01, 50, (40, 6, 6, 3)), 0).astype(np.float32)
    images[[0, 7, 39]] = 0  # empty images, also the first and the last
    labels = rng.integers(0, 2, 40)
    arrays = offload_fit.encode_images([(images[:13], labels[:13]), (images[13:], labels[13:])])
    dense = offload_fit.dense_images(arrays)
    np.testing.assert_array_equal(dense != 0, images != 0)
    np.testing.assert_allclose(dense, images, rtol=1e-3)  # float16: 3 significant digits
    np.testing.assert_array_equal(arrays["label"], labels)
    assert arrays["index_lo"].dtype == np.uint8 and len(arrays["index_lo"]) == np.count_nonzero(images)


def test_pack_fit_unpack_gives_a_run_that_evaluates(pythia_jets_dir, tmp_path):
    overrides = [f"data.dir={pythia_jets_dir}", "training.epochs=2", "training.batch_size=16",
                 "model.name=deeptop_cnn", "name=offloaded"]
    offload.pack(CONFIG, str(tmp_path / "pack"), overrides=overrides)
    offload.pack(CONFIG, str(tmp_path / "pack"), overrides=overrides[:-1] + ["name=offloaded_s9", "seed=9"])
    images = os.listdir(tmp_path / "pack" / "images")
    assert len(images) == 1  # same data and transform: one copy of the images
    cfg = load_config(str(tmp_path / "pack" / "offloaded" / "config.yaml"))
    packed = offload_fit.load_images(str(tmp_path / "pack" / "offloaded"))
    dense = offload_fit.dense_images(packed["validation"])
    assert dense.shape == (24, 37, 37, 4) and sorted(set(packed["validation"]["label"])) == [0, 1]
    # the packed validation images are the pipeline's images, rounded to float16, in the pipeline's order
    from hepflow.data.pipeline import make_dataset

    ds = make_dataset(split_specs(cfg)["validation"], batch_size=1024, transform=build_transform(cfg), epoch="all",
                      shuffle=0, drop_remainder=False)
    (x, y), = list(ds)
    np.testing.assert_allclose(dense, x["image"].numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(packed["validation"]["label"], y.numpy())

    assert main(["offload", "fit", str(tmp_path / "pack" / "offloaded"), str(tmp_path / "fit")]) == 0
    record = json.loads((tmp_path / "fit" / "fit_record.json").read_text())
    assert record["epochs"] == 2 and record["train_jets"] == 192 and record["backend"] == keras.backend.backend()
    run = tmp_path / "run"
    offload.unpack(str(tmp_path / "pack" / "offloaded"), str(tmp_path / "fit"), str(run))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["params"] > 1000 and summary["train_jets_seen"] == 2 * 12 * 16 and summary["epochs"] == 2
    model = keras.saving.load_model(run / "model.keras")
    _, labels, scores = score_specs(model, split_specs(cfg)["test"], transform=build_transform(cfg), progress=False)
    report = evaluate_runs([str(run)], out_dir=str(tmp_path / "report"), baselines=False, progress=False)
    from sklearn.metrics import roc_auc_score

    assert report["offloaded"]["auc"] == pytest.approx(roc_auc_score(labels, scores))

    # a model that scores differently here than where it was trained is refused
    np.save(tmp_path / "fit" / "check_scores.npy", np.load(tmp_path / "fit" / "check_scores.npy") + 0.01)
    with pytest.raises(RunError, match="scores differently"):
        offload.unpack(str(tmp_path / "pack" / "offloaded"), str(tmp_path / "fit"), str(tmp_path / "run2"))
    assert not (tmp_path / "run2" / "model.keras").exists()
    with pytest.raises(RunError, match="already holds a finished run"):
        offload.unpack(str(tmp_path / "pack" / "offloaded"), str(tmp_path / "fit"), str(run))


def test_pack_refuses_models_without_an_image_input(pythia_jets_dir, tmp_path):
    with pytest.raises(ConfigError, match="image models"):
        offload.pack(os.path.join(ROOT, "configs", "top_tagging", "pfn.yaml"), str(tmp_path / "pack"),
                     overrides=[f"data.dir={pythia_jets_dir}"])


def test_the_fit_side_needs_no_tensorflow():
    """offload_fit runs where only numpy and Keras (on JAX or PyTorch) exist: it imports nothing else, and
    importing the hepflow.training package does not import TensorFlow."""
    import ast

    with open(offload_fit.__file__) as f:
        tree = ast.parse(f.read())
    top = {(n.names[0].name if isinstance(n, ast.Import) else n.module).split(".")[0]
           for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert top <= {"__future__", "argparse", "json", "os", "subprocess", "sys", "time", "keras", "numpy"}, top
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "import hepflow.training\n"
            "assert 'hepflow.training.trainer' not in sys.modules and 'keras' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
