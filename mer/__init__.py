"""mer: a training suite for micro-expression recognition.

Importing the package registers its Keras layers and losses, so that a saved `.keras` model
reloads with `keras.saving.load_model`.
"""

from mer.models import dual_atme as _dual_atme  # noqa: F401
from mer.models import layers as _layers  # noqa: F401
from mer.models import losses as _losses  # noqa: F401
