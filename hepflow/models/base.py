"""A base for models with their own ``train_step`` and one optimizer."""
from __future__ import annotations

import keras

__all__ = ["OwnStepModel"]


class OwnStepModel(keras.Model):
    """Builds its optimizer at ``compile`` (in the strategy's scope, not inside the first traced
    step) and saves the optimizer's settings in ``.keras`` files, so a loaded model is compiled."""

    def compile(self, optimizer="adam", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        return {"optimizer": keras.optimizers.serialize(self.optimizer)}

    def compile_from_config(self, config):
        self.compile(optimizer=keras.optimizers.deserialize(config["optimizer"]))
