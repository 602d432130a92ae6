"""Multi-class classifiers (a softmax over the samples' labels) scored on their test files.

For each class: efficiency (the fraction of its events the classifier assigns to it) and purity
(the fraction of the events assigned to it that belong to it), by the largest softmax score,
and the best efficiency at which a cut on that class's score reaches a given purity (the way
NOvA quotes its νe selection); the one-vs-rest ROC: AUC (with its statistical error) and the
rejection 1/εB of the other classes at εS = 0.3 and 0.5; the macro AUC (mean over classes);
and every binary view between two classes from the same scores (class a against class b with
the score ``s_a / (s_a + s_b)``, e.g. W vs QCD or q vs g). The confusion matrix and the
one-vs-rest ROC curves as PNGs and in TensorBoard.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hepflow.errors import DataError
from hepflow.evaluation.baselines import bdt_tagger
from hepflow.evaluation.metrics import auc, auc_error, rejection_at, roc_curve
from hepflow.evaluation.report import json_safe
from hepflow.evaluation.runs import high_level_arrays
from hepflow.io import write_atomic
from hepflow.runs import build_transform, finished_run, score_specs, specs_in_dir, split_specs

__all__ = ["evaluate_multiclass", "efficiency_at_purity", "confusion_matrix"]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(true class, predicted class)`` counts."""
    return np.bincount(labels * n_classes + predicted, minlength=n_classes**2).reshape(n_classes, n_classes)


def efficiency_at_purity(is_class: np.ndarray, score: np.ndarray, purity: float) -> dict[str, float]:
    """The highest efficiency of a cut ``score ≥ c`` whose purity is at least ``purity``.

    Returns:
        ``efficiency``, ``purity`` (reached) and ``threshold``; efficiency 0 where no cut reaches it.
    """
    order = np.argsort(-score, kind="stable")
    hits = np.cumsum(is_class[order])
    kept = np.arange(1, len(score) + 1)
    pur = hits / kept
    eff = hits / max(int(is_class.sum()), 1)
    ok = np.flatnonzero(pur >= purity)
    if not len(ok):
        return {"efficiency": 0.0, "purity": float("nan"), "threshold": float("nan")}
    k = ok[np.argmax(eff[ok])]
    return {"efficiency": float(eff[k]), "purity": float(pur[k]), "threshold": float(score[order][k])}


def evaluate_multiclass(run_dir: str, *, out_dir: str | None = None, test_dir: str | Sequence[str] | None = None,
                        class_names: Sequence[str] | None = None, purity: float = 0.76,
                        batch_size: int = 64, baselines: bool = True, baseline_seed: int = 1) -> dict[str, Any]:
    """Scores a finished softmax classifier run on its test split (or ``test_dir``).

    Args:
        run_dir: A finished classification run whose model has one output per class.
        out_dir: Where ``report.json``, ``confusion.png`` and TensorBoard logs go (default
            ``<run_dir>/evaluation``).
        test_dir: Score the files of this folder matching the samples' patterns instead.
        class_names: Names of the classes by label (default the samples' names by label).
        purity: The purity at which each class's best efficiency is reported. Default 0.76.
        batch_size: Scoring batch size.
        baselines: Also fit a K-class BDT (scikit-learn's histogram gradient boosting) on the
            training split's high-level features (mass, pT, τ1..τ3, τ21, τ32) and score it on the
            same test events, reported under ``baselines["bdt"]`` with the same metrics; skipped
            (with a message) when the files lack ``mass``, ``pt`` or ``tau``.
        baseline_seed: Seed of the BDT's early-stopping split. Default 1.

    Returns:
        ``test_events``, ``accuracy``, ``macro_auc``, ``classes`` (name → efficiency, purity,
        efficiency at ``purity``, one-vs-rest AUC and rejections), ``pairs`` (binary views),
        ``confusion`` (rows: true class), ``class_names`` and, with ``baselines``, ``baselines``.
    """
    run = finished_run(run_dir)
    cfg = run["config"]
    specs = specs_in_dir(cfg, test_dir) if test_dir is not None else split_specs(cfg)["test"]
    if not specs:
        raise DataError(f"{run_dir}: the config has no test split (data.split.test = 0); pass test_dir.")
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    ids, labels, scores = score_specs(model, specs, transform=build_transform(cfg), batch_size=batch_size,
                                      all_classes=True, desc=f"scoring {cfg['name']}")
    labels = labels.astype(int).ravel()
    n_classes = scores.shape[-1]
    if class_names is None:
        by_label = {int(s.label): s.name for s in specs if np.ndim(s.label) == 0}
        class_names = [by_label.get(k, str(k)) for k in range(n_classes)]
    result = {"test_events": int(len(labels)), **_metrics(labels, scores, class_names, purity)}
    cm = np.asarray(result["confusion"])
    if baselines:
        bdt = _bdt_scores(split_specs(cfg)["train"], specs, ids, n_classes, seed=baseline_seed)
        if bdt is not None:
            result["baselines"] = {"bdt": _metrics(labels, bdt, class_names, purity)}
    out_dir = out_dir or os.path.join(run_dir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, "confusion.png")
    _plot_confusion(cm, class_names, png)
    roc_png = os.path.join(out_dir, "roc_one_vs_rest.png")
    _plot_rocs(labels, scores, class_names, roc_png)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tb"))
    with writer.as_default():
        tf.summary.scalar("accuracy", result["accuracy"], step=0)
        for name, row in result["classes"].items():
            tf.summary.scalar(f"{name}/efficiency", row["efficiency"], step=0)
            tf.summary.scalar(f"{name}/purity", row["purity"], step=0)
        tf.summary.scalar("macro_auc", result["macro_auc"], step=0)
        for name, row in result["classes"].items():
            if "auc" in row:
                tf.summary.scalar(f"{name}/auc", row["auc"], step=0)
        for tag, path in (("confusion", png), ("roc_one_vs_rest", roc_png)):
            with open(path, "rb") as f:
                tf.summary.image(tag, tf.io.decode_png(f.read(), channels=4)[None], step=0)
    writer.flush()
    result = json_safe(result)  # a purity no cut reaches is null, never NaN
    write_atomic(os.path.join(out_dir, "report.json"), json.dumps(result, indent=1, allow_nan=False))
    return result


def _metrics(labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str], purity: float) -> dict[str, Any]:
    """Accuracy, macro AUC, per-class rows, binary views and the confusion matrix of ``(n, K)`` scores."""
    n_classes = scores.shape[-1]
    predicted = np.argmax(scores, axis=-1)
    cm = confusion_matrix(labels, predicted, n_classes)
    classes = {}
    for k, name in enumerate(class_names):
        at = efficiency_at_purity(labels == k, scores[:, k], purity)
        classes[name] = {"events": int(cm[k].sum()), "efficiency": float(cm[k, k] / max(cm[k].sum(), 1)),
                         "purity": float(cm[k, k] / max(cm[:, k].sum(), 1)),
                         f"efficiency_at_purity_{purity}": at["efficiency"], "purity_reached": at["purity"],
                         **_binary(labels == k, scores[:, k])}
    pairs = {}
    for a, name_a in enumerate(class_names):
        for b, name_b in enumerate(class_names):
            keep = (labels == a) | (labels == b)
            if a == b or not (labels == a).any() or not (labels == b).any():
                continue
            ratio = scores[keep, a] / np.maximum(scores[keep, a] + scores[keep, b], 1e-12)
            pairs[f"{name_a}_vs_{name_b}"] = _binary(labels[keep] == a, ratio)
    aucs = [row["auc"] for row in classes.values() if np.isfinite(row.get("auc", np.nan))]
    return {"accuracy": float(np.mean(predicted == labels)), "macro_auc": float(np.mean(aucs)) if aucs else float("nan"),
            "classes": classes, "pairs": pairs, "confusion": cm.tolist(), "class_names": list(class_names)}


def _bdt_scores(train_specs, test_specs, test_ids: np.ndarray, n_classes: int, *, seed: int) -> np.ndarray | None:
    """``(n_test, K)`` probabilities of a K-class BDT on high-level features, or ``None`` without them."""
    try:
        train, test = high_level_arrays(train_specs), high_level_arrays(test_specs)
    except DataError as e:
        print(f"BDT baseline skipped: the files lack mass/pt/tau ({e})")
        return None
    if not np.array_equal(test["record_id"], test_ids):
        raise DataError("The high-level features and the scores cover different test records.")
    model = bdt_tagger(train["features"], train["label"].astype(int).ravel(), seed=seed)
    proba = np.zeros((len(test_ids), n_classes))
    proba[:, model.classes_] = model.predict_proba(test["features"])
    return proba


def _binary(is_signal: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUC (± its statistical error) and 1/εB at εS = 0.3 and 0.5 of one class against others."""
    if is_signal.all() or not is_signal.any():
        return {}
    out = {"auc": auc(is_signal, score), "auc_error": auc_error(is_signal, score)}
    n_background = int((~is_signal).sum())
    for eff in (0.3, 0.5):
        value, err = rejection_at(is_signal, score, eff)
        if np.isfinite(value):
            out[f"rejection_at_{eff}"], out[f"rejection_at_{eff}_error"] = value, err
        else:  # no background passed: the bound the test sample sets, never inf
            out[f"rejection_at_{eff}"], out[f"rejection_at_{eff}_lower_bound"] = float(n_background), True
    return out


def _rejection_text(row: dict[str, Any], eff: float) -> str:
    value = row.get(f"rejection_at_{eff}", float("nan"))
    return f"> {value:.0f}" if row.get(f"rejection_at_{eff}_lower_bound") else f"{value:.1f}"


def format_multiclass(result: dict[str, Any], purity: float = 0.76) -> str:
    """A table: per class efficiency, purity, the best efficiency at ``purity``, one-vs-rest AUC and
    1/εB at εS = 0.5; the macro AUC; and the binary views between classes."""
    lines = [f"{result['test_events']} test events, accuracy {100 * result['accuracy']:.1f} %"
             + (f", macro AUC {result['macro_auc']:.4f}" if "macro_auc" in result else ""),
             f"{'class':12s} {'events':>7s} {'efficiency':>11s} {'purity':>8s} {f'eff. at purity ≥ {purity}':>24s}"
             f" {'AUC (vs rest)':>14s} {'1/εB@0.5':>9s}"]
    for name, row in result["classes"].items():
        lines.append(f"{name:12s} {row['events']:7d} {100 * row['efficiency']:10.1f}% {100 * row['purity']:7.1f}% "
                     f"{100 * row[f'efficiency_at_purity_{purity}']:23.1f}% {row.get('auc', float('nan')):14.4f} "
                     f"{_rejection_text(row, 0.5):>9s}")
    pairs = result.get("pairs") or {}
    if pairs:
        lines.append("binary views (class a vs class b, score s_a / (s_a + s_b)):")
        names = result["class_names"]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                row = pairs.get(f"{a}_vs_{b}")
                if row:
                    lines.append(f"  {a + ' vs ' + b:20s} AUC {row['auc']:.4f} ± {row['auc_error']:.4f}   "
                                 f"1/εB@0.3 {_rejection_text(row, 0.3):>7s}   1/εB@0.5 {_rejection_text(row, 0.5):>7s}")
    for name, row in (result.get("baselines") or {}).items():
        aucs = ", ".join(f"{c} {r.get('auc', float('nan')):.3f}" for c, r in row["classes"].items())
        lines.append(f"baseline {name} (mass, pT, τ's): accuracy {100 * row['accuracy']:.1f} %, macro AUC "
                     f"{row['macro_auc']:.4f}; AUC vs rest {aucs}")
    return "\n".join(lines)


def _plot_rocs(labels: np.ndarray, scores: np.ndarray, names: Sequence[str], path: str) -> None:
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    fig, ax = plt.subplots(figsize=(5, 4))
    for k, name in enumerate(names):
        is_k = labels == k
        if is_k.all() or not is_k.any():
            continue
        eff_s, eff_b, _ = roc_curve(is_k, scores[:, k])
        ok = eff_b > 0
        ax.plot(eff_s[ok], 1 / eff_b[ok], label=f"{name} (AUC {auc(is_k, scores[:, k]):.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency (class)")
    ax.set_ylabel("1 / background efficiency (other classes)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_confusion(cm: np.ndarray, names: Sequence[str], path: str) -> None:
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{frac[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
