"""How close generated showers are to simulated ones: shower shapes, distances, a classifier test.

* Shower-shape histograms (the features of :mod:`hepflow.ops.calo`), generated over simulated,
  with ratio panels, per energy range; a Wasserstein-1 distance per feature, in units of the
  simulated feature's standard deviation.
* Fréchet distance between the two sets of standardized shower-shape features (the FID idea on
  physics features): ``|μ_s − μ_g|² + Tr(Σ_s + Σ_g − 2 (Σ_s Σ_g)^½)``.
* Classifier test, as in the community calorimeter challenge: a DNN trained to tell generated
  from simulated showers, on the shower-shape features and on the cells; its AUC on held-out
  showers (0.5: indistinguishable, 1: always told apart).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf
from scipy.linalg import sqrtm
from scipy.stats import wasserstein_distance

from hepflow.data import make_dataset
from hepflow.evaluation.metrics import auc
from hepflow.evaluation.report import _log_tensorboard
from hepflow.io import write_atomic
from hepflow.ops.calo import SHAPE_NAMES, shower_shapes
from hepflow.runs import load_config, split_specs

__all__ = ["shape_features", "wasserstein_table", "frechet_distance", "classifier_auc", "compare_showers",
           "evaluate_generative"]

LAYER_KEYS = ("layer_0", "layer_1", "layer_2")


def shape_features(showers: Mapping[str, np.ndarray], *, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """The shower-shape features (``hepflow.ops.calo.SHAPE_NAMES``) of showers in GeV, as numpy arrays."""
    n = len(showers[LAYER_KEYS[0]])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in SHAPE_NAMES}
    for a in range(0, n, batch_size):
        out = shower_shapes({k: tf.constant(np.asarray(showers[k][a:a + batch_size], np.float32)) for k in LAYER_KEYS})
        for k in SHAPE_NAMES:
            parts[k].append(np.asarray(out[k]))
    return {k: np.concatenate(v) for k, v in parts.items()}


def wasserstein_table(real: Mapping[str, np.ndarray], fake: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Wasserstein-1 distance per feature, divided by the simulated feature's standard deviation."""
    return {k: float(wasserstein_distance(real[k], fake[k]) / (np.std(real[k]) + 1e-12)) for k in real}


def _matrix(features: Mapping[str, np.ndarray], names) -> np.ndarray:
    return np.stack([np.asarray(features[k], np.float64) for k in names], 1)


def frechet_distance(real: Mapping[str, np.ndarray], fake: Mapping[str, np.ndarray]) -> float:
    """Fréchet distance of the feature distributions, features standardized by the simulated ones."""
    names = list(real)
    a, b = _matrix(real, names), _matrix(fake, names)
    mu, sd = a.mean(0), a.std(0) + 1e-12
    a, b = (a - mu) / sd, (b - mu) / sd
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def classifier_auc(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, epochs: int = 30) -> float:
    """AUC of a DNN trained to tell ``fake`` rows from ``real`` rows, on a held-out third of each.

    Inputs are standardized by the training rows; the DNN (3 × 64 ReLU, Adam) trains with early
    stopping on a validation slice; the AUC is measured on rows it never saw.
    """
    rng = np.random.default_rng(seed)
    x = np.concatenate([real, fake]).astype(np.float32)
    y = np.concatenate([np.zeros(len(real)), np.ones(len(fake))]).astype(np.float32)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n_test = len(x) // 3
    x_train, y_train, x_test, y_test = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((x.shape[1],))] + [keras.layers.Dense(64, activation="relu")
                                                             for _ in range(3)]
                             + [keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit((x_train - mu) / sd, y_train, epochs=epochs, batch_size=256, validation_split=0.2, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True)])
    score = model.predict((x_test - mu) / sd, batch_size=4096, verbose=0).reshape(-1)
    return float(auc(y_test.astype(bool), score))


def _plot_shapes(real, fake, energy, out_png: str, ranges) -> None:
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    names = list(real)
    cols = 6
    rows = int(np.ceil(len(names) / cols))
    fig = plt.figure(figsize=(3.0 * cols, 3.2 * rows))
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1] * rows, hspace=0.05, wspace=0.35)
    for i, name in enumerate(names):
        r, c = divmod(i, cols)
        top, bottom = fig.add_subplot(grid[2 * r, c]), fig.add_subplot(grid[2 * r + 1, c])
        lo, hi = np.percentile(np.concatenate([real[name], fake[name]]), [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
        h_real, _ = np.histogram(real[name], bins, density=True)
        h_fake, _ = np.histogram(fake[name], bins, density=True)
        top.stairs(h_real, bins, label="simulated", color="k")
        top.stairs(h_fake, bins, label="generated", color="tab:red")
        top.set_title(name, fontsize=9)
        top.set_xticks([])
        with np.errstate(divide="ignore", invalid="ignore"):
            bottom.stairs(np.where(h_real > 0, h_fake / h_real, np.nan), bins, color="tab:red")
        bottom.axhline(1, color="k", lw=0.5)
        bottom.set_ylim(0, 2)
        if i == 0:
            top.legend(fontsize=7)
    fig.suptitle(f"shower shapes, E in {ranges} GeV")
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def _plot_average_showers(real, fake, out_png: str) -> None:
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    fig, axes = plt.subplots(2, 3, figsize=(12, 5))
    for j, k in enumerate(LAYER_KEYS):
        for i, (label, showers) in enumerate((("simulated", real), ("generated", fake))):
            img = np.asarray(showers[k]).mean(0)
            axes[i, j].imshow(np.log10(img + 1e-4), aspect="auto", cmap="viridis", vmin=-4)
            axes[i, j].set_title(f"{label} {k} (log10 GeV)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def compare_showers(real: Mapping[str, np.ndarray], fake: Mapping[str, np.ndarray], *, out_dir: str,
                    energy_bins=((1, 10), (10, 50), (50, 100)), seed: int = 0, log_dir: str | None = None
                    ) -> dict:
    """Generated vs simulated showers (same incident energies): distances, classifier AUCs, plots.

    Args:
        real, fake: ``layer_0``, ``layer_1``, ``layer_2`` (GeV) and ``energy`` (n, 1), row i of
            ``fake`` generated at row i's energy.
        out_dir: Where ``generative.json``, ``shapes_*.png`` and ``average_showers.png`` go.
        energy_bins: Energy ranges (GeV) of the per-range histograms.
        log_dir: Also log the plots and numbers to TensorBoard there.

    Returns:
        ``{"wasserstein": {feature: W1/σ}, "frechet": float, "classifier_auc_features",
        "classifier_auc_cells", "n": rows}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    f_real, f_fake = shape_features(real), shape_features(fake)
    energy = np.asarray(real["energy"]).reshape(-1)
    pngs = []
    for lo, hi in energy_bins:
        sel = (energy >= lo) & (energy < hi)
        if sel.sum() < 50:
            continue
        png = os.path.join(out_dir, f"shapes_{lo}_{hi}GeV.png")
        _plot_shapes({k: v[sel] for k, v in f_real.items()}, {k: v[sel] for k, v in f_fake.items()}, energy, png,
                     f"[{lo}, {hi})")
        pngs.append(png)
    png = os.path.join(out_dir, "average_showers.png")
    _plot_average_showers(real, fake, png)
    pngs.append(png)
    log_e = np.log(energy)[:, None]
    cells = lambda s: np.concatenate([np.asarray(s[k]).reshape(len(energy), -1) / energy[:, None]  # noqa: E731
                                      for k in LAYER_KEYS] + [log_e], 1)
    table = {
        "n": int(len(energy)),
        "wasserstein": wasserstein_table(f_real, f_fake),
        "frechet": frechet_distance(f_real, f_fake),
        "classifier_auc_features": classifier_auc(np.concatenate([_matrix(f_real, list(f_real)), log_e], 1),
                                                  np.concatenate([_matrix(f_fake, list(f_fake)), log_e], 1),
                                                  seed=seed),
        "classifier_auc_cells": classifier_auc(cells(real), cells(fake), seed=seed),
    }

    write_atomic(os.path.join(out_dir, "generative.json"), json.dumps(table, indent=1))
    if log_dir:
        _log_tensorboard(log_dir, {"generated": {k: v for k, v in table.items() if isinstance(v, float)}}, pngs)
    return table


def evaluate_generative(run_dir: str, *, out_dir: str | None = None, max_showers: int = 5000, seed: int = 0) -> dict:
    """Scores a generator run: its test showers against showers it generates at the same energies.

    Reads up to ``max_showers`` showers of each test sample of the run through the pipeline,
    generates one shower per row at that row's energy (and, for a generator conditioned on
    several particle types, the sample's label as particle) with the run's ``model.keras``, and
    calls :func:`compare_showers`; results go to ``RUN_DIR/evaluation`` by default.

    Returns:
        The table of :func:`compare_showers` for a run of one sample; for several samples
        ``{"samples": {name: table}}``, each written to ``OUT_DIR/<name>``.
    """
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    out_dir = out_dir or os.path.join(run_dir, "evaluation")
    specs = split_specs(cfg)["test"]
    tables = {}
    for spec in specs:
        real, fake = _real_and_generated(model, spec, max_showers=max_showers, seed=seed, run_seed=int(cfg["seed"]))
        where = out_dir if len(specs) == 1 else os.path.join(out_dir, spec.name)
        tables[spec.name] = compare_showers(real, fake, out_dir=where, seed=seed, log_dir=os.path.join(where, "tb"))
    return next(iter(tables.values())) if len(specs) == 1 else {"samples": tables}


def _real_and_generated(model, spec, *, max_showers: int, seed: int, run_seed: int):
    """Up to ``max_showers`` showers of one sample and the model's showers at the same conditions."""
    ds = make_dataset([spec], batch_size=1024, epoch="all", shuffle=0, drop_remainder=False, seed=run_seed)
    particle = int(spec.label) if getattr(model, "particles", 1) > 1 else None
    real: dict[str, list] = {k: [] for k in (*LAYER_KEYS, "energy")}
    fake: dict[str, list] = {k: [] for k in LAYER_KEYS}
    seen = 0
    for features, _ in ds:
        take = min(max_showers - seen, int(features["energy"].shape[0]))
        energy = tf.reshape(tf.cast(features["energy"][:take], tf.float32), (-1, 1))
        out = model.generate(energy, particle=particle, seed=seed + seen)
        for k in LAYER_KEYS:
            real[k].append(np.asarray(features[k][:take]))
            fake[k].append(np.asarray(out[k]))
        real["energy"].append(np.asarray(energy))
        seen += take
        if seen >= max_showers:
            break
    return {k: np.concatenate(v) for k, v in real.items()}, {k: np.concatenate(v) for k, v in fake.items()}


def _png_to_tensorboard(writer, tag: str, png: str, step: int) -> None:
    with open(png, "rb") as f:
        img = tf.image.decode_png(f.read(), channels=4)
    with writer.as_default():
        tf.summary.image(tag, img[None], step=step)


def generator_monitor(real: Mapping[str, np.ndarray], log_dir: str, *, every: int = 5):
    """A Keras callback: every ``every`` epochs, shower shapes and average showers of the
    generator vs ``real`` (showers in GeV with ``energy``, and ``particle`` ids for a generator of
    several particle types) as TensorBoard images.
    """
    class GeneratorMonitor(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.writer = None

        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % every:
                return
            self.writer = self.writer or tf.summary.create_file_writer(log_dir)
            energy = np.asarray(real["energy"], np.float32).reshape(-1, 1)
            particle = real.get("particle") if getattr(self.model, "particles", 1) > 1 else None
            fake = {k: np.asarray(v) for k, v in self.model.generate(energy, particle=particle, seed=epoch).items()}
            os.makedirs(log_dir, exist_ok=True)
            shapes_png = os.path.join(log_dir, "shapes.png")
            average_png = os.path.join(log_dir, "average_showers.png")
            _plot_shapes(shape_features(real), shape_features(fake), energy, shapes_png, "[1, 100]")
            _plot_average_showers(real, fake, average_png)
            _png_to_tensorboard(self.writer, "shower_shapes", shapes_png, epoch)
            _png_to_tensorboard(self.writer, "average_showers", average_png, epoch)

    return GeneratorMonitor()
