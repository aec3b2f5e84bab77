"""The U-Net and what every builder shares (the Attention U-Net goes through the same
checks): shapes, float32 logits under mixed precision, XLA, saving, parameter counts."""

import re

import keras
import numpy as np
import pytest

from tf_medseg.models import FusedBatchNormalization, build_attention_unet, build_unet

OUR_NAMES = re.compile(r"^(image|enc\d|bottleneck|dec\d|att\d|logits|aux\d)")


@pytest.mark.parametrize("builder", [build_unet, build_attention_unet])
@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_shapes_and_float32_logits_under_mixed_precision(builder, upsampling):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = builder((32, 48, 3), 3, base_filters=4, depth=2, upsampling=upsampling)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    out = model(np.random.default_rng(0).random((2, 32, 48, 3)).astype("float32"))
    assert out.shape == (2, 32, 48, 3)
    assert out.dtype.name == "float32"
    assert all(OUR_NAMES.match(layer.name) for layer in model.layers), [
        layer.name for layer in model.layers if not OUR_NAMES.match(layer.name)]
    assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("enc0_bn1").compute_dtype == "bfloat16"


@pytest.mark.slow
def test_trains_under_xla_with_float16():
    """The GPU default (mixed_float16 + XLA), on CPU: bilinear resizes must not break the
    compiled gradient (keras-team/keras#20931); the Attention U-Net, whose gates add the
    resizes and products the plain U-Net lacks (the default transposed up-convolution is
    compiled by XLA in tests/scenarios/test_volumes_3d.py's 3D step)."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_attention_unet((32, 32, 3), 3, base_filters=4, depth=2,
                                     upsampling="bilinear")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=True)
    rng = np.random.default_rng(6)
    x = rng.random((2, 32, 32, 3)).astype("float32")
    y = (rng.random((2, 32, 32, 3)) > 0.5).astype("float32")
    assert np.isfinite(model.train_on_batch(x, y))
    assert model.get_layer("enc0_conv1").compute_dtype == "float16"


def _conv(cin, cout, k=3, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def _block(cin, cout):  # two 3x3 convs without bias + two batch norms (4 numbers per channel)
    return _conv(cin, cout) + _conv(cout, cout) + 2 * 4 * cout


def test_parameter_counts_unet():
    # base_filters 4, depth 2, 1 input channel; the up-convolution is a 3x3 transposed conv.
    expected = (_block(1, 4) + _block(4, 8) + _block(8, 16)  # encoder + bottleneck
                + _conv(16, 8, 3, True) + _block(16, 8)  # dec1: up-conv, concat, block
                + _conv(8, 4, 3, True) + _block(8, 4)  # dec0
                + _conv(4, 3, 1, True))  # logits
    assert build_unet((32, 32, 1), 3, base_filters=4, depth=2).count_params() == expected
    bilinear = expected + 3 * (8 + 4)  # the up-conv has no bias, a batch norm (4 per channel)
    assert build_unet((32, 32, 1), 3, base_filters=4, depth=2,
                      upsampling="bilinear").count_params() == bilinear


def test_peer_sized_parameter_counts():
    """At 32-512 filters the counts stay within 5% of keras-unet-collection's unet_2d
    (8,640,835) and att_unet_2d (7,986,839), as measured with ../shared/bench."""
    unet = build_unet((128, 128, 3), 3, base_filters=32, depth=4).count_params()
    att = build_attention_unet((128, 128, 3), 3, base_filters=32, depth=4).count_params()
    assert unet == 8_639_395 and abs(unet / 8_640_835 - 1) < 0.05
    assert att == 8_119_559 and abs(att / 7_986_839 - 1) < 0.05


@pytest.mark.parametrize("builder", [build_unet, build_attention_unet])
def test_keras_file_round_trip_in_safe_mode(builder, tmp_path):
    model = builder((32, 32, 3), 3, base_filters=4, depth=2)
    x = np.random.default_rng(2).random((2, 32, 32, 3)).astype("float32")
    model(x, training=True)  # move the batch-norm statistics away from their initial values
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("enc0_bn1"), FusedBatchNormalization)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)


def test_input_size_must_match_depth():
    with pytest.raises(ValueError, match="divisible by the pooling, 4 along axis 0"):
        build_unet((30, 32, 1), 3, depth=2)
    with pytest.raises(ValueError, match="upsampling must be one of"):
        build_unet((32, 32, 1), 3, depth=2, upsampling="nearest")


STRIDES = [(1, 2, 2), (1, 2, 2), (2, 2, 2)]  # a planned anisotropic network
KERNELS = [(1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3)]


@pytest.mark.parametrize("builder", ["build_unet", "build_attention_unet"])
def test_3d_with_anisotropic_pooling(builder):
    import math

    import keras
    import numpy as np

    import tf_medseg.models as models
    from tf_medseg.planning.topology import activation_elements
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    try:
        # 8 slices: oneDNN's bfloat16 Conv3D filter gradient is NaN for a depth of 2 (with
        # batch 2, TF 2.21 on this CPU); the planner keeps every feature map >= 4 a side
        model = getattr(models, builder)((8, 32, 32, 2), 3, base_filters=4, depth=3,
                                         strides=STRIDES, kernels=KERNELS)
        assert model.output_shape == (None, 8, 32, 32, 3) and model.output.dtype == "float32"
        assert tuple(model.get_layer("enc0_conv1").kernel.shape) == (1, 3, 3, 2, 4)
        assert tuple(model.get_layer("bottleneck_conv1").kernel.shape) == (3, 3, 3, 16, 32)
        assert model.get_layer("enc2_pool").output.shape[1:4] == (4, 4, 4)
        if builder == "build_unet":  # the planner's memory count is this network's
            counted = sum(math.prod(layer.output.shape[1:]) for layer in model.layers)
            assert activation_elements((8, 32, 32), STRIDES, base_filters=4, channels=2,
                                       classes=3) == counted
            return
        # the Attention U-Net trains (its layers are the U-Net's and the 3D gates)
        model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
        x = np.random.default_rng(0).normal(size=(2, 8, 32, 32, 2)).astype("float32")
        y = (x[..., :1] > 0).repeat(3, axis=-1).astype("float32")
        # the training loss, not evaluate(): after a few steps the normalisation's moving
        # statistics are still near their start, so an inference-mode loss may rise (CI saw it)
        history = model.fit(x, y, epochs=6, verbose=0).history["loss"]
        assert np.all(np.isfinite(history)) and min(history[-2:]) < history[0]
    finally:
        keras.mixed_precision.set_global_policy("float32")
