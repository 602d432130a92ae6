from __future__ import annotations

import json

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


def test_cut_based_tagger_finds_the_best_grid_cut_by_brute_force():
    y, _, mass, tau32 = toy(n=1500, seed=6)
    tagger = CutBasedTagger(efficiencies=(0.3, 0.5, 0.8), grid=6).fit(mass, tau32, y)
    sig = y.astype(bool)
    qs = np.linspace(0, 1, 7)[1:-1]
    m_edges = np.r_[-np.inf, np.quantile(mass[sig], qs), np.inf]
    t_edges = np.r_[np.quantile(tau32[sig], qs), np.inf]
    for eff in (0.3, 0.5, 0.8):
        best = min(((mass >= lo) & (mass < hi) & (tau32 < t))[~sig].mean()
                   for i, lo in enumerate(m_edges) for hi in m_edges[i + 1:] for t in t_edges
                   if ((mass >= lo) & (mass < hi) & (tau32 < t))[sig].mean() >= eff)
        keep = tagger.passes(mass, tau32, eff)
        assert keep[sig].mean() >= eff and keep[~sig].mean() == pytest.approx(best)


def test_cut_based_auc_is_the_area_under_its_working_points(tmp_path):
    from hepflow.evaluation import ROC_EFFICIENCIES

    y, s, mass, tau32 = toy(seed=7)
    tagger = CutBasedTagger(grid=12).fit(mass, tau32, y)
    points = tagger.working_points(mass, tau32, y, efficiencies=ROC_EFFICIENCIES)
    table = tagger_report(y, {"gauss": s}, out_dir=str(tmp_path), cut_based=points)
    es, eb = zip(*sorted(points.values(), key=lambda p: (p[1], p[0])))
    assert table["cut_based"]["auc"] == pytest.approx(np.trapezoid([0, *es, 1], [0, *eb, 1]))
    assert 0.9 < table["cut_based"]["auc"] < 1  # the toy's mass and τ32 separate well
    eb_03 = points[0.3][1]
    n_bkg = int((~y.astype(bool)).sum())
    assert table["cut_based"]["rejection_at_0.3"] == (pytest.approx(1 / eb_03) if eb_03 else n_bkg)


def test_a_rejection_no_background_reaches_is_a_bound_never_inf(tmp_path):
    """Perfect separation: 0 of the background passes, so 1/εB is printed as a bound set by the sample."""
    labels = np.r_[np.zeros(400), np.ones(100)].astype(int)
    scores = np.r_[np.linspace(0, 0.4, 400), np.linspace(0.6, 1, 100)]
    table = tagger_report(labels, {"perfect": scores, "mixed": scores[::-1]}, out_dir=str(tmp_path))
    row = table["perfect"]
    assert row["rejection_at_0.3"] == 400 and row["rejection_at_0.3_lower_bound"] is True
    assert row["background_passed_at_0.3"] == 0 and "rejection_at_0.3_err" not in row
    assert "rejection_at_0.3_lower_bound" not in table["mixed"] and np.isfinite(table["mixed"]["rejection_at_0.3"])
    text = format_report(table)
    assert "> 400 (0 of 400 passed)" in text and "inf" not in text and "nan" not in text
    from hepflow.cli.main import summary_json

    summary = summary_json(table)
    assert summary["perfect"] == {"auc": 1.0, "rejection_at_0.3": 400.0, "rejection_at_0.3_lower_bound": True}
    assert "null" not in json.dumps(summary) and "Infinity" not in json.dumps(summary)


def test_auc_error_matches_the_spread_over_independent_test_samples():
    from hepflow.evaluation.metrics import auc_error

    rng = np.random.default_rng(11)

    def sample(n):  # signal scores N(1.5, 1), background N(0, 1): AUC ≈ 0.86
        return np.r_[np.zeros(n), np.ones(n)], np.r_[rng.normal(0, 1, n), rng.normal(1.5, 1, n)]

    spread = np.std([auc(*sample(500)) for _ in range(400)])
    assert auc_error(*sample(500)) == pytest.approx(spread, rel=0.2)
    y, s = sample(2000)
    assert auc_error(y, s) == pytest.approx(auc_error(*sample(500)) / 2, rel=0.2)  # 1/√n


def _correlated_taggers(rng, n_signal, n_background):
    """Two taggers sharing most of their score (the jet), the first slightly better."""
    y = np.r_[np.ones(n_signal), np.zeros(n_background)]
    jet = rng.normal(size=len(y))
    return y, 2.2 * y + jet + 0.4 * rng.normal(size=len(y)), 2.0 * y + jet + 0.4 * rng.normal(size=len(y))


def test_paired_bootstrap_error_matches_the_spread_of_the_difference_over_independent_samples():
    from hepflow.evaluation.metrics import paired_bootstrap

    rng = np.random.default_rng(5)
    diffs = []
    for _ in range(300):
        y, a, b = _correlated_taggers(rng, 400, 2000)
        diffs.append([auc(y, a) - auc(y, b), rejection_at(y, a, 0.5)[0] - rejection_at(y, b, 0.5)[0]])
    spread = np.std(diffs, axis=0)
    y, a, b = _correlated_taggers(rng, 400, 2000)
    comp = paired_bootstrap(y, a, b, efficiencies=(0.5,), resamples=400, seed=1)
    assert comp["auc"]["difference"] == pytest.approx(auc(y, a) - auc(y, b))
    assert comp["auc"]["error"] == pytest.approx(spread[0], rel=0.3)
    # a rejection's error scatters from sample to sample (it counts ~40 passing jets): average over samples
    rejection_errors = [paired_bootstrap(*_correlated_taggers(rng, 400, 2000), efficiencies=(0.5,), resamples=200,
                                         seed=i)["rejection_at_0.5"]["error"] for i in range(8)]
    assert np.mean(rejection_errors) == pytest.approx(spread[1], rel=0.3)
    # the shared jet cancels: the paired error is far below the two independent errors combined
    from hepflow.evaluation.metrics import auc_error
    assert comp["auc"]["error"] < 0.6 * np.hypot(auc_error(y, a), auc_error(y, b))
    assert comp["auc"]["ahead"] > 0.95 and comp["rejection_at_0.5"]["ahead"] > 0.8


def test_paired_bootstrap_of_a_tagger_with_itself_is_a_tie():
    from hepflow.evaluation.metrics import paired_bootstrap

    y, a, _ = _correlated_taggers(np.random.default_rng(2), 100, 300)
    comp = paired_bootstrap(y, a, a, resamples=50)
    assert all(c["difference"] == 0 and c["error"] == 0 and c["ahead"] == 0.5 for c in comp.values())
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap(y, a, a[:-1])
