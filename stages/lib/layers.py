"""The project's own Keras layers, registered so that saved models load with safe_mode=True.

Import this module before `keras.models.load_model` on a transfer or fine-tuned model.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="catsdogs")
class CaffePreprocess(keras.layers.Layer):
    """RGB [0, 255] -> BGR minus the ImageNet channel means: what ResNet50 and VGG16 weights expect."""

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        return inputs[..., ::-1] - keras.ops.convert_to_tensor(self.MEAN_BGR, dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="catsdogs")
class InferenceMode(keras.layers.Layer):
    """Calls the wrapped model with training=False, whatever mode the outer model runs in.

    In Keras 3 a Functional model passes its own `training` flag to every layer it calls, replacing a
    `training=False` written in the graph (keras-team/keras#20285): `fit` would put the base's
    BatchNorm layers in training mode as soon as they are unfrozen. This layer's call takes no
    `training` argument, so nothing overrides the one it passes on.
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def call(self, inputs):
        return self.layer(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config.pop("layer")), **config)
