"""Every model builds, trains a step, and reloads from .keras with identical outputs."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from hepflow import models

N = 24  # particles per jet in these tests


def inputs_for(name, rng, batch=8):
    if name in ("lartpc_event_cnn", "lartpc_unet"):
        return {"image": rng.random((batch, 32, 40, 3)).astype("f4")}
    if name == "deeptop_features":
        return {"image": rng.random((batch, 40, 40, 4)).astype("f4"),
                "mass": rng.normal(170, 30, batch).astype("f4"), "tau32": rng.random(batch).astype("f4")}
    if name in ("deeptop", "macaluso_shih"):
        return {"image": rng.random((batch, 37 if name == "macaluso_shih" else 40,
                                     37 if name == "macaluso_shih" else 40, 1)).astype("f4")}
    if name == "dnn":
        return {k: rng.normal(size=batch).astype("f4") for k in ("mass", "pt", "tau21", "tau32")}
    mask = (np.arange(N)[None, :] < rng.integers(10, N, batch)[:, None]).astype("f4")[..., None]
    d = {"particles": rng.normal(size=(batch, N, 7)).astype("f4") * mask,
         "points": rng.normal(size=(batch, N, 2)).astype("f4") * mask, "mask": mask}
    if name == "efn":
        return {"points": d["points"], "z": mask[..., 0] * rng.random((batch, N)).astype("f4")}
    if name == "pfn":
        return {"particles": d["particles"], "mask": mask}
    return d


BUILDERS = {
    "deeptop": lambda: models.deeptop_cnn(),
    "lartpc_event_cnn": lambda: models.lartpc_event_cnn(input_shape=(32, 40, 3), num_classes=3),
    "lartpc_unet": lambda: models.lartpc_unet(input_shape=(32, 40, 3), filters=(8, 16)),
    "deeptop_features": lambda: models.deeptop_cnn(input_shape=(40, 40, 4), features=("mass", "tau32")),
    "macaluso_shih": lambda: models.macaluso_shih_cnn(),
    "dnn": lambda: models.high_level_dnn(),
    "pfn": lambda: models.particle_flow_network(n_particles=N),
    "efn": lambda: models.energy_flow_network(n_particles=N),
    "particlenet_lite": lambda: models.particlenet_lite(n_particles=N),
    "particlenet": lambda: models.particlenet(n_particles=N),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_model_trains_and_round_trips(name, tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = BUILDERS[name]()
    x = inputs_for(name, rng)
    if name == "lartpc_event_cnn":
        y, shape = rng.integers(0, 3, 8), (8, 3)
    elif name == "lartpc_unet":
        y, shape = rng.integers(-1, 6, (8, 32, 40, 3)), (8, 32, 40, 3, 6)
    else:
        y, shape = rng.integers(0, 2, 8).astype("f4"), (8, 1)
    loss = "binary_crossentropy" if shape[-1] == 1 else keras.losses.SparseCategoricalCrossentropy(ignore_class=-1)
    model.compile(optimizer="adam", loss=loss)
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    out = model.predict(x, verbose=0)
    assert out.shape == shape and np.all((out >= 0) & (out <= 1))
    model.save(tmp_path / f"{name}.keras")
    again = keras.saving.load_model(tmp_path / f"{name}.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), out)


def test_cnn_scalar_features_reach_the_score():
    keras.utils.set_random_seed(2)
    model = BUILDERS["deeptop_features"]()
    assert sorted(model.input) == ["image", "mass", "tau32"]
    x = inputs_for("deeptop_features", np.random.default_rng(2))
    heavier = {**x, "mass": x["mass"] + 100}
    assert not np.allclose(model.predict(x, verbose=0), model.predict(heavier, verbose=0))


def test_published_layer_settings():
    cnn = models.macaluso_shih_cnn()
    convs = [l.filters for l in cnn.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs == [128, 64, 64, 64]
    assert [l.units for l in cnn.layers if isinstance(l, keras.layers.Dense)] == [64, 256, 256, 1]
    deeptop = models.deeptop_cnn()
    assert [l.filters for l in deeptop.layers if isinstance(l, keras.layers.Conv2D)] == [8, 8, 8, 8]
    pn = models.particlenet(n_particles=N)
    edge = [l for l in pn.layers if l.__class__.__name__ == "EdgeConv"]
    assert [(l.k, l.channels) for l in edge] == [(16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256))]
    lite = [l for l in models.particlenet_lite(n_particles=N).layers if l.__class__.__name__ == "EdgeConv"]
    assert [(l.k, l.channels) for l in lite] == [(7, (32, 32, 32)), (7, (64, 64, 64))]


@pytest.mark.parametrize("name", ["pfn", "particlenet_lite"])
def test_particle_models_ignore_order_and_padding(name):
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    model = BUILDERS[name]()
    x = inputs_for(name, rng, batch=4)
    perm = rng.permutation(N)
    shuffled = {k: v[:, perm] for k, v in x.items()}
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(shuffled, verbose=0), rtol=1e-4, atol=1e-6)
    junk = {k: v.copy() for k, v in x.items()}
    pad = x["mask"][..., 0] == 0
    junk["particles"][pad] = 123.0  # what sits in padded slots must not matter
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(junk, verbose=0), rtol=1e-4, atol=1e-6)


def _edge_conv_reference(layer, points, x, mask):
    """EdgeConv in numpy as the paper writes it: MLP on (x_i, x_j - x_i), mean over k neighbours."""
    def norm(bn, h):
        g, b, mean, var = (w.numpy() for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
        return (h - mean) / np.sqrt(var + bn.epsilon) * g + b

    out = np.zeros(x.shape[:2] + (layer.channels[-1],), "f8")
    for b in range(x.shape[0]):
        real = np.flatnonzero(mask[b, :, 0])
        for i in real:
            d = ((points[b, real] - points[b, i]) ** 2).sum(-1)
            d[real == i] = np.inf
            nbrs = real[np.argsort(d, kind="stable")[:layer.k]]
            h = np.concatenate([np.broadcast_to(x[b, i], (len(nbrs), x.shape[-1])), x[b, nbrs] - x[b, i]], -1)
            for dense, bn in zip(layer.mlp, layer.norms):
                h = np.maximum(norm(bn, h @ dense.kernel.numpy()), 0)
            short = norm(layer.shortcut_norm, x[b, i] @ layer.shortcut.kernel.numpy())
            out[b, i] = np.maximum(h.mean(0) + short, 0)
    return out


def test_edge_conv_matches_a_numpy_reference():
    from hepflow.layers import EdgeConv

    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = inputs_for("particlenet", rng, batch=3)
    layer = EdgeConv(k=5, channels=(6, 4))
    layer([x["points"], x["particles"], x["mask"]])
    for bn in layer.norms + [layer.shortcut_norm]:  # non-trivial inference statistics
        bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape))
        bn.moving_variance.assign(rng.uniform(0.5, 2, size=bn.moving_variance.shape))
    got = layer([x["points"], x["particles"], x["mask"]], training=False)
    want = _edge_conv_reference(layer, x["points"], x["particles"], x["mask"])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
