"""What a tagger looks at: ``hepflow explain RUN``.

On the run's test jets (through its own transform):

* image models (an ``image`` input): the average image per class, the average image per score
  quantile (quartiles of the signal score, or of each class's score), and the pixel-wise Pearson
  correlation between the image and the score (the maps of the DeepTop study);
* every other model: integrated gradients (Sundararajan et al., arXiv:1703.01365; zero
  baseline, 32 steps) of the score with respect to its float inputs, summarised as the mean
  |attribution| per input feature and, for constituent inputs with (Δη, Δφ) coordinates, an
  attribution map in the (Δη, Δφ) plane; plus the plain saliency |∂score/∂input|.

For K classes each class's own score is explained on the jets of that class. Everything is
written as PNGs, ``explain.json`` and TensorBoard images under ``RUN/explain`` (or ``out_dir``).
"""
from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hepflow.data import make_dataset
from hepflow.errors import DataError
from hepflow.io import write_atomic
from hepflow.runs import build_transform, finished_run, model_inputs, split_specs

__all__ = ["explain_run", "pearson_map", "integrated_gradients"]

PARTICLE_FEATURES = ("Δη", "Δφ", "log pT", "log E", "log pT/pT_jet", "log E/E_jet", "ΔR")


def pearson_map(images: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per-pixel Pearson correlation of ``images (n, h, w[, c])`` with ``score (n,)`` (0 where a pixel is constant)."""
    x = images.reshape(len(images), -1).astype(np.float64)
    s = score.astype(np.float64) - score.mean()
    xc = x - x.mean(axis=0)
    denom = np.sqrt((xc ** 2).sum(axis=0) * (s ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (xc * s[:, None]).sum(axis=0) / denom, 0.0)
    return r.reshape(images.shape[1:])


def integrated_gradients(model, inputs: dict[str, np.ndarray], class_index: int, *, steps: int = 32
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Integrated gradients (zero baseline) and saliency of output ``class_index`` for the float inputs.

    Integer inputs (trees) and masks are held fixed. Returns ``(attributions, saliency)``, each
    input name → an array of the input's shape.
    """
    names = [n for n, v in inputs.items() if np.asarray(v).dtype.kind == "f" and n != "mask"]
    fixed = {n: tf.constant(v) for n, v in inputs.items() if n not in names}
    x = {n: tf.constant(inputs[n], tf.float32) for n in names}

    def score(values):
        out = model({**fixed, **values}, training=False)
        return out[:, class_index]

    total = {n: tf.zeros_like(v) for n, v in x.items()}
    for alpha in (np.arange(steps) + 0.5) / steps:
        scaled = {n: v * alpha for n, v in x.items()}
        with tf.GradientTape() as tape:
            tape.watch(list(scaled.values()))
            s = score(scaled)
        grads = tape.gradient(s, scaled)
        total = {n: total[n] + grads[n] for n in names}
    with tf.GradientTape() as tape:
        tape.watch(list(x.values()))
        s = score(x)
    plain = tape.gradient(s, x)
    attributions = {n: (x[n] * total[n] / steps).numpy() for n in names}
    saliency = {n: np.abs(plain[n].numpy()) for n in names}
    return attributions, saliency


def _test_inputs(run_dir: str, n_jets: int) -> tuple[keras.Model, dict[str, np.ndarray], np.ndarray, dict]:
    run = finished_run(run_dir)
    cfg = run["config"]
    specs = split_specs(cfg)["test"]
    if not specs:
        raise DataError(f"{run_dir}: the config has no test split (data.split.test = 0); nothing to explain.")
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    ds = make_dataset(specs, batch_size=256, transform=build_transform(cfg), epoch="all", shuffle=0,
                      drop_remainder=False)
    xs: dict[str, list] = {}
    ys = []
    got = 0
    for x, y in model_inputs(model, ds):
        for k, v in x.items():
            xs.setdefault(k, []).append(v.numpy())
        ys.append(y.numpy())
        got += len(ys[-1])
        if got >= n_jets:
            break
    inputs = {k: np.concatenate(v)[:n_jets] for k, v in xs.items()}
    names = {int(s.label): s.name for s in specs if np.ndim(s.label) == 0}
    return model, inputs, np.concatenate(ys)[:n_jets].astype(int).ravel(), names


def explain_run(run_dir: str, *, out_dir: str | None = None, n_jets: int = 2000) -> dict[str, Any]:
    """Writes the maps of the module docstring for one finished classification run.

    Returns:
        What ``explain.json`` holds: the kind of explanation, the classes, per-feature mean
        |attribution| (non-image models) and the PNG paths.
    """
    model, inputs, labels, names = _test_inputs(run_dir, n_jets)
    out_dir = out_dir or os.path.join(run_dir, "explain")
    os.makedirs(out_dir, exist_ok=True)
    scores = np.asarray(model.predict(inputs, batch_size=256, verbose=0))
    k_classes = scores.shape[-1]
    classes = list(range(k_classes)) if k_classes > 1 else [1]
    class_names = [names.get(k, str(k)) for k in range(max(k_classes, 2))]
    result: dict[str, Any] = {"run": os.path.abspath(run_dir), "jets": int(len(labels)), "classes": class_names,
                              "pngs": []}
    if "image" in inputs and np.ndim(inputs["image"]) == 4:
        result["kind"] = "image"
        result["pngs"] += _explain_images(inputs["image"], labels, scores, class_names, out_dir)
    else:
        result["kind"] = "attribution"
        result["attribution"] = {}
        for k in classes:
            on = labels == k
            if not on.any():
                continue
            sel = {n: v[on] for n, v in inputs.items()}
            attr, sal = integrated_gradients(model, sel, k if k_classes > 1 else 0)
            name = class_names[k]
            result["attribution"][name] = _summarise(attr, sal)
            result["pngs"] += _plot_attributions(attr, sel, name, out_dir)
    _log_pngs(result["pngs"], out_dir)
    write_atomic(os.path.join(out_dir, "explain.json"), json.dumps(result, indent=1))
    return result


def _summarise(attr: dict[str, np.ndarray], sal: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    for n, a in attr.items():
        per_feature = np.abs(a).reshape(-1, a.shape[-1]).sum(axis=0) / len(a)
        labels = PARTICLE_FEATURES if n == "particles" and a.shape[-1] == len(PARTICLE_FEATURES) else None
        out[n] = {"mean_abs_attribution": {(labels[i] if labels else str(i)): float(v) for i, v in enumerate(per_feature)},
                  "mean_saliency": float(sal[n].mean())}
    return out


def _plt():
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn
    return plt


def _explain_images(images: np.ndarray, labels: np.ndarray, scores: np.ndarray, names: list[str],
                    out_dir: str) -> list[str]:
    plt = _plt()
    img = images.sum(axis=-1)  # colour channels summed for the maps
    k_classes = scores.shape[-1]
    score_of = scores[:, 0] if k_classes == 1 else None
    present = [k for k in range(len(names)) if (labels == k).any()]
    paths = []
    fig, axes = plt.subplots(1, len(present), figsize=(3 * len(present), 3), squeeze=False)
    for ax, k in zip(axes[0], present):
        ax.imshow(np.log10(img[labels == k].mean(axis=0) + 1e-3), cmap="viridis")
        ax.set_title(f"{names[k]} (mean, log10)")
        ax.axis("off")
    paths.append(os.path.join(out_dir, "mean_image_per_class.png"))
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    explained = [(0 if k_classes == 1 else k, names[1] if k_classes == 1 else names[k])
                 for k in (range(k_classes) if k_classes > 1 else [0])]
    fig, axes = plt.subplots(len(explained), 5, figsize=(15, 3 * len(explained)), squeeze=False)
    for row, (k, name) in enumerate(explained):
        s = score_of if score_of is not None else scores[:, k]
        edges = np.quantile(s, [0, 0.25, 0.5, 0.75, 1.0])
        for q in range(4):
            on = (s >= edges[q]) & (s <= edges[q + 1])
            axes[row, q].imshow(np.log10(img[on].mean(axis=0) + 1e-3), cmap="viridis")
            axes[row, q].set_title(f"{name} score q{q + 1}", fontsize=9)
            axes[row, q].axis("off")
        r = pearson_map(img, s)
        lim = max(float(np.abs(r).max()), 1e-6)
        im = axes[row, 4].imshow(r, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[row, 4].set_title(f"Pearson r(pixel, {name} score)", fontsize=9)
        axes[row, 4].axis("off")
        fig.colorbar(im, ax=axes[row, 4], fraction=0.046)
    paths.append(os.path.join(out_dir, "score_quantiles_and_pearson.png"))
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths


def _plot_attributions(attr: dict[str, np.ndarray], inputs: dict[str, np.ndarray], name: str,
                       out_dir: str) -> list[str]:
    plt = _plt()
    paths = []
    for n, a in attr.items():
        per_feature = np.abs(a).reshape(-1, a.shape[-1]).sum(axis=0) / len(a)
        labels = PARTICLE_FEATURES if n == "particles" and a.shape[-1] == len(PARTICLE_FEATURES) else \
            [str(i) for i in range(a.shape[-1])]
        has_map = n == "particles" and a.ndim == 3
        fig, axes = plt.subplots(1, 2 if has_map else 1, figsize=(10 if has_map else 5, 3.6), squeeze=False)
        axes[0, 0].bar(range(len(per_feature)), per_feature)
        axes[0, 0].set_xticks(range(len(per_feature)), labels, rotation=30, fontsize=8)
        axes[0, 0].set_ylabel("mean |integrated gradient| per jet")
        axes[0, 0].set_title(f"{name}: {n}")
        if has_map:
            per_particle = a.sum(axis=-1)
            real = inputs["mask"][..., 0] > 0 if "mask" in inputs else np.ones(per_particle.shape, bool)
            deta, dphi = inputs[n][..., 0][real], inputs[n][..., 1][real]
            h, xe, ye = np.histogram2d(deta, dphi, bins=32, range=[[-1, 1], [-1, 1]], weights=per_particle[real])
            lim = max(float(np.abs(h).max()), 1e-9)
            im = axes[0, 1].imshow(h.T, origin="lower", extent=[-1, 1, -1, 1], cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[0, 1].set_xlabel("Δη")
            axes[0, 1].set_ylabel("Δφ")
            axes[0, 1].set_title("attribution summed per (Δη, Δφ) bin")
            fig.colorbar(im, ax=axes[0, 1], fraction=0.046)
        paths.append(os.path.join(out_dir, f"attribution_{name}_{n}.png"))
        fig.tight_layout()
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
    return paths


def _log_pngs(paths: list[str], out_dir: str) -> None:
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tb"))
    with writer.as_default():
        for path in paths:
            with open(path, "rb") as f:
                tf.summary.image(os.path.splitext(os.path.basename(path))[0],
                                 tf.io.decode_png(f.read(), channels=4)[None], step=0)
    writer.flush()
