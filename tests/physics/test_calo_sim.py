"""The parametrized calorimeter simulation: physics that must hold, the CaloGAN format, resuming."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from hepflow.data import DataError, SampleSpec, make_dataset
from hepflow.data.formats import CALOGAN_SHAPES, read_calogan, write_calogan
from hepflow.physics.calo_generate import generate_calo_showers
from hepflow.physics.calo_sim import simulate


def showers(particle, energy, n=300, seed=1):
    return simulate(particle, n, seed=seed, energy_range=(energy, energy * 1.0001))


def layer_energies(d):
    return np.stack([d[f"layer_{i}"].sum((1, 2)) for i in range(3)], 1)


def depth(d):
    """Energy-weighted mean layer index per shower."""
    e = layer_energies(d)
    return (e * np.arange(3)).sum(1) / np.maximum(e.sum(1), 1e-9)


def width_layer1(d):
    """Energy-weighted RMS column spread in layer 1 (cells)."""
    img = d["layer_1"].sum(1)
    s = np.maximum(img.sum(1), 1e-9)
    x = np.arange(img.shape[1])
    mean = (img * x).sum(1) / s
    return np.sqrt(np.maximum((img * x**2).sum(1) / s - mean**2, 0))


def test_layout_and_determinism():
    a, b = showers("eplus", 10, n=20, seed=3), showers("eplus", 10, n=20, seed=3)
    for key, shape in CALOGAN_SHAPES.items():
        assert a[key].shape == (20, *shape) and a[key].dtype == np.float32, key
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["layer_1"], showers("eplus", 10, n=20, seed=4)["layer_1"])
    assert (a["layer_1"] == 0).mean() > 0.3  # sparse, like the published showers


def test_em_response_is_linear_and_resolution_scales_as_one_over_sqrt_e():
    response, resolution = {}, {}
    for energy in (5.0, 20.0, 80.0):
        total = layer_energies(showers("eplus", energy)).sum(1) + showers("eplus", energy)["overflow"].sum(1)
        response[energy], resolution[energy] = total.mean() / energy, total.std() / total.mean()
    assert all(0.95 < r < 1.01 for r in response.values()), response
    assert max(response.values()) - min(response.values()) < 0.01, response
    assert 3.0 < resolution[5.0] / resolution[80.0] < 5.0, resolution  # √(80/5) = 4
    assert 0.08 < resolution[5.0] * np.sqrt(5.0) < 0.13  # stochastic term ≈ 10 %/√E


def test_em_shower_depth_grows_like_log_e():
    d = {e: depth(showers("eplus", e, n=400)).mean() for e in (4.0, 16.0, 64.0)}
    first, second = d[16.0] - d[4.0], d[64.0] - d[16.0]
    assert first > 0.02 and second > 0.02, d
    assert 0.6 < first / second < 1.6, d  # equal steps for equal ratios of energy


def test_pions_are_deeper_wider_and_fluctuate_more_than_electrons():
    e, pi = showers("eplus", 50.0, n=400), showers("piplus", 50.0, n=400)
    interacting = layer_energies(pi).sum(1) > 5.0
    assert 0.5 < interacting.mean() < 0.85  # 1.28 λ deep: many pions punch through as MIPs
    assert depth(pi)[interacting].mean() > depth(e).mean() + 0.1
    assert width_layer1(pi)[interacting].mean() > width_layer1(e).mean()
    tot_e, tot_pi = layer_energies(e).sum(1), layer_energies(pi).sum(1)
    assert tot_pi.std() / tot_pi.mean() > 5 * tot_e.std() / tot_e.mean()
    assert tot_pi.mean() < 0.7 * tot_e.mean()  # e/h > 1, leakage, punch-through


def test_a_few_pions_look_like_electromagnetic_showers():
    """Leading-π0 pions interacting early: full response and nothing in the last layer, like e+."""
    e, pi = showers("eplus", 50.0, n=1000), showers("piplus", 50.0, n=8000)
    resp_e, resp_pi = layer_energies(e).sum(1) / 50.0, layer_energies(pi).sum(1) / 50.0
    f2_e, f2_pi = layer_energies(e)[:, 2] / (resp_e * 50.0), layer_energies(pi)[:, 2] / (resp_pi * 50.0 + 1e-9)
    em_like = (resp_pi > np.quantile(resp_e, 0.01)) & (f2_pi < np.quantile(f2_e, 0.99))
    # ~0.5 %; without the leading-π0 interactions 0.15 %
    assert 0.003 < em_like.mean() < 0.02, em_like.mean()


def test_photons_start_later_than_electrons():
    e, g = showers("eplus", 20.0, n=400), showers("gamma", 20.0, n=400)
    f0_e = layer_energies(e)[:, 0] / layer_energies(e).sum(1)
    f0_g = layer_energies(g)[:, 0] / layer_energies(g).sum(1)
    assert f0_g.mean() < 0.8 * f0_e.mean()
    assert (layer_energies(g)[:, 0] < 0.5).mean() > (layer_energies(e)[:, 0] < 0.5).mean()


def test_calogan_files_written_with_h5py_read_through_a_sample_spec(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "eplus.hdf5"
    with h5py.File(path, "w") as f:  # exactly the published layout
        for key, shape in CALOGAN_SHAPES.items():
            f.create_dataset(key, data=rng.random((50, *shape)).astype("f4"))
    arrays = read_calogan(path)
    spec = SampleSpec(name="eplus", files=str(path), keys=["layer_0", "layer_1", "layer_2", "energy"], label=0)
    x, _ = next(iter(make_dataset([spec], batch_size=50, epoch="all", shuffle=0)))
    for key in ("layer_0", "layer_1", "layer_2", "energy"):
        np.testing.assert_array_equal(x[key].numpy(), arrays[key])
    bad = dict(arrays, layer_2=arrays["layer_2"][:, :, :5])
    with pytest.raises(DataError, match=r"'layer_2' must have shape \(N, 12, 6\)"):
        write_calogan(tmp_path / "bad.hdf5", bad)
    assert not (tmp_path / "bad.hdf5").exists()


def test_generation_resumes_and_refuses_another_run(tmp_path, capsys):
    m = generate_calo_showers(str(tmp_path), particles=["gamma"], n_showers=30, chunk_showers=10, workers=1,
                              progress=False)
    assert m["counts"] == {"gamma": 30} and m["generated_this_run"]["showers"] == 30
    first = read_calogan(tmp_path / "gamma_00001.h5")
    (tmp_path / ".gamma_00002.h5.json").unlink()  # as if killed before the chunk was marked complete
    m = generate_calo_showers(str(tmp_path), particles=["gamma"], n_showers=30, chunk_showers=10, workers=1,
                              progress=False)
    assert m["generated_this_run"]["showers"] == 10 and m["counts"] == {"gamma": 30}
    np.testing.assert_array_equal(read_calogan(tmp_path / "gamma_00001.h5")["layer_1"], first["layer_1"])
    with pytest.raises(ValueError, match="another run"):
        generate_calo_showers(str(tmp_path), particles=["gamma"], n_showers=30, chunk_showers=10, workers=1,
                              seed=2, progress=False)
