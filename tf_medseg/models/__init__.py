"""Keras functional U-Net and Attention U-Net; ``build_model`` maps ``model.name`` to a builder."""

from __future__ import annotations

import keras

from tf_medseg.models.attention_unet import attention_gate, build_attention_unet
from tf_medseg.models.blocks import FusedBatchNormalization
from tf_medseg.models.unet import build_unet

BUILDERS = {"unet": build_unet, "attention_unet": build_attention_unet}


def build_model(config, task=None) -> keras.Model:
    """The model a :class:`tf_medseg.config.Config` describes for the data's
    :class:`~tf_medseg.data.task.Task` (default: the UW-Madison one): uncompiled, logits out
    (background + classes for a softmax output, else one per class; a list of outputs with
    ``model.deep_supervision``). Input channels: the data's channels x the context offsets."""
    from tf_medseg.data.task import KAGGLE, num_outputs, output_of

    task = task or KAGGLE
    m, d = config.model, config.data
    channels = task.num_channels * len(d.context)
    return BUILDERS[m.name]((*d.image_size, channels), num_outputs(output_of(config, task), task),
                            base_filters=m.base_filters, depth=m.depth,
                            batch_norm=m.batch_norm, dropout=m.dropout,
                            upsampling=m.upsampling, up_kernel=m.up_kernel,
                            deep_supervision=m.deep_supervision, encoder=m.encoder,
                            encoder_weights=m.encoder_weights)


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
