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
               depth: int = 4, batch_norm: bool = True, norm: str | None = None,
               activation: str = "relu", dropout: float = 0.0,
               upsampling: str = "transpose", up_kernel: int | None = None,
               deep_supervision: bool = False, encoder: str = "none",
               encoder_weights: str | None = None, strides=None, kernels=None,
               name: str = "unet") -> keras.Model:
    """A 2D or 3D U-Net: two 3x3 conv + norm + activation per level, max-pool down,
    up-convolution that halves the channels, concatenation with the skip, two 3x3 convs.

    Args:
        input_shape: (height, width, channels), or (depth, height, width, channels) for a 3D
            network (Conv3D); channels = modalities x 2.5D context slices. Sizes may be None
            (any size the pooling divides).
        num_classes: Output channels, one independent logit per class (classes may overlap).
        base_filters: Filters of the first level, doubled at every level down.
        depth: Number of down-sampling steps; height and width must be divisible by 2**depth.
        batch_norm: Batch normalisation after each convolution (fused kernel); False is
            ``norm="none"``. ``norm`` given takes precedence.
        norm: The normalisation after each convolution: ``batch``, ``instance`` (nnU-Net's),
            ``group`` or ``none`` (:func:`tf_medseg.models.blocks.normalize`).
        activation: ``relu`` or ``leaky_relu`` (slope 0.01, nnU-Net's) after each norm.
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
        encoder_weights: None (random), ``imagenet`` (keras.utils.get_file: Keras's cache,
            downloaded once) or a weights file path (:mod:`tf_medseg.models.encoders`).
        strides: Per level, the pooling factor of each axis (1 or 2), e.g. a planned
            anisotropic 3D network's ``[(1, 2, 2), (1, 2, 2), (2, 2, 2)]``
            (:mod:`tf_medseg.planning.topology`); None pools every axis by 2 at every level.
            Its length is ``depth``; the up-sampling mirrors it.
        kernels: Per level and the bottleneck (``depth + 1`` entries), the conv kernel (3, or
            per axis such as (1, 3, 3) on an axis too coarse to convolve); None: 3.
        name: Model name.

    Returns:
        An uncompiled ``keras.Model`` mapping (B, H, W, C) images to (B, H, W, num_classes)
        float32 logits (named ``logits``); with ``deep_supervision``, a list
        ``[logits, aux1_logits, ...]`` of such tensors, finest first.
    """
    check_input(input_shape, depth, strides)
    norm = norm or ("batch" if batch_norm else "none")
    inputs = input_layer(input_shape)
    x, skips = contracting_path(inputs, base_filters=base_filters, depth=depth, norm=norm,
                                activation=activation, dropout=dropout, encoder=encoder,
                                encoder_weights=encoder_weights, strides=strides,
                                kernels=kernels)
    decoded = decoder(x, skips, base_filters=base_filters, norm=norm, activation=activation,
                      upsampling=upsampling, up_kernel=up_kernel or UP_KERNEL,
                      strides=strides, kernels=kernels)
    return keras.Model(inputs, heads(decoded, num_classes, deep_supervision), name=name)
