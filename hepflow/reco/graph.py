"""``RecoGraph``: reconstruction steps as TF ops composed into a DAG and compiled into one graph.

A step reads products by name and makes products by name. A step is a TF function (any
callable of tensors: a plain function, a ``tf.function``, a Keras layer or model) or a wrapped
non-TF function (numpy, or C++ behind Python) that runs through ``tf.numpy_function`` with the
output shapes and dtypes it declares. Every tensor is batched: its first axis is the event.

The graph is checked once, when it is made: step names are unique, each product has one
maker, every input is a graph input or another step's product, there is no cycle, and the
products have the shapes and dtypes the steps declare (the whole graph is traced on the
declared input specs). Running it asks for products by name; only the steps they need run, in
topological order, inside one ``tf.function`` (``jit_compile=True``: each step XLA-compiled),
where TensorFlow's executor runs independent branches in parallel.

A graph is a pipeline transform (``make_dataset(..., transform=graph)``: reconstruction runs in
the first epoch and its products are cached after it), and saves as a SavedModel whose
signature takes the raw inputs and returns the requested products (:meth:`RecoGraph.save`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from hepflow.errors import ConfigError

__all__ = ["ProductSpec", "RecoGraph", "Step"]


@dataclasses.dataclass(frozen=True)
class ProductSpec:
    """The shape of one event's product (``None`` for a free axis) and its dtype."""

    shape: tuple[int | None, ...]
    dtype: str

    @classmethod
    def of(cls, spec: ProductSpec | tuple | Sequence) -> ProductSpec:
        """A ProductSpec from itself or ``(shape, dtype)``."""
        if isinstance(spec, ProductSpec):
            return spec
        shape, dtype = spec
        return cls(tuple(None if d is None else int(d) for d in shape), tf.as_dtype(dtype).name)

    def tensor_spec(self, name: str) -> tf.TensorSpec:
        """The batched ``tf.TensorSpec`` (a leading event axis)."""
        return tf.TensorSpec((None, *self.shape), tf.as_dtype(self.dtype), name=name)


@dataclasses.dataclass(frozen=True)
class Step:
    """One reconstruction step.

    Attributes:
        name: Unique name in its graph.
        fn: ``fn(*inputs) -> output`` (one output) or a tuple/dict of outputs (several), on
            batched tensors; with ``numpy=True`` it takes and returns numpy arrays.
        inputs: Product names read, in the order ``fn`` takes them.
        outputs: Product names made, in the order ``fn`` returns them (or the keys of its dict).
        specs: Declared product specs, ``name → (shape, dtype)`` per event; required for every
            output of a numpy step, checked for any other step that gives them.
        numpy: Run ``fn`` through ``tf.numpy_function`` (not serializable into a SavedModel).
        xla: When the graph compiles with XLA (``jit_compile=True``), compile this step too.
            Default True; False for a step whose output shapes depend on the data (``tf.where``,
            ``tf.boolean_mask``: XLA pads them to the largest case and runs far slower), which
            then runs in the graph between XLA-compiled steps.
    """

    name: str
    fn: Callable
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    specs: Mapping[str, ProductSpec] = dataclasses.field(default_factory=dict)
    numpy: bool = False
    xla: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "specs", {k: ProductSpec.of(v) for k, v in dict(self.specs).items()})
        where = f"Step {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"A step needs a non-empty name. Received: name={self.name!r}")
        if not callable(self.fn):
            raise ConfigError(f"{where}: fn must be callable. Received: {type(self.fn).__name__}")
        if not self.outputs:
            raise ConfigError(f"{where} makes no product; name its outputs. Received: outputs=()")
        if len(set(self.outputs)) != len(self.outputs):
            raise ConfigError(f"{where} names an output twice. Received: outputs={list(self.outputs)}")
        unknown = sorted(set(self.specs) - set(self.outputs))
        if unknown:
            raise ConfigError(f"{where} declares specs for products it does not make. Received: {unknown}")
        missing = [o for o in self.outputs if o not in self.specs]
        if self.numpy and missing:
            raise ConfigError(f"{where} wraps a numpy function, which must declare the shape and dtype of every "
                              f"output. Received: no spec for {missing}")

    def run(self, tensors: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """The step's outputs by name, from its input tensors."""
        if self.numpy:
            dtypes = [tf.as_dtype(self.specs[o].dtype) for o in self.outputs]
            out = tf.numpy_function(self._call_numpy, list(tensors), dtypes, stateful=False, name=self.name)
            out = out if isinstance(out, (list, tuple)) else [out]
            return {o: tf.ensure_shape(t, (None, *self.specs[o].shape)) for o, t in zip(self.outputs, out)}
        out = self.fn(*tensors)
        if isinstance(out, Mapping):
            missing = sorted(set(self.outputs) - set(out))
            if missing:
                raise ConfigError(f"Step {self.name!r} returned no {missing}. Received: keys {sorted(out)}")
            return {o: tf.convert_to_tensor(out[o]) for o in self.outputs}
        if len(self.outputs) == 1:
            return {self.outputs[0]: tf.convert_to_tensor(out)}
        if not isinstance(out, (list, tuple)) or len(out) != len(self.outputs):
            raise ConfigError(f"Step {self.name!r} must return {len(self.outputs)} outputs {list(self.outputs)}. "
                              f"Received: {type(out).__name__}")
        return {o: tf.convert_to_tensor(t) for o, t in zip(self.outputs, out)}

    def _call_numpy(self, *arrays):
        out = self.fn(*arrays)
        if isinstance(out, Mapping):
            out = [out[o] for o in self.outputs]
        elif len(self.outputs) == 1:
            out = [out]
        return [np.asarray(a, dtype=tf.as_dtype(self.specs[o].dtype).as_numpy_dtype) for o, a in zip(self.outputs, out)]


class RecoGraph:
    """A DAG of reconstruction steps, run as one compiled TF graph.

    Args:
        steps: The steps (any order).
        inputs: The graph's raw inputs: name → ``(shape, dtype)`` per event.
        outputs: Products returned when none are asked for (and what the graph adds to the
            features as a pipeline transform). Default: every product no step reads.
        keep_inputs: As a pipeline transform, also pass the raw inputs on. Default False.
        jit_compile: Compile each step with XLA (each its own cluster; steps with ``xla=False``
            and numpy steps run between them). Default False.
        name: The graph's name (in TensorBoard and the SavedModel).

    Raises:
        ConfigError: naming the step and product, for a duplicate step name, two makers of one
            product, an input nobody makes, a cycle, an unknown requested output, or a product
            whose shape or dtype differs from what a step declares.
    """

    def __init__(self, steps: Sequence[Step], *, inputs: Mapping[str, Any], outputs: Sequence[str] | None = None,
                 keep_inputs: bool = False, jit_compile: bool = False, name: str = "reco"):
        self.steps = list(steps)
        self.inputs = {k: ProductSpec.of(v) for k, v in inputs.items()}
        self.keep_inputs = bool(keep_inputs)
        self.jit_compile = bool(jit_compile)
        self.name = name
        self._maker = self._check_makers()
        self._order = self._topological_order()
        consumed = {i for s in self.steps for i in s.inputs}
        default = [p for s in self._order for p in s.outputs if p not in consumed]
        self.outputs = tuple(outputs) if outputs is not None else tuple(default)
        self._check_known(self.outputs, "outputs")
        self._compiled: dict[tuple[str, ...], Any] = {}
        self._xla_steps: dict[str, Any] = {}
        self.specs = self._trace_specs()

    # -- structure ----------------------------------------------------------------------------------

    @property
    def products(self) -> list[str]:
        """Every product, in topological order."""
        return [p for s in self._order for p in s.outputs]

    def steps_for(self, outputs: Sequence[str]) -> list[Step]:
        """The steps that ``outputs`` need, in topological order."""
        self._check_known(outputs, "outputs")
        needed: set[str] = set()
        todo = [o for o in outputs if o in self._maker]
        while todo:
            step = self._maker[todo.pop()]
            if step.name not in needed:
                needed.add(step.name)
                todo += [i for i in step.inputs if i in self._maker]
        return [s for s in self._order if s.name in needed]

    def _check_makers(self) -> dict[str, Step]:
        names: set[str] = set()
        maker: dict[str, Step] = {}
        for step in self.steps:
            if not isinstance(step, Step):
                raise ConfigError(f"RecoGraph {self.name!r}: steps must be Step objects. Received: {type(step).__name__}")
            if step.name in names:
                raise ConfigError(f"RecoGraph {self.name!r}: two steps are named {step.name!r}.")
            names.add(step.name)
            for product in step.outputs:
                if product in self.inputs:
                    raise ConfigError(f"Step {step.name!r} makes {product!r}, which is a graph input.")
                if product in maker:
                    raise ConfigError(f"Product {product!r} has two makers: steps {maker[product].name!r} and "
                                      f"{step.name!r}.")
                maker[product] = step
        for step in self.steps:
            for product in step.inputs:
                if product not in maker and product not in self.inputs:
                    raise ConfigError(f"Step {step.name!r} reads {product!r}, which no step makes and is not a graph "
                                      f"input. Received: inputs {sorted(self.inputs)}, products {sorted(maker)}")
        return maker

    def _topological_order(self) -> list[Step]:
        """Kahn's algorithm, in declaration order among ready steps."""
        waiting = {s.name: {i for i in s.inputs if i in self._maker} for s in self.steps}
        made: set[str] = set()
        order: list[Step] = []
        while len(order) < len(self.steps):
            ready = [s for s in self.steps if s not in order and waiting[s.name] <= made]
            if not ready:
                stuck = [s for s in self.steps if s not in order]
                cycle = ", ".join(f"{s.name} (reads {sorted(waiting[s.name] - made)})" for s in stuck)
                raise ConfigError(f"RecoGraph {self.name!r} has a cycle among steps: {cycle}")
            for step in ready:
                order.append(step)
                made.update(step.outputs)
        return order

    def _check_known(self, outputs: Sequence[str], what: str) -> None:
        unknown = [o for o in outputs if o not in self._maker and o not in self.inputs]
        if unknown:
            raise ConfigError(f"RecoGraph {self.name!r}: {what} names unknown products {unknown}. "
                              f"Received: products {self.products}")

    def _trace_specs(self) -> dict[str, ProductSpec]:
        """Traces every step once on the input specs and checks the declared product specs."""
        found: dict[str, ProductSpec] = dict(self.inputs)
        problems: list[str] = []

        def trace(**inputs):
            tensors = dict(inputs)
            for step in self._order:
                out = step.run([tensors[i] for i in step.inputs])
                for product, t in out.items():
                    declared = step.specs.get(product)
                    actual = ProductSpec(tuple(t.shape[1:]), t.dtype.name)
                    if declared is not None:
                        if declared.dtype != actual.dtype or not tf.TensorShape(declared.shape).is_compatible_with(
                                actual.shape):
                            problems.append(f"Step {step.name!r} makes {product!r} as {actual.shape} "
                                            f"{actual.dtype} per event, but declares {declared.shape} {declared.dtype}.")
                            return {}
                        t = tf.ensure_shape(t, (None, *declared.shape))
                        actual = ProductSpec(tuple(t.shape[1:]), t.dtype.name)
                    found[product] = actual
                    tensors[product] = t
            return {}

        tf.function(trace, autograph=False).get_concrete_function(**{k: s.tensor_spec(k) for k, s in self.inputs.items()})
        if problems:
            raise ConfigError(problems[0])
        return found

    # -- running ------------------------------------------------------------------------------------

    def run(self, inputs: Mapping[str, Any], outputs: Sequence[str] | None = None) -> dict[str, tf.Tensor]:
        """Runs the steps ``outputs`` need, compiled into one ``tf.function``.

        Args:
            inputs: Raw inputs by name (batched arrays or tensors); extra keys are ignored.
            outputs: Products to return. Default: the graph's ``outputs``.

        Raises:
            ConfigError: a requested product is unknown, or an input the steps need is missing.
        """
        outputs = tuple(outputs) if outputs is not None else self.outputs
        fn = self._compiled.get(outputs)
        if fn is None:
            self._check_known(outputs, "outputs")
            needed = self._needed_inputs(outputs)
            signature = {k: self.inputs[k].tensor_spec(k) for k in needed}
            fn = tf.function(lambda feats: self._execute(feats, outputs), input_signature=[signature],
                             reduce_retracing=True, autograph=False)
            self._compiled[outputs] = fn
        needed = self._needed_inputs(outputs)
        missing = sorted(set(needed) - set(inputs))
        if missing:
            raise ConfigError(f"RecoGraph {self.name!r}: the steps for {list(outputs)} need inputs {missing}. "
                              f"Received: {sorted(inputs)}")
        return fn({k: tf.convert_to_tensor(inputs[k], tf.as_dtype(self.inputs[k].dtype)) for k in needed})

    def compute(self, features: Mapping[str, tf.Tensor], outputs: Sequence[str] | None = None) -> dict[str, tf.Tensor]:
        """The steps ``outputs`` need, traced into the caller's context (inside its ``tf.function``,
        e.g. a SavedModel's signature that also runs networks); :meth:`run` compiles its own."""
        outputs = tuple(outputs) if outputs is not None else self.outputs
        self._check_known(outputs, "outputs")
        return self._execute(features, outputs)

    def __call__(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Pipeline transform: the features with the graph's ``outputs`` added (raw inputs dropped
        unless ``keep_inputs``); other features pass through."""
        products = self._execute(features, self.outputs)
        out = {k: v for k, v in features.items() if self.keep_inputs or k not in self.inputs}
        out.update(products)
        return out

    def _needed_inputs(self, outputs: Sequence[str]) -> list[str]:
        steps = self.steps_for(outputs)
        reads = {i for s in steps for i in s.inputs} | set(outputs)
        return [k for k in self.inputs if k in reads]

    @tf.autograph.experimental.do_not_convert
    def _execute(self, features: Mapping[str, tf.Tensor], outputs: Sequence[str]) -> dict[str, tf.Tensor]:
        """Traces the steps as written: AutoGraph does not rewrite them (steps are TF ops; a step
        that needs data-dependent control flow uses ``tf.cond``/``tf.while_loop``)."""
        tensors = dict(features)
        for step in self.steps_for(outputs):
            try:
                args = [tensors[i] for i in step.inputs]
            except KeyError as e:
                raise ConfigError(f"Step {step.name!r} needs input {e.args[0]!r}. Received: features "
                                  f"{sorted(features)}") from None
            with tf.name_scope(step.name):
                tensors.update(self._runner(step)(args))
        return {o: tensors[o] for o in outputs}

    def _runner(self, step: Step) -> Callable[[Sequence[tf.Tensor]], dict[str, tf.Tensor]]:
        """``step.run``, XLA-compiled when the graph and the step allow it (one function per step, reused)."""
        if not (self.jit_compile and step.xla and not step.numpy):
            return step.run
        if step.name not in self._xla_steps:
            self._xla_steps[step.name] = tf.function(step.run, jit_compile=True, reduce_retracing=True, autograph=False)
        return self._xla_steps[step.name]

    # -- showing, saving ----------------------------------------------------------------------------

    def describe(self) -> str:
        """The steps in order with what each reads and makes, and every product's spec."""
        lines = [f"RecoGraph {self.name!r}: {len(self.steps)} steps, inputs {list(self.inputs)}, "
                 f"outputs {list(self.outputs)}"]
        for step in self._order:
            kind = "numpy" if step.numpy else "tf"
            lines.append(f"  {step.name} [{kind}]: {', '.join(step.inputs)} -> {', '.join(step.outputs)}")
        lines.append("products (per event):")
        for name, spec in self.specs.items():
            lines.append(f"  {name}: {list(spec.shape)} {spec.dtype}")
        return "\n".join(lines)

    def plot(self, path: str) -> None:
        """Draws the DAG (inputs and steps in layers, arrows labelled with products) as a PNG."""
        import matplotlib  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # start-up: pyplot costs ~0.35 s; imported when a plot is drawn

        level = {k: 0 for k in self.inputs}
        for step in self._order:
            level[step.name] = 1 + max((level[self._maker[i].name] if i in self._maker else level[i]
                                        for i in step.inputs), default=0)
        columns: dict[int, list[str]] = {}
        for node, lv in level.items():
            columns.setdefault(lv, []).append(node)
        pos = {node: (lv, -k) for lv, nodes in columns.items() for k, node in enumerate(nodes)}
        fig, ax = plt.subplots(figsize=(2.6 * (len(columns) + 1), 1.0 + 0.9 * max(len(c) for c in columns.values())))
        for step in self._order:
            for product in step.inputs:
                src = self._maker[product].name if product in self._maker else product
                (x0, y0), (x1, y1) = pos[src], pos[step.name]
                ax.annotate("", (x1 - 0.3, y1), (x0 + 0.3, y0), arrowprops={"arrowstyle": "->", "color": "0.4"})
                ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.08, product, fontsize=7, ha="center", color="0.3")
        for node, (x, y) in pos.items():
            is_input = node in self.inputs
            ax.text(x, y, node, ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round", "fc": "#dde8f5" if is_input else "#f5e6cc", "ec": "0.5"})
        ax.set_xlim(-0.6, len(columns) - 0.4)
        ax.set_ylim(-max(len(c) for c in columns.values()) + 0.4, 0.6)
        ax.axis("off")
        ax.set_title(f"RecoGraph {self.name}: inputs (blue), steps (orange)", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def log_graph(self, logdir: str, outputs: Sequence[str] | None = None) -> None:
        """Writes the compiled graph of ``outputs`` to a TensorBoard log (the Graphs tab)."""
        outputs = tuple(outputs) if outputs is not None else self.outputs
        needed = self._needed_inputs(outputs)
        fn = tf.function(lambda **feats: self._execute(feats, outputs))
        concrete = fn.get_concrete_function(**{k: self.inputs[k].tensor_spec(k) for k in needed})
        writer = tf.summary.create_file_writer(logdir)
        with writer.as_default():
            tf.summary.graph(concrete.graph)
        writer.flush()

    def save(self, path: str, outputs: Sequence[str] | None = None) -> None:
        """Saves a SavedModel whose ``serving_default`` takes the raw inputs the ``outputs`` need
        (batched) and returns the ``outputs``; it loads with ``tf.saved_model.load`` alone.

        Raises:
            ConfigError: a needed step wraps a numpy function (a SavedModel cannot hold Python).
        """
        outputs = tuple(outputs) if outputs is not None else self.outputs
        python = [s.name for s in self.steps_for(outputs) if s.numpy]
        if python:
            raise ConfigError(f"RecoGraph {self.name!r}: steps {python} wrap numpy functions, which a SavedModel "
                              "cannot hold; write them as TF ops to save the graph.")
        needed = self._needed_inputs(outputs)
        module = tf.Module(name=self.name)
        module.graph_steps = [s.fn for s in self.steps_for(outputs) if isinstance(s.fn, tf.Module)]  # track variables
        module.serve = tf.function(lambda **feats: self._execute(feats, outputs))
        concrete = module.serve.get_concrete_function(**{k: self.inputs[k].tensor_spec(k) for k in needed})
        tf.saved_model.save(module, path, signatures={"serving_default": concrete})

    def get_config(self) -> dict[str, Any]:
        """What the graph computes, by value: each step's function, inputs, outputs and specs (a
        disk cache fingerprints transforms by this)."""
        return {"name": self.name, "inputs": {k: dataclasses.asdict(v) for k, v in self.inputs.items()},
                "outputs": list(self.outputs), "keep_inputs": self.keep_inputs, "jit_compile": self.jit_compile,
                "steps": [{"name": s.name, "fn": s.fn, "inputs": list(s.inputs), "outputs": list(s.outputs),
                           "numpy": s.numpy, "specs": {k: dataclasses.asdict(v) for k, v in s.specs.items()}}
                          for s in self._order]}
