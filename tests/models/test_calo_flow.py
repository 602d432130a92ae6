"""The CaloFlow-style shower generator: log-likelihood by hand, training, conditioning, quanta, reload, export."""
from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from hepflow.models import calo_flow
from hepflow.serving import export_generator


def _small(**kwargs):
    return calo_flow(particles=3, energy_blocks=2, energy_hidden=(16, 16), cell_blocks=2, cell_hidden=(32,), bins=4,
                     **kwargs)


def test_log_likelihood_of_an_untrained_flow_is_a_standard_normal_after_actnorm():
    """Zero-initialized blocks are the identity, so log p = log N(actnorm(x)) + Σ log_scale, by hand."""
    model = _small()
    rng = np.random.default_rng(0)
    for norm in (model.energy_norm, model.cell_norm):
        norm.shift.assign(rng.normal(size=norm.dims).astype(np.float32))
        norm.log_scale.assign((0.3 * rng.normal(size=norm.dims)).astype(np.float32))
    energies = rng.normal(size=(5, 3)).astype(np.float32)
    u = rng.normal(size=(5, 504)).astype(np.float32)
    conditions = np.concatenate([rng.normal(size=(5, 1)), np.eye(3)[[0, 1, 2, 0, 1]]], 1).astype(np.float32)
    got_energies, got_cells = model._log_probs(energies, u, conditions)
    for got, x, norm in ((got_energies, energies, model.energy_norm), (got_cells, u, model.cell_norm)):
        scale = np.asarray(norm.log_scale)
        z = (x - np.asarray(norm.shift)) * np.exp(scale)
        expected = (-0.5 * (z ** 2 + np.log(2 * np.pi))).sum(1) + scale.sum()
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-3)


def test_dequantized_showers_come_back_from_the_flows_variables(showers):
    """Showers → the flows' variables → showers recovers every cell (the noise is floored away)."""
    feats, _ = showers
    model = _small()
    energy = feats["energy"][:50].reshape(-1, 1)
    uniforms = np.random.default_rng(1).uniform(size=(50, 504)).astype(np.float32)
    energies, u = model._variables({k: v[:50] for k, v in feats.items()}, energy, uniforms)
    out = model._to_showers(energies, u, energy)
    for k in ("layer_0", "layer_1", "layer_2"):
        np.testing.assert_allclose(np.asarray(out[k]), feats[k][:50], atol=2e-3)


def test_trains_conditions_reads_out_quanta_and_reloads(showers, tmp_path):
    keras.utils.set_random_seed(3)
    feats, labels = showers
    model = _small()
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    ds = tf.data.Dataset.from_tensor_slices((feats, labels)).shuffle(1000, seed=1).batch(60)
    history = model.fit(ds, epochs=5, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 20  # nats per shower
    assert float(model.cell_norm.initialized) == 1.0  # the first batch set the ActNorm layers
    out = model.sample(40.0, particle=0, n=16, seed=2)
    assert [tuple(out[k].shape) for k in ("layer_0", "layer_1", "layer_2")] == [(16, 3, 96), (16, 12, 12), (16, 12, 6)]
    cells = np.concatenate([np.asarray(v).reshape(16, -1) for v in out.values()], 1)
    assert np.all(cells >= 0) and np.all(np.isfinite(cells))
    np.testing.assert_allclose(cells / 0.01, np.round(cells / 0.01), atol=1e-3)  # multiples of the 10 MeV quantum
    assert 0.2 * 40 < cells.sum(1).mean() < 1.5 * 40
    pion = model.sample(40.0, particle=2, n=16, seed=2)
    assert not np.allclose(np.asarray(pion["layer_1"]), np.asarray(out["layer_1"]))
    low, high = (float(sum(np.asarray(v).sum() for v in model.sample(e, particle=0, n=64, seed=5).values()))
                 for e in (5.0, 80.0))
    assert high > 5 * low
    # flow I finds simulated layer energies likelier than the same showers with layer 0's energy moved to layer 2
    moved = dict(feats, layer_0=feats["layer_0"] * 0.0, layer_2=feats["layer_2"] + feats["layer_0"].sum(
        axis=(1, 2), keepdims=True) / 72)
    real_lp = np.asarray(model.log_prob(feats, labels, seed=1)[0])
    moved_lp = np.asarray(model.log_prob(moved, labels, seed=1)[0])
    assert np.median(real_lp) > np.median(moved_lp) + 3
    path = str(tmp_path / "flow.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    a, b = model.sample(20.0, particle=1, n=4, seed=7), again.sample(20.0, particle=1, n=4, seed=7)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="pass `particle`"):
        model.sample(20.0, n=2)
    with pytest.raises(ValueError, match="cell_blocks"):
        calo_flow(cell_blocks=0)


def test_savedmodel_in_a_fresh_process_gives_the_same_showers(tmp_path, assert_same_showers_in_a_fresh_process):
    """(energy, seed, particle) → showers as a SavedModel, loaded by a process that imports TensorFlow only."""
    keras.utils.set_random_seed(4)
    model = _small()
    rng = np.random.default_rng(5)
    for v in model.trainable_weights:  # an untrained flow is ActNorm only: give the blocks something to do
        v.assign((0.05 * rng.normal(size=v.shape)).astype(np.float32))
    path = export_generator(model, str(tmp_path / "export"), name="flow")
    assert_same_showers_in_a_fresh_process(model, path, rtol=1e-4, atol=1e-5)


MIRRORED = """
import sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from hepflow.data import SampleSpec, make_dataset
from hepflow.models import calo_flow
from hepflow.training.distribute import make_strategy
from hepflow.training.loop import fit
strategy = make_strategy("mirrored")
with strategy.scope():
    model = calo_flow(energy_blocks=2, energy_hidden=(16, 16), cell_blocks=2, cell_hidden=(32,), bins=4)
    model.compile()
spec = SampleSpec(name="eplus", files=sys.argv[1] + "/eplus_*.h5", keys=["layer_0", "layer_1", "layer_2", "energy"],
                  label=0)
h = fit(model, make_dataset([spec], batch_size=32, epoch=6, seed=1), epochs=2, verbose=0).history
set_once = tf.convert_to_tensor(model.cell_norm.initialized.value).numpy() == 1.0
print("REPLICAS", strategy.num_replicas_in_sync, "FINITE", all(np.isfinite(v[-1]) for v in h.values()),
      "FALLS", h["loss"][-1] < h["loss"][0], "SET", set_once)
"""


@pytest.mark.slow
def test_flow_trains_mirrored_on_two_devices(calo_dir):
    """The ActNorm layers initialize without control flow, so the step runs under MirroredStrategy."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(calo_dir)], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REPLICAS 2 FINITE True FALLS True SET True" in proc.stdout
