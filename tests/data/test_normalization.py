"""Intensity normalisation: per-volume percentile (integer histogram and float top_k),
z-score, CT and a fixed window, resolved per channel."""

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


def test_window_clips_to_the_configured_window_beside_ct():
    labels = dataclasses.replace(KAGGLE, channels=("CT", "CT"))
    stats = ({"mean": 1284.0, "sd": 452.0, "p0_5": 892.0, "p99_5": 2641.0},) * 2
    resolved = normalization.resolve(labels, ["window", "ct"], stats, window=(840, 1240))
    assert resolved.normalization == ("window", "ct")
    assert resolved.stats[0]["window"] == [840.0, 1240.0]
    assert "window" not in resolved.stats[1] and resolved.stats[0]["mean"] == 1284.0
    # The window travels with the label schema (the export's contract).
    assert type(resolved).from_dict(resolved.to_dict()).stats == resolved.stats
    # Air, fat, parotid (HU -10), muscle (HU 50), bone: OpenKBP's HU + 1000.
    raw = np.array([0.0, 900.0, 990.0, 1050.0, 2000.0])
    image = tf.constant(np.stack([raw, raw], -1)[None, None], tf.float32)
    out = normalization.apply(image, normalization.params(image, resolved)).numpy()[0, 0]
    np.testing.assert_allclose(out[:, 0], [-1.0, -0.7, -0.25, 0.05, 1.0], atol=1e-6)
    # Under ct the parotid and the muscle lie 0.13 apart; in the window 0.3 of a range of 2.
    assert out[3, 1] - out[2, 1] == pytest.approx(60 / 452, rel=1e-4)


def test_window_needs_its_key_and_only_with_it():
    with pytest.raises(ConfigError, match="window for channel MRI needs data.window"):
        normalization.resolve(KAGGLE, "window", None)
    from tf_medseg.config import load_config
    assert load_config("unet.yaml", ["data.normalization=window",
                                     "data.window=[-160, 240]"]).data.window == (-160.0, 240.0)
    for overrides, message in (
            (["data.normalization=window"], "data.window: data.normalization window needs it"),
            (["data.window=[-160, 240]"], "data.window: only for data.normalization: window"),
            (["data.normalization=window", "data.window=[240, -160]"],
             "data.window: must be .low, high. with low < high")):
        with pytest.raises(ConfigError, match=f"^{message}"):
            load_config("unet.yaml", overrides)
