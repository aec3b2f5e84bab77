"""Speed like for like: a ResNet50-encoder U-Net of tf_medseg against keras-unet-collection's
``unet_2d(..., backbone='ResNet50')``, in one process, rounds alternating A B A B.

::

    pip install keras-unet-collection pillow      # the peer (never a tf_medseg dependency)
    python -m benchmarks.peer_backbone [--policy float32|mixed_bfloat16] [--size 128]
        [--batch 8] [--steps 4] [--rounds 5] [--infer]

Both sides: ResNet50 cut at stride 16 (the peer's five filter levels [16, 32, 64, 128, 256]
use its conv1 to conv4 stages; ours ``model.depth`` 4), a decoder of 128-64-32-16 filters
with two 3x3 conv + batch norm + ReLU per level and bilinear up-sampling, random weights, the
backbone trainable, logits out; the same input, optimiser, loss and policy, no XLA. One JSON
line per round, the medians and their ratio (ours / peer) last.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks.timing import compare


def build(side: str, size: int, policy: str):
    import keras
    keras.mixed_precision.set_global_policy(policy)
    try:
        if side == "ours":
            from tf_medseg.models import build_unet
            model = build_unet((size, size, 3), 3, base_filters=16, depth=4,
                               encoder="resnet50", upsampling="bilinear")
        else:
            from keras_unet_collection import models
            model = models.unet_2d((size, size, 3), [16, 32, 64, 128, 256], n_labels=3,
                                   stack_num_down=2, stack_num_up=2, activation="ReLU",
                                   output_activation=None, batch_norm=True, pool=True,
                                   unpool=True, backbone="ResNet50", weights=None,
                                   freeze_backbone=False, freeze_batch_norm=False,
                                   name="peer")
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True),
                      jit_compile=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if model.output_shape[1:3] != (size, size):
        raise RuntimeError(f"{side}: output {model.output_shape}, expected {size}x{size}")
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peer_backbone",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", default="float32", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--infer", action="store_true", help="time inference instead of training")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.random((a.batch, a.size, a.size, 3), dtype=np.float32)
    y = (rng.random((a.batch, a.size, a.size, 3)) > 0.5).astype(np.float32)
    models = {side: build(side, a.size, a.policy) for side in ("ours", "peer")}

    summary = compare(models, x, y, infer=a.infer, rounds=a.rounds, steps=a.steps,
                      unit="img_s")
    print(json.dumps({"policy": a.policy, "size": a.size, **summary}))
    return 0


if __name__ == "__main__":
    from tf_medseg.cli.common import quiet_tensorflow
    quiet_tensorflow()
    raise SystemExit(main())
