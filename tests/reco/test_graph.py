"""RecoGraph: validation, subgraph runs, numpy steps, pipeline transform, SavedModel round trip."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf

from hepflow.data import SampleSpec, make_dataset
from hepflow.errors import ConfigError
from hepflow.reco import RecoGraph, Step

INPUTS = {"waveform": ((4, 16), "float32")}


def _baseline(w):
    return w - tf.reduce_mean(w, axis=-1, keepdims=True)


def _energy(w):
    return tf.reduce_sum(tf.abs(w), axis=[1, 2])


def _peak(w):
    return tf.reduce_max(w, axis=-1)


def chain(**kw):
    return RecoGraph([Step("energy", _energy, ["clean"], ["energy"]),
                      Step("baseline", _baseline, ["waveform"], ["clean"]),
                      Step("peaks", _peak, ["clean"], ["peak"], specs={"peak": ((4,), "float32")})],
                     inputs=INPUTS, **kw)


def test_steps_run_in_dependency_order_and_only_what_is_asked():
    g = chain()
    assert [s.name for s in g._order] == ["baseline", "energy", "peaks"]
    assert g.outputs == ("energy", "peak") and g.products == ["clean", "energy", "peak"]
    assert [s.name for s in g.steps_for(["peak"])] == ["baseline", "peaks"]
    w = np.random.default_rng(0).normal(size=(3, 4, 16)).astype("f4")
    out = g.run({"waveform": w}, outputs=["peak"])
    assert list(out) == ["peak"]
    clean = w - w.mean(-1, keepdims=True)
    np.testing.assert_allclose(out["peak"].numpy(), clean.max(-1), rtol=1e-6)
    np.testing.assert_allclose(g.run({"waveform": w})["energy"].numpy(), np.abs(clean).sum((1, 2)), rtol=1e-5)
    assert g.specs["energy"] == g.specs["energy"].of(((), "float32"))


def test_a_numpy_step_runs_only_when_needed_and_matches_the_tf_step():
    calls = []

    def peak_numpy(clean):
        calls.append(len(clean))
        return clean.max(-1)

    g = RecoGraph([Step("baseline", _baseline, ["waveform"], ["clean"]),
                   Step("peaks_np", peak_numpy, ["clean"], ["peak_np"], specs={"peak_np": ((4,), "float32")}, numpy=True),
                   Step("peaks", _peak, ["clean"], ["peak"])], inputs=INPUTS)
    w = np.random.default_rng(1).normal(size=(5, 4, 16)).astype("f4")
    traced = len(calls)  # the specs check traces the graph, running no numpy function
    g.run({"waveform": w}, outputs=["peak"])
    assert len(calls) == traced  # not needed for `peak`
    both = g.run({"waveform": w}, outputs=["peak", "peak_np"])
    assert calls[-1] == 5
    np.testing.assert_array_equal(both["peak"].numpy(), both["peak_np"].numpy())
    with pytest.raises(ConfigError, match="cannot hold"):
        g.save("/nonexistent", outputs=["peak_np"])


@pytest.mark.parametrize("steps, message", [
    ([Step("a", _baseline, ["waveform"], ["x"]), Step("a", _peak, ["x"], ["y"])], "two steps are named 'a'"),
    ([Step("a", _baseline, ["waveform"], ["x"]), Step("b", _baseline, ["waveform"], ["x"])],
     "Product 'x' has two makers: steps 'a' and 'b'"),
    ([Step("a", _baseline, ["wave"], ["x"])], "Step 'a' reads 'wave', which no step makes"),
    ([Step("a", _baseline, ["y"], ["x"]), Step("b", _baseline, ["x"], ["y"])], "cycle among steps: a .*b"),
    ([Step("a", _baseline, ["waveform"], ["waveform"])], "makes 'waveform', which is a graph input"),
    ([Step("a", _peak, ["waveform"], ["x"], specs={"x": ((4,), "int32")})],
     r"Step 'a' makes 'x' as \(4,\) float32 per event, but declares \(4,\) int32"),
    ([Step("a", _peak, ["waveform"], ["x"], specs={"x": ((5,), "float32")})], "declares"),
])
def test_bad_graphs_are_refused_naming_the_step_and_product(steps, message):
    with pytest.raises(ConfigError, match=message):
        RecoGraph(steps, inputs=INPUTS)


def test_bad_steps_and_requests_are_refused():
    with pytest.raises(ConfigError, match="must declare the shape and dtype of every output"):
        Step("np", np.abs, ["waveform"], ["x"], numpy=True)
    with pytest.raises(ConfigError, match="makes no product"):
        Step("a", _peak, ["waveform"], [])
    g = chain()
    with pytest.raises(ConfigError, match=r"unknown products \['hits'\]"):
        g.run({"waveform": np.zeros((1, 4, 16), "f4")}, outputs=["hits"])
    with pytest.raises(ConfigError, match=r"need inputs \['waveform'\]"):
        g.run({"adc": np.zeros((1, 4, 16), "f4")})


def test_jit_compile_compiles_the_steps_that_allow_it_and_runs_the_others_between():
    def count_positive(w):  # tf.where: the output's size depends on the data
        return tf.math.bincount(tf.cast(tf.where(w > 0)[:, 0], tf.int32), minlength=tf.shape(w)[0],
                                maxlength=tf.shape(w)[0])

    steps = [Step("baseline", _baseline, ["waveform"], ["clean"]), Step("peaks", _peak, ["clean"], ["peak"]),
             Step("positive", count_positive, ["clean"], ["n_positive"], xla=False)]
    w = np.random.default_rng(1).normal(size=(5, 4, 16)).astype("f4")
    plain = RecoGraph(steps, inputs=INPUTS).run({"waveform": w})
    graph = RecoGraph(steps, inputs=INPUTS, jit_compile=True)
    compiled = graph.run({"waveform": w})
    np.testing.assert_allclose(compiled["peak"], plain["peak"], rtol=1e-6)
    np.testing.assert_array_equal(compiled["n_positive"], (_baseline(w).numpy() > 0).reshape(5, -1).sum(-1))
    assert sorted(graph._xla_steps) == ["baseline", "peaks"]


def test_describe_and_plot(tmp_path):
    g = chain()
    text = g.describe()
    assert "baseline [tf]: waveform -> clean" in text and "peak: [4] float32" in text
    g.plot(str(tmp_path / "graph.png"))
    assert (tmp_path / "graph.png").stat().st_size > 1000


def test_a_graph_is_a_pipeline_transform_cached_after_the_first_epoch(tmp_path):
    rng = np.random.default_rng(2)
    for label in (0, 1):
        with h5py.File(tmp_path / f"c{label}.h5", "w") as f:
            f["waveform"] = rng.normal(label, 1, (20, 4, 16)).astype("f4")
    specs = [SampleSpec(name=f"c{k}", files=[str(tmp_path / f"c{k}.h5")], keys=["waveform"], label=k) for k in (0, 1)]
    g = chain()
    ds = make_dataset(specs, batch_size=10, transform=g, cache=str(tmp_path / "cache"), epoch="all", shuffle=0,
                      with_record_id=True)
    first = [(x["energy"].numpy(), x["peak"].numpy()) for x, _ in ds]
    assert set(ds.element_spec[0]) == {"energy", "peak", "record_id"}  # the raw waveform is dropped
    second = [(x["energy"].numpy(), x["peak"].numpy()) for x, _ in ds]
    assert os.listdir(tmp_path / "cache")
    for (e1, p1), (e2, p2) in zip(first, second):
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_array_equal(p1, p2)


def test_saved_model_round_trip_in_a_fresh_process(tmp_path):
    g = chain()
    path = str(tmp_path / "reco")
    g.save(path, outputs=["energy", "peak"])
    w = np.random.default_rng(3).normal(size=(2, 4, 16)).astype("f4")
    np.save(tmp_path / "w.npy", w)
    expected = {k: v.numpy().tolist() for k, v in g.run({"waveform": w}, outputs=["energy", "peak"]).items()}
    code = ("import json, sys, numpy as np, tensorflow as tf\n"
            f"m = tf.saved_model.load({path!r})\n"
            f"out = m.signatures['serving_default'](waveform=tf.constant(np.load({str(tmp_path / 'w.npy')!r})))\n"
            "print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "hepflow" not in code
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(got) == {"energy", "peak"}
    for k in got:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-6)
