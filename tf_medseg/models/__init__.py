"""Keras functional U-Net and Attention U-Net; ``build_model`` maps ``model.name`` to a builder."""

from __future__ import annotations

import keras

from tf_medseg.models.attention_unet import attention_gate, build_attention_unet
from tf_medseg.models.unet import build_unet

BUILDERS = {"unet": build_unet, "attention_unet": build_attention_unet}


def build_model(config) -> keras.Model:
    """The model a :class:`tf_medseg.config.Config` describes (uncompiled, logits out)."""
    from tf_medseg.config import CLASSES

    m, d = config.model, config.data
    return BUILDERS[m.name]((*d.image_size, len(d.context)), len(CLASSES),
                            base_filters=m.base_filters, depth=m.depth,
                            batch_norm=m.batch_norm, dropout=m.dropout,
                            upsampling=m.upsampling)


__all__ = ["build_unet", "build_attention_unet", "attention_gate", "build_model", "BUILDERS"]
