"""ONNX export of a SavedModel export's signatures (the ``[onnx]`` extra: tf2onnx + onnxruntime).

``hepflow export RUN_DIR OUT --onnx`` writes, beside the SavedModel, ``onnx/serving_default.onnx``
(the raw inputs, with the training-time preprocessing — jet images, particle features — converted
into ONNX operators) and ``onnx/serve_features.onnx`` (the model's own inputs). Each file is
checked against the SavedModel with ONNX Runtime on real rows before it is renamed into place.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

__all__ = ["export_onnx", "require_onnx", "ONNX_DIR", "DEFAULT_OPSET"]

#: Folder of the ONNX files inside an export version folder.
ONNX_DIR = "onnx"
#: ONNX operator set of the conversion (ONNX Runtime ≥ 1.12 runs it).
DEFAULT_OPSET = 17


def require_onnx():
    """Imports ``tf2onnx`` and ``onnxruntime``, or says which extra to install."""
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as e:
        raise ImportError("ONNX export needs the [onnx] extra: pip install -e '.[onnx]' (tf2onnx and onnxruntime). "
                          f"Received: {e}") from None
    return tf2onnx, onnxruntime


def export_onnx(saved_model_dir: str, check_inputs: Mapping[str, np.ndarray], *, signature: str = "serving_default",
                output: str | None = None, opset: int = DEFAULT_OPSET, atol: float = 1e-4) -> str:
    """Converts one signature of a SavedModel to ONNX and checks it against TensorFlow.

    Args:
        saved_model_dir: An export version folder (``hepflow.serving.export``).
        check_inputs: A batch for the signature (input name → array, a few real rows): the
            ONNX Runtime scores must match the SavedModel's within ``atol``.
        signature: ``serving_default`` (raw inputs, preprocessing inside) or ``serve_features``.
        output: The ``.onnx`` path; default ``saved_model_dir/onnx/<signature>.onnx``.
        opset: ONNX operator set.
        atol: Largest absolute score difference accepted.

    Returns:
        The path of the ``.onnx`` file, written atomically (temp file + rename).

    Raises:
        ImportError: The ``[onnx]`` extra is missing.
        KeyError: An unknown signature, or ``check_inputs`` lacking one of its inputs.
        ValueError: ONNX Runtime disagrees with TensorFlow on ``check_inputs``.
    """
    tf2onnx, ort = require_onnx()
    loaded = tf.saved_model.load(saved_model_dir)
    if signature not in loaded.signatures:
        raise KeyError(f"{saved_model_dir} has no signature {signature!r}. Received: {sorted(loaded.signatures)}")
    fn = loaded.signatures[signature]
    specs = [tf.TensorSpec(s.shape, s.dtype, name=name) for name, s in sorted(fn.structured_input_signature[1].items())]
    missing = [s.name for s in specs if s.name not in check_inputs]
    if missing:
        raise KeyError(f"check_inputs lacks {missing} of signature {signature!r}. Received: {sorted(check_inputs)}")
    names = [s.name for s in specs]

    @tf.function
    def positional(*tensors):  # tf2onnx wants positional inputs; the signature takes keywords
        return fn(**dict(zip(names, tensors)))

    output = output or os.path.join(saved_model_dir, ONNX_DIR, f"{signature}.onnx")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        tf2onnx.convert.from_function(positional, input_signature=specs, opset=opset, output_path=tmp)
        feed = {s.name: np.asarray(check_inputs[s.name], dtype=s.dtype.as_numpy_dtype) for s in specs}
        expected = fn(**{k: tf.constant(v) for k, v in feed.items()})["score"].numpy()
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got = session.run(["score"], feed)[0]
        diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        if not diff <= atol:
            raise ValueError(f"The ONNX conversion of {saved_model_dir} ({signature}) disagrees with the SavedModel: "
                             f"largest score difference {diff:.3g} > atol={atol} on {len(expected)} rows.")
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return output
