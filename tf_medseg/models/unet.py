"""U-Net (Ronneberger et al. 2015) for multi-label segmentation, returning logits."""

from __future__ import annotations

from typing import Sequence

import keras

from tf_medseg.models.blocks import (
    check_input,
    contracting_path,
    decoder,
    heads,
    input_layer,
)

UP_KERNEL = 3


def build_unet(input_shape: Sequence[int], num_classes: int, *, base_filters: int = 32,
               depth: int = 4, batch_norm: bool = True, dropout: float = 0.0,
               upsampling: str = "transpose", up_kernel: int | None = None,
               deep_supervision: bool = False, encoder: str = "none",
               encoder_weights: str | None = None, name: str = "unet") -> keras.Model:
    """A 2D U-Net: two 3x3 conv + batch norm + ReLU per level, max-pool down, up-convolution
    that halves the channels, concatenation with the skip, two 3x3 convs.

    Args:
        input_shape: (height, width, channels); channels = number of 2.5D context slices.
            Height and width may be None (any size divisible by 2**depth).
        num_classes: Output channels, one independent logit per class (classes may overlap).
        base_filters: Filters of the first level, doubled at every level down.
        depth: Number of down-sampling steps; height and width must be divisible by 2**depth.
        batch_norm: Batch normalisation after each convolution (fused kernel).
        dropout: Dropout rate after the bottleneck block.
        upsampling: ``transpose`` (transposed conv, stride 2) or ``bilinear`` (bilinear resize
            + conv + batch norm + ReLU).
        up_kernel: Kernel size of the up-convolution; None takes 3 (as MONAI's U-Net). With 3
            the parameter count equals that of keras-unet-collection's ``unet_2d`` at equal
            filters; ``transpose`` then costs a quarter of the peer's conv on the fine grid.
        deep_supervision: Also return auxiliary logits of every coarser decoder level,
            resized to full resolution (for training with deep supervision).
        encoder: ``none`` (the U-Net's own contracting path) or a ``keras.applications``
            backbone (:data:`tf_medseg.models.encoders.ENCODERS`): its stage outputs are the
            skips, plus a full-resolution skip (two 3x3 convs on the input); ``depth`` (at
            most 5) is the stride 2**depth where the backbone is cut. The decoder's filters
            are still ``base_filters`` doubled per level.
        encoder_weights: None (random), ``imagenet`` (Keras's cached file; never downloaded)
            or a weights file path (:mod:`tf_medseg.models.encoders`).
        name: Model name.

    Returns:
        An uncompiled ``keras.Model`` mapping (B, H, W, C) images to (B, H, W, num_classes)
        float32 logits (named ``logits``); with ``deep_supervision``, a list
        ``[logits, aux1_logits, ...]`` of such tensors, finest first.
    """
    check_input(input_shape, depth)
    inputs = input_layer(input_shape)
    x, skips = contracting_path(inputs, base_filters=base_filters, depth=depth,
                                batch_norm=batch_norm, dropout=dropout, encoder=encoder,
                                encoder_weights=encoder_weights)
    decoded = decoder(x, skips, base_filters=base_filters, batch_norm=batch_norm,
                      upsampling=upsampling, up_kernel=up_kernel or UP_KERNEL)
    return keras.Model(inputs, heads(decoded, num_classes, deep_supervision), name=name)
