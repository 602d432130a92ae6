"""Event-level anomaly detection, evaluated: autoencoders of whole events against new-physics signals.

``evaluate_event_runs(run_dirs, data_dir, out_dir)`` (``hepflow study events``) scores finished
anomaly runs (trained on the standard-model cocktail of ``hepflow generate events``) and two
baselines fitted on the same training events — k-means (distance to the nearest of 10
centroids) and an isolation forest, on the flattened event features — on

* the test files of each standard-model process, each event weighted so that the processes
  enter in proportion to their cross section × trigger efficiency (the manifest's ``rate_pb``),
  as in data;
* every file of each signal (only its test files when one of the runs trained on some of it, as
  contamination: then for every run alike).

Per signal: the AUC, the signal efficiency at background efficiencies 10⁻², 10⁻³, 10⁻⁴ and 10⁻⁵
with binomial errors — a working point is reported only when every standard-model process could
show 10 test events above it (εB ≥ 10 · the heaviest event weight / the total), so small samples
give ``None`` rather than a number made of one event or of none — and the sculpting of the leading jet and lepton pT by a cut keeping 1 % of the background
(Jensen–Shannon divergence, plots). Variational autoencoders are scored by their KL term and by
their reconstruction error. Writes ``report.md``, ``report.json``, ROC and sculpting PNGs and
TensorBoard logs.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import keras
import matplotlib
import numpy as np
from sklearn.cluster import KMeans
from sklearn.ensemble import IsolationForest

from hepflow.data import SampleSpec
from hepflow.errors import DataError
from hepflow.evaluation.anomaly import js_divergence
from hepflow.evaluation.report import _log_tensorboard, json_safe
from hepflow.io import write_atomic
from hepflow.models.vae import VariationalAutoencoder
from hepflow.ops.events import event_features
from hepflow.physics.events import EVENT_PROCESSES, SIGNALS
from hepflow.runs import build_transform, finished_run, split_specs
from hepflow.runs.scoring import score_specs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 -- after choosing the backend

__all__ = ["BACKGROUND_EFFICIENCIES", "evaluate_event_runs", "format_events_report", "weighted_efficiency_curve"]

BACKGROUND_EFFICIENCIES = (1e-2, 1e-3, 1e-4, 1e-5)
_MIN_EVENTS_ABOVE = 10
_READ_KEYS = ("objects", "object_type", "object_tags")


def weighted_efficiency_curve(background: np.ndarray, weights: np.ndarray, signal: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(background efficiency, signal efficiency, AUC)`` with weighted background events (higher = more anomalous)."""
    order = np.argsort(-background, kind="stable")
    b, w = background[order], weights[order] / weights.sum()
    thresholds = np.unique(np.concatenate([b, signal]))[::-1]
    cum = np.concatenate([[0.0], np.cumsum(w)])
    eff_b = cum[np.searchsorted(-b, -thresholds, side="right")]  # weight of the background at or above each
    s_sorted = np.sort(signal)
    eff_s = 1.0 - np.searchsorted(s_sorted, thresholds, side="left") / len(signal)
    x, y = np.concatenate([[0.0], eff_b, [1.0]]), np.concatenate([[0.0], eff_s, [1.0]])
    return x, y, float(np.trapezoid(y, x))


def _top(background: np.ndarray, weights: np.ndarray, efficiency: float) -> tuple[int, float]:
    """``(k, threshold)``: the k highest-scoring background events hold ``efficiency`` of the weight."""
    order = np.argsort(-background, kind="stable")
    cum = np.cumsum(weights[order] / weights.sum())
    k = int(np.searchsorted(cum, efficiency * (1 + 1e-9), side="right"))  # 1e-9: sums of 0.001s
    return k, float(background[order][max(k, 1) - 1])


def _signal_efficiency_at(background, weights, signal, eff_b: float) -> dict[str, Any]:
    k, threshold = _top(background, weights, eff_b)
    # every process must be able to show _MIN_EVENTS_ABOVE events above the cut: the heaviest test event
    # (that of the process with the largest rate per generated event) sets the smallest measurable εB
    smallest = _MIN_EVENTS_ABOVE * float(weights.max() / weights.sum())
    if eff_b < smallest:
        return {"signal_efficiency": None, "error": None, "background_events_above": k,
                "smallest_measurable_background_efficiency": smallest}
    eff = float((signal >= threshold).mean())
    return {"signal_efficiency": eff, "error": float(np.sqrt(eff * (1 - eff) / len(signal))),
            "background_events_above": k, "smallest_measurable_background_efficiency": smallest}


def _kept_by_cut(background: np.ndarray, weights: np.ndarray, efficiency: float) -> np.ndarray:
    """Which background events pass the score cut that keeps ``efficiency`` of the weighted background."""
    return background >= _top(background, weights, efficiency)[1]


def _read(files: Sequence[str], keys: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, list] = {k: [] for k in keys}
    for path in files:
        with h5py.File(path, "r") as f:
            for k in keys:
                out[k].append(f[k][...])
    return {k: np.concatenate(v) for k, v in out.items()}


def _leading(arrays, codes) -> np.ndarray:
    pt = np.where(np.isin(arrays["object_type"], codes), arrays["objects"][..., 0], 0.0)
    return pt.max(axis=1)


def _flat_features(arrays) -> np.ndarray:
    x = event_features(arrays["objects"], arrays["object_type"], arrays["object_tags"]).numpy()
    return x.reshape(len(x), -1)


def _manifest_rates(data_dir: str) -> dict[str, float]:
    try:
        with open(os.path.join(data_dir, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        raise DataError(f"{data_dir}: no manifest.json of `hepflow generate events` (the cocktail rates are read "
                        "from it)") from None
    if manifest.get("dataset") != "lhc_events":
        raise DataError(f"{data_dir}/manifest.json is not an events manifest. Received: dataset={manifest.get('dataset')!r}")
    return {p: v["rate_pb"] for p, v in manifest["processes"].items()}


def _background_tests(config, rates: Mapping[str, float]) -> dict[str, list[str]]:
    tests = {s.name: list(s.files) for s in split_specs(config)["test"]}
    background = {n: f for n, f in tests.items() if n in EVENT_PROCESSES and n not in SIGNALS}
    if not background:
        raise DataError("the run's config has no standard-model sample with test files (names w, z, ttbar, diboson, "
                        f"qcd). Received test samples: {sorted(tests)}")
    missing = [n for n in background if n not in rates]
    if missing:
        raise DataError(f"the events' manifest has no cocktail rate for {missing}")
    return background


def _signal_files(configs, data_dir: str, signal: str) -> list[str]:
    for config in configs:
        for s in split_specs(config)["test"]:
            if s.name == signal:  # a run trained on it (contamination): only its test files are unseen, for all runs
                return list(s.files)
    files = sorted(f for f in os.listdir(data_dir) if f.startswith(f"{signal}_") and f.endswith(".h5"))
    return [os.path.join(data_dir, f) for f in files]


def _score_run(run_dir: str, files: Mapping[str, list[str]], *, progress: bool) -> dict[str, dict[str, np.ndarray]]:
    """Score name → process → scores, in file order (every row once)."""
    run = finished_run(run_dir)
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    transform = build_transform(run["config"])
    keys = sorted({k for s in run["config"]["data"]["samples"] for k in s["keys"]})
    names = [run["config"]["name"]]
    variants = [None]
    if isinstance(model, VariationalAutoencoder):  # both scores of a VAE
        names = [f"{run['config']['name']} (kl)", f"{run['config']['name']} (reconstruction)"]
        variants = ["kl", "reconstruction"]
    out: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    for name, variant in zip(names, variants):
        if variant is not None:
            model.score_name = variant
        for process, paths in files.items():
            spec = SampleSpec(name=process, files=paths, keys=keys, label=0)
            _, _, scores = score_specs(model, [spec], transform=transform, progress=progress,
                                       desc=f"{name} {process}")
            out[name][process] = scores
    return out


def _baselines(train: dict[str, np.ndarray], weights: np.ndarray, tests: Mapping[str, dict[str, np.ndarray]], *,
               seed: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = _flat_features(train)
    pick = rng.choice(len(x), size=min(20_000, len(x)), p=weights / weights.sum())  # the cocktail, resampled
    kmeans = KMeans(n_clusters=10, n_init=4, random_state=seed).fit(x[pick])
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(x[pick])
    out: dict[str, dict[str, np.ndarray]] = {"k-means (10)": {}, "isolation forest": {}}
    for process, arrays in tests.items():
        f = _flat_features(arrays)
        out["k-means (10)"][process] = kmeans.transform(f).min(axis=1)
        out["isolation forest"][process] = -forest.score_samples(f)
    return out


def evaluate_event_runs(run_dirs: Sequence[str], *, data_dir: str, out_dir: str, signals: Sequence[str] = SIGNALS,
                        baselines: bool = True, progress: bool = True) -> dict[str, Any]:
    """Scores the runs and the baselines on the weighted standard-model test events and each signal.

    Args:
        run_dirs: Finished anomaly runs on the event files (configs/events/); they must share
            their test files.
        data_dir: The folder of ``hepflow generate events`` (the manifest gives the cocktail rates;
            signal files are taken from it).
        out_dir: Where the report, plots and TensorBoard logs go.
        signals: Signal processes to score.
        baselines: Also fit and score k-means and an isolation forest.

    Returns:
        The report: per method and signal the AUC, the signal efficiencies and the sculpting.
    """
    if not run_dirs:
        raise DataError("evaluate_event_runs needs at least one run. Received: []")
    os.makedirs(out_dir, exist_ok=True)
    rates = _manifest_rates(data_dir)
    configs = [finished_run(d)["config"] for d in run_dirs]
    background = _background_tests(configs[0], rates)
    for d, c in zip(run_dirs[1:], configs[1:]):
        if _background_tests(c, rates) != background:
            raise DataError(f"{d} has other standard-model test files than {run_dirs[0]}; compare runs on one split.")
    files = {**background, **{s: _signal_files(configs, data_dir, s) for s in signals}}
    empty = [s for s in signals if not files[s]]
    if empty:
        raise DataError(f"no files of the signals {empty} in {data_dir}; generate them with "
                        f"`hepflow generate events --process {empty[0]}=N`")
    arrays = {p: _read(f, _READ_KEYS) for p, f in files.items()}
    weight = {p: np.full(len(arrays[p]["objects"]), rates[p] / len(arrays[p]["objects"])) for p in background}
    w_all = np.concatenate([weight[p] for p in background])
    scores: dict[str, dict[str, np.ndarray]] = {}
    for d in run_dirs:
        scores.update(_score_run(d, files, progress=progress))
    if baselines:
        train = {s.name: list(s.files) for s in split_specs(configs[0])["train"] if s.name in background}
        train_arrays = {p: _read(f, _READ_KEYS) for p, f in train.items()}
        train_w = np.concatenate([np.full(len(a["objects"]), rates[p] / len(a["objects"])) for p, a in train_arrays.items()])
        merged = {k: np.concatenate([a[k] for a in train_arrays.values()]) for k in _READ_KEYS}
        scores.update(_baselines(merged, train_w, arrays, seed=1))
    bkg_arrays = {k: np.concatenate([arrays[p][k] for p in background]) for k in _READ_KEYS}
    leading = {"leading jet pT": _leading(bkg_arrays, (4,)), "leading lepton pT": _leading(bkg_arrays, (2, 3))}
    report: dict[str, Any] = {"test": {p: len(arrays[p]["objects"]) for p in files},
                              "cocktail": {p: rates[p] / sum(rates[q] for q in background) for p in background},
                              "methods": {}}
    pngs, kept_by = [], {}
    for method, by_process in scores.items():
        b = np.concatenate([by_process[p] for p in background])
        row: dict[str, Any] = {}
        for s in signals:
            _, _, area = weighted_efficiency_curve(b, w_all, by_process[s])
            row[s] = {"auc": area, **{f"eff_at_{e:g}": _signal_efficiency_at(b, w_all, by_process[s], e)
                                      for e in BACKGROUND_EFFICIENCIES}}
        kept = kept_by[method] = _kept_by_cut(b, w_all, 0.01)
        bins = np.linspace(0, 500, 26)
        row["sculpting"] = {name: js_divergence(np.histogram(np.clip(v, 0, 499), bins, weights=w_all)[0],
                                                np.histogram(np.clip(v[kept], 0, 499), bins, weights=w_all[kept])[0])
                            for name, v in leading.items()}
        report["methods"][method] = row
    pngs.append(_plot_rocs(scores, background, w_all, signals, os.path.join(out_dir, "roc.png")))
    pngs.append(_plot_sculpting(kept_by, w_all, leading, os.path.join(out_dir, "sculpting.png")))
    write_atomic(os.path.join(out_dir, "report.json"), json.dumps(json_safe(report), indent=1))
    write_atomic(os.path.join(out_dir, "report.md"), format_events_report(report))
    scalars = {f"{method}/{s}": {"auc": m["auc"]} for method, row in report["methods"].items()
               for s, m in row.items() if s != "sculpting"}
    _log_tensorboard(os.path.join(out_dir, "tensorboard"), scalars, pngs)
    return report


def _plot_rocs(scores, background, w_all, signals, path: str) -> str:
    fig, axes = plt.subplots(1, len(signals), figsize=(5 * len(signals), 4), squeeze=False)
    for ax, s in zip(axes[0], signals):
        for method, by_process in scores.items():
            x, y, area = weighted_efficiency_curve(np.concatenate([by_process[p] for p in background]), w_all,
                                                   by_process[s])
            ax.plot(np.maximum(x, 1e-6), y, label=f"{method} ({area:.3f})")
        ax.set(xscale="log", xlim=(1e-4, 1), xlabel="background efficiency (SM cocktail)", ylabel="signal efficiency",
               title=s)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_sculpting(kept_by: Mapping[str, np.ndarray], w_all, leading, path: str) -> str:
    fig, axes = plt.subplots(1, len(leading), figsize=(11, 4))
    bins = np.linspace(0, 500, 26)
    for ax, (name, v) in zip(axes, leading.items()):
        ax.hist(v, bins=bins, weights=w_all, density=True, histtype="stepfilled", color="0.85", label="all")
        for method, kept in kept_by.items():
            ax.hist(v[kept], bins=bins, weights=w_all[kept], density=True, histtype="step", label=method)
        ax.set(xlabel=f"{name} [GeV]", ylabel="density", yscale="log", title="SM events kept by a 1 % cut")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_events_report(report: Mapping[str, Any]) -> str:
    """The report as Markdown: AUC and signal efficiency at 10⁻² … 10⁻⁵ per signal, and the sculpting."""
    methods = report["methods"]
    signals = [s for s in next(iter(methods.values())) if s != "sculpting"]
    lines = ["# Event-level anomaly detection", "",
             "Test events: " + ", ".join(f"{n} {p}" for p, n in report["test"].items()) + ". Standard-model cocktail: "
             + ", ".join(f"{p} {100 * f:.2f} %" for p, f in report["cocktail"].items()) + ".", ""]
    for s in signals:
        lines += [f"## {s}", "", "| method | AUC | εS at εB = 10⁻² | 10⁻³ | 10⁻⁴ | 10⁻⁵ |", "|---|---:|---:|---:|---:|---:|"]
        for method, row in methods.items():
            cells = []
            for e in BACKGROUND_EFFICIENCIES:
                m = row[s][f"eff_at_{e:g}"]
                cells.append("—" if m["signal_efficiency"] is None else f"{m['signal_efficiency']:.3f} ± {m['error']:.3f}")
            lines.append(f"| {method} | {row[s]['auc']:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Sculpting of the SM by a cut keeping 1 % of it (Jensen–Shannon divergence)", "",
              "| method | leading jet pT | leading lepton pT |", "|---|---:|---:|"]
    for method, row in methods.items():
        lines.append(f"| {method} | {row['sculpting']['leading jet pT']:.3f} | {row['sculpting']['leading lepton pT']:.3f} |")
    lines += ["", "— : not measurable with these test events: below 10 × the heaviest test event's share of the "
                  "weighted background."]
    return "\n".join(lines) + "\n"
