"""The LArTPC simulation, its signal-processing ops and the reconstruction chain, against truth."""
from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import tensorflow as tf

from hepflow.ops import lartpc as ops
from hepflow.physics.lartpc import (LArTPCSettings, TOPOLOGIES, detector_response, digitize, drift_to_wires,
                                    generate_lartpc, simulate_event)
from hepflow.physics.lartpc_transport import SEMANTIC_CLASSES, TRACK, Deposits, transport
from hepflow.reco.lartpc import lartpc_reco_graph
from hepflow.reco.quality import charge_per_wire, hit_efficiency, true_hits

QUIET = LArTPCSettings(white_noise_adc=(0.0, 0.0), coherent_noise_adc=0.0, wander_noise_adc=0.0)


def test_clipped_stats_ignore_signals_and_coherent_noise_is_removed():
    rng = np.random.default_rng(0)
    noise = rng.normal(5.0, 2.0, (1, 4, 2000)).astype("f4")
    with_signal = noise.copy()
    with_signal[:, :, 100:160] += 300.0  # 3 % of the samples are signal
    mean, rms = (v.numpy().ravel() for v in ops.clipped_stats(tf.constant(with_signal)))
    np.testing.assert_allclose(mean, noise.mean(-1).ravel(), atol=0.15)
    np.testing.assert_allclose(rms, noise.std(-1).ravel(), rtol=0.05)
    common = rng.normal(0, 5, (1, 1, 200)).astype("f4")
    waves = np.repeat(common, 64, axis=1) + rng.normal(0, 1, (1, 64, 200)).astype("f4")
    waves[0, 10:30, 100:104] += 80.0  # a track crossing 20 of the 32 wires of a group at one time
    out = ops.remove_coherent_noise(tf.constant(waves), 32).numpy()
    quiet = np.ones(200, bool)
    quiet[80:125] = False
    assert out[0, :, quiet].std() < 1.3 < waves[0, :, quiet].std()  # the common noise is gone
    assert out[0, 10:30, 100:104].mean() > 70  # the protected track survives


def test_dilate_is_a_max_filter_over_wires_and_ticks():
    from scipy.ndimage import maximum_filter

    mask = np.random.default_rng(2).uniform(size=(2, 9, 70)) < 0.03
    mask[0, 0, 0] = mask[1, 8, 69] = True  # corners: the growth stops at the edges
    for ticks, wires in ((8, 1), (10, 0), (3, 2), (0, 0)):
        expected = maximum_filter(mask, size=(1, 2 * wires + 1, 2 * ticks + 1), mode="constant")
        np.testing.assert_array_equal(ops.dilate(tf.constant(mask), ticks=ticks, wires=wires).numpy(), expected)


def test_find_hits_recovers_a_gaussian_exactly():
    t = np.arange(64, dtype="f4")
    pulse = 900.0 * np.exp(-0.5 * ((t - 30.3) / 2.2) ** 2)
    hits = ops.find_hits(tf.constant(pulse[None, None]), threshold=100.0)
    k = int(np.argmax(hits["charge"].numpy()[0, 0]))
    assert hits["time"].numpy()[0, 0, k] == pytest.approx(30.3, abs=1e-3)
    assert hits["width"].numpy()[0, 0, k] == pytest.approx(2.2, rel=1e-3)
    assert hits["charge"].numpy()[0, 0, k] == pytest.approx(pulse.sum(), rel=1e-3)
    assert np.count_nonzero(hits["charge"].numpy()) == 1


def _single_track(settings):
    """A 300 MeV muon along z in the middle of the drift, as drifted charge."""
    deposits = Deposits()
    b = settings.bounds
    transport("muon", 300.0, np.array([15.0, 0.0, 1.0]), np.array([0.3, 0.1, 1.0]), b, np.random.default_rng(3),
              deposits)
    return drift_to_wires(deposits.arrays(), settings)


def test_deconvolution_recovers_the_charge_of_a_single_track():
    charge, semantic = _single_track(QUIET)
    assert set(np.unique(semantic)) <= {0, TRACK, 3, 4}
    adc = digitize(charge, QUIET, np.random.default_rng(0))
    graph = lartpc_reco_graph(QUIET, outputs=["signal"])
    signal = graph.run({"adc": adc[None]})["signal"].numpy()[0]
    collection = charge_per_wire(charge[2], signal[2])
    assert collection["wires"] > 50
    assert abs(collection["bias"]) < 0.03 and collection["resolution"] < 0.05
    for plane in (0, 1):  # bipolar induction planes: the line per region of interest restores what the
        induction = charge_per_wire(charge[plane], signal[plane])  # regularization takes (−20 % without it)
        assert induction["wires"] > 50
        assert abs(induction["bias"]) < 0.10 and induction["resolution"] < 0.03


def test_linear_roi_baseline_is_the_line_through_each_regions_quiet_edges():
    rng = np.random.default_rng(0)
    edge, n = 4, 64
    q = rng.normal(size=(3, 5, n)).astype("f4")
    mask = rng.uniform(size=q.shape) < 0.3
    mask = mask | np.roll(mask, 1, -1) | np.roll(mask, 2, -1)
    mask[0, 0, :5] = True  # a region at the start: only its right side
    mask[0, 1, -3:] = True  # and at the end: only its left side
    mask[1, 2, :] = True  # one region over the whole readout: no quiet sample, no baseline
    expected = np.zeros_like(q)
    for b, w in np.ndindex(q.shape[:2]):
        m = mask[b, w]
        steps = np.diff(np.concatenate([[0], m.astype(int), [0]]))
        for start, stop in zip(np.nonzero(steps == 1)[0], np.nonzero(steps == -1)[0]):
            left = [i for i in range(max(start - edge, 0), start) if not m[i]]
            right = [i for i in range(stop, min(stop + edge, n)) if not m[i]]
            if left and right:
                ql, qr, tl, tr = q[b, w, left].mean(), q[b, w, right].mean(), np.mean(left), np.mean(right)
                expected[b, w, start:stop] = ql + (qr - ql) / (tr - tl) * (np.arange(start, stop) - tl)
            elif left or right:
                expected[b, w, start:stop] = q[b, w, left or right].mean()
    got = ops.linear_roi_baseline(tf.constant(q), tf.constant(mask), edge=edge).numpy()
    np.testing.assert_allclose(np.where(mask, got, 0), expected, atol=1e-5)
    assert np.any(expected[0, 0, :5] != 0) and np.all(expected[1, 2] == 0)
    with pytest.raises(ValueError, match="Received: baseline='median'"):
        ops.regions_of_interest(tf.constant(q), baseline="median")


def test_hit_finding_efficiency_and_purity_on_noisy_muons():
    settings, rng = LArTPCSettings(), np.random.default_rng(11)
    response = detector_response(settings)
    events = [simulate_event("muon", settings, rng, response) for _ in range(4)]
    graph = lartpc_reco_graph(settings, outputs=["hit_charge", "hit_time", "hits", "n_hits"])
    out = graph.run({"adc": np.stack([e["adc"] for e in events])})
    totals = {p: np.zeros(4) for p in range(3)}
    for i, event in enumerate(events):
        for p in range(3):
            w, t = np.nonzero(out["hit_charge"].numpy()[i, p] > 0)
            m = hit_efficiency(event["charge"][p], w, out["hit_time"].numpy()[i, p][w, t])
            totals[p] += [m["found"], m["true_hits"], m["pure"], m["reco_hits"]]
    eff = {p: v[0] / v[1] for p, v in totals.items()}
    purity = {p: v[2] / v[3] for p, v in totals.items()}
    assert eff[2] > 0.92 and purity[2] > 0.95
    assert min(eff[0], eff[1]) > 0.9 and min(purity[0], purity[1]) > 0.95
    signal = graph.run({"adc": np.stack([e["adc"] for e in events])}, outputs=["signal"])["signal"].numpy()
    for p in range(3):  # charge per wire within 10 % on every plane, with all the noise
        c = charge_per_wire(np.stack([e["charge"][p] for e in events]), signal[:, p])
        assert c["wires"] > 250 and abs(c["bias"]) < 0.10 and c["resolution"] < 0.15, (p, c)
    hits, maps = out["hits"].numpy(), out["hit_charge"].numpy()
    assert out["n_hits"].numpy().tolist() == [int((m > 0).sum()) for m in maps]
    for i in range(len(events)):  # the sparse list holds every hit, in (plane, wire, tick) order
        listed = hits[i, :out["n_hits"].numpy()[i]]
        order = listed[:, 0] * 1e6 + listed[:, 1] * 1e3 + listed[:, 2]
        assert np.all(np.diff(order) > 0)
        assert np.all(listed[:, 4] > 0) and np.all(hits[i, out["n_hits"].numpy()[i]:] == 0)
        np.testing.assert_allclose(np.sort(listed[:, 4]), np.sort(maps[i][maps[i] > 0]))


def test_true_hits_are_runs_above_threshold():
    q = np.zeros((2, 10))
    q[0, 2:5] = [400, 900, 500]
    q[1, 7:10] = 1000
    th = true_hits(q, threshold=300)
    assert th["wire"].tolist() == [0, 1] and th["start"].tolist() == [2, 7] and th["stop"].tolist() == [5, 10]
    assert th["charge"].tolist() == [1800, 3000]


def test_generate_lartpc_writes_resumable_chunks(tmp_path):
    small = LArTPCSettings(n_wires=32, n_ticks=400, drift_cm=12.0)
    m = generate_lartpc(str(tmp_path), counts={"numu_cc": 2, "nc_pi0": 2}, chunk_events=1, workers=1, seed=3,
                        settings=small, progress=False)
    assert m["counts"] == {"numu_cc": 2, "nc_pi0": 2} and m["generated_this_run"]["events"] == 4
    with h5py.File(tmp_path / "nc_pi0_00001.h5") as f:
        assert f["adc"].shape == (1, 3, 32, 400) and f["adc"].dtype == np.uint16
        assert f["charge"].shape == f["semantic"].shape == (1, 3, 32, 400)
        assert f["label"][0] == TOPOLOGIES["nc_pi0"] and f["semantic"][:].max() < len(SEMANTIC_CLASSES)
        first = f["adc"][:]
    again = generate_lartpc(str(tmp_path), counts={"numu_cc": 2, "nc_pi0": 2}, chunk_events=1, workers=1, seed=3,
                            settings=small, progress=False)
    assert again["generated_this_run"]["events"] == 0  # resumed: nothing regenerated
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["settings"] == json.loads(json.dumps(dataclasses.asdict(small)))
    with h5py.File(tmp_path / "nc_pi0_00001.h5") as f:
        np.testing.assert_array_equal(f["adc"][:], first)


def test_semantic_labels_take_the_charged_majority_and_ignore_empty_pixels():
    semantic = np.zeros((1, 1, 2, 8), np.int8)
    semantic[0, 0, 0, :4] = [0, 1, 1, 2]  # column 0 of wire 0: track wins
    semantic[0, 0, 1, 4:] = [0, 0, 0, 3]  # column 1 of wire 1: one Michel tick beats three empty ones
    image = np.zeros((1, 2, 2, 1), np.float32)
    image[0, 0, 0, 0] = image[0, 1, 1, 0] = image[0, 1, 0, 0] = 1.0  # wire 1, column 0: reconstructed noise
    labels = ops.semantic_labels(tf.constant(semantic), tf.constant(image), ticks=4).numpy()[0, ..., 0]
    assert labels.tolist() == [[1, -1], [0, 3]]


def test_reconstruction_and_networks_export_as_one_saved_model(tmp_path):
    import subprocess
    import sys

    from hepflow.models import lartpc_event_cnn, lartpc_unet
    from hepflow.serving.reco_export import export_lartpc_chain

    small = LArTPCSettings(n_wires=32, n_ticks=400, drift_cm=12.0)
    shape = (32, 400 // 8, 3)
    classifier = lartpc_event_cnn(input_shape=shape, filters=(4,), dense=(8,))
    segmenter = lartpc_unet(input_shape=shape, filters=(4,))
    path = export_lartpc_chain(str(tmp_path / "chain"), settings=small, event_classifier=classifier, segmenter=segmenter,
                               class_names=("numu_cc", "nue_cc", "nc_pi0"))
    adc = simulate_event("nue_cc", small, np.random.default_rng(4))["adc"][None]
    np.save(tmp_path / "adc.npy", adc)
    code = ("import json, numpy as np, tensorflow as tf\n"
            f"m = tf.saved_model.load({path!r})\n"
            f"out = m.signatures['serving_default'](adc=tf.constant(np.load({str(tmp_path / 'adc.npy')!r})))\n"
            "print(json.dumps({k: [list(v.shape), str(v.dtype.name)] for k, v in out.items()}))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got == {"hits": [[1, 8192, 5], "float32"], "n_hits": [[1], "int32"], "event_class": [[1, 3], "float32"],
                   "pixel_class": [[1, 32, 50, 3], "int32"]}
    graph = lartpc_reco_graph(small, outputs=["n_hits"])
    loaded = tf.saved_model.load(path).signatures["serving_default"](adc=tf.constant(adc))
    assert int(loaded["n_hits"][0]) == int(graph.run({"adc": adc})["n_hits"][0]) > 0
