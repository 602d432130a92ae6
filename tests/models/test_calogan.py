"""The CaloGAN-style generator: serialization, training through hepflow's loop, exact resume, mirrored."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from hepflow.data import SampleSpec, make_dataset
from hepflow.models import CaloGAN, calogan
from hepflow.training.loop import fit

KEYS = ["layer_0", "layer_1", "layer_2", "energy"]


def small():
    return calogan(latent_dim=8, hidden=32, minibatch_kernels=4)


def eplus_data(calo_dir, steps=12):
    keras.utils.set_random_seed(0)
    spec = SampleSpec(name="eplus", files=str(calo_dir / "eplus_*.h5"), keys=KEYS, label=0)
    return make_dataset([spec], batch_size=32, epoch=steps, seed=1)


def test_generated_showers_have_the_calogan_layout_and_reload(tmp_path):
    model = small()
    model.compile()
    energy = np.array([[5.0], [50.0]], np.float32)
    out = model.generate(energy, seed=3)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"layer_0": (2, 3, 96), "layer_1": (2, 12, 12),
                                                             "layer_2": (2, 12, 6)}
    assert all(float(np.min(v)) >= 0.0 for v in out.values())  # ReLU: energies ≥ 0, exact zeros possible
    model.save(tmp_path / "gan.keras")
    again = keras.saving.load_model(tmp_path / "gan.keras")
    assert isinstance(again, CaloGAN) and again.get_config()["minibatch_kernels"] == 4
    for k, v in again.generate(energy, seed=3).items():
        np.testing.assert_allclose(np.asarray(v), np.asarray(out[k]), rtol=1e-6)


def test_trains_in_hepflows_loop_and_learns_the_energy_response(calo_dir):
    keras.utils.set_random_seed(0)  # the initial weights too, whatever ran before
    model = calogan(latent_dim=8, hidden=32, minibatch_kernels=4, energy_weight=100.0)  # λ_E dominates the adversary
    model.compile()
    data = eplus_data(calo_dir, steps=40)
    features, _ = next(iter(data))
    energy = np.asarray(features["energy"]).reshape(-1, 1)
    real = sum(np.asarray(features[k]).reshape(len(energy), -1).sum(1) for k in KEYS[:3]) / energy[:, 0]

    def response_error():
        fake = model.generate(energy, seed=1)
        resp = sum(np.asarray(v).reshape(len(energy), -1).sum(1) for v in fake.values()) / energy[:, 0]
        return abs(resp.mean() - real.mean())

    before = response_error()
    history = fit(model, data, epochs=3, verbose=0)
    h = history.history
    assert set(h) >= {"d_loss", "g_loss", "energy_loss", "learning_rate"}
    assert all(np.isfinite(v) for values in h.values() for v in values)
    assert h["energy_loss"][-1] < h["energy_loss"][0]
    # a new generator spreads E evenly (response ≈ 1, the data's lower); the energy constraint
    # brings the response to the data's while the showers take shape
    after = response_error()
    assert after < 0.05 and after < before / 2, (before, after)  # measured: 0.087 → 0.008


@pytest.mark.slow
def test_wgan_gp_option_trains(calo_dir):
    model = calogan(latent_dim=8, hidden=32, minibatch_kernels=0, loss="wgan-gp", discriminator_steps=2)
    model.compile()
    h = fit(model, eplus_data(calo_dir, steps=6), epochs=1, verbose=0).history
    assert np.isfinite(h["d_loss"][0]) and np.isfinite(h["g_loss"][0])
    with pytest.raises(ValueError, match="Received: loss='hinge'"):
        calogan(loss="hinge")


class _Stop(keras.callbacks.Callback):
    def on_train_batch_end(self, step, logs=None):
        if step == 4 and self.model.epoch_seen == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch_seen = epoch


def test_interrupted_gan_resumes_to_the_same_weights_with_both_optimizers(calo_dir, tmp_path):
    def run(**kw):
        keras.utils.set_random_seed(0)
        model = small()
        model.compile()
        data = eplus_data(calo_dir, steps=8)
        return model, data

    model, data = run()
    fit(model, data, epochs=2, verbose=0)
    reference = model.get_weights()
    model, data = run()
    with pytest.raises(KeyboardInterrupt):
        fit(model, data, epochs=2, verbose=0, backup_dir=str(tmp_path / "backup"), callbacks=[_Stop()])
    model, data = run()
    fit(model, data, epochs=2, verbose=0, backup_dir=str(tmp_path / "backup"))
    for a, b in zip(reference, model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


MIRRORED = """
import sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from hepflow.data import SampleSpec, make_dataset
from hepflow.models import calogan
from hepflow.training.distribute import make_strategy
from hepflow.training.loop import fit
strategy = make_strategy("mirrored")
with strategy.scope():
    model = calogan(latent_dim=8, hidden=32, minibatch_kernels=4)
    model.compile()
spec = SampleSpec(name="eplus", files=sys.argv[1] + "/eplus_*.h5", keys=["layer_0", "layer_1", "layer_2", "energy"], label=0)
h = fit(model, make_dataset([spec], batch_size=32, epoch=6, seed=1), epochs=1, verbose=0).history
print("REPLICAS", strategy.num_replicas_in_sync, "FINITE", all(np.isfinite(v[0]) for v in h.values()))
"""


@pytest.mark.slow
def test_gan_trains_mirrored_on_two_devices(calo_dir):
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(calo_dir)], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REPLICAS 2 FINITE True" in proc.stdout


FRESH = """
import sys, json, numpy as np, tensorflow as tf
gen = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = gen(energy=tf.constant([[10.0], [80.0]]), seed=tf.constant(7, tf.int64))
print("OUT " + json.dumps({k: [list(v.shape), float(np.sum(v.numpy()))] for k, v in out.items()}))
"""


def test_savedmodel_generates_from_energy_and_seed_without_hepflow(tmp_path):
    import json

    import tensorflow as tf

    from hepflow.serving import export_generator

    model = small()
    model.compile()
    path = export_generator(model, str(tmp_path), name="gan")
    assert path.endswith(os.path.join("gan", "1"))
    proc = subprocess.run([sys.executable, "-c", FRESH, path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("OUT ")][0][4:])
    assert got["layer_0"][0] == [2, 3, 96] and got["layer_1"][0] == [2, 12, 12] and got["layer_2"][0] == [2, 12, 6]
    noise = tf.random.stateless_normal((2, model.latent_dim), seed=tf.constant([7, 0], tf.int64))
    ref = model({"energy": tf.constant([[10.0], [80.0]]), "noise": noise})
    for k, (_, total) in got.items():  # same seed, same showers as the model in this process
        assert total == pytest.approx(float(np.sum(ref[k])), rel=1e-5)


def test_hepflow_train_runs_the_gan_config_with_shower_plots_in_tensorboard(calo_dir, tmp_path):
    from hepflow.evaluation.reporters import standard_reporters  # what `hepflow train` hands in
    from hepflow.training import train

    config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "calo", "eplus_calogan.yaml")
    summary = train(config, run_dir=str(tmp_path / "run"), verbose=0, reporters=standard_reporters(),
                    overrides=[f"data.dir={calo_dir}", "training.epochs=1", "training.steps_per_epoch=4",
                               "training.batch_size=32", "training.monitor_every=1", "training.validation_steps=1",
                               "model.args.hidden=32"])
    assert summary["epochs"] == 1 and np.isfinite(summary["last_epoch"]["g_loss"])
    # the config keeps the epoch with the best validation feature matching
    assert (tmp_path / "run" / "model.keras").is_file() and (tmp_path / "run" / "best.keras").is_file()
    assert (tmp_path / "run" / "tb" / "showers" / "average_showers.png").is_file()
    assert any(n.startswith("events") for n in os.listdir(tmp_path / "run" / "tb" / "showers"))
    assert isinstance(keras.saving.load_model(tmp_path / "run" / "model.keras"), CaloGAN)


def test_several_particle_types_condition_the_generator_and_its_savedmodel(calo_dir, tmp_path):
    import tensorflow as tf

    from hepflow.serving import export_generator

    keras.utils.set_random_seed(0)
    model = calogan(latent_dim=8, hidden=32, minibatch_kernels=4, particles=3)
    model.compile()
    specs = [SampleSpec(name=p, files=str(calo_dir / f"{p}_*.h5"), keys=KEYS, label=i)
             for i, p in enumerate(("eplus", "gamma", "piplus"))]
    h = fit(model, make_dataset(specs, batch_size=48, epoch=4, seed=1), epochs=1, verbose=0).history
    assert all(np.isfinite(v[0]) for v in h.values())
    energy = np.full((4, 1), 20.0, np.float32)
    with pytest.raises(ValueError, match="Received: particle=None"):
        model.generate(energy, seed=1)
    noise = tf.random.stateless_normal((4, 8), seed=[3, 0])
    as_e = model({"energy": energy, "noise": noise, "particle": np.zeros(4, np.int64)})
    as_pi = model({"energy": energy, "noise": noise, "particle": np.full(4, 2, np.int64)})
    assert not np.allclose(np.asarray(as_e["layer_1"]), np.asarray(as_pi["layer_1"]))  # the type changes the shower
    mixed = model.generate(energy, particle=[0, 0, 2, 2], seed=5)
    assert tuple(mixed["layer_0"].shape) == (4, 3, 96)
    model.save(tmp_path / "gan.keras")
    again = keras.saving.load_model(tmp_path / "gan.keras")
    np.testing.assert_allclose(np.asarray(again({"energy": energy, "noise": noise, "particle": np.full(4, 2)})["layer_1"]),
                               np.asarray(as_pi["layer_1"]), rtol=1e-6)
    path = export_generator(model, str(tmp_path / "export"), name="gan3")
    gen = tf.saved_model.load(path).signatures["serving_default"]
    out = gen(energy=tf.constant(energy), seed=tf.constant(7, tf.int64), particle=tf.constant([0, 1, 2, 2], tf.int64))
    assert tuple(out["layer_2"].shape) == (4, 12, 6)


def test_feature_matching_loss_is_the_moment_distance_in_units_of_the_real_spread():
    from hepflow.models.calogan import feature_matching_loss

    rng = np.random.default_rng(0)
    real = rng.normal(size=(4000, 3)).astype(np.float32) * np.array([1.0, 2.0, 0.5], np.float32)
    assert float(feature_matching_loss(real, real)) == pytest.approx(0.0, abs=1e-6)
    sigma = np.sqrt(real.var(0) + 1e-6) + 1e-3  # the loss's units

    shifted = real + np.array([0.5, 0.0, 0.0], np.float32)  # half a σ in the first feature only
    assert float(feature_matching_loss(real, shifted)) == pytest.approx(0.5 / sigma[0] / 3, rel=1e-4)
    wider = real * np.array([1.0, 1.5, 1.0], np.float32)  # spread 1.5× in the second (its mean too)
    expected = (0.5 * abs(real[:, 1].mean()) + 0.5 * real[:, 1].std()) / sigma[1] / 3
    assert float(feature_matching_loss(real, wider)) == pytest.approx(expected, rel=1e-3)


def test_feature_matching_with_particle_groups_compares_each_particle_with_its_own_kind():
    from hepflow.models.calogan import feature_matching_loss

    rng = np.random.default_rng(1)
    electrons = rng.normal(size=(300, 2)).astype(np.float32)
    pions = rng.normal(loc=5.0, size=(300, 2)).astype(np.float32)
    real = np.concatenate([electrons, pions])
    groups = np.repeat(np.eye(3, dtype=np.float32)[:2], 300, axis=0)  # two of three types present
    # the same mixture with the labels swapped: pooled moments agree, per-particle ones do not
    swapped = np.concatenate([pions, electrons])
    assert float(feature_matching_loss(real, swapped)) == pytest.approx(0.0, abs=1e-5)
    per_particle = float(feature_matching_loss(real, swapped, groups))
    assert per_particle > 4.0  # each mean is ~5 σ off
    assert float(feature_matching_loss(real, real, groups)) == pytest.approx(0.0, abs=1e-6)
    # a group's loss is that group's plain loss; absent groups do not count
    shifted = real + np.concatenate([np.zeros((300, 2)), np.full((300, 2), 0.5)]).astype(np.float32)
    expected = (0.0 + float(feature_matching_loss(pions, pions + 0.5))) / 2
    assert float(feature_matching_loss(real, shifted, groups)) == pytest.approx(expected, rel=1e-4)


def test_feature_matching_moves_energy_into_the_right_layers(calo_dir):
    """A new generator spreads E over all 504 cells (57 % in layer 0; the data: ~20 %); with the
    feature-matching loss the layer fractions move to the data's within a few dozen steps."""
    data = eplus_data(calo_dir, steps=30)
    features, _ = next(iter(data))
    energy = np.asarray(features["energy"]).reshape(-1, 1)

    def layer0_fraction(showers):
        total = sum(np.asarray(showers[k]).reshape(len(energy), -1).sum(1) for k in KEYS[:3])
        return float(np.mean(np.asarray(showers["layer_0"]).reshape(len(energy), -1).sum(1) / total))

    real = layer0_fraction(features)
    errors = {}
    for weight in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        model = calogan(latent_dim=8, hidden=32, minibatch_kernels=4, feature_weight=weight)
        model.compile()
        fit(model, data, epochs=2, verbose=0)
        errors[weight] = abs(layer0_fraction(model.generate(energy, seed=1)) - real)
    assert errors[1.0] < 0.1 and errors[1.0] < errors[0.0] / 2, errors


def test_zero_suppression_reads_zero_below_threshold_and_passes_the_gradient():
    import tensorflow as tf

    from hepflow.models.calogan import ZeroSuppression

    layer = ZeroSuppression(threshold=0.005)
    cells = tf.Variable([[0.0001, 0.002, 0.0, 0.01]])  # fractions of E (after the ReLU)
    log_energy = tf.math.log(tf.constant([[10.0]]))  # 10 GeV: 1, 20, 0 and 100 MeV
    with tf.GradientTape() as tape:
        out = layer([cells, log_energy])
        total = tf.reduce_sum(out * tf.constant([[1.0, 2.0, 3.0, 4.0]]))
    np.testing.assert_allclose(out.numpy(), [[0.0, 0.002, 0.0, 0.01]])
    np.testing.assert_allclose(tape.gradient(total, cells).numpy(), [[1.0, 2.0, 3.0, 4.0]])  # straight through
    gan = calogan(latent_dim=8, hidden=32, minibatch_kernels=4, cell_threshold=0.005)
    showers = gan.generate(np.array([[2.0], [60.0]], np.float32), seed=1)
    for k, v in showers.items():  # exact zeros or at least the threshold, never below
        v = np.asarray(v)
        assert np.all((v == 0) | (v >= 0.005 - 1e-7)), k


def test_quantization_rounds_cells_to_the_readout_quantum_and_passes_the_gradient(tmp_path):
    import tensorflow as tf

    from hepflow.models.calogan import Quantization

    layer = Quantization(quantum=0.01)
    cells = tf.Variable([[0.0004, 0.0006, 0.00149, 0.0016, 0.0]])  # fractions of 10 GeV: 4, 6, 14.9, 16, 0 MeV
    log_energy = tf.math.log(tf.constant([[10.0]]))
    with tf.GradientTape() as tape:
        out = layer([cells, log_energy])
        total = tf.reduce_sum(out * tf.constant([[1.0, 2.0, 3.0, 4.0, 5.0]]))
    np.testing.assert_allclose(out.numpy() * 10.0, [[0.0, 0.01, 0.01, 0.02, 0.0]], atol=1e-7)
    np.testing.assert_allclose(tape.gradient(total, cells).numpy(), [[1.0, 2.0, 3.0, 4.0, 5.0]])
    gan = calogan(latent_dim=8, hidden=32, minibatch_kernels=4, cell_quantum=0.01)
    gan.save(tmp_path / "gan.keras")
    reloaded = keras.saving.load_model(tmp_path / "gan.keras")
    energy = np.array([[3.0], [70.0]], np.float32)
    showers, again = gan.generate(energy, seed=2), reloaded.generate(energy, seed=2)
    for k, v in showers.items():  # whole 10 MeV quanta, like the simulation's cells
        v = np.asarray(v, np.float64)
        np.testing.assert_allclose(v / 0.01, np.round(v / 0.01), atol=2e-3, err_msg=k)
        np.testing.assert_array_equal(v, np.asarray(again[k]))


def test_hit_mask_draws_bernoulli_hits_and_passes_the_gradient_to_the_probabilities():
    import tensorflow as tf

    from hepflow.models.calogan import HitMask

    energies = tf.constant([[0.2, 0.3, 0.4, 0.5]])
    logits = tf.Variable([[0.0, 2.0, -2.0, 0.0]])  # probabilities 0.5, 0.881, 0.119, 0.5
    uniforms = tf.constant([[0.4, 0.9, 0.1, 0.6]])  # hit where uniform < probability
    with tf.GradientTape() as tape:
        cells, hits = HitMask(logit_scale=1.0)([energies, logits, uniforms])
        total = tf.reduce_sum(hits)
    np.testing.assert_array_equal(hits.numpy(), [[1.0, 0.0, 1.0, 0.0]])
    np.testing.assert_allclose(cells.numpy(), [[0.2, 0.0, 0.4, 0.0]])
    p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -2.0, 0.0])))
    np.testing.assert_allclose(tape.gradient(total, logits).numpy()[0], p * (1 - p), rtol=1e-5)  # dσ/dlogit
    # with a floor of one 10 MeV quantum at E = 10 GeV, a hit reads at least 0.001 of E
    cells, hits = HitMask(logit_scale=1.0, floor=0.01)([energies * 0.0, logits, uniforms, tf.math.log([[10.0]])])
    np.testing.assert_allclose(cells.numpy(), [[0.001, 0.0, 0.001, 0.0]], rtol=1e-5)
    # many draws: the hit rate is the probability
    many = np.random.default_rng(0).uniform(size=(20000, 4)).astype(np.float32)
    _, hits = HitMask(logit_scale=0.5)([tf.ones((20000, 4)), tf.repeat(2 * logits, 20000, axis=0), many])
    np.testing.assert_allclose(hits.numpy().mean(0), p, atol=0.015)


def test_occupancy_generator_learns_the_fraction_of_hit_cells(calo_dir, tmp_path):
    """With hit masks the matched occupancy moves the fraction of hit cells of the sparse layers 0 and 2
    from one half to the data's (a cell of a ReLU generator at zero gets no gradient); seeded noise fixes
    the hits, and the generator reloads."""
    data = eplus_data(calo_dir, steps=40)
    features, _ = next(iter(data))
    energy = np.asarray(features["energy"]).reshape(-1, 1)

    def occupancy(showers):
        return np.array([float(np.mean(np.asarray(showers[k]) > 0)) for k in KEYS[:3]])

    real = occupancy(features)
    keras.utils.set_random_seed(0)
    model = calogan(latent_dim=8, hidden=32, minibatch_kernels=4, occupancy=True, feature_weight=10.0)
    model.compile()
    before = occupancy(model.generate(energy, seed=1))
    fit(model, data, epochs=2, verbose=0)
    after = occupancy(model.generate(energy, seed=1))
    assert np.all(np.abs(before[[0, 2]] - 0.5) < 0.1)
    assert np.all(np.abs(after[[0, 2]] - real[[0, 2]]) < 0.12), (before, after, real)
    assert model.noise_dim == 8 + 504
    a, b = model.generate(energy[:4], seed=3), model.generate(energy[:4], seed=3)
    model.save(tmp_path / "gan.keras")
    c = keras.saving.load_model(tmp_path / "gan.keras").generate(energy[:4], seed=3)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(c[k]), atol=1e-6)
    # the SavedModel draws the hit uniforms from its seed too: the same showers as the model with that noise
    import tensorflow as tf

    from hepflow.serving import export_generator

    path = export_generator(model, str(tmp_path / "export"), name="gan")
    served = tf.saved_model.load(path).signatures["serving_default"](energy=tf.constant(energy[:4]),
                                                                     seed=tf.constant(9, tf.int64))
    noise = tf.random.stateless_normal((4, model.noise_dim), seed=tf.constant([9, 0], tf.int64))
    expected = model({"energy": energy[:4], "noise": noise})
    for k in expected:
        np.testing.assert_allclose(served[k].numpy(), np.asarray(expected[k]), atol=1e-6)
