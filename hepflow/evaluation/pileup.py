"""The pileup study: how well each mitigation recovers the pileup-free jet, and how taggers fare with pileup.

``run_pileup_study(data_dirs, out_dir, pumml_run=..., tagger_runs=...)`` (``hepflow study pileup``)
reads jets generated with pileup (``hepflow generate jets --pileup-mu``), one folder per μ, and

1. **Jet resolution**: on each folder's test files (the last ``test_fraction`` of every
   process's sorted chunk files, the split the PUMML config uses), the jet mass and pT after
   each method of :mod:`hepflow.ops.pileup` (none, CHS, CHS + area–median, CHS + SoftKiller, the
   PUMML run's CNN) against the same jet generated without pileup (``nopu_mass``, ``nopu_pt``):
   the median shift (bias) and half the 16–84 % interval (resolution, σ68), for QCD and top
   jets apart. A row "pixelized truth" sums the PUMML target image with the leading-vertex
   tracks: the best an image-based method can do at that pixel size.
2. **Tagger robustness**: each tagger run (trained without pileup) scored on the same test jets
   of each folder, raw and after CHS and CHS + SoftKiller (the mitigation runs in the pipeline before
   the run's own transform): AUC and 1/εB at εS = 0.3 and 0.5, next to its score on its own
   pileup-free test files.

Writes ``report.md``, ``report.json``, mass-distribution and ΔM plots (PNG) and TensorBoard
logs under ``out_dir``.
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
import tensorflow as tf

from hepflow.data import Compose, SampleSpec
from hepflow.errors import DataError
from hepflow.evaluation.metrics import auc, rejection_at
from hepflow.evaluation.report import _log_tensorboard, json_safe
from hepflow.io import write_atomic
from hepflow.ops.jets import jet_kinematics
from hepflow.ops.pileup import PileupMitigation, mitigated_jet, pumml_images, pumml_jet
from hepflow.runs import build_transform, finished_run, split_specs
from hepflow.runs.scoring import score_specs
from hepflow.runs.splits import refuse_seen_files

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 -- after choosing the backend

__all__ = ["RESOLUTION_METHODS", "TAGGER_METHODS", "run_pileup_study", "format_study", "pileup_test_files"]

RESOLUTION_METHODS = ("none", "chs", "area_median", "softkiller")
TAGGER_METHODS = ("none", "chs", "softkiller")
_KEYS = ("constituents", "charge", "track_vertex", "area", "patch_pt_sum", "patch_pt_max", "nopu_constituents",
         "nopu_charge", "nopu_pt", "nopu_mass", "n_pileup", "label")
_PROCESSES = {"qcd": 0, "top": 1}
_LABELS = {"none": "no mitigation", "chs": "CHS", "area_median": "CHS + area–median", "softkiller": "CHS + SoftKiller",
           "pumml": "CHS + PUMML", "pixel_truth": "pixelized truth"}


def pileup_test_files(data_dir: str, *, validation_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    """Process → the test files of a pileup folder, split as a training config with these fractions would."""
    config = {"data": {"dir": data_dir, "split": {"validation": validation_fraction, "test": test_fraction},
                       "samples": [{"name": p, "files": f"{p}_*.h5", "keys": list(_KEYS[:-1]), "label": label}
                                   for p, label in _PROCESSES.items()]}}
    return {s.name: list(s.files) for s in split_specs(config)["test"]}


def _read(files: Sequence[str]) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {k: [] for k in _KEYS}
    for path in files:
        with h5py.File(path, "r") as f:
            missing = [k for k in _KEYS if k not in f]
            if missing:
                raise DataError(f"{path}: not a pileup jet file (made by `hepflow generate jets --pileup-mu`): "
                                f"missing {missing}. Received keys: {sorted(f)[:12]}")
            for k in _KEYS:
                parts[k].append(f[k][:])
    return {k: np.concatenate(v) for k, v in parts.items()}


def _mu_of(data_dir: str) -> float:
    with open(os.path.join(data_dir, "manifest.json")) as f:
        manifest = json.load(f)
    if "pileup" not in manifest:
        raise DataError(f"{data_dir}: generated without pileup (no `pileup` in manifest.json); the study needs "
                        "folders of `hepflow generate jets --pileup-mu`.")
    return float(manifest["pileup"]["mu"])


def _reconstruct(arrays: Mapping[str, np.ndarray], pumml_model, pumml_kwargs: Mapping[str, Any],
                 batch_size: int = 256) -> dict[str, dict[str, np.ndarray]]:
    """Method → ``{"pt", "mass"}`` of every jet."""
    out: dict[str, dict[str, list]] = {}
    n = len(arrays["label"])
    for start in range(0, n, batch_size):
        batch = {k: tf.constant(v[start:start + batch_size]) for k, v in arrays.items()}
        jets = {m: mitigated_jet(batch, m)[1] for m in RESOLUTION_METHODS}
        if pumml_model is not None:
            images = pumml_images(batch["constituents"], batch["charge"], batch["track_vertex"],
                                  nopu_constituents=batch["nopu_constituents"], nopu_charge=batch["nopu_charge"],
                                  **pumml_kwargs)
            unit = {"half_width": pumml_kwargs["half_width"], "pt_unit": pumml_kwargs["pt_unit"]}
            predicted = pumml_model(images["image"], training=False)
            for name, image in (("pumml", predicted), ("pixel_truth", images["target_image"])):
                jets[name] = pumml_jet(image, images["axis"], batch["constituents"], batch["charge"],
                                       batch["track_vertex"], **unit)
        for m, jet in jets.items():
            k = jet_kinematics(jet[:, None, :])
            for q in ("pt", "mass"):
                out.setdefault(m, {}).setdefault(q, []).append(k[q].numpy())
    return {m: {q: np.concatenate(v) for q, v in d.items()} for m, d in out.items()}


def _shift_stats(delta: np.ndarray) -> dict[str, float]:
    q16, q50, q84 = np.percentile(delta, [16, 50, 84])
    return {"bias": float(q50), "sigma68": float((q84 - q16) / 2), "rms": float(np.sqrt(np.mean(delta ** 2)))}


def _resolution(arrays, reco) -> dict[str, dict[str, dict[str, float]]]:
    table = {}
    for m, r in reco.items():
        row = {}
        for process, label in _PROCESSES.items():
            sel = arrays["label"] == label
            for q in ("mass", "pt"):
                row[f"{process}_{q}"] = _shift_stats(r[q][sel] - arrays[f"nopu_{q}"][sel])
        table[m] = row
    return table


def _plot_masses(arrays, reco, mu: float, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, 400, 61)
    for ax, (process, label) in zip(axes, _PROCESSES.items()):
        sel = arrays["label"] == label
        ax.hist(arrays["nopu_mass"][sel], bins=bins, histtype="stepfilled", color="0.85", label="no pileup (truth)")
        for m, r in reco.items():
            ax.hist(r["mass"][sel], bins=bins, histtype="step", lw=1.4, label=_LABELS[m])
        ax.set(xlabel="jet mass [GeV]", ylabel="jets", title=f"{process} jets, μ = {mu:g}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_deltas(arrays, reco, mu: float, path: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(-100, 150, 76)
    for m, r in reco.items():
        ax.hist(r["mass"] - arrays["nopu_mass"], bins=bins, histtype="step", lw=1.4, label=_LABELS[m])
    ax.set(xlabel="m(reconstructed) − m(no pileup) [GeV]", ylabel="jets", title=f"top + QCD jets, μ = {mu:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _tagger_row(labels, scores) -> dict[str, float]:
    row = {"auc": auc(labels, scores)}
    for eff in (0.3, 0.5):
        row[f"rejection_at_{eff}"], row[f"rejection_err_at_{eff}"] = rejection_at(labels, scores, eff)
    return row


def _tagger_robustness(run_dir: str, tests: Mapping[str, Mapping[str, list[str]]], *, progress: bool
                       ) -> dict[str, Any]:
    run = finished_run(run_dir)
    config = run["config"]
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    transform = build_transform(config)
    parts = transform.transforms if isinstance(transform, Compose) else [transform] if transform else []
    own = [p for p in parts if isinstance(p, PileupMitigation)]
    _, y, s = score_specs(model, split_specs(config)["test"], transform=transform, progress=progress,
                          desc=f"{config['name']} (own test)")
    out: dict[str, Any] = {"own_test": _tagger_row(y, s)}
    for d, files in tests.items():
        mu = _mu_of(d)
        specs = [SampleSpec(name=p, files=files[p], label=label,
                            keys=["constituents", "charge", "type", "track_vertex", "patch_pt_max", "patch_pt_sum",
                                  "area"])
                 for p, label in _PROCESSES.items()]
        refuse_seen_files(specs, [config], where=d)
        # a run trained on pileup jets through a mitigation is scored as it was trained; others with each method
        for method in [own[0].method] if own else TAGGER_METHODS:
            full = transform if own else Compose([PileupMitigation(method=method), *parts])
            _, y, s = score_specs(model, specs, transform=full, progress=progress,
                                  desc=f"{config['name']} μ={mu:g} {method}")
            out[f"mu{mu:g}_{method}"] = _tagger_row(y, s)
    return out


def run_pileup_study(data_dirs: Sequence[str], out_dir: str, *, pumml_run: str | None = None,
                     tagger_runs: Sequence[str] = (), validation_fraction: float = 0.17, test_fraction: float = 0.33,
                     progress: bool = True) -> dict[str, Any]:
    """Runs both parts of the study (see the module docstring) and writes the report.

    Args:
        data_dirs: Folders of ``hepflow generate jets --pileup-mu`` with ``qcd_*`` and ``top_*`` files.
        out_dir: Where ``report.md``, ``report.json``, the PNGs and ``tensorboard/`` go.
        pumml_run: A finished PUMML run (``configs/pileup/pumml_mu140.yaml``); its training and
            validation files must not be among the test files.
        tagger_runs: Finished tagger runs: trained without pileup (scored raw, after CHS and after
            CHS + SoftKiller), or on pileup jets (scored as trained, with the mitigation in their config).
        validation_fraction, test_fraction: The split of each folder's files (as in the PUMML config).

    Returns:
        The report: ``resolution`` (μ → method → statistics) and ``taggers`` (run → rows).
    """
    if not data_dirs:
        raise DataError("run_pileup_study needs at least one folder of pileup jets. Received: []")
    os.makedirs(out_dir, exist_ok=True)
    pumml_model, pumml_kwargs, pumml_config = None, {}, None
    if pumml_run is not None:
        run = finished_run(pumml_run)
        pumml_config = run["config"]
        pumml_model = keras.saving.load_model(os.path.join(pumml_run, "model.keras"))
        pumml_kwargs = {"npix": 32, "half_width": 0.8, "pt_unit": 10.0}
        for item in pumml_config["transform"]:
            if "pumml_images" in item:
                pumml_kwargs.update(item["pumml_images"] or {})
    report: dict[str, Any] = {"resolution": {}, "taggers": {}, "jets": {}}
    pngs = []
    tests = {d: pileup_test_files(d, validation_fraction=validation_fraction, test_fraction=test_fraction)
             for d in data_dirs}
    for d, files in tests.items():
        mu = _mu_of(d)
        if pumml_config is not None:
            refuse_seen_files([SampleSpec(name=p, files=f, keys=["constituents"], label=_PROCESSES[p])
                               for p, f in files.items()],
                              [pumml_config], where=d)
        arrays = _read([f for p in _PROCESSES for f in files[p]])
        reco = _reconstruct(arrays, pumml_model, pumml_kwargs)
        report["resolution"][f"{mu:g}"] = _resolution(arrays, reco)
        report["jets"][f"{mu:g}"] = {"qcd": int((arrays["label"] == 0).sum()), "top": int((arrays["label"] == 1).sum()),
                                     "mean_pileup_collisions": float(arrays["n_pileup"].mean()), "dir": d}
        for kind, plot in (("mass", _plot_masses), ("delta_mass", _plot_deltas)):
            pngs.append(os.path.join(out_dir, f"{kind}_mu{mu:g}.png"))
            plot(arrays, reco, mu, pngs[-1])
    for run_dir in tagger_runs:
        report["taggers"][finished_run(run_dir)["config"]["name"]] = _tagger_robustness(run_dir, tests,
                                                                                       progress=progress)
    write_atomic(os.path.join(out_dir, "report.json"), json.dumps(json_safe(report), indent=1))
    write_atomic(os.path.join(out_dir, "report.md"), format_study(report))
    scalars = {f"mu{mu}/{method}": {f"{key}_sigma68": stats["sigma68"] for key, stats in row.items()}
               for mu, table in report["resolution"].items() for method, row in table.items()}
    scalars.update({f"{name}/{where}": {"auc": row["auc"]}
                    for name, rows in report["taggers"].items() for where, row in rows.items()})
    _log_tensorboard(os.path.join(out_dir, "tensorboard"), scalars, pngs)
    return report


def format_study(report: Mapping[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = ["# Pileup study", ""]
    for mu, table in report["resolution"].items():
        jets = report["jets"][mu]
        lines += [f"## Jet mass and pT at μ = {mu} ({jets['qcd']} QCD + {jets['top']} top test jets, "
                  f"{jets['mean_pileup_collisions']:.1f} pileup collisions on average)", "",
                  "Shift from the pileup-free jet, GeV: median (bias) and half the 16–84 % interval (σ68).", "",
                  "| method | QCD m bias | QCD m σ68 | top m bias | top m σ68 | QCD pT bias | QCD pT σ68 | top pT bias | top pT σ68 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for method, row in table.items():
            cells = [f"{row[k][s]:.1f}" for k in ("qcd_mass", "top_mass") for s in ("bias", "sigma68")]
            cells += [f"{row[k][s]:.1f}" for k in ("qcd_pt", "top_pt") for s in ("bias", "sigma68")]
            lines.append(f"| {_LABELS[method]} | " + " | ".join(cells) + " |")
        lines.append("")
    for name, rows in report["taggers"].items():
        lines += [f"## Tagger {name}", "",
                  "| scored on | AUC | 1/εB at εS = 0.3 | 1/εB at εS = 0.5 |", "|---|---:|---:|---:|"]
        for where, row in rows.items():
            label = "its own test files" if where == "own_test" else (
                f"μ = {where[2:].split('_', 1)[0]}, {_LABELS[where.split('_', 1)[1]]}")
            lines.append(f"| {label} | {row['auc']:.4f} | {row['rejection_at_0.3']:.1f} ± {row['rejection_err_at_0.3']:.1f}"
                         f" | {row['rejection_at_0.5']:.1f} ± {row['rejection_err_at_0.5']:.1f} |")
        lines.append("")
    return "\n".join(lines)

