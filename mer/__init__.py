"""mer: a training suite for micro-expression recognition.

Importing the package registers its Keras layers and losses, so that a saved `.keras` model
reloads with `keras.saving.load_model`.

It also switches TensorFlow's oneDNN kernels on unless `TF_ENABLE_ONEDNN_OPTS` says otherwise:
TensorFlow 2.21 uses them by default only on CPUs with AVX512_VNNI, AVX512_BF16, AVX-VNNI or AMX,
and without them its Conv3D trains MLSP 4.8x slower at 10x128x128x3 on an AVX2-only CPU (issue
15; README, "Performance"). This acts only when `mer` is imported before TensorFlow.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from mer.models import dual_atme as _dual_atme  # noqa: F401
from mer.models import flow_baseline as _flow_baseline  # noqa: F401
from mer.models import fmer as _fmer  # noqa: F401  (and fmer_layers: P3D, the AU graph)
from mer.models import layers as _layers  # noqa: F401
from mer.models import losses as _losses  # noqa: F401
