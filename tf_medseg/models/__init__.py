"""Keras functional U-Net and Attention U-Net, 2D and 2.5D, logits out.

Builders take shapes and counts only (``input_shape``, the number of logit channels):
:func:`build_unet`, :func:`build_attention_unet` (:mod:`~tf_medseg.models.unet`,
:mod:`~tf_medseg.models.attention_unet`, their blocks in :mod:`~tf_medseg.models.blocks`,
pretrained backbones in :mod:`~tf_medseg.models.encoders`); :func:`build_model` maps
``model.name`` to one (:mod:`~tf_medseg.models.factory`); :mod:`~tf_medseg.models.outputs` says
what the logits mean.
"""

from tf_medseg.models.attention_unet import attention_gate, build_attention_unet
from tf_medseg.models.blocks import FusedBatchNormalization
from tf_medseg.models.factory import BUILDERS, build_model, main_output
from tf_medseg.models.unet import build_unet

__all__ = ["build_unet", "build_attention_unet", "attention_gate", "build_model", "main_output",
           "FusedBatchNormalization", "BUILDERS"]
