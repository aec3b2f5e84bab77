"""The one dispatcher from a ``model:`` config section to a builder (Model Garden's factory),
and the full-resolution head of a deep-supervision model."""

from __future__ import annotations

from typing import Sequence

import keras

from tf_medseg.models.attention_unet import build_attention_unet
from tf_medseg.models.unet import build_unet

BUILDERS = {"unet": build_unet, "attention_unet": build_attention_unet}


def build_model(model_config, input_shape: Sequence[int], num_outputs: int) -> keras.Model:
    """The network a ``model:`` config section describes: uncompiled, float32 logits out
    (``num_outputs`` channels; a list of outputs with ``model.deep_supervision``); 2D or
    3D as ``input_shape`` has two or three sizes before the channels (``model.dims``)."""
    m = model_config
    return BUILDERS[m.name](tuple(input_shape), num_outputs,
                            base_filters=m.base_filters, depth=m.depth,
                            norm=m.norm if m.batch_norm else "none",
                            activation=m.activation, dropout=m.dropout,
                            upsampling=m.upsampling, up_kernel=m.up_kernel,
                            deep_supervision=m.deep_supervision, encoder=m.encoder,
                            encoder_weights=m.encoder_weights, strides=m.strides,
                            kernels=m.kernels)


def main_output(model: keras.Model) -> keras.Model:
    """The model itself, or for a deep-supervision model (outputs listed, or concatenated for
    training) the same layers with only the full-resolution ``logits`` output, which is what
    evaluation and export use. A network of your own with one output and no layer named
    ``logits`` (the peer of ``benchmarks/``) is its own main output."""
    names = {layer.name for layer in model.layers}
    if "logits" not in names and len(model.outputs) == 1:
        return model
    logits = model.get_layer("logits").output
    if len(model.outputs) == 1 and model.outputs[0].shape == logits.shape:
        return model
    return keras.Model(model.inputs, logits, name=model.name)
