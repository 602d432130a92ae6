"""Models train through make_dataset with hepflow's jet transforms (small fake jets)."""
from __future__ import annotations

import keras
import numpy as np

from hepflow import models
from hepflow.data import Compose, SampleSpec, make_dataset
from hepflow.ops.jets import ConstituentFeatures, JetImages
from hepflow.testing import write_jet_files


def specs(tmp_path):
    write_jet_files(tmp_path, name="qcd", n_files=1, jets_per_file=256, n_constituents=30, seed=1)
    write_jet_files(tmp_path, name="top", n_files=1, jets_per_file=256, n_constituents=30, seed=2, signal=True)
    return [SampleSpec(name=n, files=str(tmp_path / f"{n}_*.h5"), keys=["constituents"], label=int(n == "top"))
            for n in ("qcd", "top")]


def test_pfn_and_particlenet_lite_train_on_the_pipeline(tmp_path):
    keras.utils.set_random_seed(0)
    ds = make_dataset(specs(tmp_path), batch_size=64, transform=ConstituentFeatures(), seed=0, cache="memory")
    for model in (models.particle_flow_network(n_particles=30, phi_sizes=(16, 16), f_sizes=(16,)),
                  models.particlenet_lite(n_particles=30)):
        # each model takes only the inputs it names
        names = [i.name for i in model.inputs]
        feed = ds.map(lambda f, y, names=names: ({k: f[k] for k in names}, y))
        model.compile(optimizer="adam", loss="binary_crossentropy")
        hist = model.fit(feed, epochs=2, verbose=0)
        assert np.isfinite(hist.history["loss"]).all()


def test_cnn_trains_on_jet_images(tmp_path):
    keras.utils.set_random_seed(0)
    ds = make_dataset(specs(tmp_path), batch_size=64, transform=Compose([JetImages(npix=16)]), seed=0)
    model = models.jet_cnn(input_shape=(16, 16, 1), conv_blocks=((4,), (4,)), pool_after=(True, True),
                           dense=(16,))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    hist = model.fit(ds, epochs=2, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
