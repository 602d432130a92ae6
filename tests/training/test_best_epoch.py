"""The best epoch: which value is best, early stopping resumed mid-patience, a mistyped monitor."""
from __future__ import annotations

import numpy as np
import pytest

import keras

from hepflow.errors import ConfigError
from hepflow.training.best_epoch import BestEpoch, best_epoch_callbacks, best_so_far, monitor_mode


def test_best_so_far_takes_the_first_best_finite_value_in_the_metrics_direction():
    rows = [{"val_loss": 0.5, "val_auc": 0.7}, {"val_loss": 0.3, "val_auc": 0.9}, {"val_loss": float("nan")},
            {"val_loss": 0.3, "val_auc": 0.9}, {"val_loss": 0.4, "val_auc": 0.8}]
    assert best_so_far(rows, "val_loss", monitor_mode("val_loss")) == (0.3, 1, 3)
    assert best_so_far(rows, "val_auc", monitor_mode("val_auc")) == (0.9, 1, 3)
    assert best_so_far(rows, "val_feature_loss", "min") is None
    assert monitor_mode("val_accuracy") == "max" and monitor_mode("val_feature_loss") == "min"


def _model_and_data():
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], "float32"))[:, None]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model, x, y


def test_resumed_early_stopping_keeps_its_patience_and_restores_the_saved_best(tmp_path):
    model, x, y = _model_and_data()
    best_path = str(tmp_path / "best.keras")
    model.save(best_path)  # the interrupted run's best epoch (epoch 0)
    best_weights = model.get_weights()
    model.fit(x, y, epochs=1, verbose=0)  # the weights go on changing after the best epoch
    # The interrupted run: best 1e-9 at epoch 0, one epoch without improvement since; patience 2.
    stop = BestEpoch(monitor="val_loss", patience=2, resumed=(1e-9, 0, 1), best_weights_path=best_path)
    history = model.fit(x, y, validation_data=(x, y), epochs=10, initial_epoch=2, callbacks=[stop], verbose=0)
    assert len(history.history["val_loss"]) == 1  # a fresh counter would have run two more epochs
    for restored, saved in zip(model.get_weights(), best_weights):
        np.testing.assert_array_equal(restored, saved)


def test_fresh_early_stopping_restores_its_own_best_epoch():
    model, x, y = _model_and_data()
    stop = BestEpoch(monitor="val_loss", patience=2)
    history = model.fit(x, y, validation_data=(x, y), epochs=4, callbacks=[stop], verbose=0)
    losses = history.history["val_loss"]
    assert losses[-1] < losses[0]  # it learns, so the last epoch is the best and is kept
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), losses[-1], rtol=1e-5)


def test_a_monitor_the_model_does_not_log_is_named():
    model, x, y = _model_and_data()
    with pytest.raises(ConfigError, match=r"has \['loss', 'val_loss'\].*monitor='val_los'"):
        model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0,
                  callbacks=[BestEpoch(monitor="val_los", patience=1)])


@pytest.mark.parametrize("section, match", [
    ({"patience": 2, "restore": True}, r"monitor and patience. Received: \['restore'\]"),
    ({"monitor": "loss"}, r"validation metric.*Received: monitor='loss'"),
    (3, r"must be a mapping.*Received: 3"),
])
def test_bad_early_stopping_sections_are_named(section, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        best_epoch_callbacks(section, out_dir=str(tmp_path), history=[], generative=False)


def test_a_gan_keeps_a_best_epoch_only_when_told_which_metric(tmp_path):
    assert best_epoch_callbacks(None, out_dir=str(tmp_path), history=[], generative=True) == []
    checkpoint, stop = best_epoch_callbacks({"monitor": "val_feature_loss", "patience": 5}, out_dir=str(tmp_path),
                                            history=[{"val_feature_loss": 2.0}, {"val_feature_loss": 1.5}],
                                            generative=True)
    assert checkpoint.best == 1.5 and checkpoint.monitor == "val_feature_loss"
    assert stop.resumed == (1.5, 1, 0) and stop.patience == 5
