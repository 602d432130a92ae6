#!/usr/bin/env python
"""Benchmark: the LArTPC RecoGraph against a plain numpy/scipy implementation of the same steps.

Both run baseline subtraction, protected coherent-noise removal, the 2D deconvolution (the same
filter), regions of interest (a line per region on the induction planes) and Gaussian hit finding on the same simulated events; their
deconvolved charge (at most 0.01 % of samples differing by more than 0.1 % of the largest
charge: float32 and float64 FFTs round differently near thresholds) and hit maps (99.99 % of
pixels equal) are checked in the same run. Then
the RecoGraph runs as a pipeline transform over chunk files: the first epoch reconstructs and
writes the cache, the second reads it.

Prints a table by batch size and, as its last line, JSON with ``speedup_vs_numpy`` (at the
largest batch; goal ≥ 5 on 2 cores), ``speedup_vs_numpy_best`` (each side at its fastest batch:
numpy is fastest one event at a time, where its arrays stay in cache), ``events_per_s`` and the
pipeline's epoch rates.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from scipy.ndimage import maximum_filter

from hepflow.data import SampleSpec, make_dataset
from hepflow.physics.lartpc import LArTPCSettings, detector_response, generate_lartpc, simulate_event
from hepflow.reco.lartpc import ROI_BASELINE, LArTPCReco, lartpc_reco_graph, plane_kind

SIGNAL_RTOL = 1e-3  # of the largest deconvolved charge in the batch
MAX_DIFFERING = 1e-4  # fraction of samples allowed beyond SIGNAL_RTOL (threshold decisions that flip)


def numpy_reco(adc: np.ndarray, reco: LArTPCReco) -> dict[str, np.ndarray]:
    """The chain written as a user would with numpy and scipy, plane by plane."""
    settings = reco.settings
    signal = np.zeros(adc.shape, np.float32)
    hit_charge = np.zeros(adc.shape, np.float32)
    for p in range(3):
        x = adc[:, p].astype(np.float32)
        x -= _clipped(x)[0]
        x = _coherent(x, settings.coherent_group)
        q = np.fft.irfft2(np.fft.rfft2(x) * reco.kernels[p], s=x.shape[1:]).astype(np.float32)
        _, rms = _clipped(q)
        mask = maximum_filter(q > reco.roi_threshold * rms, size=(1, 3, 17)) > 0
        if ROI_BASELINE[plane_kind(p)] == "linear":
            base = _linear_baseline(q, mask)
        else:
            outside = ~mask
            base = (q * outside).sum(-1, keepdims=True) / np.maximum(outside.sum(-1, keepdims=True), 1)
        s = np.where(mask, q - base, 0.0).astype(np.float32)
        signal[:, p] = s
        hit_charge[:, p] = _hits(s, reco.hit_threshold * np.maximum(rms, 1.0))
    return {"signal": signal, "hit_charge": hit_charge}


def _clipped(x, valid=None, n_sigma=3.0, iterations=2):
    """Mean and RMS along the last axis with signals clipped (the definition of ops.clipped_stats)."""
    w = np.ones_like(x) if valid is None else valid.astype(x.dtype)
    keep = w
    for _ in range(iterations + 1):
        n = np.maximum(keep.sum(-1, keepdims=True), 1.0)
        mean = (keep * x).sum(-1, keepdims=True) / n
        rms = np.sqrt((keep * (x - mean) ** 2).sum(-1, keepdims=True) / n)
        keep = w * (np.abs(x - mean) <= n_sigma * rms)
    return mean, rms / 0.9866


def _linear_baseline(q, mask, edge=8):
    """Per region of interest, the line through the mean of the quiet samples within ``edge``
    ticks on each side (the definition of ops.linear_roi_baseline): regions listed by their
    first and last ticks, edges gathered, each masked tick's region by a running count."""
    n = q.shape[-1]
    before = np.pad(mask[..., :-1], ((0, 0), (0, 0), (1, 0)))
    after = np.pad(mask[..., 1:], ((0, 0), (0, 0), (0, 1)))
    inside = np.nonzero(mask)
    starts = (mask & ~before)[inside]
    firsts, lasts = np.nonzero(mask & ~before), np.nonzero(mask & ~after)
    offsets = np.arange(1, edge + 1)

    def side(rows, ticks):
        valid = (ticks >= 0) & (ticks < n)
        t = np.clip(ticks, 0, n - 1)
        b, w = rows[0][:, None], rows[1][:, None]
        weight = valid & ~mask[b, w, t]
        count = weight.sum(-1)
        return (count, (weight * q[b, w, t]).sum(-1) / np.maximum(count, 1),
                (weight * ticks).sum(-1) / np.maximum(count, 1))

    nl, ql, tl = side(firsts, firsts[2][:, None] - offsets)
    nr, qr, tr = side(lasts, lasts[2][:, None] + offsets)
    slope = np.where((nl > 0) & (nr > 0), (qr - ql) / np.maximum(tr - tl, 1), 0.0)
    level = np.where(nl > 0, ql - slope * tl, np.where(nr > 0, qr, 0.0))
    region = np.cumsum(starts) - 1
    out = np.zeros_like(q)
    out[inside] = level[region] + slope[region] * inside[2]
    return out


def _coherent(x, group, protect=4.0, pad=10):
    quiet = ~maximum_filter(np.abs(x) > protect * _clipped(x)[1], size=(1, 1, 2 * pad + 1))
    out = x.copy()
    for g in range(0, x.shape[1], group):
        q = quiet[:, g:g + group]
        n = q.sum(axis=1, keepdims=True)
        common = np.where(n > 0, (x[:, g:g + group] * q).sum(axis=1, keepdims=True) / np.maximum(n, 1), 0.0)
        out[:, g:g + group] -= common
    return out


def _hits(q, threshold):
    left = np.pad(q[..., :-1], ((0, 0), (0, 0), (1, 0)))
    right = np.pad(q[..., 1:], ((0, 0), (0, 0), (0, 1)))
    peak = (q > threshold) & (q > left) & (q >= right)
    eps = 1e-3 * threshold
    la, lb, lc = (np.log(np.maximum(v, eps)) for v in (left, q, right))
    curv = la - 2 * lb + lc
    good = peak & (curv < -1e-6)
    safe = np.where(good, curv, -1.0)
    sigma = np.sqrt(-1 / safe)
    amp = np.exp(lb - (la - lc) ** 2 / (8 * safe))
    return np.where(good, amp * sigma * np.sqrt(2 * np.pi), 0.0).astype(np.float32)


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="batches of 1 and 8, a small pipeline (about a minute)")
    args = ap.parse_args()
    settings = LArTPCSettings()
    rng = np.random.default_rng(1)
    response = detector_response(settings)
    batches = [1, 8] if args.quick else [1, 8, 32]
    events = [simulate_event(["numu_cc", "nue_cc", "nc_pi0"][k % 3], settings, rng, response)
              for k in range(max(batches))]
    adc_all = np.stack([e["adc"] for e in events])
    reco = LArTPCReco(settings)
    graph = lartpc_reco_graph(settings, outputs=["signal", "hit_charge"])
    rows = []
    for b in batches:
        adc = adc_all[:b]
        tf_out = {k: v.numpy() for k, v in graph.run({"adc": adc}).items()}
        np_out = numpy_reco(adc, reco)
        scale = np.abs(np_out["signal"]).max()
        # float32 (TensorFlow) and float64 (numpy) FFTs round differently; a sample that sits on a
        # threshold can fall on either side, so count the samples that differ, not the largest difference
        sig_diff = float(np.mean(np.abs(tf_out["signal"] - np_out["signal"]) > SIGNAL_RTOL * scale))
        same_hits = float(np.mean((tf_out["hit_charge"] > 0) == (np_out["hit_charge"] > 0)))
        t_tf = best_time(lambda: graph.run({"adc": adc})["signal"].numpy(), 3)
        t_np = best_time(lambda: numpy_reco(adc, reco), 2)
        rows.append({"batch": b, "numpy_events_per_s": b / t_np, "recograph_events_per_s": b / t_tf,
                     "speedup": t_np / t_tf, "signal_fraction_differing": sig_diff, "hit_map_agreement": same_hits})
    print(f"\nLArTPC reconstruction (3 planes × {settings.n_wires} wires × {settings.n_ticks} ticks per event), "
          f"{os.cpu_count()} cores")
    print(f"{'batch':>6s} {'numpy ev/s':>11s} {'RecoGraph ev/s':>15s} {'speedup':>8s} {'q differs':>11s} {'hit maps equal':>15s}")
    for r in rows:
        print(f"{r['batch']:6d} {r['numpy_events_per_s']:11.1f} {r['recograph_events_per_s']:15.1f} {r['speedup']:8.2f} "
              f"{r['signal_fraction_differing']:11.2e} {100 * r['hit_map_agreement']:14.4f}%")
        assert r["signal_fraction_differing"] <= MAX_DIFFERING, f"deconvolved charge differs on {r['signal_fraction_differing']:.3g}"
        assert r["hit_map_agreement"] > 0.9999, f"hit maps differ on {1 - r['hit_map_agreement']:.2e} of pixels"

    n_files, per_file = (2, 8) if args.quick else (4, 16)
    with tempfile.TemporaryDirectory() as d:
        generate_lartpc(d, counts={"numu_cc": n_files * per_file}, chunk_events=per_file, workers=os.cpu_count() or 1,
                        progress=False)
        spec = [SampleSpec(name="numu", files=[os.path.join(d, "numu_cc_*.h5")], keys=["adc"], label=0)]
        ds = make_dataset(spec, batch_size=8, transform=lartpc_reco_graph(settings, outputs=["image", "hits"]),
                          cache=os.path.join(d, "cache"), epoch="all", shuffle=0)
        epochs = []
        for _ in range(2):
            t = time.perf_counter()
            n = sum(int(y.shape[0]) for _, y in ds)
            epochs.append(n / (time.perf_counter() - t))
    print(f"pipeline with the RecoGraph as transform ({n} events, batch 8): first epoch (reconstruct + cache) "
          f"{epochs[0]:.1f} events/s, cached epoch {epochs[1]:.1f} events/s")
    last = rows[-1]
    best = max(r["recograph_events_per_s"] for r in rows) / max(r["numpy_events_per_s"] for r in rows)
    print(json.dumps({"speedup_vs_numpy": round(last["speedup"], 2), "batch": last["batch"],
                      "speedup_vs_numpy_best": round(best, 2),
                      "events_per_s": round(last["recograph_events_per_s"], 1),
                      "numpy_events_per_s": round(last["numpy_events_per_s"], 1),
                      "pipeline_first_epoch_events_per_s": round(epochs[0], 1),
                      "pipeline_cached_epoch_events_per_s": round(epochs[1], 1),
                      "signal_fraction_differing": max(r["signal_fraction_differing"] for r in rows)}))


if __name__ == "__main__":
    main()
