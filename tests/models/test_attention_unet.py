"""The Attention U-Net (Oktay et al. 2018): its gates and its size."""

import keras
import numpy as np
import tensorflow as tf

from tf_medseg.models import build_attention_unet


def _conv(cin, cout, k=3, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def _block(cin, cout):  # two 3x3 convs without bias + two batch norms (4 numbers per channel)
    return _conv(cin, cout) + _conv(cout, cout) + 2 * 4 * cout


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


def test_saved_model_export(tmp_path):
    model = build_attention_unet((32, 32, 3), 3, base_filters=4, depth=2)
    x = np.random.default_rng(3).random((2, 32, 32, 3)).astype("float32")
    model.export(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    served = loaded.serve(x)
    np.testing.assert_allclose(served, model(x), atol=1e-5)
