"""configs/jets5 (five classes: q, g, W, Z, t) and configs/w_tagging train on real Pythia jets with
their trees, reload with identical outputs, and ``hepflow evaluate`` reports K classes."""
from __future__ import annotations

import glob
import json
import os

import keras
import numpy as np
import pytest

from hepflow.cli.main import main
from hepflow.evaluation.multiclass import evaluate_multiclass
from hepflow.runs import build_transform, load_config, score_specs, split_specs
from hepflow.training import train

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
FIVE = sorted(glob.glob(os.path.join(ROOT, "jets5", "*.yaml")))
QUICK = ["training.epochs=1", "training.steps_per_epoch=2", "training.batch_size=10", "training.cache=null"]


FAST = ("recnn_ca.yaml", "lundnet.yaml", "mpnn.yaml", "gru.yaml")  # one of each new model; the rest: make test-slow
CASES = [pytest.param(p, marks=() if os.path.basename(p) in FAST else pytest.mark.slow, id=os.path.basename(p))
         for p in FIVE]


@pytest.mark.parametrize("path", CASES)
def test_five_class_configs_train_reload_and_score(path, tiny_jets5_dir, tmp_path):
    summary = train(path, run_dir=str(tmp_path / "run"), overrides=QUICK + [f"data.dir={tiny_jets5_dir}"], verbose=0)
    assert summary["train_jets_seen"] == 20 and np.isfinite(summary["last_epoch"]["val_loss"])
    cfg = load_config(str(tmp_path / "run" / "config.yaml"))
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.outputs[0].shape[-1] == 5
    test = split_specs(cfg)["test"]
    _, _, scores = score_specs(model, test, transform=build_transform(cfg), all_classes=True, progress=False)
    again = keras.saving.load_model(tmp_path / "run" / "model.keras")
    _, _, scores_again = score_specs(again, test, transform=build_transform(cfg), all_classes=True, progress=False)
    np.testing.assert_array_equal(scores, scores_again)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_evaluate_reports_k_classes_with_one_vs_rest_and_binary_views(tiny_jets5_dir, tmp_path, capsys):
    run = train(os.path.join(ROOT, "jets5", "pfn.yaml"), run_dir=str(tmp_path / "run"), verbose=0,
                overrides=QUICK + [f"data.dir={tiny_jets5_dir}"])["run_dir"]
    result = evaluate_multiclass(run, out_dir=str(tmp_path / "eval"))
    assert result["class_names"] == ["quark", "gluon", "w", "z", "top"] and result["test_events"] == 30
    for row in result["classes"].values():
        assert 0 <= row["auc"] <= 1 and row["auc_error"] > 0 and row["rejection_at_0.5"] >= 1
    assert result["macro_auc"] == pytest.approx(np.mean([r["auc"] for r in result["classes"].values()]))
    assert set(result["pairs"]) >= {"w_vs_z", "quark_vs_gluon", "top_vs_w"}
    assert (tmp_path / "eval" / "confusion.png").is_file() and (tmp_path / "eval" / "roc_one_vs_rest.png").is_file()
    bdt = result["baselines"]["bdt"]  # a K-class BDT on mass, pT and the τ's, fitted on the training split
    assert np.sum(bdt["confusion"]) == 30 and set(bdt["classes"]) == set(result["classes"])
    assert bdt["classes"]["top"]["auc"] > 0.8  # the jet mass alone tells tops from the rest
    assert main(["evaluate", run, "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "macro AUC" in out and "quark vs gluon" in out and "AUC (vs rest)" in out and "baseline bdt" in out
    with open(tmp_path / "cli" / "report.json") as f:
        assert json.load(f)["pairs"]["quark_vs_gluon"]["auc"] == result["pairs"]["quark_vs_gluon"]["auc"]


@pytest.mark.parametrize("name", ["recnn_kt", "lundnet"])
def test_w_tagging_configs_train(name, tiny_jets5_dir, tmp_path):
    summary = train(os.path.join(ROOT, "w_tagging", f"{name}.yaml"), run_dir=str(tmp_path / "run"), verbose=0,
                    overrides=QUICK + [f"data.dir={tiny_jets5_dir}"])
    assert summary["train_jets_seen"] == 20 and np.isfinite(summary["last_epoch"]["val_loss"])


@pytest.mark.parametrize("name", ["recnn_ca", "lundnet"])
def test_tree_models_export_as_saved_models(name, tiny_jets5_dir, tmp_path):
    import subprocess
    import sys

    from hepflow.serving import export_run

    run = train(os.path.join(ROOT, "jets5", f"{name}.yaml"), run_dir=str(tmp_path / "run"), verbose=0,
                overrides=QUICK + [f"data.dir={tiny_jets5_dir}"])["run_dir"]
    path = export_run(run, str(tmp_path / "models"), progress=False)
    cfg = load_config(os.path.join(run, "config.yaml"))
    model = keras.saving.load_model(os.path.join(run, "model.keras"))
    spec = split_specs(cfg)["test"][0]
    import h5py

    with h5py.File(spec.resolve_files()[0], "r") as f:
        raw = {k: f[v][...] for k, v in spec.keys.items()}
    np.savez(tmp_path / "x.npz", **raw)
    code = ("import json, numpy as np, tensorflow as tf\n"
            f"x = dict(np.load({str(tmp_path / 'x.npz')!r}))\n"
            f"out = tf.saved_model.load({path!r}).signatures['serving_default'](**{{k: tf.constant(v) for k, v in x.items()}})\n"
            "print(json.dumps(out['score'].numpy().tolist()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    served = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(served, model.predict(raw, verbose=0), rtol=1e-4, atol=1e-5)
