"""`python -m mer export`: a saved model as a TensorFlow SavedModel and/or an ONNX file.

Both go through Keras's own `model.export`. SavedModel needs TensorFlow (installed with the
project) and runs on the TensorFlow or JAX backend; ONNX on TensorFlow's (`BACKENDS`). ONNX on
the TensorFlow backend goes through `tf2onnx`, which the project does not install (about 100 MB
with onnx and onnxruntime): `pip install -r requirements-onnx.txt`. Each exported file is
reloaded and run on a random clip beside the Keras model, and the largest difference of the
probabilities is printed. The preprocessing side file is copied beside the exports: the exported
graphs take normalised float32 inputs (clips, flow images), as `predict` feeds them.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import keras
import numpy as np

from mer.bundle import Bundle, load_bundle, metadata_path

ONNX_HELP = "pip install -r requirements-onnx.txt (tf2onnx, onnx, onnxruntime)"
# Where each format is exported from: Keras's SavedModel export needs TensorFlow's or JAX's
# graph (jax2tf); ONNX is converted from TensorFlow's by tf2onnx (requirements-onnx.txt). The
# .keras file is the same on every backend, so KERAS_BACKEND=tensorflow exports any run.
BACKENDS = {"savedmodel": ("tensorflow", "jax"), "onnx": ("tensorflow",)}


def check_backend(kind: str) -> None:
    """Raises ValueError, in one line, when the current backend cannot export `kind`."""
    backend = keras.backend.backend()
    if backend not in BACKENDS[kind]:
        raise ValueError(
            f"{kind} export runs on the {' or '.join(BACKENDS[kind])} backend, not {backend}: "
            "run it with KERAS_BACKEND=tensorflow (the saved model is the same on every backend)"
        )


def _probe(bundle: Bundle) -> list[np.ndarray]:
    """One random normalised sample per input, (1, *input shape) float32."""
    random = np.random.default_rng(0)
    return [
        random.standard_normal((1, *tensor.shape[1:])).astype(np.float32)
        for tensor in bundle.model.inputs
    ]


def _reference(bundle: Bundle, probe: list[np.ndarray]) -> np.ndarray:
    return np.asarray(bundle.model.predict(probe[0] if len(probe) == 1 else probe, verbose=0))


def export_savedmodel(bundle: Bundle, target: Path) -> float:
    """Writes a SavedModel (endpoint `serve`); returns its largest difference from Keras.

    Raises:
        ValueError: TensorFlow is not installed.
    """
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ValueError(
            "SavedModel export needs TensorFlow: pip install tensorflow-cpu"
        ) from error
    probe = _probe(bundle)
    reference = _reference(bundle, probe)  # also a first call, which export needs
    bundle.model.export(str(target), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(target))  # kept: its function needs it alive
    served = loaded.serve(probe[0] if len(probe) == 1 else probe)
    return float(np.abs(np.asarray(served) - reference).max())


def export_onnx(bundle: Bundle, target: Path) -> float | None:
    """Writes an ONNX file; returns its largest difference from Keras, or None when
    onnxruntime is not there to check it.

    Raises:
        ValueError: the converter is not installed, or the export failed.
    """
    probe = _probe(bundle)
    reference = _reference(bundle, probe)  # also a first call, which export needs
    try:
        bundle.model.export(str(target), format="onnx", verbose=False)
    except ImportError as error:
        raise ValueError(
            f"ONNX export on {keras.backend.backend()} needs {error.name or error}: {ONNX_HELP}"
        ) from error
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    outputs = session.run(None, dict(zip(names, probe, strict=True)))[0]
    return float(np.abs(outputs - reference).max())


def export_command(arguments: argparse.Namespace) -> int:
    """`python -m mer export --model PATH --out DIR [--format savedmodel onnx]`."""
    for kind in arguments.format:
        check_backend(kind)
    bundle = load_bundle(arguments.model)
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = Path(arguments.model)
    if model_path.is_dir():
        model_path = model_path / "final_model.keras"
    shutil.copyfile(metadata_path(model_path), out / metadata_path(model_path).name)
    for kind in arguments.format:
        if kind == "savedmodel":
            target = out / "saved_model"
            difference = export_savedmodel(bundle, target)
        else:
            target = out / "model.onnx"
            difference = export_onnx(bundle, target)
        check = (
            "not checked (no onnxruntime)"
            if difference is None
            else f"max |difference| from Keras {difference:.2e}"
        )
        print(f"{kind}: {target} ({check})")
    side = out / metadata_path(model_path).name
    print(f"Preprocessing: {side} (the inputs are normalised float32 arrays)")
    return 0
