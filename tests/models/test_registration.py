"""`import mer` alone registers every Keras class the package defines, so that any family's
saved model (FMER's P3D blocks, the flow baseline's scaler, ...) reloads with
`keras.saving.load_model` in a fresh process."""

import json
import os
import subprocess
import sys

from mer.config import PROJECT_ROOT

PROGRAM = """
import importlib, json, pkgutil
import keras
import mer
import mer.models
before = set(keras.saving.get_custom_objects())
for module in pkgutil.iter_modules(mer.models.__path__):
    importlib.import_module(f"mer.models.{module.name}")
after = set(keras.saving.get_custom_objects())
print(json.dumps({"before": sorted(before), "added": sorted(after - before)}))
"""


def test_import_mer_registers_every_models_class():
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"},
        check=True,
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["added"] == []  # importing every module of mer.models registered nothing new
    assert {"mer>P3DBottleneck", "mer>Standardize", "mer>AUBinaryCrossentropy"} <= set(
        found["before"]
    )
