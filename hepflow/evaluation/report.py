"""``tagger_report``: AUC and rejections of several taggers, ROC and sculpting plots, TensorBoard."""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from hepflow.evaluation.metrics import auc, auc_error, rejection_at, roc_curve, threshold_at

__all__ = ["tagger_report", "format_report", "format_paired", "json_safe"]


def tagger_report(labels, scores: Mapping[str, np.ndarray], *, out_dir: str,
                  cut_based: Mapping[float, tuple[float, float]] | None = None, mass: np.ndarray | None = None,
                  efficiencies: tuple[float, ...] = (0.3, 0.5), sculpt_efficiency: float = 0.5,
                  log_dir: str | None = None) -> dict[str, dict[str, float]]:
    """Evaluates taggers on one test set.

    Args:
        labels: ``(n,)`` 1 for signal (top), 0 for background.
        scores: Tagger name → ``(n,)`` scores (higher = more signal-like).
        out_dir: Where ``roc.png`` and ``sculpting.png`` go.
        cut_based: Optional working points of a cut-based tagger: target εS → measured (εS, εB)
            (``CutBasedTagger.working_points``). Its AUC is the area under these points
            (trapezoids from (0, 0) to (1, 1)), so give many targets (e.g. ``ROC_EFFICIENCIES``)
            plus those in ``efficiencies``, whose rejections are read off directly.
        mass: Optional ``(n,)`` jet masses for the sculpting plot (background mass before
            and after a cut at ``sculpt_efficiency``).
        efficiencies: Signal efficiencies for the rejection columns.
        log_dir: Optional TensorBoard log folder for scalars and the images.

    Returns:
        Name → ``{"auc", "rejection_at_0.3", "rejection_at_0.3_err", ...}``.
    """
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    labels = np.asarray(labels).astype(bool)
    os.makedirs(out_dir, exist_ok=True)
    table: dict[str, dict[str, float]] = {}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    n_background = int((~labels).sum())
    for name, s in scores.items():
        row = {"auc": auc(labels, s), "auc_err": auc_error(labels, s)}
        for eff in efficiencies:
            r, err = rejection_at(labels, s, eff)
            row.update(_rejection_cells(eff, r, err, n_background))
        table[name] = row
        eff_s, eff_b, _ = roc_curve(labels, s)
        ok = (eff_b > 0) & (eff_s >= 0.05)
        ax.plot(eff_s[ok], 1 / eff_b[ok], label=f"{name} (AUC {row['auc']:.3f})")
    if cut_based:
        table["cut_based"] = _cut_based_row(cut_based, int((~labels).sum()), efficiencies)
        pts = sorted((es, 1 / eb) for es, eb in cut_based.values() if eb > 0)
        if pts:
            ax.plot(*zip(*pts), "k.--", markersize=6, label=f"cut-based m, τ32 (AUC {table['cut_based']['auc']:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency εS")
    ax.set_ylabel("background rejection 1/εB")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    roc_png = os.path.join(out_dir, "roc.png")
    fig.savefig(roc_png, dpi=100)
    plt.close(fig)
    pngs = [roc_png]
    if mass is not None and scores:
        name, s = next(iter(scores.items()))
        thr = threshold_at(labels, s, sculpt_efficiency)
        bkg_mass, bkg_pass = np.asarray(mass)[~labels], np.asarray(s)[~labels] >= thr
        fig, ax = plt.subplots(figsize=(6, 4))
        bins = np.linspace(0, 300, 41)
        ax.hist(bkg_mass, bins, density=True, histtype="step", label="QCD, all")
        if bkg_pass.any():
            ax.hist(bkg_mass[bkg_pass], bins, density=True, histtype="step",
                    label=f"QCD passing {name} at εS = {sculpt_efficiency}")
        ax.set_xlabel("jet mass [GeV]")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
        fig.tight_layout()
        sculpt_png = os.path.join(out_dir, "sculpting.png")
        fig.savefig(sculpt_png, dpi=100)
        plt.close(fig)
        pngs.append(sculpt_png)
    if log_dir:
        _log_tensorboard(log_dir, table, pngs)
    return table


def json_safe(obj):
    """Replaces infinite and NaN floats with ``None`` in nested dicts/lists, so the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _rejection_cells(eff: float, rejection: float, err: float, n_background: int) -> dict[str, float]:
    """A row's rejection entries; with no background passing, the bound that the test sample sets.

    ``rejection_at_<ε>`` is then ``n_background`` (fewer than 1 in ``n_background`` passed),
    flagged by ``rejection_at_<ε>_lower_bound``, never ``inf`` (nor ``null`` in JSON).
    """
    if np.isfinite(rejection):
        return {f"rejection_at_{eff}": float(rejection), f"rejection_at_{eff}_err": float(err)}
    return {f"rejection_at_{eff}": float(n_background), f"rejection_at_{eff}_lower_bound": True,
            f"background_passed_at_{eff}": 0, "n_background": n_background}


def _cut_based_row(points: Mapping[float, tuple[float, float]], n_background: int,
                   efficiencies: tuple[float, ...]) -> dict[str, float]:
    es, eb = (np.array(v) for v in zip(*sorted(points.values(), key=lambda p: (p[1], p[0]))))
    x, y = np.r_[0.0, eb, 1.0], np.r_[0.0, es, 1.0]
    row = {"auc": float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))}
    for eff in efficiencies:
        if eff not in points:
            continue
        s, b = points[eff]
        err = float(np.sqrt(b * (1 - b) / n_background) / b**2) if b > 0 else float("nan")
        row.update(_rejection_cells(eff, 1 / b if b > 0 else float("inf"), err, n_background))
        row[f"measured_eff_at_{eff}"] = s
    return row


def _log_tensorboard(log_dir: str, table: Mapping[str, Mapping[str, float]], pngs: list[str]) -> None:
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for name, row in table.items():
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
                    tf.summary.scalar(f"{name}/{key}", value, step=0)
        for png in pngs:
            with open(png, "rb") as f:
                img = tf.io.decode_png(f.read(), channels=4)
            tf.summary.image(os.path.splitext(os.path.basename(png))[0], img[None], step=0)
    writer.flush()


def format_report(table: Mapping[str, Mapping[str, float]], efficiencies=(0.3, 0.5), *,
                  markdown: bool = False) -> str:
    """A text (or Markdown) table: AUC, 1/εB ± error per tagger, and parameters, training time and
    jets seen for trained runs."""
    extra = any("params" in row for row in table.values())
    head = ["tagger", "AUC"] + [f"1/εB@{e}" for e in efficiencies]
    if extra:
        head += ["params", "train s", "jets seen"]
    rows = []
    for name, row in table.items():
        cells = [name, "—" if "auc" not in row else f"{row['auc']:.4f} ± {row['auc_err']:.4f}" if "auc_err" in row
                 else f"{row['auc']:.4f}"]
        for e in efficiencies:
            r, err = row.get(f"rejection_at_{e}"), row.get(f"rejection_at_{e}_err")
            if r is None:
                cells.append("—")
            elif row.get(f"rejection_at_{e}_lower_bound"):
                cells.append(f"> {r:,.0f} (0 of {int(row['n_background']):,} passed)")
            else:
                cells.append(f"{r:.1f} ± {err:.1f}" if err is not None and np.isfinite(err) else f"{r:.1f}")
        if extra:
            cells += [f"{row['params']:,}" if "params" in row else "—",
                      f"{row['train_seconds']:.0f}" if "train_seconds" in row else "—",
                      f"{row['train_jets_seen']:,}" if "train_jets_seen" in row else "—"]
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    text = "\n".join(" ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in [head] + rows)
    paired = format_paired(table, efficiencies)
    return text + ("\n" + paired if paired else "")


def format_paired(table: Mapping[str, Mapping], efficiencies=(0.3, 0.5)) -> str:
    """Lines ``run − baseline: AUC +Δ ± σ (ahead in p %), 1/εB@ε +Δ ± σ (p %) …`` for each row's
    ``paired`` comparisons (empty when there are none)."""
    lines = []
    for name, row in table.items():
        for base, comp in (row.get("paired") or {}).items():
            cells = []
            for key, label, fmt in [("auc", "AUC", "{:+.4f} ± {:.4f}")] + [
                    (f"rejection_at_{e}", f"1/εB@{e}", "{:+.0f} ± {:.0f}") for e in efficiencies]:
                c = comp.get(key)
                if c is None:
                    continue
                value = fmt.format(c["difference"], c["error"]) if np.isfinite(c["difference"]) and np.isfinite(
                    c["error"]) else "not measurable (no background passed)"
                cells.append(f"{label} {value} (ahead in {100 * c['ahead']:.1f} %)")
            lines.append(f"{name} − {base}: " + ", ".join(cells))
    if not lines:
        return ""
    return "paired comparison on the same test jets (σ and 'ahead' from 1000 bootstrap resamples):\n" + "\n".join(lines)
