"""The building blocks: the fused batch normalisation, the deep-supervision heads."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.models import FusedBatchNormalization, build_attention_unet, build_unet, main_output


@pytest.mark.parametrize("builder", [build_unet, build_attention_unet])
def test_deep_supervision_heads(builder):
    # depth 4: decoder levels at 1/8, 1/4, 1/2 and 1; heads on all but the lowest
    model = builder((32, 32, 1), 3, base_filters=4, depth=4, deep_supervision=True)
    outs = model(np.zeros((1, 32, 32, 1), "float32"))
    assert [o.shape for o in outs] == [(1, 32, 32, 3), (1, 16, 16, 3), (1, 8, 8, 3)]
    assert [o._keras_history.operation.name for o in model.outputs] == [
        "logits", "aux1_logits", "aux2_logits"]
    main = main_output(model)
    assert len(main.outputs) == 1 and main.count_params() < model.count_params()
    np.testing.assert_allclose(main(np.ones((1, 32, 32, 1), "float32")),
                               model(np.ones((1, 32, 32, 1), "float32"))[0])
    # 3D with anisotropic pooling: the heads at each level's own grid
    model = builder((4, 16, 16, 1), 2, base_filters=4, depth=3, deep_supervision=True,
                    strides=[(1, 2, 2), (2, 2, 2), (2, 2, 2)])
    assert [tuple(o.shape[1:]) for o in model.outputs] == [(4, 16, 16, 2), (4, 8, 8, 2)]
    with pytest.raises(ValueError, match="depth of at least 3"):
        builder((16, 16, 1), 2, base_filters=4, depth=2, deep_supervision=True)


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


def test_trilinear_by_hand():
    from tf_medseg.models.blocks import Trilinear
    x = tf.reshape(tf.constant([0.0, 1.0]), (1, 2, 1, 1, 1))
    out = Trilinear((2, 1, 1))(x).numpy().ravel()
    assert np.allclose(out, [0.0, 0.25, 0.75, 1.0])  # half-pixel centres, clamped ends
    x = tf.random.uniform((2, 3, 4, 5, 2))
    out = Trilinear((1, 2, 2))(x)
    assert out.shape == (2, 3, 8, 10, 2)
    assert np.allclose(out.numpy()[:, 1], tf.image.resize(x[:, 1], (8, 10)).numpy(), atol=1e-6)


def test_3d_refuses_what_is_2d_only():
    import pytest

    from tf_medseg.models import build_unet
    with pytest.raises(ValueError, match="bilinear is for 2D"):
        build_unet((8, 16, 16, 1), 2, base_filters=4, depth=2, upsampling="bilinear")
    with pytest.raises(ValueError, match="backbones are 2D"):
        build_unet((8, 32, 32, 1), 2, depth=2, encoder="resnet50")
    with pytest.raises(ValueError, match="4 along axis 0"):
        build_unet((6, 16, 16, 1), 2, base_filters=4, depth=2)
    with pytest.raises(ValueError, match="strides must be 2"):
        build_unet((8, 16, 16, 1), 2, base_filters=4, depth=2, strides=[(2, 2, 2)])


def test_instance_and_group_norm_and_leaky_relu():
    from tf_medseg.models.blocks import activate, normalize
    rng = np.random.default_rng(6)
    x = rng.normal(3, 2, (2, 8, 8, 4, 12)).astype("float32")  # 3D features, 12 channels
    inst = keras.Model(*(lambda i: (i, normalize(i, "instance", "t_{}")))(keras.Input(x.shape[1:])))
    y = inst(x).numpy()
    assert inst.layers[-1].name == "t_in"
    # per sample and channel over the spatial axes: mean 0, sd 1 (scale 1, shift 0 at first)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2, 3)), 1, atol=1e-3)
    group = keras.Model(*(lambda i: (i, normalize(i, "group", "t_{}")))(keras.Input(x.shape[1:])))
    assert group.layers[-1].groups == 4  # gcd(12, 8)
    y = group(x).numpy().reshape(2, -1, 4, 3)  # channels in 4 groups of 3
    np.testing.assert_allclose(y.mean(axis=(1, 3)), 0, atol=1e-4)
    leaky = keras.Model(*(lambda i: (i, activate(i, "leaky_relu", "t_{}")))(keras.Input((3,))))
    np.testing.assert_allclose(leaky(np.array([[-2.0, 0.0, 3.0]], "float32")),
                               [[-0.02, 0.0, 3.0]], rtol=1e-6)


@pytest.mark.parametrize("builder", [build_unet, build_attention_unet])
def test_networks_take_instance_norm_and_leaky_relu(builder):
    model = builder((8, 16, 16, 1), 2, base_filters=4, depth=2, norm="instance",
                    activation="leaky_relu")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "GroupNormalization" in kinds and "LeakyReLU" in kinds
    assert "FusedBatchNormalization" not in kinds
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv3D"
             and layer.name.endswith(("conv1", "conv2"))]
    assert convs and not any(c.use_bias for c in convs)  # the norm's shift is the bias
    plain = builder((16, 16, 1), 2, base_filters=4, depth=2, batch_norm=False)
    assert all(c.use_bias for c in plain.layers if c.name.endswith("conv1"))
    assert "FusedBatchNormalization" not in {type(layer).__name__ for layer in plain.layers}
