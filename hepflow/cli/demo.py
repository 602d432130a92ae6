"""``hepflow demo``: the tagger slice end to end on data it generates.

1. Generate top and QCD jets with Pythia 8 + FastJet (resumable; reused when complete).
2. Train the Macaluso–Shih CNN on jet images made in the pipeline (``hepflow train``).
3. Fit the cut-based (mass + τ32) and BDT baselines; evaluate every tagger on the test
   files (``hepflow evaluate``): report table, ROC and sculpting PNGs, TensorBoard logs.
4. Export the CNN as a SavedModel with the jet-image preprocessing inside (``hepflow export``),
   and as ONNX when the ``[onnx]`` extra is installed.
5. Print the report; the last line is its JSON summary.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

__all__ = ["run_demo", "demo_config"]


def demo_config(data_dir: str, *, epochs: int = 2, npix: int = 37) -> dict[str, Any]:
    """The demo's training config: the Macaluso–Shih CNN on ``npix`` × ``npix`` jet images."""
    return {
        "name": "cnn",
        "seed": 1,
        "data": {"dir": data_dir,
                 "samples": [{"name": "qcd", "files": "qcd_*.h5", "keys": ["constituents"], "label": 0},
                             {"name": "top", "files": "top_*.h5", "keys": ["constituents"], "label": 1}],
                 "split": {"validation": 0.1, "test": 0.1}},
        "transform": [{"jet_images": {"npix": npix, "half_width": 1.0}}],
        "model": {"name": "macaluso_shih_cnn", "args": {"input_shape": [npix, npix, 1]}},
        "optimizer": {"name": "adam", "learning_rate": 3e-4},
        "training": {"epochs": epochs, "batch_size": 64, "steps_per_epoch": None, "early_stopping": None,
                     "cache": "memory"},
    }


def run_demo(*, data_dir: str = "demo_data", jets: int = 10_000, epochs: int = 2, workers: int | None = None,
             run_root: str = "runs/demo", npix: int = 37) -> dict[str, dict[str, float]]:
    """Runs the demo and returns the report table (tagger → metrics).

    Args:
        data_dir: Folder for the generated jets (``<data_dir>/top_tagging``; reused, resumable).
        jets: Jets to generate, half top, half QCD, in 20 files (8 train, 1 validation,
            1 test per class).
        epochs: CNN training epochs.
        workers: Generator processes (default: every core).
        run_root: Where the run (``cnn/``), the report (``report/``) and the export
            (``models/cnn/1``, replaced on each run) go.
        npix: Jet-image size.
    """
    from hepflow.evaluation.reporters import standard_reporters
    from hepflow.evaluation.runs import evaluate_runs
    from hepflow.physics.pythia_jets import generate_top_tagging
    from hepflow.serving import export_run
    from hepflow.serving.onnx import require_onnx
    from hepflow.training import train

    jets_dir = os.path.join(data_dir, "top_tagging")
    print(f"1/4 generating {jets:,} top and QCD jets with Pythia 8 + FastJet into {jets_dir}/ (resumable)")
    m = generate_top_tagging(jets_dir, n_jets=jets, workers=workers or os.cpu_count() or 1,
                             chunk_jets=max(1, jets // 20), seed=1)
    rate = m["generated_this_run"]["jets_per_s"]
    print(f"    {m['counts']['top']:,} top + {m['counts']['qcd']:,} QCD jets"
          + (f", {rate:.1f} jets/s" if rate else " (already there)"))
    print("2/4 training the Macaluso-Shih CNN on jet images made in the pipeline")
    summary = train(demo_config(jets_dir, epochs=epochs, npix=npix), run_dir=os.path.join(run_root, "cnn"),
                    overwrite=True, verbose=2, reporters=standard_reporters())
    print(f"    {summary['params']:,} parameters, {summary['train_seconds']:.0f} s; run dir {summary['run_dir']}")
    print("3/4 fitting the cut-based and BDT baselines, evaluating on the test files")
    out = os.path.join(run_root, "report")
    table = evaluate_runs([summary["run_dir"]], out_dir=out)
    print(f"    ROC and sculpting PNGs, report.json and TensorBoard logs in {out}/"
          f" (tensorboard --logdir {run_root})")
    try:
        require_onnx()
        onnx = True
    except ImportError:
        onnx = False
    print("4/4 exporting the CNN as a SavedModel (raw constituents in, score out)"
          + (" and as ONNX" if onnx else "; ONNX skipped: the [onnx] extra is not installed"))
    models_dir = os.path.join(run_root, "models")
    shutil.rmtree(os.path.join(models_dir, "cnn"), ignore_errors=True)
    path = export_run(summary["run_dir"], models_dir, onnx=onnx, progress=False)
    print(f"    {path} (hepflow predict --model {path} --input FILE.h5 --output SCORES.h5)")
    if onnx:
        print(f"    {path}/onnx/serving_default.onnx: the same scores under ONNX Runtime (checked)")
    return table
