"""The anomaly-detection and weak-supervision studies on generated QCD, top and gluino jets.

``run_anomaly_study(data_dir, out_dir)`` (``hepflow study anomaly``) trains every model through
``hepflow.training.train`` (so each is an ordinary run directory with TensorBoard logs and a
``.keras`` model) and writes ``report.md``, ``report.json`` and the plots:

1. **Autoencoders** trained on QCD only — PCA, dense, convolutional, VAE (scored by
   reconstruction error and by −ELBO), mass-decorrelated with each λ — scored on the test
   QCD, gluino and top jets: AUC and 1/εB at εS = 0.3 and 0.5, ROC plots per signal.
2. **Contamination**: the convolutional autoencoder trained with 1 % and 10 % gluinos in the
   QCD sample.
3. **Mass sculpting**: the QCD mass distribution after a cut keeping 50 % of the gluinos,
   Jensen–Shannon divergence to the uncut one, for the plain and the decorrelated autoencoders.
4. **Bump hunt**: QCD test jets with an injected gluino fraction; a cut on each autoencoder's
   score keeping 10 % of the data; a sideband fit and the significance in the 350–450 GeV window.
5. **Weak supervision** in the same window: CWoLa (signal region vs sidebands of QCD with
   injected gluinos, several injected fractions) and learning from label proportions (two
   mixtures of known gluino fraction), against the fully supervised classifier, each on
   (τ21, τ32) and on jet images; AUC on the test jets of the signal region.

Files are partitioned once per process: the last ``test_fraction`` of the sorted chunk files
are the test jets of every study, the rest the training (and validation) jets.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from hepflow.data import SampleSpec
from hepflow.errors import DataError
from hepflow.evaluation.anomaly import bump_hunt, mass_sculpting, plot_mass_cut
from hepflow.evaluation.metrics import auc, threshold_at
from hepflow.evaluation.anomaly_runs import run_scores
from hepflow.evaluation.report import format_report, json_safe, tagger_report
from hepflow.evaluation.reporters import standard_reporters
from hepflow.evaluation.runs import high_level_arrays
from hepflow.io import write_atomic
from hepflow.runs import build_transform
from hepflow.training import train

__all__ = ["run_anomaly_study", "format_study", "AUTOENCODERS", "SIGNAL_REGION", "SIDEBANDS"]

IMAGE = {"jet_images": {"npix": 40, "half_width": 1.2}}  # R = 1.0 jets, with a margin
IMAGE_SHAPE = [40, 40, 1]
AE_ARGS = {"input_shape": IMAGE_SHAPE, "latent_dim": 6, "input_scale": 1000.0}

#: Name → model section of the autoencoders trained on QCD.
AUTOENCODERS: dict[str, dict[str, Any]] = {
    "pca": {"name": "pca", "args": {"input_shape": IMAGE_SHAPE, "components": 6, "input_scale": 1000.0}},
    "dense_autoencoder": {"name": "dense_autoencoder", "args": dict(AE_ARGS)},
    "conv_autoencoder": {"name": "conv_autoencoder", "args": dict(AE_ARGS)},
    "vae": {"name": "vae", "args": {**AE_ARGS, "beta": 1.0, "score": "reconstruction"}},
}
SIGNAL_REGION = (350.0, 450.0)
SIDEBANDS = ((275.0, 350.0), (450.0, 525.0))


def _in_ranges(ranges) -> str:
    return " | ".join(f"((mass > {lo:g}) & (mass < {hi:g}))" for lo, hi in ranges)
_KEYS = ["constituents", "mass", "pt", "tau"]


def _partition(data_dir: str, test_fraction: float) -> dict[str, dict[str, list[str]]]:
    out = {}
    for process in ("qcd", "gluino", "top"):
        files = sorted(f for f in os.listdir(data_dir) if f.startswith(f"{process}_") and f.endswith(".h5"))
        if len(files) < 3:
            raise DataError(f"The anomaly study needs ≥ 3 chunk files of '{process}' jets in {data_dir}. Received: "
                            f"{len(files)}. Make them with: hepflow generate jets --out {data_dir} "
                            "--process qcd=30000 --process gluino=6000 --process top=6000")
        n_test = max(1, round(test_fraction * len(files)))
        out[process] = {"train": files[:-n_test], "test": files[-n_test:]}
    return out


def _config(name: str, data_dir: str, samples: list[dict], model: Mapping[str, Any], transform: list, *,
            task: str, epochs: int, batch_size: int, seed: int, steps: int | None) -> dict[str, Any]:
    # sampled mixing: 1 % contamination or a small injection gets no exact share of a batch
    return {"name": name, "seed": seed, "data": {"dir": data_dir, "samples": samples, "split": {"validation": 0.15, "test": 0.0},
                                                 "mix": "sampled" if len(samples) > 1 else "exact"},
            "transform": transform, "model": copy.deepcopy(dict(model)), "optimizer": {"name": "adam", "learning_rate": 1e-3},
            "training": {"epochs": epochs, "batch_size": batch_size, "steps_per_epoch": steps, "early_stopping": None,
                         "cache": "memory", "task": task, "strategy": "default"}}


def _train(cfg: dict[str, Any], run_dir: str, verbose) -> str:
    if os.path.exists(os.path.join(run_dir, "summary.json")):  # finished before: reuse (rerun resumes the study)
        return run_dir
    train(cfg, run_dir=run_dir, overwrite=True, verbose=verbose, reporters=standard_reporters())
    return run_dir


def run_anomaly_study(data_dir: str, out_dir: str, *, epochs: int = 5, classifier_epochs: int = 8,
                      batch_size: int = 128, steps_per_epoch: int | None = None,
                      adversary_weights: Sequence[float] = (1.0, 10.0, 100.0), contaminations: Sequence[float] = (0.01, 0.1),
                      injections: Sequence[float] = (0.005, 0.01, 0.02), bump_injection: float = 0.005,
                      bump_trials: int = 50,
                      label_fractions: Sequence[float] = (0.2, 0.6), test_fraction: float = 0.2, seed: int = 1,
                      signal_region: Sequence[float] = SIGNAL_REGION,
                      sidebands: Sequence[Sequence[float]] = SIDEBANDS, verbose: int | str = 2) -> dict[str, Any]:
    """Runs every study of the module docstring; returns (and writes) the report.

    Args:
        data_dir: Chunk files ``qcd_*.h5``, ``gluino_*.h5``, ``top_*.h5`` (``hepflow generate jets``).
        out_dir: Runs go to ``out_dir/runs/<name>``; ``report.md``, ``report.json`` and PNGs to ``out_dir``.
        epochs: Autoencoder epochs. classifier_epochs: CWoLa/LLP/supervised epochs.
        steps_per_epoch: Bound the steps per epoch (``None``: one pass over the training files).
        adversary_weights: λ of the mass-decorrelated autoencoders.
        contaminations: Gluino fractions in the autoencoder's training sample.
        injections: Gluino-to-QCD ratios injected for CWoLa.
        bump_injection: Gluino-to-QCD ratio injected into the test QCD for the bump hunt.
        bump_trials: Independent draws of the injected gluinos; the report gives the first
            draw in full (and plots it) and the mean and spread of the significance over all.
        label_fractions: Gluino fractions of the two LLP mixtures.
        signal_region, sidebands: Jet-mass ranges (GeV) of the bump hunt's window and fit
            exclusion, CWoLa's two mixed samples and the weak-supervision test jets.
    """
    parts = _partition(data_dir, test_fraction)
    study = _Study(data_dir=data_dir, out_dir=out_dir, parts=parts, verbose=verbose, seed=seed,
                   common=dict(epochs=epochs, batch_size=batch_size, seed=seed, steps=steps_per_epoch))
    os.makedirs(study.runs, exist_ok=True)
    ae_models, ae_runs = _train_autoencoders(study, adversary_weights, contaminations)
    base_dir = os.path.abspath(data_dir)
    test_specs = [SampleSpec(name=p, files=[os.path.join(base_dir, f) for f in parts[p]["test"]], keys=_KEYS, label=lab)
                  for p, lab in (("qcd", 0), ("gluino", 1), ("top", 2))]
    labels, mass, scores = _score_autoencoders(ae_models, ae_runs, test_specs)
    report: dict[str, Any] = {"data_dir": data_dir, "test_jets": {p: int((labels == k).sum()) for k, p in
                                                                  enumerate(("qcd", "gluino", "top"))}}
    for k, signal in ((1, "gluino"), (2, "top")):
        keep = (labels == 0) | (labels == k)
        report[f"autoencoders_{signal}"] = tagger_report(
            labels[keep] == k, {n: s[keep] for n, s in scores.items()}, out_dir=os.path.join(out_dir, signal),
            log_dir=os.path.join(out_dir, "tb", signal))
    adversarial = [n for n in ae_runs if n.startswith("adversarial_")]
    report["sculpting"] = _sculpting(labels, mass, scores, ["conv_autoencoder", *adversarial, "pca", "dense_autoencoder"],
                                     out_dir=out_dir, seed=seed)
    report["bump_hunt"] = _bump_hunts(labels, mass, scores, ["no cut", "conv_autoencoder", *adversarial],
                                      injection=bump_injection, trials=bump_trials, signal_region=signal_region,
                                      out_dir=out_dir, seed=seed)
    weak_runs, classifiers = _train_weakly_supervised(study, injections, label_fractions, classifier_epochs,
                                                      signal_region, sidebands)
    report["weak_supervision"] = _score_weakly_supervised(weak_runs, classifiers, test_specs[:2], signal_region,
                                                          sidebands)
    report["runs"] = {**ae_runs, **{k: v[0] for k, v in weak_runs.items()}}
    write_atomic(os.path.join(out_dir, "report.json"), json.dumps(json_safe(report), indent=1))
    write_atomic(os.path.join(out_dir, "report.md"), format_study(report))
    return report


@dataclasses.dataclass
class _Study:
    """What every run of the study shares: the data, where runs go, the training settings."""

    data_dir: str
    out_dir: str
    parts: dict[str, dict[str, list[str]]]
    verbose: int | str
    seed: int
    common: dict[str, Any]

    @property
    def runs(self) -> str:
        return os.path.join(self.out_dir, "runs")

    def sample(self, name, process, label, *, split="train", rate=1.0, selection=None, files=None) -> dict[str, Any]:
        """A sample entry of a run config: a process's files of one split (or ``files``)."""
        entry = {"name": name, "files": files if files is not None else self.parts[process][split],
                 "keys": list(_KEYS), "label": label, "rate": rate}
        if selection:
            entry["selection"] = selection
        return entry

    def train(self, name: str, samples, model, transform, *, task: str, **overrides) -> str:
        """Trains one run of the study (``runs/<name>``); returns its directory."""
        cfg = _config(name, self.data_dir, samples, model, transform, task=task, **{**self.common, **overrides})
        return _train(cfg, os.path.join(self.runs, name), self.verbose)


def _train_autoencoders(study: _Study, adversary_weights, contaminations) -> tuple[dict, dict[str, str]]:
    """Studies 1-2: autoencoders on QCD, mass-decorrelated ones, ones trained on contaminated QCD.

    Returns:
        ``(model configs by run name, run directories by run name)``.
    """
    ae_models = dict(AUTOENCODERS)
    for lam in adversary_weights:
        ae_models[f"adversarial_lambda{lam:g}"] = {"name": "adversarial_autoencoder",
                                                   "args": {**AE_ARGS, "adversary_weight": float(lam)}}
    ae_runs = {name: study.train(name, [study.sample("qcd", "qcd", 0)], model, [IMAGE], task="anomaly")
               for name, model in ae_models.items()}
    for frac in contaminations:
        name = f"conv_autoencoder_contaminated_{frac:g}"
        samples = [study.sample("qcd", "qcd", 0, rate=1 - frac), study.sample("gluino", "gluino", 0, rate=frac)]
        ae_runs[name] = study.train(name, samples, AUTOENCODERS["conv_autoencoder"], [IMAGE], task="anomaly")
    return ae_models, ae_runs


def _score_autoencoders(ae_models, ae_runs: Mapping[str, str], test_specs):
    """``(labels, masses, run name → anomaly scores)`` of the test jets (a VAE adds its ELBO as ``vae_elbo``)."""
    transform = build_transform({"transform": [IMAGE]})
    truth = high_level_arrays(test_specs)
    labels, mass = truth["label"].astype(int), truth["mass"]
    scores: dict[str, np.ndarray] = {}
    for name, run_dir in ae_runs.items():
        scored_labels, scores[name] = run_scores(run_dir, test_specs, transform)
        if not np.array_equal(scored_labels.astype(int), labels):
            raise RuntimeError("Scores and truth are not aligned by record id")  # never expected
        if ae_models.get(name, {}).get("name") == "vae":
            scores["vae_elbo"] = run_scores(run_dir, test_specs, transform, score="elbo")[1]
    return labels, mass, scores


def _sculpting(labels, mass, scores, names, *, out_dir: str, seed: int) -> dict[str, Any]:
    """Study 3: the QCD mass distribution after each cut keeping half of the gluinos, beside the
    statistical floor (a random cut keeping as many QCD jets as the plain autoencoder's)."""
    qcd, glu = labels == 0, labels == 1
    sculpt, cuts = {}, {}
    for name in names:
        s = scores[name]
        thr = threshold_at(np.r_[np.ones(glu.sum()), np.zeros(qcd.sum())], np.r_[s[glu], s[qcd]], 0.5)
        sculpt[name] = mass_sculpting(mass[qcd], s[qcd], thr)
        cuts[f"{name} (JS {sculpt[name]['js_divergence']:.3f})"] = s[qcd] >= thr
    random_score = np.random.default_rng(seed).random(int(qcd.sum()))
    sculpt["random cut (statistical floor)"] = mass_sculpting(
        mass[qcd], random_score, np.quantile(random_score, 1 - sculpt["conv_autoencoder"]["background_efficiency"]))
    plot_mass_cut(mass[qcd], cuts, os.path.join(out_dir, "sculpting.png"),
                  title="QCD jet mass after cuts keeping 50 % of gluinos")
    return sculpt


def _bump_hunts(labels, mass, scores, names, *, injection: float, trials: int, signal_region, out_dir: str,
                seed: int) -> dict[str, Any]:
    """Study 4: bump hunts on the test QCD plus injected gluinos, with no cut and after each
    score's top-10 % cut; the first draw in full (and plotted), the spread over ``trials`` draws."""
    qcd, glu = labels == 0, labels == 1
    n_inject = min(int(round(injection * qcd.sum())), int(glu.sum()))
    draws = [np.random.default_rng([seed, trial]).choice(np.flatnonzero(glu), size=n_inject, replace=False)
             for trial in range(max(1, trials))]
    hunts = {}
    for name in names:
        results = []
        for trial, injected in enumerate(draws):
            data = np.r_[np.flatnonzero(qcd), injected]
            s = scores[name][data] if name in scores else None
            thr = float(np.quantile(s, 0.9)) if s is not None else None  # keep 10 % of the data
            png = os.path.join(out_dir, f"bump_hunt_{name.replace(' ', '_')}.png") if trial == 0 else None
            try:
                results.append(bump_hunt(mass[data], s, threshold=thr, window=signal_region, out_png=png,
                                         title=f"QCD + {n_inject} gluinos, "
                                               + ("no cut" if s is None else f"{name} score in the top 10 %")))
            except ValueError as e:  # too few jets to fit (small samples): reported, not fatal
                results.append({"error": str(e)})
        z = [t["significance"] for t in results if "error" not in t]
        hunts[name] = {**results[0], "trials": len(z), "significance_mean": float(np.mean(z)) if z else None,
                       "significance_std": float(np.std(z)) if z else None}
    return {"injected_gluinos": int(len(draws[0])), "qcd_jets": int(qcd.sum()), "window": list(signal_region),
            "results": hunts}


def _train_weakly_supervised(study: _Study, injections, label_fractions, classifier_epochs: int, signal_region,
                             sidebands):
    """Study 5's runs: supervised, CWoLa (per injected S/B) and LLP classifiers on τ ratios and on images.

    Returns:
        ``(report name → (run directory, feature set), feature set → (model, transform))``.
    """
    sr_cut, sb_cut = _in_ranges([signal_region]), _in_ranges(sidebands)
    sample = study.sample
    classifiers = {"tau": ({"name": "high_level_dnn", "args": {"features": ["tau21", "tau32"]}},
                           [IMAGE, {"high_level_features": {}}]),
                   "image": ({"name": "jet_cnn", "args": {"input_shape": IMAGE_SHAPE}}, [IMAGE])}
    counts = _counts(study.data_dir, study.parts, signal_region, sidebands)
    weak_runs: dict[str, tuple[str, str]] = {}
    for feat, (model, tr) in classifiers.items():
        name = f"supervised_{feat}"
        samples = [sample("qcd_sr", "qcd", 0, selection=sr_cut), sample("gluino_sr", "gluino", 1, selection=sr_cut)]
        weak_runs[f"supervised ({feat})"] = (study.train(name, samples, model, tr, task="classification",
                                                         epochs=classifier_epochs), feat)
        for inj in injections if feat == "tau" else injections[-1:]:
            n_sig = inj * counts["qcd"]["all"]
            samples = [sample("qcd_sr", "qcd", 1, selection=sr_cut, rate=counts["qcd"]["sr"]),
                       sample("gluino_sr", "gluino", 1, selection=sr_cut, rate=n_sig * counts["gluino"]["sr_fraction"]),
                       sample("qcd_sb", "qcd", 0, selection=sb_cut, rate=counts["qcd"]["sb"]),
                       sample("gluino_sb", "gluino", 0, selection=sb_cut, rate=n_sig * counts["gluino"]["sb_fraction"])]
            weak_runs[f"CWoLa S/B={inj:g} ({feat})"] = (study.train(
                f"cwola_{feat}_{inj:g}", samples, model, tr, task="classification", epochs=classifier_epochs), feat)
        halves = {p: (study.parts[p]["train"][0::2], study.parts[p]["train"][1::2]) for p in ("qcd", "gluino")}
        samples = []
        for i, f in enumerate(label_fractions[:2]):
            samples += [sample(f"qcd_mix{i}", "qcd", [float(f)], rate=1 - f, files=halves["qcd"][i]),
                        sample(f"gluino_mix{i}", "gluino", [float(f)], rate=f, files=halves["gluino"][i])]
        llp_model = {"name": "label_proportions", "args": {"classifier": model["name"], "classifier_args": model["args"]}}
        weak_runs[f"LLP f={label_fractions[0]:g}/{label_fractions[1]:g} ({feat})"] = (study.train(
            f"llp_{feat}", samples, llp_model, tr, task="proportions", epochs=classifier_epochs), feat)
    return weak_runs, classifiers


def _score_weakly_supervised(weak_runs, classifiers, test_specs, signal_region, sidebands) -> dict[str, Any]:
    """Study 5's result: each classifier's AUC for gluino against QCD on the test jets in the signal region."""
    sr_cut = _in_ranges([signal_region])
    sr_specs = [SampleSpec(**{**s.to_dict(), "selection": sr_cut}) for s in test_specs]
    sr_labels = None
    weak = {}
    for name, (run_dir, feat) in weak_runs.items():
        sr_labels, s = run_scores(run_dir, sr_specs, build_transform({"transform": classifiers[feat][1]}))
        weak[name] = {"auc": auc(sr_labels, s)}
    return {"signal_region": list(signal_region), "sidebands": [list(b) for b in sidebands],
            "test_jets_in_sr": {"qcd": int((sr_labels == 0).sum()), "gluino": int((sr_labels == 1).sum())},
            "auc": weak}


def _counts(data_dir: str, parts, signal_region, sidebands) -> dict[str, dict[str, float]]:
    """Training-jet counts in the signal region and sidebands (for CWoLa's mixing rates)."""
    out = {}
    for p in ("qcd", "gluino"):
        masses = []
        for name in parts[p]["train"]:
            with h5py.File(os.path.join(data_dir, name), "r") as f:
                masses.append(f["mass"][:])
        m = np.concatenate(masses)
        sr = (m > signal_region[0]) & (m < signal_region[1])
        sb = np.zeros_like(sr)
        for lo, hi in sidebands:
            sb |= (m > lo) & (m < hi)
        out[p] = {"all": float(len(m)), "sr": float(sr.sum()), "sb": float(sb.sum()),
                  "sr_fraction": float(sr.mean()), "sb_fraction": float(sb.mean())}
        if sr.sum() == 0 or sb.sum() == 0:
            raise DataError(f"No '{p}' training jets in the signal region or sidebands of {data_dir}.")
    return out


def format_study(report: Mapping[str, Any]) -> str:
    """The study's report as Markdown tables."""
    lines = [f"Test jets: {report['test_jets']}", ""]
    for signal in ("gluino", "top"):
        lines += [f"### Autoencoders trained on QCD, signal {signal}", "",
                  format_report(report[f"autoencoders_{signal}"], markdown=True), ""]
    lines += ["### Mass sculpting (QCD after a cut keeping 50 % of gluinos)", "",
              "| model | JS divergence | QCD efficiency |", "|---|---:|---:|"]
    lines += [f"| {n} | {r['js_divergence']:.4f} | {r['background_efficiency']:.3f} |"
              for n, r in report["sculpting"].items()]
    bh = report["bump_hunt"]
    lines += ["", f"### Bump hunt: {bh['qcd_jets']} QCD + {bh['injected_gluinos']} gluino test jets, "
              f"window {bh['window'][0]:g}–{bh['window'][1]:g} GeV", "",
              "| cut | jets | observed | fitted background | significance | χ²/bin | significance over draws |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['jets']} | {r['observed']:.0f} | {r['expected']:.1f} | {r['significance']:.2f} | "
              f"{r['chi2_per_bin']:.2f} | {r['significance_mean']:.2f} ± {r['significance_std']:.2f} ({r['trials']}) |"
              if "error" not in r else f"| {n} | {r['error']} | | | | | |" for n, r in bh["results"].items()]
    ws = report["weak_supervision"]
    lines += ["", f"### Weak supervision: gluino vs QCD test jets in the signal region {ws['test_jets_in_sr']}", "",
              "| classifier | AUC |", "|---|---:|"]
    lines += [f"| {n} | {r['auc']:.4f} |" for n, r in ws["auc"].items()]
    return "\n".join(lines) + "\n"
