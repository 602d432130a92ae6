"""``hepflow explain``: Pearson maps, integrated gradients (completeness), and the PNG/JSON/TensorBoard
outputs for an image tagger and a constituent tagger trained on real Pythia jets."""
from __future__ import annotations

import glob
import json
import os

import keras
import numpy as np

from hepflow.cli.main import main
from hepflow.evaluation.explain import integrated_gradients, pearson_map
from hepflow.training import train

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
QUICK = ["training.epochs=1", "training.steps_per_epoch=2", "training.batch_size=10", "training.cache=null"]


def test_pearson_map_finds_the_pixel_that_is_the_score():
    rng = np.random.default_rng(0)
    images = rng.random((500, 4, 4))
    score = images[:, 1, 2] * 3 + 1
    r = pearson_map(images, score)
    assert r[1, 2] == np.float64(r.max()) and abs(r[1, 2] - 1) < 1e-9 and np.abs(np.delete(r.ravel(), 6)).max() < 0.2
    images[:, 0, 0] = 5.0  # a constant pixel has no correlation
    assert pearson_map(images, score)[0, 0] == 0


def test_integrated_gradients_add_up_to_the_score_difference():
    inputs = keras.Input((6,), name="x")
    h = keras.layers.Dense(8, activation="tanh")(inputs)
    model = keras.Model({"x": inputs}, keras.layers.Dense(2, activation="softmax")(h))
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    attr, saliency = integrated_gradients(model, {"x": x}, 1, steps=64)
    full = model({"x": x}).numpy()[:, 1]
    base = model({"x": np.zeros_like(x)}).numpy()[:, 1]
    np.testing.assert_allclose(attr["x"].sum(axis=1), full - base, atol=2e-3)  # completeness
    assert saliency["x"].shape == x.shape and (saliency["x"] >= 0).all()


def test_explain_writes_maps_for_an_image_and_a_constituent_tagger(tiny_jets5_dir, tmp_path, capsys):
    for name in ("deeptop_cnn", "pfn"):
        run = train(os.path.join(ROOT, "jets5", f"{name}.yaml"), run_dir=str(tmp_path / name), verbose=0,
                    overrides=QUICK + [f"data.dir={tiny_jets5_dir}"])["run_dir"]
        assert main(["explain", run, "--jets", "30"]) == 0
        out = capsys.readouterr().out
        with open(os.path.join(run, "explain", "explain.json")) as f:
            result = json.load(f)
        assert result["classes"] == ["quark", "gluon", "w", "z", "top"] and result["jets"] == 30
        for png in result["pngs"]:
            assert os.path.getsize(png) > 1000 and png in out
        assert glob.glob(os.path.join(run, "explain", "tb", "events.out.tfevents.*"))
        if name == "deeptop_cnn":
            assert result["kind"] == "image" and len(result["pngs"]) == 2
        else:
            assert result["kind"] == "attribution" and set(result["attribution"]) == set(result["classes"])
            feats = result["attribution"]["w"]["particles"]["mean_abs_attribution"]
            assert set(feats) == {"Δη", "Δφ", "log pT", "log E", "log pT/pT_jet", "log E/E_jet", "ΔR"}
            assert "largest mean |attribution|" in out
