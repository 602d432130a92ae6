"""Physics checks of generated top-tagging data: jet mass, τ32 and pT per class, printed and plotted."""
from __future__ import annotations

import glob
import os

import h5py
import numpy as np

__all__ = ["load_generated", "top_tagging_report"]


def load_generated(directory: str) -> dict[str, dict[str, np.ndarray]]:
    """Reads ``mass``, ``pt``, ``tau`` of every ``top_*.h5`` / ``qcd_*.h5`` chunk in a folder."""
    out = {}
    for process in ("top", "qcd"):
        paths = sorted(glob.glob(os.path.join(directory, f"{process}_*.h5")))
        if not paths:
            raise FileNotFoundError(f"{directory}: no {process}_*.h5 files; run `hepflow generate top-tagging` first")
        cols = {"mass": [], "pt": [], "tau": []}
        for p in paths:
            with h5py.File(p, "r") as f:
                for k in cols:
                    cols[k].append(f[k][...])
        out[process] = {k: np.concatenate(v) for k, v in cols.items()}
    return out


def top_tagging_report(directory: str, *, png: str | None = None) -> dict[str, dict[str, float]]:
    """Prints per-class summaries and writes a PNG (default ``<directory>/report.png``).

    Returns:
        Per class: number of jets, median and mean jet mass (GeV), mean τ32, mean pT (GeV).
    """
    import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

    data = load_generated(directory)
    summary = {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for process, colour in (("qcd", "tab:blue"), ("top", "tab:red")):
        d = data[process]
        tau32 = np.divide(d["tau"][:, 2], d["tau"][:, 1], out=np.zeros(len(d["pt"])), where=d["tau"][:, 1] > 0)
        summary[process] = {"jets": int(len(d["pt"])), "mass_median_gev": float(np.median(d["mass"])),
                            "mass_mean_gev": float(d["mass"].mean()), "tau32_mean": float(tau32.mean()),
                            "pt_mean_gev": float(d["pt"].mean())}
        kw = dict(histtype="step", density=True, color=colour, label=process, linewidth=1.5)
        axes[0].hist(d["mass"], bins=np.linspace(0, 300, 61), **kw)
        axes[1].hist(tau32, bins=np.linspace(0, 1.2, 49), **kw)
        axes[2].hist(d["pt"], bins=np.linspace(540, 660, 49), **kw)
    for ax, label in zip(axes, ("jet mass [GeV]", "τ32 = τ3/τ2", "jet pT [GeV]")):
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend()
    axes[0].axvline(173, color="grey", linestyle=":", linewidth=1)
    fig.suptitle(f"hepflow top-tagging jets: {directory}")
    fig.tight_layout()
    png = png or os.path.join(directory, "report.png")
    fig.savefig(png, dpi=90)
    plt.close(fig)
    print(f"{'class':6s} {'jets':>7s} {'median m':>9s} {'mean τ32':>9s} {'mean pT':>8s}")
    for process, s in summary.items():
        print(f"{process:6s} {s['jets']:7d} {s['mass_median_gev']:9.1f} {s['tau32_mean']:9.3f} {s['pt_mean_gev']:8.1f}")
    print(f"plots: {png}")
    return summary
