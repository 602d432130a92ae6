"""The LArTPC reconstruction chain as a :class:`~hepflow.reco.RecoGraph`.

Raw ADC ``(3 planes, wires, ticks)`` → per plane (three independent branches): baseline,
coherent-noise removal, 2D deconvolution of the detector response (the one
:func:`hepflow.physics.lartpc.detector_response` simulates), regions of interest, Gaussian hit
finding → stacked products: ``signal`` (deconvolved charge in electrons), hit maps, a sparse hit
list, zero-suppressed pixels and downsampled images for ML.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from hepflow.ops import lartpc as ops
from hepflow.physics.lartpc import PLANES, RESPONSE_LEAD, LArTPCSettings, detector_response
from hepflow.reco.graph import RecoGraph, Step

__all__ = ["LArTPCReco", "lartpc_reco", "lartpc_reco_graph", "plane_kind"]

#: Deconvolution filters per plane kind: Gaussian time (ticks) and wire smearing, regularization.
FILTERS = {"induction": {"time_sigma": 1.5, "wire_sigma": 0.4, "regularization": 5e-3},
           "collection": {"time_sigma": 1.0, "wire_sigma": 0.4, "regularization": 1e-4}}
#: Baseline under the regions of interest per plane kind (see ops.regions_of_interest): on the
#: bipolar induction planes the regularization removes the lowest frequencies, which a line per
#: region restores; on the collection plane a line through a few noisy edge samples costs more
#: resolution than the wire's mean (measured: 14 % against 5 % per wire).
ROI_BASELINE = {"induction": "linear", "collection": "wire"}


def plane_kind(plane: int) -> str:
    """``"induction"`` for planes 0 and 1 (U, V), ``"collection"`` for plane 2 (Y)."""
    return "collection" if plane == 2 else "induction"


class LArTPCReco:
    """The chain's steps as callables, with their settings (a ``get_config`` for cache fingerprints).

    Args:
        settings: The detector the waveforms come from.
        roi_threshold: Regions of interest start at this many noise RMS. Default 4.
        hit_threshold: Hits need a peak above this many noise RMS of the deconvolved charge. Default 5.
        max_hits: Length of the sparse hit list per event. Default 8192.
        max_pixels: Length of the zero-suppressed pixel list per event. Default 32768.
        image_ticks: Ticks summed per image column. Default 8.
    """

    def __init__(self, settings: LArTPCSettings = LArTPCSettings(), *, roi_threshold: float = 4.0,
                 hit_threshold: float = 5.0, max_hits: int = 8192, max_pixels: int = 32768, image_ticks: int = 8):
        self.settings = settings
        self.roi_threshold, self.hit_threshold = float(roi_threshold), float(hit_threshold)
        self.max_hits, self.max_pixels, self.image_ticks = int(max_hits), int(max_pixels), int(image_ticks)
        response = detector_response(settings)
        self.kernels = [ops.deconvolution_kernel(response[p], settings.n_wires, settings.n_ticks, lead=RESPONSE_LEAD,
                                                 **FILTERS[plane_kind(p)])
                        for p in range(3)]

    def get_config(self) -> dict:
        return {"settings": dataclasses.asdict(self.settings), "roi_threshold": self.roi_threshold,
                "hit_threshold": self.hit_threshold, "max_hits": self.max_hits, "max_pixels": self.max_pixels,
                "image_ticks": self.image_ticks, "filters": FILTERS, "roi_baseline": ROI_BASELINE}

    # -- per plane ----------------------------------------------------------------------------------

    def baseline(self, plane: int):
        def step(adc):
            return ops.subtract_baseline(adc[:, plane])
        return step

    def noise_filter(self, x):
        return ops.remove_coherent_noise(x, self.settings.coherent_group)

    def deconvolve(self, plane: int):
        kernel = tf.constant(self.kernels[plane])

        def step(x):
            return ops.deconvolve(x, kernel)
        return step

    def roi(self, baseline: str):
        def step(q):
            signal, _, rms = ops.regions_of_interest(q, threshold=self.roi_threshold, baseline=baseline)
            return signal, rms
        return step

    def hits(self, q, noise):
        found = ops.find_hits(q, threshold=self.hit_threshold * tf.maximum(noise, 1.0))
        return found["charge"], found["time"], found["width"]

    # -- stacked ------------------------------------------------------------------------------------

    @staticmethod
    def stack(u, v, y):
        return tf.stack([u, v, y], axis=1)

    def hit_list(self, charge, time, width):
        found = ops.sparse_entries(charge, self.max_hits, extra={"time": time, "width": width})
        index = tf.cast(found["index"], tf.float32)
        hits = tf.stack([index[..., 0], index[..., 1], found["time"], found["width"], found["value"]], axis=-1)
        return hits, found["count"]

    def zero_suppress(self, signal):
        found = ops.sparse_entries(signal, self.max_pixels)
        return tf.concat([tf.cast(found["index"], tf.float32), found["value"][..., None]], axis=-1), found["count"]

    def image(self, signal):
        return ops.downsample(signal, ticks=self.image_ticks)


def lartpc_reco_graph(settings: LArTPCSettings = LArTPCSettings(), *, outputs=None, keep_inputs: bool = False,
                      jit_compile: bool = False, **options) -> RecoGraph:
    """The LArTPC chain as a RecoGraph on the input ``adc`` ``(3, wires, ticks)`` uint16.

    Products (per event): ``raw_<P>``, ``filtered_<P>``, ``deconvolved_<P>``, ``signal_<P>``,
    ``noise_<P>`` (each wire's noise RMS in the deconvolved charge, (W, 1)) and
    ``hit_charge_<P>``/``hit_time_<P>``/``hit_width_<P>`` for each plane P of U, V, Y;
    ``signal`` (3, W, T) deconvolved charge in regions of interest (electrons); ``hit_charge``,
    ``hit_time``, ``hit_width`` (3, W, T) hit maps; ``hits`` (max_hits, 5): plane, wire, time,
    width, charge, in (plane, wire, tick) order, zero rows padding, and ``n_hits`` (all hits
    found: more than ``max_hits`` means the list was cut); ``pixels`` (max_pixels, 4): plane,
    wire, tick, charge, and ``n_pixels``; ``image`` (W, T / image_ticks, 3) in 10⁴ electrons. Default outputs: ``hits``,
    ``pixels``, ``image``.

    Args:
        settings: The detector.
        outputs, keep_inputs, jit_compile: As for :class:`RecoGraph`.
        **options: :class:`LArTPCReco` options (thresholds, list lengths, image ticks).
    """
    reco = LArTPCReco(settings, **options)
    w, t = settings.n_wires, settings.n_ticks
    plane_map = ((w, t), "float32")
    steps = []
    for p, name in enumerate(PLANES):
        baseline = ROI_BASELINE[plane_kind(p)]
        steps += [
            Step(f"baseline_{name}", reco.baseline(p), ["adc"], [f"raw_{name}"]),
            Step(f"noise_filter_{name}", reco.noise_filter, [f"raw_{name}"], [f"filtered_{name}"]),
            Step(f"deconvolve_{name}", reco.deconvolve(p), [f"filtered_{name}"], [f"deconvolved_{name}"],
                 specs={f"deconvolved_{name}": plane_map}),
            Step(f"roi_{name}", reco.roi(baseline), [f"deconvolved_{name}"], [f"signal_{name}", f"noise_{name}"],
                 xla=baseline != "linear"),  # the line per region lists its regions
            Step(f"hits_{name}", reco.hits, [f"signal_{name}", f"noise_{name}"],
                 [f"hit_charge_{name}", f"hit_time_{name}", f"hit_width_{name}"]),
        ]
    steps += [
        Step("stack_signal", reco.stack, [f"signal_{n}" for n in PLANES], ["signal"]),
        Step("stack_hit_charge", reco.stack, [f"hit_charge_{n}" for n in PLANES], ["hit_charge"]),
        Step("stack_hit_time", reco.stack, [f"hit_time_{n}" for n in PLANES], ["hit_time"]),
        Step("stack_hit_width", reco.stack, [f"hit_width_{n}" for n in PLANES], ["hit_width"]),
        Step("hit_list", reco.hit_list, ["hit_charge", "hit_time", "hit_width"], ["hits", "n_hits"],
             specs={"hits": ((reco.max_hits, 5), "float32"), "n_hits": ((), "int32")}, xla=False),
        Step("zero_suppress", reco.zero_suppress, ["signal"], ["pixels", "n_pixels"],
             specs={"pixels": ((reco.max_pixels, 4), "float32"), "n_pixels": ((), "int32")}, xla=False),
        Step("image", reco.image, ["signal"], ["image"]),
    ]
    return RecoGraph(steps, inputs={"adc": ((3, w, t), "uint16")},
                     outputs=outputs if outputs is not None else ("hits", "pixels", "image"),
                     keep_inputs=keep_inputs, jit_compile=jit_compile, name="lartpc")


def lartpc_reco(*, settings: dict | None = None, outputs: list[str] | None = None, roi_threshold: float = 4.0,
                hit_threshold: float = 5.0, max_hits: int = 8192, max_pixels: int = 32768, image_ticks: int = 8,
                keep_inputs: bool = False, jit_compile: bool = False) -> RecoGraph:
    """The chain as a config names it (``transform: [{lartpc_reco: {outputs: [image]}}]``).

    Args:
        settings: :class:`~hepflow.physics.lartpc.LArTPCSettings` fields that differ from the
            defaults (they must match the files' ``manifest.json``).
        outputs: Products the transform adds. Default ``hits``, ``pixels``, ``image``.
        roi_threshold, hit_threshold, max_hits, max_pixels, image_ticks: See :class:`LArTPCReco`.
        keep_inputs, jit_compile: See :class:`~hepflow.reco.RecoGraph`.
    """
    return lartpc_reco_graph(LArTPCSettings(**dict(settings or {})), outputs=outputs, keep_inputs=keep_inputs,
                             jit_compile=jit_compile, roi_threshold=roi_threshold, hit_threshold=hit_threshold,
                             max_hits=max_hits, max_pixels=max_pixels, image_ticks=image_ticks)
