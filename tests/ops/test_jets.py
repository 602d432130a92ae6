"""hepflow.ops.jets against straightforward numpy references, on random and on generated jets."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from hepflow.ops.jets import (ConstituentFeatures, JetImages, constituent_features, jet_images,
                              jet_kinematics, nsubjettiness_ratios)


def random_jets(n=16, k=30, pad=10, seed=0):
    """Jets near φ ≈ ±π (to exercise the wrap-around), zero-padded."""
    rng = np.random.default_rng(seed)
    pt = rng.exponential(20, (n, k)) + 0.5
    eta = rng.normal(0.3, 0.3, (n, k))
    phi = np.mod(np.pi + rng.normal(0, 0.3, (n, k)) + np.pi, 2 * np.pi) - np.pi
    c = np.zeros((n, k + pad, 4), np.float32)
    c[:, :k, 1], c[:, :k, 2], c[:, :k, 3] = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    c[:, :k, 0] = np.sqrt((c[:, :k, 1:].astype(np.float64) ** 2).sum(-1))
    return c


def np_kinematics(c):
    c = c.astype(np.float64)
    e, px, py, pz = (c[..., i] for i in range(4))
    E, PX, PY, PZ = e.sum(1), px.sum(1), py.sum(1), pz.sum(1)
    jpt = np.hypot(PX, PY)
    jeta, jphi = np.arcsinh(PZ / jpt), np.arctan2(PY, PX)
    pt = np.hypot(px, py)
    mask = e > 0
    eta = np.where(mask, np.arcsinh(pz / np.where(mask, pt, 1)), 0)
    phi = np.arctan2(py, px)
    deta = np.where(mask, eta - jeta[:, None], 0)
    dphi = np.where(mask, (phi - jphi[:, None] + np.pi) % (2 * np.pi) - np.pi, 0)
    return dict(jpt=jpt, jeta=jeta, jphi=jphi, jmass=np.sqrt(np.maximum(E**2 - PX**2 - PY**2 - PZ**2, 0)),
                pt=pt, deta=deta, dphi=dphi, mask=mask, e=e, E=E)


@pytest.fixture(scope="module")
def generated():
    pytest.importorskip("pythia8mc")
    from hepflow.physics.pythia_jets import JetSettings, generate_chunk

    return generate_chunk("top", 6, seed=3, settings=JetSettings(mpi=False))[0]


def check_kinematics(c):
    ref = np_kinematics(c)
    k = jet_kinematics(tf.constant(c))
    np.testing.assert_allclose(k["pt"], ref["jpt"], rtol=1e-4)
    np.testing.assert_allclose(k["eta"], ref["jeta"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(k["phi"], ref["jphi"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(k["mass"], ref["jmass"], rtol=2e-3, atol=1e-2)
    f = constituent_features(tf.constant(c))
    np.testing.assert_array_equal(f["mask"], ref["mask"])
    np.testing.assert_allclose(f["delta_eta"], ref["deta"], atol=2e-4)
    np.testing.assert_allclose(f["delta_phi"], ref["dphi"], atol=2e-4)
    assert np.all(np.abs(f["delta_phi"].numpy()) <= np.pi)
    np.testing.assert_allclose(f["delta_r"], np.hypot(ref["deta"], ref["dphi"]), atol=3e-4)
    m = ref["mask"]
    np.testing.assert_allclose(f["log_pt"].numpy()[m], np.log(ref["pt"][m]), atol=1e-4)
    np.testing.assert_allclose(f["log_e_rel"].numpy()[m], np.log((ref["e"] / ref["E"][:, None])[m]), atol=1e-4)
    assert np.all(f["log_pt"].numpy()[~m] == 0)


def test_kinematics_random_jets_across_phi_wrap():
    check_kinematics(random_jets())


def test_kinematics_generated_jets(generated):
    check_kinematics(generated["constituents"])
    k = jet_kinematics(tf.constant(generated["constituents"]))
    small = generated["n_constituents"] <= 200
    np.testing.assert_allclose(k["pt"].numpy()[small], generated["pt"][small], rtol=1e-3)
    np.testing.assert_allclose(k["mass"].numpy()[small], generated["mass"][small], rtol=1e-2, atol=0.5)


def np_image(x, y, w, npix, hw):
    img, _, _ = np.histogram2d(y, x, bins=npix, range=[[-hw, hw], [-hw, hw]], weights=w)
    return img  # rows: Δφ (y), columns: Δη (x)


def np_preprocess(deta, dphi, pt):
    w = pt / pt.sum()
    x, y = deta - (w * deta).sum(), dphi - (w * dphi).sum()
    sxx, syy, sxy = (w * x * x).sum(), (w * y * y).sum(), (w * x * y).sum()
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    a = np.pi / 2 - theta
    x, y = np.cos(a) * x - np.sin(a) * y, np.sin(a) * x + np.cos(a) * y
    x = -x if (w * np.sign(x)).sum() < 0 else x
    y = -y if (w * np.sign(y)).sum() < 0 else y
    return x, y


@pytest.mark.parametrize("source", ["random", "generated"])
def test_images_match_numpy(source, request):
    c = random_jets() if source == "random" else request.getfixturevalue("generated")["constituents"]
    ref = np_kinematics(c)
    raw = jet_images(tf.constant(c), npix=25, half_width=1.2, center=False, rotate=False, flip=False,
                     normalize=False).numpy()
    full = jet_images(tf.constant(c), npix=25, half_width=1.2).numpy()
    assert raw.shape == (len(c), 25, 25, 1)
    for i in range(len(c)):
        m = ref["mask"][i]
        expected = np_image(ref["deta"][i][m], ref["dphi"][i][m], ref["pt"][i][m], 25, 1.2)
        np.testing.assert_allclose(raw[i, :, :, 0], expected, rtol=1e-3, atol=1e-3)
        x, y = np_preprocess(ref["deta"][i][m], ref["dphi"][i][m], ref["pt"][i][m])
        expected = np_image(x, y, ref["pt"][i][m], 25, 1.2)
        np.testing.assert_allclose(full[i, :, :, 0], expected / expected.sum(), atol=2e-3)
        assert full[i].sum() == pytest.approx(1.0, rel=1e-5)


def test_preprocessing_properties():
    c = random_jets(n=8, seed=4)
    img = jet_images(tf.constant(c), npix=40, half_width=1.5).numpy()[..., 0]  # even: centre on a pixel edge
    grid = (np.arange(40) + 0.5) / 40 * 3.0 - 1.5
    for im in img:
        # centred: the intensity-weighted centroid sits within about a pixel of the centre
        assert abs((im.sum(0) * grid).sum()) < 0.08 and abs((im.sum(1) * grid).sum()) < 0.08
        # rotated: spread along Δφ (rows) ≥ spread along Δη (columns)
        assert (im.sum(1) * grid**2).sum() >= (im.sum(0) * grid**2).sum() - 1e-3
        # flipped: the heavier halves are at +Δη (right columns) and +Δφ (lower rows)
        assert im[:, 20:].sum() >= im[:, :20].sum() - 1e-6 and im[20:, :].sum() >= im[:20, :].sum() - 1e-6


def test_multicolour_images(generated):
    img = jet_images(tf.constant(generated["constituents"]), charge=tf.constant(generated["charge"]),
                     ptype=tf.constant(generated["type"]), normalize=False).numpy()
    single = jet_images(tf.constant(generated["constituents"]), normalize=False).numpy()
    assert img.shape[-1] == 4
    np.testing.assert_allclose(img[..., 0] + img[..., 1], single[..., 0], rtol=1e-4, atol=1e-3)
    n_tracks = ((generated["charge"] != 0) & (generated["constituents"][..., 0] > 0)).sum(1)
    assert np.all(img[..., 2].sum((1, 2)) <= n_tracks) and np.all(img[..., 2].sum((1, 2)) > 0.8 * n_tracks)


def test_particle_id_colours(generated):
    c, charge, ptype = (tf.constant(generated[k]) for k in ("constituents", "charge", "type"))
    pid = jet_images(c, charge=charge, ptype=ptype, normalize=False, colours="particle_id").numpy()
    tracks = jet_images(c, charge=charge, ptype=ptype, normalize=False).numpy()
    assert pid.shape[-1] == 7
    np.testing.assert_allclose(pid[..., :5].sum(-1), tracks[..., 0] + tracks[..., 1], rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(pid[..., 5], tracks[..., 2])  # track multiplicity
    real = generated["constituents"][..., 0] > 0
    for code, channel in ((1, 0), (4, 3), (5, 4)):  # photons, electrons, muons: their pT, per jet
        pt = np.hypot(generated["constituents"][..., 1], generated["constituents"][..., 2])
        expected = (pt * (real & (generated["type"] == code))).sum(1)
        assert np.all(pid[..., channel].sum((1, 2)) <= expected + 1e-3)  # ≤: some fall outside the window
        np.testing.assert_allclose(pid[..., channel].sum((1, 2)).sum(), expected.sum(), rtol=0.05)
    n_real = real.sum(1)
    assert np.all(pid[..., 5:].sum((1, 2, 3)) <= n_real) and np.all(pid[..., 5:].sum((1, 2, 3)) > 0.8 * n_real)
    with pytest.raises(ValueError, match="colours='rainbow'"):
        jet_images(c, charge=charge, ptype=ptype, colours="rainbow")
    with pytest.raises(ValueError, match="Received: colours='rainbow'"):
        JetImages(colours="rainbow")


def test_normalization_modes(generated):
    c, charge, ptype = (tf.constant(generated[k]) for k in ("constituents", "charge", "type"))
    raw = jet_images(c, charge=charge, ptype=ptype, normalize=False).numpy()
    jet_pt = np.hypot(generated["constituents"][..., 1], generated["constituents"][..., 2]).sum(1)
    per_jet = jet_images(c, charge=charge, ptype=ptype, normalize="jet").numpy()
    np.testing.assert_allclose(per_jet[..., :2], raw[..., :2] / jet_pt[:, None, None, None], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(per_jet[..., 2:], raw[..., 2:])  # multiplicities stay counts
    in_units = jet_images(c, charge=charge, ptype=ptype, normalize="none", pt_unit=100.0).numpy()
    np.testing.assert_allclose(in_units[..., :2], raw[..., :2] / 100, rtol=1e-5)
    np.testing.assert_array_equal(in_units[..., 2:], raw[..., 2:])
    per_channel = jet_images(c, charge=charge, ptype=ptype, normalize="channel").numpy()
    np.testing.assert_allclose(per_channel, jet_images(c, charge=charge, ptype=ptype).numpy())
    np.testing.assert_allclose(per_channel[..., 2].sum((1, 2)), 1.0, rtol=1e-5)
    for bad in ({"normalize": "total"}, {"normalize": False, "pt_unit": 0.0}):
        with pytest.raises(ValueError, match="Received"):
            jet_images(c, **bad)
    with pytest.raises(ValueError, match="normalize='pixel'"):
        JetImages(normalize="pixel")


def test_nsubjettiness_ratios():
    r = nsubjettiness_ratios(tf.constant([[0.4, 0.2, 0.1], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(r["tau21"], [0.5, 0.0])
    np.testing.assert_allclose(r["tau32"], [0.5, 0.0])


def test_transforms_in_the_pipeline(tmp_path):
    import h5py

    from hepflow.data import SampleSpec, make_dataset

    c = random_jets(n=64, seed=9)
    with h5py.File(tmp_path / "j.h5", "w") as f:
        f["constituents"] = c
        f["mass"] = np.ones(64, np.float32)
    spec = SampleSpec(name="j", files=str(tmp_path / "j.h5"), keys=["constituents", "mass"])
    img = JetImages(npix=21)
    feats, _ = next(iter(make_dataset([spec], batch_size=32, transform=img, shuffle=0, cache="memory")))
    assert set(feats) == {"image", "mass"} and feats["image"].shape == (32, 21, 21, 1)
    np.testing.assert_allclose(feats["image"], jet_images(tf.constant(c[:32]), npix=21), atol=1e-6)
    assert img.get_config()["npix"] == 21
    feats, _ = next(iter(make_dataset([spec], batch_size=32, transform=ConstituentFeatures(), shuffle=0)))
    assert feats["particles"].shape == (32, 40, 7) and feats["mask"].shape == (32, 40, 1)


def test_particle_id_features(generated):
    c, q, t = generated["constituents"], generated["charge"], generated["type"]
    plain = ConstituentFeatures(max_particles=50)({"constituents": tf.constant(c)})
    f = ConstituentFeatures(max_particles=50, particle_id=True)(
        {"constituents": tf.constant(c), "charge": tf.constant(q), "type": tf.constant(t)})
    assert "charge" not in f and "type" not in f and f["particles"].shape == (6, 50, 13)
    np.testing.assert_allclose(f["particles"][..., :7], plain["particles"])
    real = (c[:, :50, 0] > 0).astype(np.float32)
    np.testing.assert_array_equal(f["particles"][..., 7], q[:, :50] * real)
    onehot = f["particles"][..., 8:].numpy()
    for code in range(1, 6):
        np.testing.assert_array_equal(onehot[..., code - 1], (t[:, :50] == code) * real)
    np.testing.assert_array_equal(onehot.sum(-1), real)  # every real constituent has exactly one type
    assert set(np.unique(t[:, :50][real > 0])) >= {1, 2, 3}  # photons, neutral and charged hadrons occur
    with pytest.raises(KeyError, match="particle_id=True.*Received"):
        ConstituentFeatures(particle_id=True)({"constituents": tf.constant(c)})
    assert ConstituentFeatures(particle_id=True).get_config() == {"max_particles": None, "particle_id": True}
