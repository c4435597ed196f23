"""Shared test set-up: quiet TensorFlow, tiny shapes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
