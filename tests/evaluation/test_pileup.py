"""The pileup study end to end on real (tiny) pileup jets: PUMML and a tagger trained through `train`."""
from __future__ import annotations

import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from hepflow.errors import DataError
from hepflow.ops.pileup import pumml_images
from hepflow.evaluation.pileup import run_pileup_study, pileup_test_files
from hepflow.training import train

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pileup")


def _config(name: str, data_dir, **training) -> dict:
    with open(os.path.join(CONFIGS, name)) as f:
        cfg = yaml.safe_load(f)
    cfg["data"]["dir"] = str(data_dir)
    cfg["training"].update(training)
    return cfg


@pytest.fixture(scope="module")
def runs(pileup_jets_dir, pythia_jets_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pileup_runs")
    pumml = _config("pumml_mu140.yaml", pileup_jets_dir, epochs=2, batch_size=4, cache=None)
    train(pumml, run_dir=str(root / "pumml"), verbose=0)
    tagger = _config("deeptop_cnn_mu0.yaml", pythia_jets_dir, epochs=1, batch_size=16, cache=None)
    tagger["data"]["split"] = {"validation": 0.1, "test": 0.2}
    train(tagger, run_dir=str(root / "tagger"), verbose=0)
    return {"pumml": str(root / "pumml"), "tagger": str(root / "tagger"), "root": root}


@pytest.mark.slow
def test_pileup_study(runs, pileup_jets_dir, tmp_path):
    out = tmp_path / "study"
    report = run_pileup_study([str(pileup_jets_dir)], str(out), pumml_run=runs["pumml"], tagger_runs=[runs["tagger"]],
                              progress=False)
    table = report["resolution"]["20"]
    assert set(table) == {"none", "chs", "area_median", "softkiller", "pumml", "pixel_truth"}
    assert report["jets"]["20"]["qcd"] == 4 and report["jets"]["20"]["top"] == 4  # 2 test files of 2 jets per class
    for process in ("qcd", "top"):
        # pileup adds mass and pT; removing the pileup tracks takes some of it back, the pixelized truth nearly all
        none, chs = table["none"][f"{process}_pt"]["bias"], table["chs"][f"{process}_pt"]["bias"]
        assert none > chs > 0
        assert abs(table["pixel_truth"][f"{process}_pt"]["bias"]) < 0.5 * chs
        assert table["none"][f"{process}_mass"]["bias"] > table["chs"][f"{process}_mass"]["bias"]
    rows = report["taggers"]["deeptop_cnn_mu0"]
    assert set(rows) == {"own_test", "mu20_none", "mu20_chs", "mu20_softkiller"}
    assert all(0 <= r["auc"] <= 1 for r in rows.values())
    for name in ("report.md", "report.json", "mass_mu20.png", "delta_mass_mu20.png"):
        assert (out / name).stat().st_size > 0
    assert os.listdir(out / "tensorboard")
    assert "CHS + SoftKiller" in (out / "report.md").read_text()


@pytest.mark.slow
def test_pileup_study_refuses_what_pumml_trained_on(runs, pileup_jets_dir, pythia_jets_dir, tmp_path):
    files = pileup_test_files(str(pileup_jets_dir), validation_fraction=0.17, test_fraction=0.33)
    assert [os.path.basename(f) for f in files["qcd"]] == ["qcd_00004.h5", "qcd_00005.h5"]
    with pytest.raises(DataError, match="trained or validated"):
        run_pileup_study([str(pileup_jets_dir)], str(tmp_path / "s"), pumml_run=runs["pumml"],
                         validation_fraction=0.0, test_fraction=0.9, progress=False)
    with pytest.raises(DataError, match="generated without pileup"):
        run_pileup_study([str(pythia_jets_dir)], str(tmp_path / "t"), progress=False)


@pytest.mark.slow
def test_pumml_learns_something(runs, pileup_jets_dir):
    """The PUMML prediction never exceeds the towers' pT: a share of each pixel's neutral deposit."""
    model = keras.saving.load_model(os.path.join(runs["pumml"], "model.keras"))
    with h5py.File(os.path.join(str(pileup_jets_dir), "top_00005.h5")) as f:
        images = pumml_images(tf.constant(f["constituents"][:]), tf.constant(f["charge"][:]),
                              tf.constant(f["track_vertex"][:]))
    pred = model(images["image"]).numpy()
    assert pred.shape == (2, 32, 32, 1)
    neutral = images["image"].numpy()[..., 2:3]
    assert np.all(pred >= 0) and np.all(pred <= neutral + 1e-6) and np.all(pred[neutral == 0] == 0)
