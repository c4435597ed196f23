"""Imports `mer` before any test module can import TensorFlow, so that the suite runs with the
settings the package makes on import (TensorFlow's oneDNN kernels on, see mer/__init__.py);
and the fixtures that the end-to-end tests of the AU-frame families (FMER, the AU detector)
share."""

import pytest

import mer  # noqa: F401


@pytest.fixture(scope="module")
def eager_keras_steps():
    """Keras's steps run eagerly in this module: tracing a deep tiny network (FMER's P3D-63)
    costs far more on 2 cores than its few steps do."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def two_subject_demo(tmp_path_factory):
    """The 2-subject demo (6 clips, one per class and subject, real-face frames so dlib finds
    the landmarks) and its sheet: (root, sheet), the clips under root / "demo"."""
    from mer.data.synthetic import DemoSpec, generate_demo

    root = tmp_path_factory.mktemp("demo")
    spec = DemoSpec(subjects=2, clips_per_class=1, frames=16, size=96)
    return root, generate_demo(root / "demo", spec)
