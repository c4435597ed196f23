"""The conv blocks pool before their LeakyReLU (cheaper); the values are those of the published
order conv -> LeakyReLU -> pool."""

import keras
import numpy as np

from mer.models.builders import build_mlsp_model


def test_pool_then_activation_equals_the_published_order():
    model = build_mlsp_model((6, 20, 20, 3), 3, branch_filters=4, merge_filters=4, gru_units=16,
                             heads=2, dense_units=[4], head_units=[4])
    clip = np.random.default_rng(0).standard_normal((2, 6, 20, 20, 3)).astype("float32")
    ours = keras.Model(model.input, model.get_layer("branch5_leaky").output)(clip)
    conv = model.get_layer("branch5_conv")
    published = keras.layers.MaxPooling3D(3, strides=3, padding="same")(
        keras.layers.LeakyReLU(0.2)(conv(clip))
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(published)
    )
