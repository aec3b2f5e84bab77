"""Building blocks shared by U-Net and Attention U-Net. Every layer gets a name."""

from __future__ import annotations

import keras
from keras import layers


def conv_block(x, filters: int, name: str, *, batch_norm: bool = True, dropout: float = 0.0):
    """Two 3x3 convolutions, each followed by batch norm (optional) and ReLU."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def up_sample(x, filters: int, name: str, *, mode: str = "transpose", batch_norm: bool = True):
    """Double the spatial size: a 2x2 transposed conv, or bilinear resize + 3x3 conv."""
    if mode == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same",
                                      name=f"{name}_upconv")(x)
    if mode != "bilinear":
        raise ValueError(f"upsampling must be 'transpose' or 'bilinear', got {mode!r}")
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsample")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                      kernel_initializer="he_normal", name=f"{name}_upconv")(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_upbn")(x)
    return layers.Activation("relu", name=f"{name}_uprelu")(x)


def logits_head(x, num_classes: int, name: str = "logits"):
    """1x1 conv to one logit per class, computed and returned in float32 under any policy."""
    return layers.Conv2D(num_classes, 1, dtype="float32", name=name)(x)


def check_input(input_shape, depth: int) -> None:
    height, width = input_shape[:2]
    step = 2 ** depth
    if height is not None and (height % step or width % step):
        raise ValueError(f"input size {height}x{width} must be divisible by 2**depth = {step}")


def encoder(inputs, *, base_filters: int, depth: int, batch_norm: bool, dropout: float):
    """Contracting path: returns (bottleneck, skips from the top level down)."""
    x, skips = inputs, []
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level, f"enc{level}", batch_norm=batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = conv_block(x, base_filters * 2**depth, "bottleneck", batch_norm=batch_norm,
                   dropout=dropout)
    return x, skips


def decoder(x, skips, *, base_filters: int, batch_norm: bool, upsampling: str, gate=None):
    """Expanding path: up-sample, concatenate the skip (through ``gate`` if given), conv block.

    ``gate(skip, gating, inter_filters, name, batch_norm=...)`` is called with the features
    from the level below as the gating signal (Attention U-Net); None keeps plain skips.
    """
    for level in reversed(range(len(skips))):
        filters = base_filters * 2**level
        skip = skips[level]
        if gate is not None:
            skip = gate(skip, x, max(filters // 2, 1), f"att{level}", batch_norm=batch_norm)
        x = up_sample(x, filters, f"dec{level}", mode=upsampling, batch_norm=batch_norm)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = conv_block(x, filters, f"dec{level}", batch_norm=batch_norm)
    return x


def input_layer(input_shape) -> keras.KerasTensor:
    return keras.Input(shape=tuple(input_shape), name="image")
