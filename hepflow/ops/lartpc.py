"""LArTPC signal processing as batched TF ops: noise filtering, 2D deconvolution, regions of
interest, Gaussian hit finding, zero suppression and downsampling.

Every op takes waveforms ``(batch, wires, ticks)`` of one plane (or ``(batch, planes, wires,
ticks)`` where stated) and runs on CPU or GPU inside one graph. The method follows the
MicroBooNE signal processing (JINST 13 P07006): subtract each wire's baseline and the noise
common to a group of wires (means with signals clipped or masked away, where MicroBooNE takes
medians: sums cost a pass over memory, sorts many), deconvolve field and electronics response in time and wire with
software filters, keep regions of interest, then fit Gaussian hits (LArSoft's GausHitFinder
fits each peak; here the three samples around a peak fix the Gaussian exactly, which is
batched and branch-free).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["clipped_stats", "subtract_baseline", "dilate", "remove_coherent_noise", "deconvolution_kernel",
           "deconvolve", "regions_of_interest", "linear_roi_baseline", "find_hits", "sparse_entries", "downsample",
           "semantic_labels", "SemanticImage"]


def clipped_stats(x: tf.Tensor, *, valid: tf.Tensor | None = None, n_sigma: float = 3.0,
                  iterations: int = 2) -> tuple[tf.Tensor, tf.Tensor]:
    """Each wire's noise mean and RMS along the last axis, signals clipped away.

    The mean and standard deviation of the ``valid`` samples are computed, then again over the
    samples within ``n_sigma`` of the mean, ``iterations`` times: the first pass, widened by the
    signals, still clips their peaks; the next ones converge on the noise. Sums only (no sort),
    so it costs a few passes over memory. For Gaussian noise the RMS is corrected for the 3σ
    truncation (÷ 0.9866).

    Returns:
        ``(mean, rms)``, each with the last axis kept (length 1).
    """
    w = tf.ones_like(x) if valid is None else tf.cast(valid, x.dtype)
    keep = w
    mean = rms = None
    for _ in range(iterations + 1):
        n = tf.maximum(tf.reduce_sum(keep, -1, keepdims=True), 1.0)
        mean = tf.reduce_sum(keep * x, -1, keepdims=True) / n
        rms = tf.sqrt(tf.reduce_sum(keep * tf.square(x - mean), -1, keepdims=True) / n)
        keep = w * tf.cast(tf.abs(x - mean) <= n_sigma * rms, x.dtype)
    return mean, rms / np.float32(0.9866)


def subtract_baseline(adc: tf.Tensor) -> tf.Tensor:
    """ADC counts → float32 signal around zero: each wire's clipped mean over its ticks is subtracted."""
    x = tf.cast(adc, tf.float32)
    return x - clipped_stats(x)[0]


def dilate(mask: tf.Tensor, *, ticks: int = 0, wires: int = 0) -> tf.Tensor:
    """A boolean ``(batch, wires, ticks)`` mask grown by ``ticks`` ticks and ``wires`` wires on each
    side (a max-pool of ``(2 wires + 1) × (2 ticks + 1)``): shifted ORs of doubling reach, a few
    passes over bytes (a 3 × 17 max-pool of floats costs ten times more on a CPU)."""
    for axis, radius in ((2, ticks), (1, wires)):
        reach, step = 0, 1
        while reach < radius:
            s = min(step, radius - reach)
            lo, hi = [[0, 0]] * 3, [[0, 0]] * 3
            lo[axis], hi[axis] = [s, 0], [0, s]
            head, tail = [slice(None)] * 3, [slice(None)] * 3
            head[axis], tail[axis] = slice(None, -s), slice(s, None)
            mask = mask | tf.pad(mask[tuple(head)], lo) | tf.pad(mask[tuple(tail)], hi)
            reach, step = reach + s, 2 * step
    return mask


def remove_coherent_noise(x: tf.Tensor, group: int, *, protect: float = 4.0, pad: int = 10) -> tf.Tensor:
    """Subtracts, at every tick, the mean over each group of ``group`` adjacent wires.

    Noise shared by the wires of a group (one motherboard's channels) cancels. Signals are
    protected: samples beyond ``protect`` times their wire's noise RMS (and ``pad`` ticks around
    them) are left out of the mean, so a track crossing many wires at one time (parallel to the
    wire plane) is not taken for noise; a tick where every wire of a group carries signal is left
    as it is.
    """
    batch, wires, ticks = tf.shape(x)[0], x.shape[1], tf.shape(x)[2]
    quiet = tf.cast(~dilate(tf.abs(x) > protect * clipped_stats(x)[1], ticks=pad), tf.float32)
    pad_w = (-wires) % group
    n_groups = (wires + pad_w) // group
    values = tf.reshape(tf.pad(x * quiet, [[0, 0], [0, pad_w], [0, 0]]), [batch, n_groups, group, ticks])
    counts = tf.reshape(tf.pad(quiet, [[0, 0], [0, pad_w], [0, 0]]), [batch, n_groups, group, ticks])
    n = tf.reduce_sum(counts, axis=2, keepdims=True)
    common = tf.where(n > 0, tf.reduce_sum(values, axis=2, keepdims=True) / tf.maximum(n, 1.0), 0.0)
    common = tf.reshape(tf.repeat(common, group, axis=2), [batch, wires + pad_w, ticks])[:, :wires]
    return x - common


def deconvolution_kernel(response: np.ndarray, wires: int, ticks: int, *, lead: int, time_sigma: float,
                         wire_sigma: float, regularization: float) -> np.ndarray:
    """The 2D filter that turns one plane's waveforms into arriving charge, in Fourier space.

    ``F(k, ω) = G_w(k) G_t(ω) R*(k, ω) / (|R(k, ω)|² + λ max|R|²)``: the response ``R`` (its
    wires centred, its arrival tick at ``lead``) is divided out where it is large, a Tikhonov
    (Wiener-like) term ``λ`` keeps the frequencies where it vanishes (high frequencies after
    shaping; ω = 0 on bipolar induction wires) from amplifying noise, and Gaussian filters in
    time (``time_sigma`` ticks) and wire (``wire_sigma`` wires) set the resolution of the result.

    Args:
        response: ``(2m + 1, n)`` ADC per electron on the wires ``−m … m`` around the charge.

    Returns:
        ``(wires, ticks // 2 + 1)`` complex64, for :func:`deconvolve`.
    """
    m = response.shape[0] // 2
    placed = np.zeros((wires, ticks))
    for row in range(response.shape[0]):
        kernel = np.zeros(ticks)
        n = min(response.shape[1], ticks)
        kernel[:n] = response[row, :n]
        placed[(row - m) % wires] = np.roll(kernel, -lead)
    r = np.fft.rfft2(placed)
    kw = np.fft.fftfreq(wires)[:, None]
    kt = np.fft.rfftfreq(ticks)[None, :]
    gauss = np.exp(-2 * (np.pi * kt * time_sigma) ** 2) * np.exp(-2 * (np.pi * kw * wire_sigma) ** 2)
    power = np.abs(r) ** 2
    return (gauss * np.conj(r) / (power + regularization * power.max())).astype(np.complex64)


def deconvolve(x: tf.Tensor, kernel: np.ndarray | tf.Tensor) -> tf.Tensor:
    """Arriving charge (electrons) from one plane's waveforms ``(batch, wires, ticks)``: a 2D FFT
    over wire and time, the filter of :func:`deconvolution_kernel`, the inverse FFT."""
    spectrum = tf.signal.rfft2d(tf.cast(x, tf.float32))
    ticks = tf.shape(x)[-1]
    return tf.signal.irfft2d(spectrum * tf.cast(kernel, tf.complex64), fft_length=[tf.shape(x)[1], ticks])


def regions_of_interest(q: tf.Tensor, *, threshold: float = 4.0, pad: int = 8, wire_pad: int = 1,
                        baseline: str = "wire", edge: int = 8) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Regions of interest of deconvolved charge and the charge inside them, baseline-corrected.

    A sample is in a region when it or a neighbour within ``pad`` ticks and ``wire_pad`` wires
    exceeds ``threshold`` times its wire's noise RMS (:func:`clipped_stats`). Outside the
    regions, samples are set to zero; inside, what the regularized deconvolution leaves of the
    lowest frequencies is subtracted: with ``baseline="wire"`` the mean of the wire's samples
    outside any region; with ``baseline="linear"`` (MicroBooNE's correction on induction planes,
    JINST 13 P07006 §5) a straight line per region through the mean of up to ``edge`` quiet
    samples on each side (:func:`linear_roi_baseline`).

    Returns:
        ``(charge in regions (batch, wires, ticks), mask (batch, wires, ticks) bool, noise RMS
        (batch, wires, 1))``.
    """
    _, rms = clipped_stats(q)
    mask = dilate(q > threshold * rms, ticks=pad, wires=wire_pad)
    if baseline == "linear":
        return tf.where(mask, q - linear_roi_baseline(q, mask, edge=edge), tf.zeros_like(q)), mask, rms
    if baseline != "wire":
        raise ValueError(f"baseline must be 'wire' or 'linear'. Received: baseline={baseline!r}")
    outside = tf.cast(~mask, q.dtype)
    level = tf.reduce_sum(outside * q, -1, keepdims=True) / tf.maximum(tf.reduce_sum(outside, -1, keepdims=True), 1.0)
    return tf.where(mask, q - level, tf.zeros_like(q)), mask, rms


def linear_roi_baseline(q: tf.Tensor, mask: tf.Tensor, *, edge: int = 8) -> tf.Tensor:
    """Per region of interest, the straight line under its charge: ``(batch, wires, ticks)``.

    Each run of ``mask`` ticks on a wire gets the line through (centroid, mean) of the quiet
    samples among the ``edge`` ticks before it and among the ``edge`` ticks after it; a region
    at the start or end of the readout (or without quiet neighbours on one side) gets the other
    side's mean as a constant, one with neither gets zero. Zero outside the regions.

    Sparse and batched: the regions are listed by their first and last ticks (``tf.where``, both
    in row-major order), their edges gathered, and each masked tick finds its region by a running
    count of region starts over the masked ticks only (a cumulative sum over all ticks costs as
    much as the rest of the chain on a CPU).
    """
    n = int(q.shape[-1])
    before = tf.pad(mask[..., :-1], [[0, 0], [0, 0], [1, 0]])
    after = tf.pad(mask[..., 1:], [[0, 0], [0, 0], [0, 1]])
    inside = tf.where(mask)  # (masked ticks, 3), row-major
    starts = tf.gather_nd(mask & ~before, inside)
    firsts, lasts = tf.boolean_mask(inside, starts), tf.where(mask & ~after)  # (regions, 3) each, the same order

    def side(rows, ticks):  # mean and centroid of the quiet samples at ``ticks`` (regions, edge)
        valid = (ticks >= 0) & (ticks < n)
        at = tf.concat([tf.repeat(rows[:, None, :2], edge, axis=1), tf.clip_by_value(ticks, 0, n - 1)[..., None]], -1)
        w = tf.cast(valid & ~tf.gather_nd(mask, at), q.dtype)
        count = tf.reduce_sum(w, -1)
        mean = tf.reduce_sum(w * tf.gather_nd(q, at), -1) / tf.maximum(count, 1.0)
        centre = tf.reduce_sum(w * tf.cast(ticks, q.dtype), -1) / tf.maximum(count, 1.0)
        return count, mean, centre

    offsets = tf.range(1, edge + 1, dtype=tf.int64)
    nl, ql, tl = side(firsts, firsts[:, 2:] - offsets[None, :])
    nr, qr, tr = side(lasts, lasts[:, 2:] + offsets[None, :])
    slope = tf.where((nl > 0) & (nr > 0), (qr - ql) / tf.maximum(tr - tl, 1.0), 0.0)
    level = tf.where(nl > 0, ql - slope * tl, tf.where(nr > 0, qr, 0.0))  # the line at tick 0
    region = tf.cumsum(tf.cast(starts, tf.int32)) - 1
    line = tf.gather(level, region) + tf.gather(slope, region) * tf.cast(inside[:, 2], q.dtype)
    return tf.scatter_nd(inside, line, tf.shape(q, out_type=tf.int64))


def find_hits(q: tf.Tensor, *, threshold: float) -> dict[str, tf.Tensor]:
    """Gaussian hits in deconvolved charge ``(batch, wires, ticks)``, as dense maps.

    A hit is a local maximum in time above ``threshold`` (electrons per tick). The Gaussian through
    the peak sample and its two neighbours fixes its time, width and amplitude (the logarithms
    of three samples of a Gaussian lie on a parabola; Caruana's method); its charge is the
    Gaussian's integral.

    Returns:
        ``charge``, ``time`` (ticks, sub-tick), ``width`` (σ, ticks): ``(batch, wires, ticks)``
        float32, non-zero only at each hit's peak tick.
    """
    left = tf.pad(q[..., :-1], [[0, 0], [0, 0], [1, 0]])
    right = tf.pad(q[..., 1:], [[0, 0], [0, 0], [0, 1]])
    peak = (q > threshold) & (q > left) & (q >= right)
    eps = 1e-3 * threshold
    la, lb, lc = (tf.math.log(tf.maximum(v, eps)) for v in (left, q, right))
    curvature = la - 2 * lb + lc
    good = peak & (curvature < -1e-6)
    safe = tf.where(good, curvature, -tf.ones_like(curvature))
    shift = tf.clip_by_value((la - lc) / (2 * safe), -1.0, 1.0)
    sigma = tf.sqrt(-1.0 / safe)
    amplitude = tf.exp(lb - (la - lc) ** 2 / (8 * safe))
    ticks = tf.cast(tf.range(tf.shape(q)[-1]), tf.float32)
    zero = tf.zeros_like(q)
    charge = tf.where(good, amplitude * sigma * np.float32(np.sqrt(2 * np.pi)), zero)
    return {"charge": charge, "time": tf.where(good, ticks + shift, zero), "width": tf.where(good, sigma, zero)}


def sparse_entries(values: tf.Tensor, k: int, extra: dict[str, tf.Tensor] | None = None) -> dict[str, tf.Tensor]:
    """Zero suppression to a fixed-size list: the non-zero entries of ``values`` ``(batch, planes,
    wires, ticks)`` per event in (plane, wire, tick) order, the first ``k`` kept, padded with zeros.

    Returns:
        ``index`` ``(batch, k, 3)`` int32 (plane, wire, tick), ``value`` ``(batch, k)``, a ``valid``
        mask, ``count`` ``(batch,)`` (all non-zero entries, so a list that overflowed shows), and
        every map of ``extra`` gathered at the same entries.
    """
    where = tf.where(tf.not_equal(values, 0))  # row-major: sorted by event
    event = where[:, 0]
    count = tf.math.bincount(tf.cast(event, tf.int32), minlength=tf.shape(values)[0], maxlength=tf.shape(values)[0])
    first = tf.cumsum(count, exclusive=True)
    rank = tf.range(tf.shape(where)[0], dtype=tf.int32) - tf.gather(first, tf.cast(event, tf.int32))
    keep = rank < k
    slot = tf.stack([tf.cast(event, tf.int32), rank], axis=1)[keep]
    at = where[keep]
    shape = [tf.shape(values)[0], k]

    def scatter(v, tail=()):
        return tf.scatter_nd(slot, v, shape + list(tail))

    out = {"index": scatter(tf.cast(at[:, 1:], tf.int32), (3,)), "value": scatter(tf.gather_nd(values, at)),
           "count": count}
    out["valid"] = tf.range(k)[None, :] < tf.minimum(count, k)[:, None]
    for name, m in (extra or {}).items():
        out[name] = scatter(tf.gather_nd(m, at))
    return out


def downsample(q: tf.Tensor, *, ticks: int = 8, scale: float = 1e-4) -> tf.Tensor:
    """Images for ML: ``(batch, planes, wires, ticks)`` summed over groups of ``ticks`` ticks, scaled
    by ``scale`` (1e-4: units of 10⁴ electrons), planes last: ``(batch, wires, ticks / n, planes)``."""
    x = tf.transpose(q, [0, 2, 3, 1])
    return tf.nn.avg_pool2d(x, ksize=[1, ticks], strides=[1, ticks], padding="VALID") * (ticks * scale)


def semantic_labels(semantic: tf.Tensor, image: tf.Tensor, *, ticks: int = 8, classes: int = 6) -> tf.Tensor:
    """Per-pixel training labels at image resolution.

    Args:
        semantic: ``(batch, planes, wires, ticks)`` true pixel classes (0: no charge).
        image: ``(batch, wires, ticks / n, planes)`` reconstructed images (:func:`downsample`).
        ticks: Ticks per image column.

    Returns:
        ``(batch, wires, ticks / n, planes)`` int32: the most frequent charged class among the
        column's ticks (0 where the truth has none, i.e. noise kept by the reconstruction), and
        −1 where the image is empty (no reconstructed charge: nothing to label).
    """
    counts = tf.one_hot(tf.cast(semantic, tf.int32), classes)  # (b, p, w, t, c)
    shape = tf.shape(counts)
    counts = tf.reduce_sum(tf.reshape(counts, [shape[0], shape[1], shape[2], shape[3] // ticks, ticks, classes]), 4)
    charged = tf.reduce_sum(counts[..., 1:], -1, keepdims=True)
    counts = tf.concat([tf.cast(charged == 0, counts.dtype), counts[..., 1:]], -1)  # any charged class beats "none"
    label = tf.transpose(tf.argmax(counts, axis=-1, output_type=tf.int32), [0, 2, 3, 1])
    return tf.where(tf.not_equal(image, 0), label, -tf.ones_like(label))


class SemanticImage:
    """Pipeline transform: ``semantic`` (true pixel classes) + ``image`` → ``semantic_image``, the
    per-pixel labels of :func:`semantic_labels` (``semantic`` is dropped).

    Args:
        ticks: Ticks per image column (the reconstruction's ``image_ticks``). Default 8.
    """

    def __init__(self, *, ticks: int = 8):
        self.ticks = int(ticks)

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = dict(features)
        if "semantic" not in out or "image" not in out:
            raise KeyError(f"SemanticImage needs 'semantic' (read from the files) and 'image' (from lartpc_reco). "
                           f"Received: {sorted(features)}")
        out["semantic_image"] = semantic_labels(out.pop("semantic"), out["image"], ticks=self.ticks)
        return out

    def get_config(self) -> dict:
        return {"ticks": self.ticks}
