import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.data import pipeline
from tf_medseg.errors import DataError

from conftest import tiny_overrides


def _volume(depth=5, h=4, w=6):
    return tf.constant(np.arange(depth)[:, None, None] * np.ones((depth, h, w)), tf.float32)


def _in_tf_data(fn, *args):
    """Run ``fn`` inside a tf.data map (graph mode), as the pipeline does."""
    ds = tf.data.Dataset.from_tensors(args).map(lambda *a: fn(*a))
    return next(iter(ds))


@pytest.mark.parametrize("run", ["eager", "tf.data"])
def test_stack_context_clamps_at_the_ends(run):
    fn = lambda v: pipeline.stack_context(v, (-2, 0, 2))  # noqa: E731
    out = fn(_volume()) if run == "eager" else _in_tf_data(fn, _volume())
    assert out.shape == (5, 4, 6, 3)
    # Channel values are the source slice index.
    np.testing.assert_array_equal(out[:, 0, 0, :].numpy(),
                                  [[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 3, 4], [2, 4, 4]])


@pytest.mark.parametrize("run", ["eager", "tf.data"])
def test_normalize_is_per_scan_percentile(run):
    raw = tf.constant(np.linspace(0, 1000, 4000).reshape(10, 20, 20), tf.uint16)

    def fn(v):
        return pipeline.normalize(v, pipeline.intensity_scale(v))
    out = fn(raw) if run == "eager" else _in_tf_data(fn, raw)
    assert out.dtype == tf.float32
    assert float(tf.reduce_max(out)) == pytest.approx(1000 / 995, rel=0.01)
    # 8-bit or 16-bit copies of one scan normalise to the same values.
    out16 = fn(raw * 13) if run == "eager" else _in_tf_data(fn, raw * 13)
    np.testing.assert_allclose(out16.numpy(), out.numpy(), atol=0.01)


@pytest.mark.parametrize("run", ["eager", "tf.data"])
def test_resize_keeps_masks_binary(run):
    rng = np.random.default_rng(0)
    image = tf.constant(rng.random((3, 31, 45, 1)), tf.float32)
    mask = tf.constant(rng.random((3, 31, 45, 3)) > 0.5, tf.uint8)

    def fn(i, m):
        return pipeline.resize(i, m, (16, 16))
    img, msk = fn(image, mask) if run == "eager" else _in_tf_data(fn, image, mask)
    assert img.shape == (3, 16, 16, 1) and msk.shape == (3, 16, 16, 3)
    assert set(np.unique(msk.numpy())) <= {0, 1}


def test_folds_are_grouped_by_case_and_cover_everything():
    cases = [3, 5, 8, 13, 21, 34, 55]
    seen = []
    for fold in range(3):
        train, val = pipeline.fold_cases(cases, fold, 3)
        assert not set(train) & set(val) and sorted(train + val) == cases
        seen += val
    assert sorted(seen) == cases
    with pytest.raises(DataError, match="fewer than data.num_folds"):
        pipeline.fold_cases([1, 2], 0, 3)


def test_make_dataset_batches(tmp_path):
    config = load_config("unet.yaml", tiny_overrides(tmp_path) + ["data.context=[-1,0,1]"])
    train = pipeline.make_dataset(config, "train")
    val = pipeline.make_dataset(config, "val")
    image, mask = next(iter(train))
    assert image.shape == (8, 32, 32, 3) and mask.shape == (8, 32, 32, 3)
    assert image.dtype == tf.float32 and 0 <= float(tf.reduce_min(image))
    assert float(tf.reduce_max(image)) <= pipeline.CLIP
    n_train = sum(int(i.shape[0]) for i, _ in train)
    n_val = sum(int(i.shape[0]) for i, _ in val)
    assert (n_train, n_val) == (2 * 2 * 12, 2 * 2 * 12)  # 2 cases x 2 days x 12 slices each


def _slice_keys(ds):
    # Identify slices by a fingerprint of their pixels.
    return [round(float(v), 4) for images, _ in ds for v in tf.reduce_sum(images, [1, 2, 3])]


def test_training_order_is_shuffled_per_epoch_and_seeded(tmp_path):
    overrides = tiny_overrides(tmp_path) + ["data.augment=false"]
    config = load_config("unet.yaml", overrides)
    train = pipeline.make_dataset(config, "train")
    ordered = _slice_keys(pipeline.make_dataset(config, "train", shuffle=False))
    first, second = _slice_keys(train), _slice_keys(train)
    assert sorted(first) == sorted(ordered) == sorted(second)
    assert first != ordered and second != first  # shuffled, and anew every epoch
    again = _slice_keys(pipeline.make_dataset(load_config("unet.yaml", overrides), "train"))
    assert again == first  # deterministic for train.seed
    assert _slice_keys(pipeline.make_dataset(config, "val")) == _slice_keys(
        pipeline.make_dataset(config, "val"))  # validation is not shuffled


def test_organ_fraction_resamples_slices(tmp_path):
    overrides = tiny_overrides(tmp_path) + ["data.augment=false", "data.organ_fraction=1.0"]
    config = load_config("unet.yaml", overrides)
    masks = [m for _, batch in pipeline.make_dataset(config, "train") for m in batch]
    assert len(masks) == 2 * 2 * 12  # epoch length unchanged
    assert all(bool(tf.reduce_any(m > 0)) for m in masks)


def test_float_percentile_matches_the_integer_histogram():
    volume = np.random.default_rng(4).integers(0, 3000, (5, 17, 23)).astype(np.uint16)
    exact = float(pipeline.intensity_scale(tf.constant(volume)))
    assert float(pipeline.percentile(tf.constant(volume, tf.float32), 99.5)) == exact
    assert exact == float(np.percentile(volume, 99.5, method="lower"))
