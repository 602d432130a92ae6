from __future__ import annotations

import numpy as np
import pytest

from hepflow.evaluation import (CutBasedTagger, auc, bdt_tagger, format_report, rejection_at, roc_curve,
                                tagger_report, threshold_at)


def toy(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = rng.normal(y * 1.5, 1.0)
    mass = np.where(y == 1, rng.normal(173, 15, n), rng.exponential(60, n) + 10)
    tau32 = np.where(y == 1, rng.normal(0.5, 0.12, n), rng.normal(0.8, 0.12, n))
    return y, score, mass, tau32


def test_auc_and_roc_match_sklearn():
    from sklearn.metrics import roc_auc_score

    y, s, _, _ = toy()
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    ties = np.round(s, 1)
    assert auc(y, ties) == pytest.approx(roc_auc_score(y, ties), abs=1e-12)
    es, eb, thr = roc_curve(y, s)
    assert es[-1] == 1 and eb[-1] == 1 and np.all(np.diff(es) >= 0) and np.all(np.diff(thr) < 0)


def test_rejection_by_hand():
    y = np.array([1] * 10 + [0] * 10)
    s = np.array(list(range(10, 20)) + [0, 1, 2, 3, 4, 5, 6, 7, 12, 18])
    # εS = 0.3 → threshold 17 (the third-highest signal score); background ≥ 17: just 18 → εB = 0.1
    assert threshold_at(y, s, 0.3) == 17
    r, err = rejection_at(y, s, 0.3)
    assert r == pytest.approx(10.0) and err == pytest.approx(np.sqrt(0.1 * 0.9 / 10) / 0.01)
    r, err = rejection_at(np.array([1, 0]), np.array([1.0, 0.0]), 0.5)
    assert r == float("inf") and np.isnan(err)
    with pytest.raises(ValueError, match="both signal"):
        auc([1, 1], [0.1, 0.2])


def test_cut_based_tagger_reaches_its_efficiencies():
    y, _, mass, tau32 = toy(seed=1)
    tagger = CutBasedTagger(efficiencies=(0.3, 0.5), grid=15).fit(mass, tau32, y)
    yt, _, mt, tt = toy(seed=2)
    wp = tagger.working_points(mt, tt, yt)
    for eff, (es, eb) in wp.items():
        assert abs(es - eff) < 0.06 and eb < 0.05
    assert wp[0.3][1] <= wp[0.5][1]


def test_bdt_beats_a_single_feature():
    y, _, mass, tau32 = toy(seed=3)
    model = bdt_tagger(np.stack([mass, tau32], 1), y, max_iter=50)
    yt, _, mt, tt = toy(seed=4)
    s = model.predict_proba(np.stack([mt, tt], 1))[:, 1]
    assert auc(yt, s) > max(auc(yt, mt), auc(yt, -tt))


def test_tagger_report_writes_plots_and_tensorboard(tmp_path):
    y, s, mass, tau32 = toy(seed=5)
    cut = CutBasedTagger(grid=10).fit(mass, tau32, y).working_points(mass, tau32, y)
    table = tagger_report(y, {"gauss": s, "mass": mass}, out_dir=str(tmp_path), cut_based=cut, mass=mass,
                          log_dir=str(tmp_path / "tb"))
    assert table["gauss"]["auc"] == pytest.approx(auc(y, s))
    assert table["gauss"]["rejection_at_0.3"] == pytest.approx(rejection_at(y, s, 0.3)[0])
    assert "cut_based" in table and (tmp_path / "roc.png").stat().st_size > 5000
    assert (tmp_path / "sculpting.png").exists() and list((tmp_path / "tb").iterdir())
    text = format_report(table)
    assert "gauss" in text and "cut_based" in text
