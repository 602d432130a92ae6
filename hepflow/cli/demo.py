"""``hepflow demo``: the tagger slice end to end on data it generates.

1. Generate top and QCD jets with Pythia 8 + FastJet (resumable; reused when complete): a
   balanced training sample and an independent, QCD-rich test sample (another seed), so that
   rejections of a few hundred are measured from tens of passing QCD jets.
2. Train two taggers that look at the jet differently: the DeepTop CNN on four-colour jet
   images and ParticleNet-Lite on the constituents, both made in the pipeline (``hepflow train``).
3. Fit the cut-based (mass + τ32) and BDT baselines; evaluate every tagger and the mean of the
   two (``ensemble``) on the test sample (``hepflow evaluate --test-dir --ensemble``): report
   table with errors, paired comparisons with the BDT on the same jets, ROC and sculpting PNGs,
   TensorBoard logs.
4. Export the ensemble as one SavedModel with both preprocessings inside (``hepflow export
   --ensemble-name``), and as ONNX when the ``[onnx]`` extra is installed.
5. Print the report, a line saying where the ensemble stands against each baseline, and the
   JSON summary.

The taggers and sample sizes were chosen by measurement (docs/top_tagging.md, "The demo"): on
14,000 training jets no single network is clearly ahead of the BDT at εS = 0.5, while the mean
of an image and a particle tagger is; the full-scale numbers are in docs/results.md.
"""
from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from typing import Any

__all__ = ["run_demo", "demo_configs", "headline", "ENSEMBLE"]

ENSEMBLE = "ensemble"  # the report row of the taggers' mean score


def demo_configs(data_dir: str, *, epochs: int = 15, particle_epochs: int = 12, train_jets: int = 14_000,
                 batch_size: int = 128) -> list[dict[str, Any]]:
    """The demo's two training configs: ``cnn`` and ``particlenet_lite``.

    ``cnn``: the DeepTop CNN on 40 × 40 four-colour jet images in GeV (neutral pT, track pT,
    track and muon counts). ``particlenet_lite``: ParticleNet-Lite on the 60 leading
    constituents. Both read the same files with the same split (90 % of ``train_jets`` train, the
    rest validates); the learning rate decays to zero (cosine) over the epochs; the CNN stops
    early when the validation loss stalls for 4 epochs (its best epoch is kept).
    """
    steps = max(1, math.ceil(0.9 * train_jets / batch_size))

    def config(name, keys, transform, model, n_epochs, early_stopping):
        return {
            "name": name,
            "seed": 1,
            "data": {"dir": data_dir,
                     "samples": [{"name": "qcd", "files": "qcd_*.h5", "keys": keys, "label": 0},
                                 {"name": "top", "files": "top_*.h5", "keys": keys, "label": 1}],
                     "split": {"validation": 0.1, "test": 0.0}},
            "transform": transform,
            "model": model,
            "optimizer": {"name": "adam", "learning_rate": {"schedule": "cosine_decay", "initial_learning_rate": 1e-3,
                                                            "decay_steps": steps * n_epochs}},
            "training": {"epochs": n_epochs, "batch_size": batch_size, "steps_per_epoch": None,
                         "early_stopping": early_stopping, "cache": "memory"},
        }

    cnn = config("cnn", ["constituents", "charge", "type"],
                 [{"jet_images": {"npix": 40, "half_width": 1.0, "colours": True, "normalize": False, "pt_unit": 100}}],
                 {"name": "deeptop_cnn", "args": {"input_shape": [40, 40, 4]}}, epochs, {"patience": 4})
    particles = config("particlenet_lite", ["constituents"], [{"constituent_features": {"max_particles": 60}}],
                       {"name": "particlenet_lite", "args": {"n_particles": 60}}, particle_epochs, None)
    return [cnn, particles]


def run_demo(*, data_dir: str = "demo_data", jets: int = 14_000, test_top: int = 2_000, test_qcd: int = 14_000,
             epochs: int = 15, particle_epochs: int = 12, workers: int | None = None,
             run_root: str = "runs/demo") -> dict[str, dict[str, float]]:
    """Runs the demo and returns the report table (tagger → metrics).

    Args:
        data_dir: Folder for the generated jets: ``<data_dir>/top_tagging`` (training and
            validation) and ``<data_dir>/top_tagging_test`` (test); reused, resumable.
        jets: Training + validation jets, half top, half QCD, in 10 files per class (9 train,
            1 validation).
        test_top, test_qcd: Jets of the independent test sample (seed 2), in 10 files per class.
        epochs: CNN training epochs (early stopping may end sooner).
        particle_epochs: ParticleNet-Lite training epochs.
        workers: Generator processes (default: every core).
        run_root: Where the runs (``cnn/``, ``particlenet_lite/``), the report (``report/``) and
            the export (``models/ensemble/1``, replaced on each run) go.
    """
    from hepflow.evaluation.reporters import standard_reporters
    from hepflow.evaluation.runs import evaluate_runs
    from hepflow.physics.pythia_jets import generate_jets, generate_top_tagging
    from hepflow.serving import export_ensemble
    from hepflow.serving.onnx import require_onnx
    from hepflow.training import train

    workers = workers or os.cpu_count() or 1
    train_dir = os.path.join(data_dir, "top_tagging")
    test_dir = os.path.join(data_dir, "top_tagging_test")
    print(f"1/4 generating {jets:,} training jets (half top, half QCD) and an independent test sample of "
          f"{test_top:,} top + {test_qcd:,} QCD jets with Pythia 8 + FastJet into {data_dir}/ (resumable)")
    m = generate_top_tagging(train_dir, n_jets=jets, workers=workers, chunk_jets=max(1, jets // 20), seed=1)
    _print_generated(m)
    m = generate_jets(test_dir, counts={"top": test_top, "qcd": test_qcd}, workers=workers,
                      chunk_jets=max(1, math.ceil(max(test_top, test_qcd) / 10)), seed=2, dataset="top_tagging")
    _print_generated(m)
    print("2/4 training the DeepTop CNN on four-colour jet images and ParticleNet-Lite on the constituents")
    run_dirs = []
    for config in demo_configs(train_dir, epochs=epochs, particle_epochs=particle_epochs, train_jets=jets):
        summary = train(config, run_dir=os.path.join(run_root, config["name"]), overwrite=True, verbose=2,
                        reporters=standard_reporters())
        print(f"    {config['name']}: {summary['params']:,} parameters, {summary['train_seconds']:.0f} s; "
              f"run dir {summary['run_dir']}")
        run_dirs.append(summary["run_dir"])
    print("3/4 fitting the cut-based and BDT baselines, evaluating on the test sample")
    out = os.path.join(run_root, "report")
    table = evaluate_runs(run_dirs, out_dir=out, test_dir=test_dir, efficiencies=(0.3, 0.5),
                          ensembles={ENSEMBLE: ["cnn", "particlenet_lite"]})
    print(f"    ROC and sculpting PNGs, report.json and TensorBoard logs in {out}/"
          f" (tensorboard --logdir {run_root})")
    try:
        require_onnx()
        onnx = True
    except ImportError:
        onnx = False
    print("4/4 exporting the ensemble as one SavedModel (raw constituents in, mean score out)"
          + (" and as ONNX" if onnx else "; ONNX skipped: the [onnx] extra is not installed"))
    models_dir = os.path.join(run_root, "models")
    shutil.rmtree(os.path.join(models_dir, ENSEMBLE), ignore_errors=True)
    path = export_ensemble(run_dirs, models_dir, name=ENSEMBLE, onnx=onnx, progress=False)
    print(f"    {path} (hepflow predict --model {path} --input FILE.h5 --output SCORES.h5)")
    if onnx:
        print(f"    {path}/onnx/serving_default.onnx: the same scores under ONNX Runtime (checked)")
    return table


def _print_generated(manifest: Mapping[str, Any]) -> None:
    rate = manifest["generated_this_run"]["jets_per_s"]
    counts = manifest["counts"]
    print(f"    {counts['top']:,} top + {counts['qcd']:,} QCD jets"
          + (f", {rate:.1f} jets/s" if rate else " (already there)"))


def headline(table: Mapping[str, Mapping[str, Any]], tagger: str = ENSEMBLE, efficiency: float = 0.5) -> str:
    """One line saying whether ``tagger`` is ahead of each baseline in AUC and 1/εB at ``efficiency``.

    Against the BDT (scored jet by jet) the difference, its error and the verdict come from the
    paired bootstrap on the same test jets: "ahead" when ``tagger`` is ahead in at least 97.5 %
    of the resamples (a one-sided test at 2.5 %, which suits the skewed spread of a rejection),
    "behind" when in at most 2.5 %. Against the cut-based tagger (working points only) they come
    from the two independent errors: "ahead" when the difference exceeds twice its error.
    """
    row = table[tagger]
    key = f"rejection_at_{efficiency}"
    parts = []
    for base, comp in (row.get("paired") or {}).items():
        verdicts = []
        for metric, label, fmt in (("auc", "AUC", "{:+.4f} ± {:.4f}"), (key, f"1/εB@{efficiency}", "{:+.0f} ± {:.0f}")):
            c = comp[metric]
            verdicts.append(_verdict(label, c["difference"], c["error"], fmt, ahead=c["ahead"]))
        parts.append(f"{base}: " + ", ".join(verdicts))
    cut = table.get("cut_based")
    if cut and key in cut and key in row:
        auc_c = _verdict("AUC", row["auc"] - cut["auc"], row.get("auc_err", float("nan")), "{:+.4f} ± {:.4f}")
        err = math.hypot(row.get(f"{key}_err", float("nan")), cut.get(f"{key}_err", float("nan")))
        rej_c = _verdict(f"1/εB@{efficiency}", row[key] - cut[key], err, "{:+.0f} ± {:.0f}")
        parts.append(f"cut_based: {auc_c}, {rej_c}")
    return f"{tagger} minus " + "; ".join(parts)


def _verdict(label: str, difference: float, error: float, fmt: str, *, ahead: float | None = None) -> str:
    """``label ±Δ ± σ (ahead|behind|not resolved[, in p % of resamples])``."""
    if not (math.isfinite(difference) and math.isfinite(error)):
        return f"{label} not measurable"
    if ahead is not None:
        word = "ahead" if ahead >= 0.975 else "behind" if ahead <= 0.025 else "not resolved"
        return f"{label} {fmt.format(difference, error)} ({word}, in {100 * ahead:.1f} % of resamples)"
    word = "ahead" if difference > 2 * error else "behind" if difference < -2 * error else "not resolved"
    return f"{label} {fmt.format(difference, error)} ({word})"
