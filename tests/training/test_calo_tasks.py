"""e/π classification and energy regression on simulated showers, through train and evaluate."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hepflow.evaluation.regression import evaluate_regression, fit_resolution, resolution_curve
from hepflow.evaluation.runs import evaluate_runs
from hepflow.training import train

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "calo")


def quick(calo_dir, epochs=2):
    return [f"data.dir={calo_dir}", f"training.epochs={epochs}", "training.batch_size=32", "training.cache=null"]


def test_e_pi_classifiers_and_the_shower_shape_bdt(calo_dir, tmp_path):
    runs = [train(os.path.join(CONFIGS, f"{name}.yaml"), run_dir=str(tmp_path / name), overrides=quick(calo_dir),
                  verbose=0)["run_dir"] for name in ("epi_cnn", "epi_shower_shapes_dnn")]
    table = evaluate_runs(runs, out_dir=str(tmp_path / "report"), progress=False)
    assert list(table) == ["epi_cnn", "epi_shower_shapes_dnn", "bdt_shower_shapes"]
    # e+ and π+ differ in depth, width and response: even 160 training showers per class separate them
    assert table["bdt_shower_shapes"]["auc"] > 0.9
    assert all(0 <= row["auc"] <= 1 for row in table.values())
    assert (tmp_path / "report" / "roc.png").is_file()


def test_energy_regression_beats_nothing_and_reports_a_resolution_fit(calo_dir, tmp_path):
    run = train(os.path.join(CONFIGS, "eplus_energy_cnn.yaml"), run_dir=str(tmp_path / "reg"),
                overrides=quick(calo_dir, epochs=3), verbose=0)
    assert "mae" in run["last_epoch"]
    table = evaluate_regression(run["run_dir"], bins=4, min_count=5, log_bins=False, progress=False)
    calib = table["calibrated_sum"]
    # the calibrated sum of an EM shower: ~10 %/√E (2 % at 25 GeV), unbiased response
    at_25 = np.sqrt((calib["a"] / 5) ** 2 + (calib["b"] / 25) ** 2 + calib["c"] ** 2)
    assert 0.01 < at_25 < 0.04 and calib["mean_abs_response_bias"] < 0.03
    assert 0.9 < calib["calibration"] < 1.1
    assert set(table["eplus_energy_cnn"]) >= {"a", "b", "c", "mean_abs_response_bias"}
    out = json.loads((tmp_path / "reg" / "evaluation" / "regression.json").read_text())
    assert out["test_showers"] == 40
    assert (tmp_path / "reg" / "evaluation" / "resolution.png").stat().st_size > 5000


def test_resolution_fit_recovers_known_terms():
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 100, 200_000)
    sigma = np.sqrt((0.1 / np.sqrt(true)) ** 2 + (0.2 / true) ** 2 + 0.01**2)
    reco = true * (1 + sigma * rng.standard_normal(len(true)))
    fit = fit_resolution(resolution_curve(true, reco, np.geomspace(1, 100, 31)))
    assert fit["a"] == pytest.approx(0.1, rel=0.1) and fit["c"] == pytest.approx(0.01, abs=0.004)
