import keras
import numpy as np
import pytest

from tf_medseg.models import build_attention_unet, build_unet


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
    assert all(layer.name for layer in model.layers)
    assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"


def test_parameter_counts():
    # Hand count for base_filters 4, depth 2, 1 input channel, batch norm (convs without bias).
    def conv(cin, cout, k=3, bias=False):
        return k * k * cin * cout + (cout if bias else 0)

    def block(cin, cout):  # two convs + two batch norms (4 params per channel)
        return conv(cin, cout) + conv(cout, cout) + 2 * 4 * cout
    expected = (block(1, 4) + block(4, 8) + block(8, 16)  # encoder + bottleneck
                + conv(16, 8, 2, True) + block(16, 8)  # dec1: transposed conv, concat, block
                + conv(8, 4, 2, True) + block(8, 4)  # dec0
                + conv(4, 3, 1, True))  # logits
    assert build_unet((32, 32, 1), 3, base_filters=4, depth=2).count_params() == expected


def test_attention_coefficients_in_unit_interval():
    model = build_attention_unet((32, 32, 1), 3, base_filters=4, depth=2)
    probe = keras.Model(model.input, [model.get_layer(f"att{i}_resample").output
                                      for i in range(2)])
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 1)).astype("float32") * 5
    for level, alpha in enumerate(probe(x)):
        alpha = np.asarray(alpha)
        assert alpha.shape == (2, 32 // 2**level, 32 // 2**level, 1)
        assert alpha.min() >= 0 and alpha.max() <= 1


def test_input_size_must_match_depth():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth"):
        build_unet((30, 32, 1), 3, depth=2)
