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

from hepflow.io import atomic_path

__all__ = ["export_onnx", "require_onnx", "ONNX_DIR", "DEFAULT_OPSET"]

#: Folder of the ONNX files inside an export version folder.
ONNX_DIR = "onnx"
#: ONNX operator set of the conversion (ONNX Runtime ≥ 1.12 runs it).
DEFAULT_OPSET = 17


def require_onnx():
    """Imports ``tf2onnx`` and ``onnxruntime``, or says which extra to install."""
    try:
        import onnxruntime  # optional extra [onnx]
        import tf2onnx  # optional extra [onnx]
    except ImportError as e:
        raise ImportError("ONNX export needs the [onnx] extra: pip install -e '.[onnx]' (tf2onnx and onnxruntime). "
                          f"Received: {e}") from None
    return tf2onnx, onnxruntime


def export_onnx(saved_model_dir: str, check_inputs: Mapping[str, Mapping[str, np.ndarray]], *,
                opset: int = DEFAULT_OPSET, atol: float = 1e-4, outlier_fraction: float = 0.1,
                outlier_atol: float = 0.05) -> dict[str, str]:
    """Converts signatures of a SavedModel to ONNX and checks each against TensorFlow.

    Args:
        saved_model_dir: An export version folder (``hepflow.serving.export``).
        check_inputs: Signature name (``serving_default``: raw inputs, preprocessing inside;
            ``serve_features``: the model's inputs) → a batch for it (input name → array, a few
            real rows). Each signature is converted, and its ONNX Runtime scores on that batch
            must match the SavedModel's within ``atol`` on at least ``1 − outlier_fraction`` of
            the rows, and within ``outlier_atol`` on every row.
        opset: ONNX operator set.
        atol: Largest absolute score difference accepted on most rows. Default 1e-4.
        outlier_fraction: Rows allowed beyond ``atol``. Default 0.1: models that pick
            neighbours on learned features (ParticleNet's k nearest neighbours) are
            discontinuous where two distances nearly tie, and float rounding that differs
            between runtimes flips the choice on a few jets (the SavedModel alone changes such
            scores by up to ~1e-3 between batch sizes); a conversion error moves every row.
        outlier_atol: Largest difference accepted on any row. Default 0.05.

    Returns:
        Signature name → the path of its ``saved_model_dir/onnx/<signature>.onnx``, each written
        atomically (temp file + rename).

    Raises:
        ImportError: The ``[onnx]`` extra is missing.
        KeyError: An unknown signature, or a batch lacking one of its signature's inputs.
        ValueError: ONNX Runtime disagrees with TensorFlow on a batch.
    """
    tf2onnx, ort = require_onnx()
    loaded = tf.saved_model.load(saved_model_dir)
    paths = {}
    for signature, batch in check_inputs.items():
        if signature not in loaded.signatures:
            raise KeyError(f"{saved_model_dir} has no signature {signature!r}. Received: {sorted(loaded.signatures)}")
        paths[signature] = _convert(tf2onnx, ort, saved_model_dir, signature, loaded.signatures[signature], batch,
                                    opset=opset, atol=atol, outlier_fraction=outlier_fraction,
                                    outlier_atol=outlier_atol)
    return paths


def _convert(tf2onnx, ort, saved_model_dir: str, signature: str, fn, batch: Mapping[str, np.ndarray], *,
             opset: int, atol: float, outlier_fraction: float, outlier_atol: float) -> str:
    """One signature function → ``saved_model_dir/onnx/<signature>.onnx``, checked with ONNX Runtime on ``batch``."""
    specs = [tf.TensorSpec(s.shape, s.dtype, name=name) for name, s in sorted(fn.structured_input_signature[1].items())]
    missing = [s.name for s in specs if s.name not in batch]
    if missing:
        raise KeyError(f"check_inputs lacks {missing} of signature {signature!r}. Received: {sorted(batch)}")
    names = [s.name for s in specs]

    @tf.function
    def positional(*tensors):  # tf2onnx wants positional inputs; the signature takes keywords
        return fn(**dict(zip(names, tensors)))

    output = os.path.join(saved_model_dir, ONNX_DIR, f"{signature}.onnx")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with atomic_path(output) as tmp:
        tf2onnx.convert.from_function(positional, input_signature=specs, opset=opset, output_path=tmp)
        feed = {s.name: np.asarray(batch[s.name], dtype=s.dtype.as_numpy_dtype) for s in specs}
        expected = fn(**{k: tf.constant(v) for k, v in feed.items()})["score"].numpy()
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got = session.run(["score"], feed)[0]
        diff = np.abs(np.asarray(got, np.float64) - expected).reshape(len(expected), -1).max(axis=1) \
            if expected.size else np.zeros(1)
        beyond = float(np.mean(diff > atol))
        if not (beyond <= outlier_fraction and diff.max() <= outlier_atol):
            raise ValueError(f"The ONNX conversion of {saved_model_dir} ({signature}) disagrees with the SavedModel: "
                             f"{100 * beyond:.0f} % of {len(expected)} rows differ by more than atol={atol} (at most "
                             f"{100 * outlier_fraction:.0f} % may), largest score difference {diff.max():.3g} "
                             f"(at most {outlier_atol}).")
    return output
