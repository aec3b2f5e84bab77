"""Intensity normalisation: per-volume percentile (integer histogram and float top_k),
z-score and CT, resolved per channel."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.data import normalization
from tf_medseg.data.sources.kaggle import LABELS as KAGGLE
from tf_medseg.errors import ConfigError

LABELS = normalization.resolve(KAGGLE, "auto", None)


def _in_tf_data(fn, *args):
    """Run ``fn`` inside a tf.data map (graph mode), as the pipeline does."""
    ds = tf.data.Dataset.from_tensors(args).map(lambda *a: fn(*a))
    return next(iter(ds))


@pytest.mark.parametrize("run", ["eager", "tf.data"])
def test_normalize_is_per_scan_percentile(run):
    raw = tf.constant(np.linspace(0, 1000, 4000).reshape(10, 20, 20), tf.uint16)

    def fn(v):
        return normalization.apply(v, normalization.params(v[..., None], LABELS))[..., 0]
    out = fn(raw) if run == "eager" else _in_tf_data(fn, raw)
    assert out.dtype == tf.float32
    assert float(tf.reduce_max(out)) == pytest.approx(1000 / 995, rel=0.01)
    # 8-bit or 16-bit copies of one scan normalise to the same values.
    out16 = fn(raw * 13) if run == "eager" else _in_tf_data(fn, raw * 13)
    np.testing.assert_allclose(out16.numpy(), out.numpy(), atol=0.01)



def test_float_percentile_matches_the_integer_histogram():
    volume = np.random.default_rng(4).integers(0, 3000, (5, 17, 23)).astype(np.uint16)
    exact = float(normalization.integer_percentile(tf.constant(volume)))
    assert float(normalization.percentile(tf.constant(volume, tf.float32), 99.5)) == exact
    assert exact == float(np.percentile(volume, 99.5, method="lower"))


def test_zscore_and_ct_parameters_per_channel():
    labels = dataclasses.replace(KAGGLE, channels=("T2", "CT"))
    stats = (None, {"mean": 100.0, "sd": 50.0, "p0_5": 0.0, "p99_5": 400.0})
    resolved = normalization.resolve(labels, ["zscore", "auto"], stats)
    assert resolved.normalization == ("zscore", "ct")
    image = tf.constant(np.stack([np.arange(8.0).reshape(2, 2, 2),
                                  np.full((2, 2, 2), 300.0)], -1), tf.float32)
    params = normalization.params(image, resolved).numpy()
    assert params[:, 0][:2].tolist() == pytest.approx([3.5, float(np.std(np.arange(8.0)))])
    assert params[:, 1].tolist() == pytest.approx([100.0, 50.0, -2.0, 6.0])
    out = normalization.apply(image, params).numpy()
    assert out[..., 1].max() == pytest.approx(4.0)  # (300 - 100) / 50


def test_resolve_names_the_key():
    with pytest.raises(ConfigError, match=r"^data.normalization: 2 method\(s\) for 1 channel"):
        normalization.resolve(KAGGLE, ["zscore", "zscore"], None)
    with pytest.raises(ConfigError, match="ct for channel MRI needs foreground statistics"):
        normalization.resolve(KAGGLE, "ct", None)
