"""Anomaly statistics on known distributions, and the autoencoders on real generated jets."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hepflow.evaluation.anomaly import bump_hunt, js_divergence, mass_sculpting, poisson_significance


def test_js_divergence_limits():
    assert js_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < js_divergence([1, 1], [1, 3]) < 1
    with pytest.raises(ValueError, match="same binning"):
        js_divergence([1, 2], [1, 2, 3])


def test_sculpting_sees_mass_correlated_cuts_only():
    rng = np.random.default_rng(0)
    mass = rng.exponential(100, 50_000)
    independent = rng.random(mass.size)  # a score unrelated to the mass
    correlated = mass + rng.normal(0, 20, mass.size)
    flat = mass_sculpting(mass, independent, np.quantile(independent, 0.8))
    sculpted = mass_sculpting(mass, correlated, np.quantile(correlated, 0.8))
    assert flat["background_efficiency"] == pytest.approx(0.2, abs=0.01)
    assert flat["js_divergence"] < 0.01
    assert sculpted["js_divergence"] > 0.3
    with pytest.raises(ValueError, match="No background jet passes"):
        mass_sculpting(mass, independent, 2.0)


def test_poisson_significance_values():
    assert poisson_significance(100, 100) == 0.0
    assert poisson_significance(130, 100) == pytest.approx(2.8661, abs=1e-3)  # sqrt(2(130 ln 1.3 - 30))
    with pytest.raises(ValueError):
        poisson_significance(5, 0)


def test_bump_hunt_finds_an_injected_resonance(tmp_path):
    rng = np.random.default_rng(1)
    background = 150 + rng.exponential(120, 40_000)
    signal = rng.normal(400, 20, 600)
    quiet = bump_hunt(background, window=(350, 450), out_png=str(tmp_path / "quiet.png"))
    bump = bump_hunt(np.r_[background, signal], window=(350, 450), out_png=str(tmp_path / "bump.png"))
    assert quiet["significance"] < 2.5
    true_background = np.sum((background > 350) & (background < 450))
    assert quiet["expected"] == pytest.approx(true_background, rel=0.05)
    assert bump["excess"] == pytest.approx(0.95 * 600, rel=0.25)  # 95 % of the Gaussian lies in the window
    assert bump["significance"] > 5
    assert os.path.getsize(tmp_path / "bump.png") > 1000
    # a cut on a score that keeps the signal and a third of the background raises the significance
    scores = np.r_[rng.random(background.size), np.ones(signal.size)]
    cut = bump_hunt(np.r_[background, signal], scores, threshold=0.667, window=(350, 450))
    assert cut["significance"] > bump["significance"]


pytest.importorskip("pythia8mc", reason="needs the [pythia] extra")


def test_conv_autoencoder_config_trains_on_real_jets(anomaly_jets_dir, tmp_path, capsys):
    """The example config through `hepflow train`, then scored on real gluino and QCD jets."""
    import keras

    from hepflow.cli.main import main
    from hepflow.data import SampleSpec
    from hepflow.runs import score_specs
    from hepflow.runs import build_transform, load_config

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = os.path.join(repo, "configs", "anomaly", "conv_autoencoder.yaml")
    run = tmp_path / "run"
    assert main(["train", config, "--run-dir", str(run), "--set", f"data.dir={anomaly_jets_dir}",
                 "--set", "training.epochs=2", "--set", "training.batch_size=16"]) == 0
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_loss" in history[0]
    model = keras.saving.load_model(str(run / "model.keras"))
    specs = [SampleSpec(name=p, files=str(anomaly_jets_dir / f"{p}_0000[0-3].h5"), keys=["constituents", "mass"],
                        label=int(p == "gluino")) for p in ("qcd", "gluino")]
    _, labels, scores = score_specs(model, specs, transform=build_transform(load_config(config)), progress=False)
    assert len(scores) == 80 and np.isfinite(scores).all() and (scores > 0).all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "conv_autoencoder" and summary["params"] > 10_000
    # hepflow evaluate on an anomaly run: its test QCD against signal files
    assert main(["evaluate", str(run), "--signal", f"gluino={anomaly_jets_dir}/gluino_0000[45].h5",
                 "--signal", f"top={anomaly_jets_dir}/top_0000[45].h5"]) == 0
    table = json.loads((run / "evaluation" / "anomaly.json").read_text())
    assert set(table) == {"gluino", "top"} and all(0 <= r["auc"] <= 1 for r in table.values())
    assert (run / "evaluation" / "gluino" / "roc.png").exists()
    assert main(["evaluate", str(run), "--signal", "gluino"]) == 2
    assert "--signal must look like" in capsys.readouterr().err


@pytest.mark.slow
def test_anomaly_study_end_to_end(anomaly_jets_dir, tmp_path):
    """Every study of `hepflow study anomaly` on the small real sample (wide mass windows for its few jets)."""
    from hepflow.studies.anomaly import run_anomaly_study

    out = tmp_path / "study"
    report = run_anomaly_study(str(anomaly_jets_dir), str(out), epochs=1, classifier_epochs=1, batch_size=8,
                               signal_region=(150, 450), sidebands=((40, 150), (450, 700)), bump_injection=0.5,
                               injections=(0.1, 0.2), verbose=0)
    names = {"pca", "dense_autoencoder", "conv_autoencoder", "vae", "vae_elbo", "adversarial_lambda1",
             "adversarial_lambda10", "adversarial_lambda100", "conv_autoencoder_contaminated_0.01",
             "conv_autoencoder_contaminated_0.1"}
    for signal in ("gluino", "top"):
        assert set(report[f"autoencoders_{signal}"]) == names
        assert all(0 <= r["auc"] <= 1 for r in report[f"autoencoders_{signal}"].values())
        assert (out / signal / "roc.png").exists()
    assert report["test_jets"] == {"qcd": 40, "gluino": 10, "top": 10}
    assert set(report["sculpting"]) >= {"conv_autoencoder", "adversarial_lambda1", "adversarial_lambda10"}
    assert set(report["bump_hunt"]["results"]) == {"no cut", "conv_autoencoder", "adversarial_lambda1",
                                                   "adversarial_lambda10", "adversarial_lambda100"}
    assert report["sculpting"]["random cut (statistical floor)"]["js_divergence"] >= 0
    weak = report["weak_supervision"]["auc"]
    assert {"supervised (tau)", "CWoLa S/B=0.1 (tau)", "CWoLa S/B=0.2 (image)", "LLP f=0.2/0.6 (image)"} <= set(weak)
    assert (out / "report.md").read_text().count("|") > 50
    assert json.loads((out / "report.json").read_text())["test_jets"]["qcd"] == 40
