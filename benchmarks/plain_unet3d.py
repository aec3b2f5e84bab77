"""Speed like for like in 3D: tf_medseg's 3D U-Net against a 3D U-Net written the usual way in
Keras (the few lines below: Conv3D + BatchNormalization + ReLU twice per level, MaxPooling3D,
Conv3DTranspose, concatenate), in one process, rounds alternating A B A B.

::

    python -m benchmarks.plain_unet3d [--policy float32|mixed_bfloat16] [--patch 20 160 160]
        [--batch 2] [--filters 16] [--depth 5] [--steps 3] [--rounds 5] [--infer]

Both sides have the same filters per level, the same anisotropic pooling and kernels (the
planned CHAOS 3D network by default: strides [1, 2, 2] twice, then [2, 2, 2] twice, then
[1, 2, 2]; kernels 1 x 3 x 3 on the first two levels), two convolutions per level, 2 x 2 x 2
transposed convolutions up (``model.up_kernel: 2`` on our side), logits out, the same input,
optimiser (Adam), loss and policy, no XLA, and both are trained with ``train_on_batch``. One
JSON line per round, the medians and their ratio (ours / plain) last.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks.timing import compare

STRIDES = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
KERNELS = ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))


def plain_unet3d(input_shape, classes: int, filters: int, strides, kernels):
    """A 3D U-Net as a Keras user writes one."""
    import keras
    from keras import layers

    def block(x, n, kernel):
        for _ in range(2):
            x = layers.Conv3D(n, kernel, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        return x

    inputs = keras.Input(input_shape)
    x, skips = inputs, []
    for level, stride in enumerate(strides):
        x = block(x, filters * 2 ** level, kernels[level])
        skips.append(x)
        x = layers.MaxPooling3D(stride)(x)
    x = block(x, filters * 2 ** len(strides), kernels[len(strides)])
    for level in reversed(range(len(strides))):
        x = layers.Conv3DTranspose(filters * 2 ** level, 2, strides[level], padding="same")(x)
        x = layers.concatenate([x, skips[level]])
        x = block(x, filters * 2 ** level, kernels[level])
    outputs = layers.Conv3D(classes, 1, dtype="float32")(x)
    return keras.Model(inputs, outputs, name="plain")


def build(side: str, patch, classes: int, filters: int, strides, kernels, policy: str):
    import keras
    keras.mixed_precision.set_global_policy(policy)
    try:
        if side == "ours":
            from tf_medseg.models import build_unet
            model = build_unet((*patch, 1), classes, base_filters=filters, depth=len(strides),
                               up_kernel=2, strides=strides, kernels=kernels)
        else:
            model = plain_unet3d((*patch, 1), classes, filters, strides, kernels)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True),
                      jit_compile=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plain_unet3d",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", default="mixed_bfloat16", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--patch", type=int, nargs=3, default=[20, 160, 160])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=5, help="levels of the default topology used")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--infer", action="store_true", help="time inference instead of training")
    a = p.parse_args(argv)
    strides, kernels = STRIDES[:a.depth], KERNELS[:a.depth + 1]
    rng = np.random.default_rng(0)
    x = rng.random((a.batch, *a.patch, 1), dtype=np.float32)
    y = (rng.random((a.batch, *a.patch, a.classes)) > 0.5).astype(np.float32)
    models = {side: build(side, a.patch, a.classes, a.filters, strides, kernels, a.policy)
              for side in ("ours", "plain")}
    for side, model in models.items():
        if model.output_shape[1:] != (*a.patch, a.classes):
            raise SystemExit(f"{side}: output {model.output_shape}")

    summary = compare(models, x, y, infer=a.infer, rounds=a.rounds, steps=a.steps,
                      unit="patches_s", digits=3)
    print(json.dumps({"policy": a.policy, "patch": a.patch, **summary}))
    return 0


if __name__ == "__main__":
    from tf_medseg.cli.common import quiet_tensorflow
    quiet_tensorflow()
    raise SystemExit(main())
