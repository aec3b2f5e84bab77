"""Attention U-Net (Oktay et al. 2018) for multi-label segmentation, returning logits."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from tf_medseg.models.blocks import (
    CONV,
    Trilinear,
    check_input,
    contracting_path,
    decoder,
    heads,
    input_layer,
    normalize,
    spatial_dims,
)

UP_KERNEL = 2


def attention_gate(skip, gating, inter_filters: int, name: str, *, norm: str = "batch",
                   stride=2):
    """Additive attention gate of Oktay et al. 2018 (their grid-attention variant).

    The skip features are brought to the coarser gating grid by a strided 2x2 conv without bias
    (W_x), the gating signal from the level below goes through a 1x1 conv (W_g); their sum goes
    through ReLU and a 1x1 conv to one channel (psi), a sigmoid gives coefficients in [0, 1],
    which are resampled (bilinear) to the skip's size and multiplied into the skip; a 1x1 conv +
    the network's normalisation (``norm``, batch in the paper) then mixes the gated features.
    The gate's own ReLU stays a ReLU whatever the network's activation (Oktay's design).

    Which variant: the paper's grid attention (its Fig. 2 and the authors' reference code,
    additive "concatenation" mode), where the gate is computed on the gating signal's coarse
    grid. keras-unet-collection computes it instead on the skip's grid from the up-sampled
    decoder features; the coarse grid costs a quarter as much and uses the gating signal at
    the resolution where it was computed, which is the point of the paper's design.

    3D (the paper's own setting) works the same, the coefficients resampled trilinearly;
    ``stride`` is the level's pooling (2, or per axis such as (1, 2, 2)).
    """
    conv = CONV[spatial_dims(skip)]
    stride = (stride,) * spatial_dims(skip) if isinstance(stride, int) else tuple(stride)
    theta_x = conv(inter_filters, stride, strides=stride, use_bias=False,
                   name=f"{name}_theta_x")(skip)
    phi_g = conv(inter_filters, 1, name=f"{name}_phi_g")(gating)
    f = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")(
        [theta_x, phi_g]))
    psi = conv(1, 1, name=f"{name}_psi")(f)
    alpha = layers.Activation("sigmoid", name=f"{name}_coefficients")(psi)
    # float32: under XLA with a mixed policy the bilinear resize's gradient comes out float32
    # and compilation fails (keras-team/keras#20931, tensorflow/tensorflow#81273).
    if len(stride) == 2:
        alpha = layers.UpSampling2D(stride, interpolation="bilinear", dtype="float32",
                                    name=f"{name}_resample")(alpha)
    else:  # Keras has no trilinear UpSampling3D
        alpha = Trilinear(stride, dtype="float32", name=f"{name}_resample")(alpha)
    gated = layers.Multiply(name=f"{name}_multiply")([skip, alpha])
    y = conv(skip.shape[-1], 1, use_bias=norm == "none", name=f"{name}_out")(gated)
    return normalize(y, norm, f"{name}_out_{{}}")


def build_attention_unet(input_shape: Sequence[int], num_classes: int, *,
                         base_filters: int = 32, depth: int = 4, batch_norm: bool = True,
                         norm: str | None = None, activation: str = "relu",
                         dropout: float = 0.0, upsampling: str = "transpose",
                         up_kernel: int | None = None, deep_supervision: bool = False,
                         encoder: str = "none", encoder_weights: str | None = None,
                         strides=None, kernels=None,
                         name: str = "attention_unet") -> keras.Model:
    """A 2D or 3D Attention U-Net: a U-Net whose skip connections pass through attention gates
    (:func:`attention_gate`), gated by the features of the level below.

    Arguments and output are those of :func:`tf_medseg.models.build_unet`, except that
    ``up_kernel`` None takes 2: the gates add parameters, and with a 2x2 up-convolution the
    count stays within 2% of keras-unet-collection's ``att_unet_2d`` at equal filters.
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
                      gate=attention_gate, strides=strides, kernels=kernels)
    return keras.Model(inputs, heads(decoded, num_classes, deep_supervision), name=name)
