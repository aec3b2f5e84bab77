import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.models import FusedBatchNormalization, build_attention_unet, build_unet, main_output

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


@pytest.mark.parametrize("builder", [build_unet, build_attention_unet])
def test_deep_supervision_heads(builder):
    model = builder((32, 32, 1), 3, base_filters=4, depth=3, deep_supervision=True)
    outs = model(np.zeros((1, 32, 32, 1), "float32"))
    assert [o.shape for o in outs] == [(1, 32, 32, 3)] * 3
    assert [o._keras_history.operation.name for o in model.outputs] == [
        "logits", "aux1_logits", "aux2_logits"]
    main = main_output(model)
    assert len(main.outputs) == 1 and main.count_params() < model.count_params()
    np.testing.assert_allclose(main(np.ones((1, 32, 32, 1), "float32")),
                               model(np.ones((1, 32, 32, 1), "float32"))[0])


@pytest.mark.parametrize("builder,upsampling", [(build_attention_unet, "transpose"),
                                                (build_unet, "bilinear")])
@pytest.mark.slow
def test_trains_under_xla_with_float16(builder, upsampling):
    """The GPU default (mixed_float16 + XLA), on CPU: bilinear resizes must not break the
    compiled gradient (keras-team/keras#20931)."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = builder((32, 32, 3), 3, base_filters=4, depth=2, upsampling=upsampling)
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


def test_parameter_counts_attention_unet():
    def gate(c, g):  # skip c channels, gating g channels, inter c // 2
        inter = c // 2
        return (_conv(c, inter, 2) + _conv(g, inter, 1, True) + _conv(inter, 1, 1, True)
                + _conv(c, c, 1) + 4 * c)
    expected = (_block(1, 4) + _block(4, 8) + _block(8, 16)
                + gate(8, 16) + _conv(16, 8, 2, True) + _block(16, 8)
                + gate(4, 8) + _conv(8, 4, 2, True) + _block(8, 4)
                + _conv(4, 3, 1, True))
    model = build_attention_unet((32, 32, 1), 3, base_filters=4, depth=2)
    assert model.count_params() == expected


def test_peer_sized_parameter_counts():
    """At 32-512 filters the counts stay within 5% of keras-unet-collection's unet_2d
    (8,640,835) and att_unet_2d (7,986,839), as measured with ../shared/bench."""
    unet = build_unet((128, 128, 3), 3, base_filters=32, depth=4).count_params()
    att = build_attention_unet((128, 128, 3), 3, base_filters=32, depth=4).count_params()
    assert unet == 8_639_395 and abs(unet / 8_640_835 - 1) < 0.05
    assert att == 8_119_559 and abs(att / 7_986_839 - 1) < 0.05


def test_attention_coefficients_in_unit_interval():
    model = build_attention_unet((32, 32, 1), 3, base_filters=4, depth=2)
    probe = keras.Model(model.input, [model.get_layer(f"att{i}_resample").output
                                      for i in range(2)])
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 1)).astype("float32") * 5
    for level, alpha in enumerate(probe(x)):
        alpha = np.asarray(alpha)
        assert alpha.shape == (2, 32 // 2**level, 32 // 2**level, 1)
        assert alpha.min() >= 0 and alpha.max() <= 1
        assert alpha.std() > 0  # the gate looks at the input, it is not constant


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


def test_saved_model_export(tmp_path):
    model = build_attention_unet((32, 32, 3), 3, base_filters=4, depth=2)
    x = np.random.default_rng(3).random((2, 32, 32, 3)).astype("float32")
    model.export(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    served = loaded.serve(x)
    np.testing.assert_allclose(served, model(x), atol=1e-5)


def test_fused_batch_norm_matches_keras():
    x = np.random.default_rng(4).normal(2, 3, (4, 6, 6, 5)).astype("float32")
    ours, ref = FusedBatchNormalization(), keras.layers.BatchNormalization()
    for layer in (ours, ref):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, 5))
        layer.beta.assign(np.linspace(-1, 1, 5))
    with tf.GradientTape(persistent=True) as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        weights = tf.range(5.0)
        y_ours, y_ref = ours(xt, training=True), ref(xt, training=True)
        l_ours, l_ref = (tf.reduce_sum(y ** 2 * weights) for y in (y_ours, y_ref))
    np.testing.assert_allclose(y_ours, y_ref, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(l_ours, xt), tape.gradient(l_ref, xt), atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean, ref.moving_mean, atol=1e-6)
    n = 4 * 6 * 6  # the moving variance takes the unbiased batch variance
    np.testing.assert_allclose(ours.moving_variance - 0.99,
                               (ref.moving_variance - 0.99) * n / (n - 1), rtol=1e-5)
    ref.moving_variance.assign(ours.moving_variance)
    np.testing.assert_allclose(ours(x, training=False), ref(x, training=False), atol=1e-5)


def test_fused_batch_norm_under_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = FusedBatchNormalization()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(5).normal(10, 4, (2, 4, 4, 3)).astype("float32")
    y = layer(x, training=True)
    assert y.dtype == tf.bfloat16 and layer.moving_mean.dtype == "float32"
    y = tf.cast(y, tf.float32).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=0.02)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1, atol=0.02)


def test_input_size_must_match_depth():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth"):
        build_unet((30, 32, 1), 3, depth=2)
    with pytest.raises(ValueError, match="upsampling must be one of"):
        build_unet((32, 32, 1), 3, depth=2, upsampling="nearest")
