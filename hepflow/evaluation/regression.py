"""Energy-regression evaluation: resolution per energy bin, fitted as σ/E = a/√E ⊕ b/E ⊕ c.

A regression run (``training.task: regression``) is compared with the simplest calibration: the
summed cell energy times one constant fitted on the training files. Per bin of true energy the
response (mean E_reco / E_true) and the resolution (standard deviation of E_reco / E_true over
its mean) are measured and the resolution is fitted with the stochastic (a), noise (b) and
constant (c) terms added in quadrature.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping

import keras
import numpy as np
from scipy.optimize import curve_fit

from hepflow.errors import DataError, RunError
from hepflow.evaluation.runs import shower_shape_arrays
from hepflow.io import write_atomic
from hepflow.ops.calo import SHAPE_NAMES
from hepflow.runs import build_transform, load_config, score_specs, split_specs

__all__ = ["resolution_curve", "fit_resolution", "evaluate_regression"]


def resolution_curve(true: np.ndarray, reco: np.ndarray, edges: np.ndarray, *, min_count: int = 10
                     ) -> dict[str, np.ndarray]:
    """Per bin of ``true`` with at least ``min_count`` entries: ``center``, ``response``,
    ``resolution`` and its error, ``count``."""
    ratio = np.asarray(reco, np.float64) / np.asarray(true, np.float64)
    centers, response, resolution, error, counts = [], [], [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (true >= lo) & (true < hi)
        if sel.sum() < max(min_count, 2):
            continue
        r = ratio[sel]
        centers.append(float(np.mean(true[sel])))
        response.append(float(r.mean()))
        resolution.append(float(r.std() / r.mean()))
        error.append(float(r.std() / r.mean() / np.sqrt(2 * (sel.sum() - 1))))
        counts.append(int(sel.sum()))
    return {k: np.array(v) for k, v in (("center", centers), ("response", response), ("resolution", resolution),
                                        ("error", error), ("count", counts))}


def _model(e, a, b, c):
    return np.sqrt((a / np.sqrt(e)) ** 2 + (b / e) ** 2 + c**2)


def fit_resolution(curve: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Fits σ/E = a/√E ⊕ b/E ⊕ c (E in GeV) to a resolution curve; returns ``a``, ``b``, ``c``."""
    if len(curve["center"]) < 3:
        raise DataError(f"A resolution fit (3 terms) needs at least 3 energy bins; {len(curve['center'])} have "
                        "enough showers. Use fewer bins or more test showers.")
    params, _ = curve_fit(_model, curve["center"], curve["resolution"], p0=(0.1, 0.01, 0.01),
                          sigma=np.maximum(curve["error"], 1e-6), bounds=(0, np.inf), maxfev=20000)
    return {"a": float(params[0]), "b": float(params[1]), "c": float(params[2])}


def evaluate_regression(run_dir: str, *, out_dir: str | None = None, bins: int = 10, min_count: int = 10,
                        log_bins: bool = True, progress: bool = True) -> dict[str, dict[str, float]]:
    """Evaluates an energy-regression run on its test files against the calibrated cell sum.

    Energy bins are logarithmic by default (``log_bins``): the resolution changes fastest at
    low energy, where wide bins would bias the fit. Writes ``regression.json`` and ``resolution.png`` (resolution and response vs energy, with
    the fits) into ``out_dir`` (default ``run_dir/evaluation``).

    Returns:
        ``{"<run name>": {"a", "b", "c", "mean_abs_response_bias"}, "calibrated_sum": {...}}``.
    """
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    tcfg = cfg["training"]
    if tcfg["task"] != "regression":
        raise RunError(f"{run_dir} is not a regression run (training.task = {tcfg['task']!r}).")
    out_dir = out_dir or os.path.join(run_dir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    splits = split_specs(cfg)
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    ids, _, pred = score_specs(model, splits["test"], transform=build_transform(cfg), progress=progress,
                               desc=f"scoring {cfg['name']}")
    test, train = shower_shape_arrays(splits["test"]), shower_shape_arrays(splits["train"])
    if not np.array_equal(test["record_id"], ids):
        raise DataError("The predictions and the true energies cover different test records.")
    total = SHAPE_NAMES.index("e_total")
    k = float(np.sum(train["energy"] * train["features"][:, total]) / np.sum(train["features"][:, total] ** 2))
    reco = {cfg["name"]: pred * float(tcfg.get("target_scale") or 1.0),
            "calibrated_sum": k * test["features"][:, total]}
    true = test["energy"]
    lo, hi = max(float(true.min()), 1e-3), float(true.max()) * (1 + 1e-6)
    edges = np.geomspace(lo, hi, bins + 1) if log_bins else np.linspace(lo, hi, bins + 1)
    table, curves = {}, {}
    for name, r in reco.items():
        curves[name] = resolution_curve(true, r, edges, min_count=min_count)
        table[name] = {**fit_resolution(curves[name]),
                       "mean_abs_response_bias": float(np.mean(np.abs(curves[name]["response"] - 1)))}
    table["calibrated_sum"]["calibration"] = k
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    grid = np.linspace(edges[0], edges[-1], 200)
    for name, c in curves.items():
        p = table[name]
        line = ax1.errorbar(c["center"], c["resolution"], c["error"], fmt="o", label=name)
        ax1.plot(grid, _model(grid, p["a"], p["b"], p["c"]), color=line[0].get_color(),
                 label=f"{p['a']:.3f}/√E ⊕ {p['b']:.3f}/E ⊕ {p['c']:.3f}")
        ax2.plot(c["center"], c["response"], "o-", label=name)
    ax1.set_ylabel("σ(E_reco/E) / mean")
    ax1.legend(fontsize=7)
    ax2.axhline(1.0, color="k", lw=0.5)
    ax2.set_xlabel("true energy [GeV]")
    ax2.set_ylabel("response")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "resolution.png"), dpi=100)
    plt.close(fig)

    write_atomic(os.path.join(out_dir, "regression.json"), json.dumps(
        {"test_showers": int(len(true)), "fits": table,
         "curves": {n: {k2: v.tolist() for k2, v in c.items()} for n, c in curves.items()}}, indent=1))
    return table
