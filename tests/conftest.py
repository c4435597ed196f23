"""Imports `mer` before any test module can import TensorFlow, so that the suite runs with the
settings the package makes on import (TensorFlow's oneDNN kernels on, see mer/__init__.py)."""

import mer  # noqa: F401
