"""Bases for models with their own ``train_step``."""
from __future__ import annotations

import keras

__all__ = ["OwnStepModel", "SavedOptimizers", "ShowerSampling"]


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


class ShowerSampling:
    """``generate`` and ``sample`` for shower generators whose ``call`` takes ``{"energy" (batch, 1) GeV,
    "noise" (batch, noise_dim) standard normal[, "particle" (batch,) ints]}`` and returns showers in GeV
    (the CaloGAN, the conditional VAE and the flow); the class sets ``noise_dim`` and ``seed_generator``."""

    def generate(self, energy, *, particle=None, seed=None):
        """Showers (GeV) for incident energies ``energy`` (GeV, shape (n,) or (n, 1)) and, for a
        generator of several particle types, ``particle`` ids (one int or n of them)."""
        energy = keras.ops.reshape(keras.ops.cast(energy, "float32"), (-1, 1))
        n = keras.ops.shape(energy)[0]
        noise = keras.random.normal((n, self.noise_dim), seed=seed if seed is not None else self.seed_generator)
        inputs = {"energy": energy, "noise": noise}
        if particle is not None:
            ids = keras.ops.reshape(keras.ops.cast(particle, "int32"), (-1,))
            inputs["particle"] = keras.ops.broadcast_to(ids, (n,))
        return self(inputs)

    def sample(self, energy: float, particle: int | None = None, n: int = 1, *, seed=None):
        """``n`` showers (GeV) at one incident energy (GeV) of one particle type."""
        return self.generate(keras.ops.full((n, 1), float(energy)), particle=particle, seed=seed)
