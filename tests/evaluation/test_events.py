"""Event-level anomaly detection evaluation: weighted efficiencies, working points, and the study end to end."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from hepflow.evaluation.events import _signal_efficiency_at, evaluate_event_runs, weighted_efficiency_curve
from hepflow.training import train

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "events")


def test_weighted_curve_matches_unweighted_and_duplication():
    rng = np.random.default_rng(0)
    b, s = rng.normal(0, 1, 400), rng.normal(1, 1, 300)
    _, _, area = weighted_efficiency_curve(b, np.ones_like(b), s)
    assert area == pytest.approx(roc_auc_score(np.r_[np.zeros(400), np.ones(300)], np.r_[b, s]), abs=1e-9)
    # a weight of 2 is the event twice
    w = np.where(np.arange(400) < 100, 2.0, 1.0)
    dup = np.concatenate([b, b[:100]])
    _, _, weighted = weighted_efficiency_curve(b, w, s)
    _, _, duplicated = weighted_efficiency_curve(dup, np.ones_like(dup), s)
    assert weighted == pytest.approx(duplicated, abs=1e-9)


def test_working_points_need_enough_background():
    b = np.arange(1000, dtype=float)
    s = np.array([995.0, 985.0, 500.0, 10.0])
    at = _signal_efficiency_at(b, np.ones_like(b), s, 0.01)  # the 10 highest: scores 990 … 999
    assert at["signal_efficiency"] == pytest.approx(0.25) and at["background_events_above"] == 10
    assert at["error"] == pytest.approx(np.sqrt(0.25 * 0.75 / 4))
    assert _signal_efficiency_at(b, np.ones_like(b), s, 1e-3)["signal_efficiency"] is None  # 1 event: not reported
    # a heavy process with few test events limits the measurable efficiency for all
    w = np.where(np.arange(1000) < 100, 50.0, 1.0)  # 100 events carrying 5000 of 5900
    assert _signal_efficiency_at(b, w, s, 0.05)["signal_efficiency"] is None  # 10 × 50/5900 = 0.085
    assert _signal_efficiency_at(b, w, s, 0.1)["signal_efficiency"] is not None


def _config(name, data_dir, **training):
    with open(os.path.join(CONFIGS, name)) as f:
        cfg = yaml.safe_load(f)
    cfg["data"]["dir"] = str(data_dir)
    cfg["training"].update(training)
    return cfg


@pytest.mark.slow
def test_study_end_to_end(tiny_events_dir, tmp_path):
    runs = []
    for name in ("deep_sets_ae.yaml", "deep_sets_vae.yaml"):
        run = tmp_path / name.removesuffix(".yaml")
        train(_config(name, tiny_events_dir, epochs=2, batch_size=4, cache=None, steps_per_epoch=3),
              run_dir=str(run), verbose=0)
        runs.append(str(run))
    report = evaluate_event_runs(runs, data_dir=str(tiny_events_dir), out_dir=str(tmp_path / "study"), progress=False)
    methods = report["methods"]
    assert set(methods) == {"events_deep_sets_ae", "events_deep_sets_vae (kl)", "events_deep_sets_vae (reconstruction)",
                            "k-means (10)", "isolation forest"}
    assert report["test"]["w"] == 4 and report["test"]["leptoquark"] == 4  # 2 test files of 2; every signal event
    assert sum(report["cocktail"].values()) == pytest.approx(1.0)
    for row in methods.values():
        assert 0 <= row["leptoquark"]["auc"] <= 1
        assert row["leptoquark"]["eff_at_1e-05"]["signal_efficiency"] is None  # 20 test events cannot show 10⁻⁵
        assert 0 <= row["sculpting"]["leading jet pT"] <= 1
    assert json.loads((tmp_path / "study" / "report.json").read_text())["methods"]
    for png in ("roc.png", "sculpting.png"):
        assert (tmp_path / "study" / png).stat().st_size > 0
    assert "| isolation forest |" in (tmp_path / "study" / "report.md").read_text()
