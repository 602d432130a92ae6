"""A CaloGAN-style generator of three-layer calorimeter showers, conditioned on the incident energy.

After the CaloGAN study (Paganini, de Oliveira, Nachman, Phys. Rev. D 97, 014021 (2018),
arXiv:1712.10321), with its ingredients and hepflow's choices where the issue leaves room:

* **Conditioning.** The generator sees ``log(E / 1 GeV)`` (and, with ``particles > 1``, the
  particle type one-hot: the sample's label) beside the noise and produces each cell as a
  *fraction of E* (ReLU: exact zeros, so showers can be sparse); the shower
  in GeV is that times E. The discriminator sees the showers as fractions of E plus the same
  conditions.
* **Layer-to-layer conditioning.** Layer 1 is generated from the noise, the energy and layer 0;
  layer 2 from those and layer 1 — each layer sees the previous ones, as the shower develops.
* **Zero suppression** (``cell_threshold``, GeV; off by default): generated cells below the
  readout threshold read zero, as in a real readout (without it every ReLU cell with a tiny
  positive output counts as hit); the gradient passes straight through (Bengio et al.,
  arXiv:1308.3432), so a suppressed cell can still be raised.
* **Energy quanta** (``cell_quantum``, GeV; off by default): generated cells are rounded to
  multiples of the readout quantum, straight-through like the threshold (a rounding to the
  nearest quantum also zeroes cells below half a quantum). hepflow's simulation deposits energy
  in 10 MeV quanta, so every simulated cell is an exact multiple of 10 MeV; without the rounding
  the discriminator tells generated from simulated showers by the cell values alone.
* **Occupancy** (``occupancy=True``; off by default): each cell gets a hit probability beside
  its energy. The energy head is the ReLU of the plain generator, the hit head a logit, and the
  cell reads ``energy · b`` with ``b ~ Bernoulli(σ(logit))`` drawn from uniform noise that is part
  of the generator's noise input (so a seed still fixes the showers). The gradient reaches the
  probabilities straight through the draw (``b = p + stop_gradient(b_hard - p)``, Bengio et al.,
  arXiv:1308.3432), and the fraction of hit cells per layer joins the matched features, so the
  generator can learn how many tail cells a shower has, which a ReLU output cannot. A hit cell
  reads at least one readout quantum (``cell_quantum``, else ``cell_threshold``), so the hits are
  the cells the readout sees (without this floor a generator met the matched occupancy with hits
  of ~0 GeV that the readout then zeroed).
* **Minibatch discrimination** (Salimans et al., arXiv:1606.03498) in the discriminator, so a
  generator that collapses to one shower is caught.
* **Energy constraint.** An auxiliary generator loss ``λ_E · mean |Σ_cells / E − r|``, where
  ``r`` is the mean response (deposit / E) of the real showers in the same batch (of the same
  particle type, with ``particles > 1``: a pion's response is not an electron's): the total
  generated energy follows the requested energy (hepflow's form of CaloGAN's energy loss; the
  response of a real calorimeter is below 1 because of leakage and overflow).
* **Physics feature matching** (``feature_weight``): an auxiliary generator loss that matches
  the batch mean and standard deviation of the differentiable shower shapes of
  :mod:`hepflow.ops.calo` (layer fractions, log response, depth, widths, E_ratio), each in
  units of the real batch's spread, between generated and real showers at the same energies
  (within each particle type, with ``particles > 1``) —
  the feature matching of Salimans et al. (arXiv:1606.03498) on physics features instead of
  discriminator features. A discriminator that has already won (as CaloGAN's does within a few
  hundred steps on these showers) gives the generator almost no gradient; this loss keeps
  pulling energy into the right layers and widths. 0 turns it off.
* **Losses.** ``loss="bce"`` (default; the non-saturating GAN loss of the study) or
  ``loss="wgan-gp"`` (Wasserstein with gradient penalty λ = 10, Gulrajani et al.,
  arXiv:1704.00028), which is often the more stable one; the default stays the study's.

Dense layers throughout (no locally-connected layers) keep generation at well under a
millisecond per shower on a CPU core at batch 1024.
"""
from __future__ import annotations


import keras
import tensorflow as tf

from hepflow.models.base import SavedOptimizers, ShowerSampling
from hepflow.data.formats.calogan import CALOGAN_LAYERS
from hepflow.ops.calo import shower_shapes

__all__ = ["CaloGAN", "HitMask", "MinibatchDiscrimination", "Quantization", "ZeroSuppression", "calogan",
           "feature_matching_loss"]

LAYERS = tuple(CALOGAN_LAYERS.items())
_CELLS = sum(r * c for _, (r, c) in LAYERS)


class _StraightThroughReadout(keras.layers.Layer):
    """Base of the readout layers: inputs ``[cells (batch, n) ≥ 0 as fractions of E, log_energy
    (batch, 1)]``; the forward pass returns :meth:`read` of the cells, the gradient is the identity
    (straight-through, Bengio et al., arXiv:1308.3432), so a cell read as zero can still be raised."""

    def active(self) -> bool:
        raise NotImplementedError

    def read(self, cells, log_energy):
        raise NotImplementedError

    def call(self, inputs):
        cells, log_energy = inputs
        if not self.active():
            return cells
        return cells + keras.ops.stop_gradient(self.read(cells, log_energy) - cells)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="hepflow")
class ZeroSuppression(_StraightThroughReadout):
    """Cells (fractions of E) whose energy is below ``threshold`` GeV read zero (straight-through).

    Args:
        threshold: Readout threshold in GeV (0: no suppression).
    """

    def __init__(self, *, threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def active(self) -> bool:
        return self.threshold > 0

    def read(self, cells, log_energy):
        return cells * keras.ops.cast(cells * keras.ops.exp(log_energy) >= self.threshold, cells.dtype)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="hepflow")
class Quantization(_StraightThroughReadout):
    """Cells (fractions of E) rounded to multiples of ``quantum`` GeV (straight-through): a cell of
    ``c`` GeV reads ``round(c / quantum) · quantum``, so cells below half a quantum read zero.

    Args:
        quantum: The readout quantum in GeV (0: no rounding).
    """

    def __init__(self, *, quantum: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.quantum = float(quantum)

    def active(self) -> bool:
        return self.quantum > 0

    def read(self, cells, log_energy):
        step = self.quantum * keras.ops.exp(-log_energy)  # the quantum as a fraction of E
        return keras.ops.round(cells / step) * step

    def get_config(self):
        return {**super().get_config(), "quantum": self.quantum}


@keras.saving.register_keras_serializable(package="hepflow")
class HitMask(keras.layers.Layer):
    """``[energies (batch, n) ≥ 0, logits (batch, n), uniforms (batch, n)]`` → ``(cells, hits)``.

    ``hits`` is 1 where ``uniform < σ(logit)`` (a Bernoulli draw with probability σ(logit)) and 0
    elsewhere in the forward pass, with the gradient of σ(logit) (straight-through); ``cells`` is
    ``(energies + floor) · hits``, with ``floor`` one readout quantum as a fraction of E when a
    fourth input, ``log_energy`` (batch, 1), is given: a hit then always reads at least one quantum,
    so the hits are the cells the readout sees. The logits are multiplied by ``logit_scale`` first:
    with the GAN's learning rate (2·10⁻⁴) an Adam step moves a weight by about that much, so an
    unscaled logit would need some 10⁴ steps to turn a 50 % hit probability into 10 %.

    Args:
        logit_scale: Factor on the logits (default 10).
        floor: The smallest energy of a hit cell in GeV (default 0; used with ``log_energy``).
    """

    def __init__(self, *, logit_scale: float = 10.0, floor: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.logit_scale, self.floor = float(logit_scale), float(floor)

    def call(self, inputs):
        energies, logits, uniforms = inputs[:3]
        if len(inputs) > 3 and self.floor > 0:
            energies = energies + self.floor * keras.ops.exp(-inputs[3])
        probability = keras.ops.sigmoid(self.logit_scale * logits)
        drawn = keras.ops.cast(uniforms < probability, probability.dtype)
        hits = probability + keras.ops.stop_gradient(drawn - probability)
        return energies * hits, hits

    def compute_output_shape(self, input_shape):
        return input_shape[0], input_shape[0]

    def get_config(self):
        return {**super().get_config(), "logit_scale": self.logit_scale, "floor": self.floor}


@keras.saving.register_keras_serializable(package="hepflow")
class MinibatchDiscrimination(keras.layers.Layer):
    """Features that compare each example with the rest of its batch (Salimans et al. 2016).

    For each row, ``kernels`` L1 distances to every other row in a learned ``dim``-dimensional
    projection, turned into ``Σ_j exp(−‖·‖₁)``; appended to the input.

    Args:
        kernels: Number of projections.
        dim: Dimension of each projection.
    """

    def __init__(self, *, kernels: int = 32, dim: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.kernels, self.dim = int(kernels), int(dim)

    def build(self, input_shape):
        self.tensor = self.add_weight(shape=(input_shape[-1], self.kernels * self.dim),
                                      initializer="glorot_uniform", name="tensor")

    def call(self, x):
        m = keras.ops.reshape(keras.ops.matmul(x, self.tensor), (-1, self.kernels, self.dim))
        diff = keras.ops.expand_dims(m, 0) - keras.ops.expand_dims(m, 1)  # (batch, batch, kernels, dim)
        closeness = keras.ops.sum(keras.ops.exp(-keras.ops.sum(keras.ops.abs(diff), axis=-1)), axis=0) - 1.0
        return keras.ops.concatenate([x, closeness], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.kernels)

    def get_config(self):
        return {**super().get_config(), "kernels": self.kernels, "dim": self.dim}


#: The shower shapes whose batch moments the feature-matching loss compares (differentiable ones).
MATCHED_SHAPES = ("f_0", "f_1", "f_2", "depth", "width_col_0", "width_col_1", "width_col_2", "width_row_0",
                  "width_row_1", "width_row_2", "e_ratio")


def _matched_features(fractions, energy, *, occupancy: bool = False, hits=None):
    """(batch, F): the shapes of ``MATCHED_SHAPES`` and log(response) of showers given as fractions of E;
    with ``occupancy`` also the fraction of hit cells per layer, from ``hits`` (generated showers: the
    straight-through hit masks, whose gradient reaches the hit probabilities) or the cells (real showers)."""
    batch = keras.ops.shape(energy)[0]
    shapes = shower_shapes({k: fractions[k] * keras.ops.reshape(energy, (-1, 1, 1)) for k, _ in LAYERS})
    response = sum(keras.ops.sum(keras.ops.reshape(fractions[k], (batch, -1)), axis=1) for k, _ in LAYERS)
    features = [shapes[k] for k in MATCHED_SHAPES] + [keras.ops.log(response + 1e-6)]
    if occupancy:
        for i, (k, _) in enumerate(LAYERS):
            hit = hits[i] if hits is not None else keras.ops.cast(fractions[k] > 0, "float32")
            features.append(keras.ops.mean(keras.ops.reshape(hit, (batch, -1)), axis=1))
    return keras.ops.stack(features, axis=-1)


def _group_means(x, groups):
    """(G, F) means of the rows of ``x`` (batch, F) in each one-hot group of ``groups`` (batch, G);
    zero for a group absent from the batch."""
    counts = keras.ops.maximum(keras.ops.sum(groups, axis=0), 1.0)[:, None]
    return keras.ops.matmul(keras.ops.transpose(groups), x) / counts


def feature_matching_loss(real, fake, groups=None):
    """Mean over features of |Δ mean| + |Δ std| between two (batch, F) sets, in units of the real std.

    Args:
        real: (batch, F) features of real showers.
        fake: (batch, F) features of generated showers with the same conditions, row by row.
        groups: (batch, G) one-hot membership (the particle type): the moments are matched
            within each group and the groups present in the batch are averaged. ``None``: one group.
    """
    if groups is None:
        groups = keras.ops.ones_like(real[:, :1])

    def moments(x):  # (G, F) means and spreads; finite gradient when a feature does not vary
        mean = _group_means(x, groups)
        var = _group_means((x - keras.ops.matmul(groups, mean)) ** 2, groups)  # about each row's own group mean
        return mean, keras.ops.sqrt(var + 1e-6)

    real_mean, real_std = moments(real)
    fake_mean, fake_std = moments(fake)
    scale = real_std + 1e-3
    per_group = keras.ops.mean((keras.ops.abs(fake_mean - real_mean) + keras.ops.abs(fake_std - real_std)) / scale,
                               axis=-1)
    present = keras.ops.cast(keras.ops.sum(groups, axis=0) > 0, per_group.dtype)
    return keras.ops.sum(per_group * present) / keras.ops.maximum(keras.ops.sum(present), 1.0)


def _conditions(latent_dim: int | None, particles: int):
    """The conditioning inputs (``noise`` when ``latent_dim``, ``log_energy``, ``particle``
    one-hot when ``particles > 1``), and the list of them a network concatenates."""
    inputs = {"noise": keras.Input((latent_dim,), name="noise")} if latent_dim else {}
    inputs["log_energy"] = keras.Input((1,), name="log_energy")
    if particles > 1:
        inputs["particle"] = keras.Input((particles,), name="particle")
    return inputs, list(inputs.values())


def _generator(latent_dim: int, hidden: int, particles: int, cell_threshold: float,
               cell_quantum: float, occupancy: bool = False) -> keras.Model:
    inputs, context = _conditions(latent_dim, particles)
    context = keras.layers.Concatenate()(context)
    outputs, previous = {}, []
    for i, (key, shape) in enumerate(LAYERS):
        h = keras.layers.Concatenate()([context, *previous]) if previous else context
        h = keras.layers.Dense(hidden, activation="relu")(h)
        h = keras.layers.Dense(hidden, activation="relu")(h)
        cells_in_layer = shape[0] * shape[1]
        if occupancy:  # an energy and a hit probability per cell; half the cells hit at first, each ≥ 2 / 504 of E
            uniforms = inputs[f"hit_noise_{i}"] = keras.Input((cells_in_layer,), name=f"hit_noise_{i}")
            energies = keras.layers.Dense(cells_in_layer, activation="relu",
                                          kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
                                          bias_initializer=keras.initializers.Constant(2.0 / _CELLS))(h)
            logits = keras.layers.Dense(cells_in_layer, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
                                        bias_initializer="zeros")(h)
            # a hit reads at least one quantum (or the threshold): the hits are the cells the readout sees
            floor = cell_quantum or cell_threshold
            cells, hits = HitMask(floor=floor, name=f"hits_{i}")([energies, logits, uniforms, inputs["log_energy"]])
            outputs[f"hits_{i}"] = hits
        else:
            # fractions of E, exact zeros possible. A new generator spreads E evenly over all 504 cells
            # (a small positive bias, small weights): every cell starts alive, none stuck at ReLU's zero.
            cells = keras.layers.Dense(cells_in_layer, activation="relu",
                                       kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
                                       bias_initializer=keras.initializers.Constant(1.0 / _CELLS))(h)
        if cell_threshold > 0:
            cells = ZeroSuppression(threshold=cell_threshold)([cells, inputs["log_energy"]])
        if cell_quantum > 0:
            cells = Quantization(quantum=cell_quantum)([cells, inputs["log_energy"]])
        previous.append(cells)
        outputs[key] = keras.layers.Reshape(shape, name=key)(cells)
    return keras.Model(inputs, outputs, name="generator")


def _discriminator(hidden: int, minibatch_kernels: int, particles: int) -> keras.Model:
    showers = {key: keras.Input(shape, name=key) for key, shape in LAYERS}
    inputs, parts = _conditions(None, particles)
    for key, shape in LAYERS:
        x = keras.layers.Reshape((*shape, 1))(showers[key])
        x = keras.layers.Conv2D(16, 3, padding="same")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
        parts.append(keras.layers.Flatten()(x))
        # the layer's total fraction of E: what the energy response looks like
        parts.append(keras.layers.Reshape((1,))(keras.layers.GlobalAveragePooling1D()(
            keras.layers.Reshape((shape[0] * shape[1], 1))(showers[key]))))
    h = keras.layers.Concatenate()(parts)
    h = keras.layers.Dense(hidden)(h)
    h = keras.layers.LeakyReLU(0.2)(h)
    if minibatch_kernels:
        h = MinibatchDiscrimination(kernels=minibatch_kernels, dim=8)(h)
    h = keras.layers.Dense(hidden // 2)(h)
    h = keras.layers.LeakyReLU(0.2)(h)
    return keras.Model({**showers, **inputs}, keras.layers.Dense(1, name="logit")(h), name="discriminator")


@keras.saving.register_keras_serializable(package="hepflow")
class CaloGAN(ShowerSampling, SavedOptimizers, keras.Model):
    """The generator and discriminator with a custom ``train_step`` (see the module docstring).

    Trains on batches ``(features, label)`` of the pipeline whose features hold ``layer_0``,
    ``layer_1``, ``layer_2`` (GeV) and ``energy`` (GeV); with ``particles > 1`` the label is the
    particle type (0 … particles − 1), otherwise it is ignored. ``model(inputs)`` with
    ``{"energy": (batch, 1), "noise": (batch, noise_dim)}`` (plus ``"particle"``: (batch,) ints
    when ``particles > 1``) returns showers in GeV (``noise_dim`` is ``latent_dim``, plus one per
    cell with ``occupancy``); :meth:`generate` draws the noise itself.

    Args:
        latent_dim: Noise dimension.
        hidden: Width of the dense layers.
        minibatch_kernels: Minibatch-discrimination projections (0: off).
        loss: ``"bce"`` or ``"wgan-gp"``.
        energy_weight: λ_E of the energy constraint.
        discriminator_steps: Discriminator updates per generator update (5 is usual for WGAN-GP).
        particles: Number of particle types it is conditioned on (1: one particle, no input).
        cell_threshold: Readout threshold (GeV) below which generated cells read zero (0: none).
        cell_quantum: Readout quantum (GeV) generated cells are rounded to (0: none).
        feature_weight: Weight of the physics feature-matching loss (0: off).
        occupancy: A hit probability per cell beside its energy (see the module docstring).
    """

    def __init__(self, *, latent_dim: int = 64, hidden: int = 256, minibatch_kernels: int = 32,
                 loss: str = "bce", energy_weight: float = 1.0, discriminator_steps: int = 1, particles: int = 1,
                 cell_threshold: float = 0.0, cell_quantum: float = 0.0, feature_weight: float = 1.0,
                 occupancy: bool = False, **kwargs):
        super().__init__(**kwargs)
        if loss not in ("bce", "wgan-gp"):
            raise ValueError(f"loss must be 'bce' or 'wgan-gp'. Received: loss={loss!r}")
        if int(particles) < 1 or float(cell_threshold) < 0 or float(cell_quantum) < 0:
            raise ValueError(f"Need particles ≥ 1, cell_threshold ≥ 0 and cell_quantum ≥ 0. Received: "
                             f"particles={particles}, cell_threshold={cell_threshold}, cell_quantum={cell_quantum}")
        self.latent_dim, self.hidden, self.minibatch_kernels = int(latent_dim), int(hidden), int(minibatch_kernels)
        self.loss_name, self.energy_weight = loss, float(energy_weight)
        self.discriminator_steps, self.particles = int(discriminator_steps), int(particles)
        self.cell_threshold, self.cell_quantum = float(cell_threshold), float(cell_quantum)
        self.feature_weight, self.occupancy = float(feature_weight), bool(occupancy)
        # the noise of one shower: the latent vector, then (occupancy) one number per cell for its hit draw
        self.noise_dim = self.latent_dim + (_CELLS if self.occupancy else 0)
        self.generator = _generator(self.latent_dim, self.hidden, self.particles, self.cell_threshold,
                                    self.cell_quantum, self.occupancy)
        self.discriminator = _discriminator(self.hidden, self.minibatch_kernels, self.particles)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.energy_tracker = keras.metrics.Mean(name="energy_loss")
        self.feature_tracker = keras.metrics.Mean(name="feature_loss")
        self.seed_generator = keras.random.SeedGenerator(0)
        self.built = True  # the generator and discriminator are built functional models

    # -- inference -------------------------------------------------------------
    def _conditions(self, energy, particle):
        """``{"log_energy", "particle" (one-hot, several particle types only)}`` for energies
        (batch, 1) and particle ids."""
        out = {"log_energy": keras.ops.log(energy)}
        if self.particles > 1:
            if particle is None:
                raise ValueError(f"This generator is conditioned on {self.particles} particle types: pass "
                                 f"`particle` (ints 0 … {self.particles - 1}). Received: particle=None")
            ids = keras.ops.reshape(keras.ops.cast(particle, "int32"), (-1,))
            out["particle"] = keras.ops.one_hot(ids, self.particles)
        return out

    def _generator_inputs(self, noise):
        """The generator's noise inputs from one (batch, noise_dim) standard-normal draw: the latent
        vector, and with ``occupancy`` uniforms Φ(noise) for the cells' hit draws, per layer."""
        inputs = {"noise": noise[:, :self.latent_dim]}
        if self.occupancy:
            uniforms = 0.5 * (1.0 + keras.ops.erf(noise[:, self.latent_dim:] / 2.0 ** 0.5))
            start = 0
            for i, (_, (r, c)) in enumerate(LAYERS):
                inputs[f"hit_noise_{i}"] = uniforms[:, start:start + r * c]
                start += r * c
        return inputs

    def call(self, inputs, training=False):
        energy = keras.ops.reshape(keras.ops.cast(inputs["energy"], "float32"), (-1, 1))
        conditions = self._conditions(energy, inputs.get("particle"))
        noise = keras.ops.cast(inputs["noise"], "float32")
        fractions = self.generator({**self._generator_inputs(noise), **conditions}, training=training)
        return {key: fractions[key] * keras.ops.reshape(energy, (-1, 1, 1)) for key, _ in LAYERS}

    # -- training --------------------------------------------------------------
    compiled_optimizers = ("d_optimizer", "g_optimizer")

    def compile(self, *, d_optimizer=None, g_optimizer=None, **kwargs):
        """Two Adam optimizers by default (lr 2e-4, β1 = 0.5; WGAN-GP: lr 1e-4, β = (0.5, 0.9))."""
        betas = (0.5, 0.9) if self.loss_name == "wgan-gp" else (0.5, 0.999)
        lr = 1e-4 if self.loss_name == "wgan-gp" else 2e-4
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(lr, beta_1=betas[0], beta_2=betas[1])
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(lr, beta_1=betas[0], beta_2=betas[1])
        super().compile(optimizer=self.g_optimizer, **kwargs)  # model.optimizer: the generator's
        # built now, in the strategy's scope, not inside the first traced step
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.energy_tracker, self.feature_tracker]

    def _split(self, data):
        """Real showers as fractions of E, and the conditions of the batch."""
        features = data[0] if isinstance(data, (tuple, list)) else data
        label = data[1] if isinstance(data, (tuple, list)) and len(data) > 1 else None
        energy = keras.ops.reshape(keras.ops.cast(features["energy"], "float32"), (-1, 1))
        scale = keras.ops.reshape(energy, (-1, 1, 1))
        real = {key: keras.ops.cast(features[key], "float32") / scale for key, _ in LAYERS}
        return real, self._conditions(energy, label)

    def _fake(self, conditions, training=True):
        """Generated showers as fractions of E (and, with ``occupancy``, ``hits_i``: the hit masks)."""
        batch = keras.ops.shape(conditions["log_energy"])[0]
        noise = keras.random.normal((batch, self.noise_dim), seed=self.seed_generator)
        return self.generator({**self._generator_inputs(noise), **conditions}, training=training)

    def _critic(self, showers, conditions, training=True):
        return self.discriminator({**{k: showers[k] for k, _ in LAYERS}, **conditions}, training=training)

    def _features(self, showers, energy):
        """The matched features of real showers or of generated ones (whose hit masks carry the gradient)."""
        hits = [showers[f"hits_{i}"] for i in range(len(LAYERS))] if "hits_0" in showers else None
        return _matched_features(showers, energy, occupancy=self.occupancy, hits=hits)

    def _target_response(self, real, conditions):
        """The mean response (deposit / E) of the real showers, per particle type when there are several."""
        response = self._response(real)
        if "particle" not in conditions:
            return keras.ops.mean(response)
        groups = conditions["particle"]  # (batch, particles) one-hot
        return keras.ops.matmul(groups, _group_means(response[:, None], groups))[:, 0]

    @staticmethod
    def _response(showers):
        return sum(keras.ops.sum(keras.ops.reshape(showers[k], (keras.ops.shape(showers[k])[0], -1)), axis=1)
                   for k, _ in LAYERS)

    def _d_loss(self, d_real, d_fake):
        """The discriminator's loss (without the gradient penalty)."""
        if self.loss_name == "bce":
            return keras.ops.mean(keras.ops.softplus(-d_real)) + keras.ops.mean(keras.ops.softplus(d_fake))
        return keras.ops.mean(d_fake) - keras.ops.mean(d_real)

    def _adversarial(self, d_fake):
        """The generator's adversarial loss (non-saturating for ``bce``)."""
        return keras.ops.mean(keras.ops.softplus(-d_fake)) if self.loss_name == "bce" else -keras.ops.mean(d_fake)

    def train_step(self, data):
        real, conditions = self._split(data)
        target = self._target_response(real, conditions)
        energy = keras.ops.exp(conditions["log_energy"])
        groups = conditions.get("particle")
        real_features = self._features(real, energy) if self.feature_weight else None
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for _ in range(self.discriminator_steps):
            with tf.GradientTape() as tape:
                fake = self._fake(conditions)
                d_loss = self._d_loss(self._critic(real, conditions), self._critic(fake, conditions))
                if self.loss_name == "wgan-gp":
                    d_loss += 10.0 * self._gradient_penalty(real, fake, conditions)
                scaled = d_loss / replicas
            grads = tape.gradient(scaled, self.discriminator.trainable_variables)
            self.d_optimizer.apply(grads, self.discriminator.trainable_variables)
        with tf.GradientTape() as tape:
            fake = self._fake(conditions)
            adversarial = self._adversarial(self._critic(fake, conditions))
            energy_loss = keras.ops.mean(keras.ops.abs(self._response(fake) - target))
            feature_loss = (feature_matching_loss(real_features, self._features(fake, energy), groups)
                            if self.feature_weight else keras.ops.zeros(()))
            g_loss = adversarial + self.energy_weight * energy_loss + self.feature_weight * feature_loss
            scaled = g_loss / replicas
        grads = tape.gradient(scaled, self.generator.trainable_variables)
        self.g_optimizer.apply(grads, self.generator.trainable_variables)
        return self._track(d_loss, adversarial, energy_loss, feature_loss)

    def _track(self, d_loss, adversarial, energy_loss, feature_loss):
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(adversarial)
        self.energy_tracker.update_state(energy_loss)
        self.feature_tracker.update_state(feature_loss)
        return {m.name: m.result() for m in self.metrics}

    def _gradient_penalty(self, real, fake, conditions):
        batch = keras.ops.shape(conditions["log_energy"])[0]
        eps = keras.random.uniform((batch, 1, 1), seed=self.seed_generator)
        mixed = {k: eps * real[k] + (1.0 - eps) * fake[k] for k, _ in LAYERS}
        with tf.GradientTape() as tape:
            tape.watch(list(mixed.values()))
            score = self._critic(mixed, conditions)
        grads = tape.gradient(score, [mixed[k] for k, _ in LAYERS])
        norm = keras.ops.sqrt(sum(keras.ops.sum(keras.ops.reshape(g, (batch, -1)) ** 2, axis=1) for g in grads) + 1e-12)
        return keras.ops.mean((norm - 1.0) ** 2)

    def test_step(self, data):
        real, conditions = self._split(data)
        fake = self._fake(conditions, training=False)
        d_fake = self._critic(fake, conditions, False)
        d_loss = self._d_loss(self._critic(real, conditions, False), d_fake)
        energy_loss = keras.ops.mean(keras.ops.abs(self._response(fake) - self._target_response(real, conditions)))
        energy = keras.ops.exp(conditions["log_energy"])
        feature_loss = feature_matching_loss(self._features(real, energy), self._features(fake, energy),
                                             conditions.get("particle"))
        return self._track(d_loss, self._adversarial(d_fake), energy_loss, feature_loss)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden": self.hidden,
                "minibatch_kernels": self.minibatch_kernels, "loss": self.loss_name,
                "energy_weight": self.energy_weight, "discriminator_steps": self.discriminator_steps,
                "particles": self.particles, "cell_threshold": self.cell_threshold,
                "cell_quantum": self.cell_quantum, "feature_weight": self.feature_weight, "occupancy": self.occupancy}


def calogan(*, latent_dim: int = 64, hidden: int = 256, minibatch_kernels: int = 32, loss: str = "bce",
            energy_weight: float = 1.0, discriminator_steps: int = 1, particles: int = 1,
            cell_threshold: float = 0.0, cell_quantum: float = 0.0, feature_weight: float = 1.0,
            occupancy: bool = False, name: str = "calogan") -> CaloGAN:
    """A :class:`CaloGAN` (factory for configs; see the class for the arguments)."""
    return CaloGAN(latent_dim=latent_dim, hidden=hidden, minibatch_kernels=minibatch_kernels, loss=loss,
                   energy_weight=energy_weight, discriminator_steps=discriminator_steps, particles=particles,
                   cell_threshold=cell_threshold, cell_quantum=cell_quantum, feature_weight=feature_weight, occupancy=occupancy,
                   name=name)
