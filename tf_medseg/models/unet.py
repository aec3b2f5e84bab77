"""U-Net (Ronneberger et al. 2015) for multi-label segmentation, returning logits."""

from __future__ import annotations

from typing import Sequence

import keras
from tf_medseg.models.blocks import check_input, decoder, encoder, input_layer, logits_head


def build_unet(input_shape: Sequence[int], num_classes: int, *, base_filters: int = 32,
               depth: int = 4, batch_norm: bool = True, dropout: float = 0.0,
               upsampling: str = "transpose", name: str = "unet") -> keras.Model:
    """A 2D U-Net.

    Args:
        input_shape: (height, width, channels); channels = number of 2.5D context slices.
        num_classes: Output channels, one independent logit per class (classes may overlap).
        base_filters: Filters of the first level, doubled at every level down.
        depth: Number of down-sampling steps; height and width must be divisible by 2**depth.
        batch_norm: Batch normalisation after each convolution.
        dropout: Dropout rate after the bottleneck block.
        upsampling: ``transpose`` (2x2 transposed conv) or ``bilinear`` (resize + 3x3 conv).
        name: Model name.

    Returns:
        An uncompiled ``keras.Model`` mapping (B, H, W, C) images to (B, H, W, num_classes)
        float32 logits.
    """
    check_input(input_shape, depth)
    inputs = input_layer(input_shape)
    x, skips = encoder(inputs, base_filters=base_filters, depth=depth, batch_norm=batch_norm,
                       dropout=dropout)
    x = decoder(x, skips, base_filters=base_filters, batch_norm=batch_norm,
                upsampling=upsampling)
    return keras.Model(inputs, logits_head(x, num_classes), name=name)
