"""Keras functional U-Net and Attention U-Net; ``build_model`` maps ``model.name`` to a builder."""

from __future__ import annotations

import keras

from tf_medseg.models.attention_unet import attention_gate, build_attention_unet
from tf_medseg.models.blocks import FusedBatchNormalization
from tf_medseg.models.unet import build_unet

BUILDERS = {"unet": build_unet, "attention_unet": build_attention_unet}


def build_model(config) -> keras.Model:
    """The model a :class:`tf_medseg.config.Config` describes (uncompiled, logits out; a list
    of outputs with ``model.deep_supervision``)."""
    from tf_medseg.config import CLASSES

    m, d = config.model, config.data
    return BUILDERS[m.name]((*d.image_size, len(d.context)), len(CLASSES),
                            base_filters=m.base_filters, depth=m.depth,
                            batch_norm=m.batch_norm, dropout=m.dropout,
                            upsampling=m.upsampling, up_kernel=m.up_kernel,
                            deep_supervision=m.deep_supervision)


def main_output(model: keras.Model) -> keras.Model:
    """The model itself, or for a deep-supervision model (outputs listed, or concatenated for
    training) the same layers with only the full-resolution ``logits`` output, which is what
    evaluation and export use."""
    logits = model.get_layer("logits").output
    if len(model.outputs) == 1 and model.outputs[0].shape == logits.shape:
        return model
    return keras.Model(model.inputs, logits, name=model.name)


__all__ = ["build_unet", "build_attention_unet", "attention_gate", "build_model", "main_output",
           "FusedBatchNormalization", "BUILDERS"]
