"""Anomaly-search statistics: mass sculpting of a score cut and a sideband-fit bump hunt.

* :func:`mass_sculpting` — the background jet-mass distribution before and after a cut on an
  anomaly score, compared with the Jensen–Shannon divergence (0: unchanged shape; 1: disjoint).
* :func:`bump_hunt` — cut on the score, fit a smooth function to the mass sidebands (Poisson
  likelihood), and compute the significance of the excess in the signal window.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

__all__ = ["js_divergence", "mass_sculpting", "bump_hunt", "poisson_significance", "plot_mass_cut"]


def js_divergence(p, q) -> float:
    """Jensen–Shannon divergence (base 2, in [0, 1]) of two histograms (normalized here)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError(f"js_divergence needs two non-empty histograms of the same binning. Received: shapes "
                         f"{p.shape}, {q.shape}, sums {p.sum()}, {q.sum()}")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a, b):
        ok = a > 0
        return float(np.sum(a[ok] * np.log2(a[ok] / b[ok])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def mass_sculpting(background_mass, background_scores, threshold: float, *,
                   bins: Sequence[float] = tuple(np.linspace(0, 600, 31))) -> dict[str, float]:
    """How much a cut ``score ≥ threshold`` changes the background mass distribution.

    Returns:
        ``{"js_divergence", "background_efficiency", "passing"}``; the divergence is between the
        mass histograms before and after the cut.
    """
    mass, scores = np.asarray(background_mass), np.asarray(background_scores)
    keep = scores >= threshold
    if not keep.any():
        raise ValueError(f"No background jet passes the cut at threshold {threshold}: the sculpting is undefined.")
    before, _ = np.histogram(mass, bins)
    after, _ = np.histogram(mass[keep], bins)
    return {"js_divergence": js_divergence(before, after), "background_efficiency": float(keep.mean()),
            "passing": int(keep.sum())}


def poisson_significance(observed: float, expected: float) -> float:
    """Significance of ``observed`` counts over a known ``expected`` background (likelihood ratio,
    one-sided): ``sqrt(2 (n ln(n/b) − (n − b)))`` for n > b, else 0."""
    n, b = float(observed), float(expected)
    if b <= 0:
        raise ValueError(f"The expected background must be > 0. Received: {b}")
    if n <= b:
        return 0.0
    return math.sqrt(2 * (n * math.log(n / b) - (n - b)))


def _fit_sidebands(centers, counts, use, degree: int):
    """Poisson maximum-likelihood fit of exp(polynomial in scaled mass) to the bins in ``use``."""
    x = (centers - centers.mean()) / (centers.max() - centers.min())
    design = np.vander(x, degree + 1, increasing=True)
    start = np.zeros(degree + 1)
    start[0] = math.log(max(counts[use].mean(), 1.0))

    def nll(theta):
        mu = np.exp(np.clip(design[use] @ theta, -50, 50))
        return float(np.sum(mu - counts[use] * np.log(mu)))

    res = minimize(nll, start, method="Nelder-Mead", options={"maxiter": 20_000, "xatol": 1e-8, "fatol": 1e-8})
    res = minimize(nll, res.x, method="BFGS")
    return np.exp(design @ res.x), res


def bump_hunt(mass, scores=None, *, threshold: float | None = None, window: Sequence[float] = (350.0, 450.0),
              fit_range: Sequence[float] = (200.0, 700.0), bin_width: float = 20.0, degree: int = 3,
              out_png: str | None = None, title: str = "") -> dict[str, float]:
    """Cut on the score, fit the sidebands, and measure the excess in the signal window.

    Args:
        mass: ``(n,)`` jet masses of the "data" (background plus whatever signal it holds).
        scores, threshold: Keep jets with ``score ≥ threshold`` (no cut when ``None``).
        window: The signal window ``(low, high)`` GeV, excluded from the fit.
        fit_range: The mass range of the fit and the plot.
        bin_width: Histogram bin width (GeV). The bins start at the window's low edge; the
            window's high edge is rounded to the nearest bin edge.
        degree: Degree of the polynomial in the exponent of the background function.
        out_png: Optional plot of the data, the fit and the window.

    Returns:
        ``observed`` and ``expected`` (fitted background) counts in the window, ``excess``,
        ``significance`` (:func:`poisson_significance`), ``jets`` after the cut, and the fit's
        ``chi2_per_bin`` in the sidebands.
    """
    mass = np.asarray(mass, np.float64)
    if scores is not None and threshold is not None:
        mass = mass[np.asarray(scores) >= threshold]
    # bin edges on the window's edges, extended by whole bins to cover the fit range
    below = math.ceil((window[0] - fit_range[0]) / bin_width - 1e-9)
    above = math.ceil((fit_range[1] - window[0]) / bin_width - 1e-9)
    edges = window[0] + bin_width * np.arange(-below, above + 1)
    counts, _ = np.histogram(mass, edges)
    centers = (edges[1:] + edges[:-1]) / 2
    in_window = (centers > window[0]) & (centers < window[1])
    sidebands = ~in_window
    if counts[sidebands].sum() < 10:
        raise ValueError(f"Too few jets in the sidebands to fit ({counts[sidebands].sum()}); loosen the cut.")
    fitted, _ = _fit_sidebands(centers, counts.astype(np.float64), sidebands, degree)
    observed, expected = float(counts[in_window].sum()), float(fitted[in_window].sum())
    side = counts[sidebands] > 0
    chi2 = float(np.sum((counts[sidebands][side] - fitted[sidebands][side]) ** 2 / counts[sidebands][side]))
    result = {"jets": int(counts.sum()), "observed": observed, "expected": expected, "excess": observed - expected,
              "significance": poisson_significance(observed, expected),
              "chi2_per_bin": chi2 / max(int(side.sum()), 1)}
    if out_png:
        import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar(centers, counts, yerr=np.sqrt(np.maximum(counts, 1)), fmt="k.", label="data")
        ax.plot(centers, fitted, "r-", label="sideband fit")
        ax.axvspan(*window, color="orange", alpha=0.2, label=f"window: Z = {result['significance']:.1f}")
        _save_mass_plot(fig, ax, out_png, ylabel=f"jets / {bin_width:g} GeV", title=title, legend_size=8)
    return result


def plot_mass_cut(background_mass, cuts: dict[str, np.ndarray], out_png: str, *,
                  bins: Sequence[float] = tuple(np.linspace(0, 600, 31)), title: str = "") -> str:
    """Background mass before and after each named cut (boolean masks), normalized; one PNG."""
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    mass = np.asarray(background_mass)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(mass, bins, density=True, histtype="stepfilled", color="0.85", label="background, no cut")
    for name, keep in cuts.items():
        if np.any(keep):
            ax.hist(mass[keep], bins, density=True, histtype="step", label=name)
    _save_mass_plot(fig, ax, out_png, ylabel="density", title=title, legend_size=7)
    return out_png


def _save_mass_plot(fig, ax, out_png: str, *, ylabel: str, title: str, legend_size: int) -> None:
    """Labels a jet-mass plot, writes it as PNG (making the folder) and closes the figure."""
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    ax.set_xlabel("jet mass [GeV]")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out_png) or ".", exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
