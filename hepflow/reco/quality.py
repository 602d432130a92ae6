"""Reconstruction against truth: hit efficiency and purity, charge per wire, noise reduction.

Definitions (per plane, numpy):

* A **true hit** is a run of consecutive ticks on one wire where the arriving charge (the
  simulation's truth) exceeds ``threshold`` electrons per tick; its charge is the run's sum.
* A true hit is **found** when a reconstructed hit on the same wire has its time inside the run,
  widened by ``tolerance`` ticks on each side. **Efficiency**: found / true hits with at least
  ``min_charge`` electrons. **Purity**: reconstructed hits inside some true run (widened
  likewise) / reconstructed hits.
* **Charge per wire**: the deconvolved charge summed over each wire / the true charge on that
  wire, for wires with at least ``min_charge`` true electrons; bias is the median ratio − 1,
  resolution half the 16-84 % spread.
"""
from __future__ import annotations

import glob
import json
from typing import Any

import h5py
import numpy as np

from hepflow.errors import DataError
from hepflow.physics.lartpc import PLANES, LArTPCSettings
from hepflow.reco.lartpc import lartpc_reco_graph

__all__ = ["true_hits", "hit_efficiency", "charge_per_wire", "noise_rms", "reco_quality", "format_quality"]


def true_hits(charge: np.ndarray, *, threshold: float) -> dict[str, np.ndarray]:
    """Runs of ticks above ``threshold`` on each wire of one plane ``(wires, ticks)``.

    Returns:
        ``wire``, ``start``, ``stop`` (exclusive), ``charge`` (sum over the run) per true hit.
    """
    above = charge > threshold
    padded = np.pad(above, ((0, 0), (1, 1))).astype(np.int8)
    edges = np.diff(padded, axis=1)
    wires_s, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)
    cum = np.pad(np.cumsum(charge, axis=1), ((0, 0), (1, 0)))
    return {"wire": wires_s, "start": starts, "stop": stops, "charge": cum[wires_s, stops] - cum[wires_s, starts]}


def hit_efficiency(charge: np.ndarray, hit_wire: np.ndarray, hit_time: np.ndarray, *, threshold: float = 300.0,
                   min_charge: float = 3000.0, tolerance: float = 3.0) -> dict[str, float]:
    """Efficiency and purity of reconstructed hits ``(wire, time)`` against one plane's truth.

    Args:
        charge: ``(wires, ticks)`` true arriving electrons.
        hit_wire, hit_time: The reconstructed hits of the same plane.
        threshold: Electrons per tick that start a true hit. Default 300.
        min_charge: Electrons a true hit needs to count for the efficiency (3000 ≈ a fifth of a
            minimum-ionizing particle's charge on one wire). Default 3000.
        tolerance: Ticks a hit may lie outside the run. Default 3.

    Returns:
        ``efficiency``, ``purity``, ``true_hits`` (counted), ``found``, ``reco_hits``, ``pure``.
    """
    truth = true_hits(charge, threshold=threshold)
    counted = truth["charge"] >= min_charge
    found = np.zeros(len(truth["wire"]), bool)
    pure = np.zeros(len(hit_wire), bool)
    by_wire: dict[int, list[int]] = {}
    for k, w in enumerate(truth["wire"]):
        by_wire.setdefault(int(w), []).append(k)
    for j, (w, t) in enumerate(zip(hit_wire.astype(int), hit_time)):
        for k in by_wire.get(int(w), ()):
            if truth["start"][k] - tolerance <= t < truth["stop"][k] + tolerance:
                found[k] = True
                pure[j] = True
    n_true, n_reco = int(counted.sum()), len(hit_wire)
    return {"efficiency": float(found[counted].mean()) if n_true else float("nan"),
            "purity": float(pure.mean()) if n_reco else float("nan"),
            "true_hits": n_true, "found": int(found[counted].sum()), "reco_hits": n_reco, "pure": int(pure.sum())}


def charge_per_wire(true_charge: np.ndarray, reco_charge: np.ndarray, *, min_charge: float = 3000.0
                    ) -> dict[str, float]:
    """Bias and resolution of the reconstructed charge per wire (``(wires, ticks)`` each, or stacks)."""
    t = true_charge.reshape(-1, true_charge.shape[-1]).sum(-1)
    r = reco_charge.reshape(-1, reco_charge.shape[-1]).sum(-1)
    keep = t >= min_charge
    if not keep.any():
        return {"wires": 0, "bias": float("nan"), "resolution": float("nan")}
    ratio = r[keep] / t[keep]
    lo, med, hi = np.percentile(ratio, [16, 50, 84])
    return {"wires": int(keep.sum()), "bias": float(med - 1), "resolution": float((hi - lo) / 2)}


def noise_rms(waveforms: np.ndarray, true_charge: np.ndarray) -> float:
    """RMS of the samples on wires that carry no true charge (``(..., wires, ticks)`` each)."""
    quiet = true_charge.sum(-1) == 0
    return float(np.sqrt(np.mean(np.square(waveforms[quiet])))) if quiet.any() else float("nan")


def reco_quality(files: str | list[str], *, batch_size: int = 8, threshold: float = 300.0, min_charge: float = 3000.0,
                 tolerance: float = 3.0) -> dict[str, Any]:
    """Reconstructs generated LArTPC events and measures the chain against their truth, per plane.

    Args:
        files: Chunk files of :func:`hepflow.physics.lartpc.generate_lartpc` (a glob pattern or
            a list); the detector settings are read from the files.
        batch_size: Events per reconstruction batch.
        threshold, min_charge, tolerance: See :func:`hit_efficiency`.

    Returns:
        ``events`` and per plane (U, V, Y): ``efficiency``, ``purity`` (over all hits of all
        events), ``charge_bias``, ``charge_resolution`` (per wire), ``noise_raw`` and
        ``noise_filtered`` (ADC RMS on wires without true charge, before and after coherent-noise
        removal).

    Raises:
        DataError: no file matches, or files written with other detector settings.
    """
    paths = sorted(glob.glob(files)) if isinstance(files, str) else list(files)
    if not paths:
        raise DataError(f"No LArTPC files match. Received: files={files!r}")
    settings = None
    for path in paths:
        with h5py.File(path, "r") as f:
            fields = json.loads(f.attrs["record"])["settings"]
        fields["white_noise_adc"] = tuple(fields["white_noise_adc"])
        if settings is None:
            settings = LArTPCSettings(**fields)
        elif LArTPCSettings(**fields) != settings:
            raise DataError(f"{path} was simulated with other detector settings than {paths[0]}.")
    outputs = ["signal", "hit_charge", "hit_time"] + [f"{k}_{p}" for k in ("raw", "filtered") for p in PLANES]
    graph = lartpc_reco_graph(settings, outputs=outputs)
    sums = {p: {"found": 0, "true_hits": 0, "pure": 0, "reco_hits": 0} for p in PLANES}
    truth, signal, raw, filtered = ([] for _ in range(4))
    n_events = 0
    for path in paths:
        with h5py.File(path, "r") as f:
            adc, charge = f["adc"][:], f["charge"][:]
        for start in range(0, len(adc), batch_size):
            out = {k: v.numpy() for k, v in graph.run({"adc": adc[start:start + batch_size]}).items()}
            q = charge[start:start + batch_size]
            for i in range(len(q)):
                for p, name in enumerate(PLANES):
                    wire, tick = np.nonzero(out["hit_charge"][i, p] > 0)
                    m = hit_efficiency(q[i, p], wire, out["hit_time"][i, p][wire, tick], threshold=threshold,
                                       min_charge=min_charge, tolerance=tolerance)
                    for k in sums[name]:
                        sums[name][k] += m[k]
            truth.append(q)
            signal.append(out["signal"])
            raw.append(np.stack([out[f"raw_{p}"] for p in PLANES], 1))
            filtered.append(np.stack([out[f"filtered_{p}"] for p in PLANES], 1))
            n_events += len(q)
    truth, signal, raw, filtered = (np.concatenate(a) for a in (truth, signal, raw, filtered))
    result: dict[str, Any] = {"events": n_events, "files": len(paths)}
    for p, name in enumerate(PLANES):
        c = charge_per_wire(truth[:, p], signal[:, p], min_charge=min_charge)
        s = sums[name]
        result[name] = {"efficiency": s["found"] / max(s["true_hits"], 1), "purity": s["pure"] / max(s["reco_hits"], 1),
                        "true_hits": s["true_hits"], "reco_hits": s["reco_hits"],
                        "charge_bias": c["bias"], "charge_resolution": c["resolution"],
                        "noise_raw": noise_rms(raw[:, p], truth[:, p]),
                        "noise_filtered": noise_rms(filtered[:, p], truth[:, p])}
    return result


def format_quality(result: dict[str, Any]) -> str:
    """The result of :func:`reco_quality` as a table, one row per plane."""
    lines = [f"{result['events']} events from {result['files']} files",
             f"{'plane':6s} {'hit eff.':>9s} {'purity':>8s} {'true hits':>10s} {'q bias':>8s} {'q resol.':>9s} "
             f"{'noise raw':>10s} {'filtered':>9s}"]
    for name in PLANES:
        r = result[name]
        lines.append(f"{name:6s} {100 * r['efficiency']:8.1f}% {100 * r['purity']:7.1f}% {r['true_hits']:10d} "
                     f"{100 * r['charge_bias']:+7.1f}% {100 * r['charge_resolution']:8.1f}% {r['noise_raw']:10.2f} "
                     f"{r['noise_filtered']:9.2f}")
    return "\n".join(lines)
