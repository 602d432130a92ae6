"""Bases for models with their own ``train_step``."""
from __future__ import annotations

import keras

__all__ = ["OwnStepModel", "SavedOptimizers"]


class SavedOptimizers:
    """Mixin for a ``keras.Model`` whose ``compile`` takes its optimizers as keyword arguments:
    the settings of those named in ``compiled_optimizers`` go into ``.keras`` files, and a loaded
    model is compiled with optimizers of the same settings (fresh moments). An uncompiled model
    saves no compile config and loads uncompiled."""

    compiled_optimizers: tuple[str, ...] = ("optimizer",)

    def get_compile_config(self):
        if not getattr(self, "compiled", False):
            return None
        return {name: keras.optimizers.serialize(getattr(self, name)) for name in self.compiled_optimizers}

    def compile_from_config(self, config):
        self.compile(**{name: keras.optimizers.deserialize(config[name]) for name in self.compiled_optimizers})


class OwnStepModel(SavedOptimizers, keras.Model):
    """One optimizer, built at ``compile`` (in the strategy's scope, not inside the first traced
    step) and saved with the model."""

    def compile(self, optimizer="adam", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_variables)
