"""Building blocks shared by U-Net and Attention U-Net. Every layer gets a name."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="tf_medseg")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras batch normalisation computed by TensorFlow's fused kernel.

    Keras 3 normalises with about a dozen element-wise ops (moments, subtract, scale; and as
    many for the gradient), upcast to float32 under mixed precision. In a profiled
    mixed_bfloat16 training step on a 2-core CPU (U-Net 32-512 filters, 128x128, batch 8) they
    were the largest cost after the convolutions. ``FusedBatchNormV3`` (oneDNN on CPU, cuDNN on
    GPU, and fused with the following ReLU by Grappler) does the same in one kernel forward and
    one backward, on bfloat16/float16 inputs with float32 statistics: that U-Net trains 1.25x
    as fast in mixed_bfloat16 and 1.13x in float32, measured side by side. Same weights, same
    config, same results except that the moving variance is updated with the unbiased batch
    variance (as PyTorch and Keras 2 did). Falls back to the Keras computation where the fused
    kernel does not apply (masks, renormalisation, synchronized statistics, inputs that are not
    4-D channels-last (3D networks' 5-D features), a symbolic ``training`` flag).
    """

    def call(self, inputs, training=None, mask=None):
        if (mask is not None or self.renorm or self.synchronized or len(inputs.shape) != 4
                or self.axis not in (-1, 3) or not isinstance(training, (bool, type(None)))
                or keras.backend.backend() != "tensorflow"):
            return super().call(inputs, training=training, mask=mask)
        x = inputs
        if x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            x = tf.cast(x, tf.float32)
        channels = x.shape[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels])
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels])
        mean = tf.convert_to_tensor(self.moving_mean)
        variance = tf.convert_to_tensor(self.moving_variance)
        if training and self.trainable:
            y, new_mean, new_variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=mean, variance=variance, epsilon=self.epsilon,
                is_training=True, exponential_avg_factor=1.0 - self.momentum)
            self.moving_mean.assign(new_mean)
            self.moving_variance.assign(new_variance)
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=mean, variance=variance, epsilon=self.epsilon,
                is_training=False)
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package="tf_medseg")
class Trilinear(layers.Layer):
    """Trilinear up-sampling of (B, D, H, W, C) features by integer ``factors`` per axis,
    separable: ``tf.image.resize`` over height and width, then over depth (Keras's
    UpSampling3D is nearest-neighbour only)."""

    def __init__(self, factors, **kwargs):
        super().__init__(**kwargs)
        self.factors = tuple(int(f) for f in factors)

    def call(self, x):
        shape = tf.shape(x)
        d, h, w, c = shape[1], shape[2], shape[3], x.shape[-1]
        fd, fh, fw = self.factors
        planes = tf.image.resize(tf.reshape(x, [-1, h, w, c]), [h * fh, w * fw])
        planes = tf.reshape(planes, [shape[0], d, h * fh * w * fw, c])
        out = tf.image.resize(planes, [d * fd, h * fh * w * fw])
        return tf.reshape(out, [shape[0], d * fd, h * fh, w * fw, c])

    def compute_output_shape(self, input_shape):
        spatial = [None if n is None else n * f for n, f in zip(input_shape[1:-1],
                                                                 self.factors)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "factors": self.factors}


def batch_norm_layer(name: str) -> layers.Layer:
    return FusedBatchNormalization(name=name)


NORMS = ("batch", "instance", "group", "none")
ACTIVATIONS = ("relu", "leaky_relu")
GROUPS = 8  # group norm: groups per layer (fewer where a layer has fewer filters)
LEAKY_SLOPE = 0.01  # nnU-Net's


def check_style(norm: str, activation: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def normalize(x, norm: str, name: str):
    """``x`` through the normalisation ``norm``: ``batch`` (the fused batch norm), ``instance``
    (per sample and channel over the spatial axes, with a learned scale and shift: nnU-Net's),
    ``group`` (:data:`GROUPS` channel groups, Wu and He 2018) or ``none``. ``name`` is a
    template such as ``"enc0_{}1"`` that takes ``bn``, ``in`` or ``gn``."""
    if norm == "batch":
        return batch_norm_layer(name.format("bn"))(x)
    if norm == "instance":  # one group per channel; PyTorch's epsilon, as nnU-Net
        return layers.GroupNormalization(-1, epsilon=1e-5, name=name.format("in"))(x)
    if norm == "group":
        groups = math.gcd(int(x.shape[-1]), GROUPS)
        return layers.GroupNormalization(groups, epsilon=1e-5, name=name.format("gn"))(x)
    return x


def activate(x, activation: str, name: str):
    """ReLU or nnU-Net's leaky ReLU (slope 0.01); ``name`` a template that takes ``relu`` or
    ``lrelu``."""
    if activation == "leaky_relu":
        return layers.LeakyReLU(LEAKY_SLOPE, name=name.format("lrelu"))(x)
    return layers.Activation("relu", name=name.format("relu"))(x)


CONV = {2: layers.Conv2D, 3: layers.Conv3D}
TRANSPOSED = {2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}
POOL = {2: layers.MaxPooling2D, 3: layers.MaxPooling3D}


def spatial_dims(x) -> int:
    """2 for (B, H, W, C) features, 3 for (B, D, H, W, C)."""
    return len(x.shape) - 2


def conv_block(x, filters: int, name: str, *, norm: str = "batch", activation: str = "relu",
               dropout: float = 0.0, kernel=3):
    """Two convolutions (``kernel``: 3, or one size per axis such as (1, 3, 3)), each followed
    by the normalisation ``norm`` (:func:`normalize`) and ``activation``; 2D or 3D as ``x``
    is. The convolutions have a bias only without normalisation (its shift makes one
    redundant)."""
    for i in (1, 2):
        x = CONV[spatial_dims(x)](filters, kernel, padding="same", use_bias=norm == "none",
                                  kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        x = normalize(x, norm, f"{name}_{{}}{i}")
        x = activate(x, activation, f"{name}_{{}}{i}")
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


UPSAMPLING = ("transpose", "bilinear")


def up_sample(x, filters: int, name: str, *, mode: str = "transpose", kernel: int = 2,
              norm: str = "batch", activation: str = "relu", stride=2):
    """Multiply the spatial size by ``stride`` (2, or one factor per axis such as (1, 2, 2))
    and set the channels to ``filters``.

    ``transpose``: a ``kernel`` x ``kernel`` transposed conv with stride 2 (the learned
    up-convolution; its cost is on the coarse grid). ``bilinear``: bilinear resize, then a
    ``kernel`` x ``kernel`` conv + ``norm`` + ``activation`` on the fine grid (no
    checkerboard artefacts, four times the cost of the conv).
    """
    if mode == "transpose":
        return TRANSPOSED[spatial_dims(x)](filters, kernel, strides=stride, padding="same",
                                           name=f"{name}_upconv")(x)
    if mode != "bilinear":
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {mode!r}")
    if spatial_dims(x) != 2:
        raise ValueError("upsampling: bilinear is for 2D networks; 3D networks up-sample "
                         "with transposed convolutions (transpose)")
    # float32: under XLA with a mixed policy the bilinear resize's gradient comes out float32
    # and compilation fails (keras-team/keras#20931, tensorflow/tensorflow#81273).
    x = layers.UpSampling2D(stride, interpolation="bilinear", dtype="float32",
                            name=f"{name}_upsample")(x)
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=norm == "none",
                      kernel_initializer="he_normal", name=f"{name}_upconv")(x)
    return activate(normalize(x, norm, f"{name}_up{{}}"), activation, f"{name}_up{{}}")


def logits_head(x, num_classes: int, name: str = "logits"):
    """1x1 conv to one logit per class, computed and returned in float32 under any policy."""
    return CONV[spatial_dims(x)](num_classes, 1, dtype="float32", name=name)(x)


def level_strides(input_shape, depth: int, strides=None) -> list[tuple[int, ...]]:
    """Per level, the pooling factor of each spatial axis: ``strides`` as given, or 2 on
    every axis for ``depth`` levels."""
    dims = len(input_shape) - 1
    if strides is None:
        return [(2,) * dims] * depth
    strides = [tuple(int(v) for v in s) for s in strides]
    if len(strides) != depth or any(len(s) != dims or not set(s) <= {1, 2} for s in strides):
        raise ValueError(f"strides must be {depth} (depth) tuples of {dims} factors, each 1 "
                         f"or 2, got {strides}")
    return strides


def check_input(input_shape, depth: int, strides=None) -> None:
    """A 2D (height, width, channels) or 3D (depth, height, width, channels) input whose
    sizes the pooling divides."""
    if len(input_shape) not in (3, 4):
        raise ValueError(f"input_shape must be (height, width, channels) or (depth, height, "
                         f"width, channels), got {input_shape}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    strides = level_strides(input_shape, depth, strides)
    for axis, size in enumerate(input_shape[:-1]):
        step = int(np.prod([s[axis] for s in strides]))
        if size is not None and size % step:
            raise ValueError(f"input size {'x'.join(map(str, input_shape[:-1]))} must be "
                             f"divisible by the pooling, {step} along axis {axis}")


def encoder_path(inputs, *, base_filters: int, depth: int, norm: str, activation: str,
                 dropout: float, strides=None, kernels=None):
    """Contracting path: returns (bottleneck, skips from the top level down). ``strides``
    (per level) and ``kernels`` (per level and the bottleneck) default to 2 and 3."""
    strides = level_strides(inputs.shape[1:], depth, strides)
    kernels = kernels or [3] * (depth + 1)
    x, skips = inputs, []
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level, f"enc{level}", norm=norm,
                       activation=activation, kernel=kernels[level])
        skips.append(x)
        x = POOL[spatial_dims(x)](strides[level], name=f"enc{level}_pool")(x)
    x = conv_block(x, base_filters * 2**depth, "bottleneck", norm=norm, activation=activation,
                   dropout=dropout, kernel=kernels[depth])
    return x, skips


def decoder(x, skips, *, base_filters: int, norm: str, activation: str, upsampling: str,
            up_kernel: int, gate=None, strides=None, kernels=None):
    """Expanding path: up-sample, concatenate the skip (through ``gate`` if given), conv block.

    ``gate(skip, gating, inter_filters, name, norm=..., stride=...)`` is called with the
    features from the level below as the gating signal (Attention U-Net); None keeps plain
    skips. ``strides`` and ``kernels`` are the encoder's (:func:`encoder_path`).

    Returns:
        The output of every decoder level, coarsest first (the last is full resolution).
    """
    outputs = []
    depth = len(skips)
    strides = strides or [2] * depth
    kernels = kernels or [3] * (depth + 1)
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        skip = skips[level]
        if gate is not None and skip is not None:
            skip = gate(skip, x, max(filters // 2, 1), f"att{level}", norm=norm,
                        stride=strides[level])
        x = up_sample(x, filters, f"dec{level}", mode=upsampling, kernel=up_kernel,
                      norm=norm, activation=activation, stride=strides[level])
        if skip is not None:  # None: a backbone without features at this stride
            x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = conv_block(x, filters, f"dec{level}", norm=norm, activation=activation,
                       kernel=kernels[level])
        outputs.append(x)
    return outputs


def backbone_path(inputs, encoder: str, *, base_filters: int, depth: int, norm: str,
                  activation: str, dropout: float, weights=None):
    """The contracting path of a ``keras.applications`` backbone
    (:mod:`tf_medseg.models.encoders`): (bottleneck, skips from full resolution down), the
    full-resolution skip being two 3x3 convolutions on the input."""
    from tf_medseg.models.encoders import backbone_encoder
    x, stage_skips, _ = backbone_encoder(inputs, encoder, depth=depth, weights=weights)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    full = conv_block(inputs, base_filters, "full", norm=norm, activation=activation)
    return x, [full, *stage_skips]


def contracting_path(inputs, *, base_filters: int, depth: int, norm: str, activation: str,
                     dropout: float, encoder: str = "none", encoder_weights=None,
                     strides=None, kernels=None):
    """The U-Net's own encoder, or with ``encoder`` a backbone's (:func:`backbone_path`)."""
    check_style(norm, activation)
    if encoder in (None, "none"):
        return encoder_path(inputs, base_filters=base_filters, depth=depth, norm=norm,
                            activation=activation, dropout=dropout, strides=strides,
                            kernels=kernels)
    if spatial_dims(inputs) != 2 or strides is not None or kernels is not None:
        raise ValueError(f"encoder {encoder}: keras.applications backbones are 2D with "
                         f"pooling 2 per level; use encoder none for 3D or other strides")
    return backbone_path(inputs, encoder, base_filters=base_filters, depth=depth, norm=norm,
                         activation=activation, dropout=dropout, weights=encoder_weights)


def heads(decoded, num_classes: int, deep_supervision: bool):
    """The float32 logits of the full-resolution level; with ``deep_supervision`` also one
    auxiliary head (``aux<i>_logits``) at the native resolution of every coarser decoder level
    but the lowest, finest first: ``[logits, aux1_logits, ...]`` (nnU-Net's: its lowest
    output has weight 0). Training scores each against the mask at its resolution
    (:func:`tf_medseg.training.losses.deep_supervision`)."""
    main = logits_head(decoded[-1], num_classes)
    if not deep_supervision:
        return main
    if len(decoded) < 3:
        raise ValueError(f"deep_supervision: needs a depth of at least 3 (auxiliary heads on "
                         f"the decoder levels between the lowest and the top), got "
                         f"{len(decoded)}")
    aux = [logits_head(features, num_classes, name=f"aux{i}_logits")
           for i, features in enumerate(reversed(decoded[1:-1]), start=1)]
    return [main, *aux]


def input_layer(input_shape) -> keras.KerasTensor:
    return keras.Input(shape=tuple(input_shape), name="image")
