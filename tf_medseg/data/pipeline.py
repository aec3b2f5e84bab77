"""The tf.data input pipeline: prepared records -> batches of (image, mask).

Stages are small functions composed in :func:`make_dataset`::

    record -> cut (slices across data.slice_axis, resampled to data.spacing) -> normalize
        -> resize (data.sampling: resize) -> compact -> cache (scans) -> shuffle scans
        -> stack_context (2.5D) -> unbatch slices -> shuffle slices
        -> random patch (data.sampling: patch, :mod:`tf_medseg.data.patches`) -> batch
        -> augment (training only) -> decode -> prefetch

With ``model.dims: 3`` the shuffled scans are repeated and each yields one random 3D patch
in turn (:func:`volume_patches`) in place of the slice stages, then batch, augment (one draw
per patch, :func:`tf_medseg.data.augment.augment_volumes`), decode and prefetch.

Every source goes through the same stages (one record format, :mod:`tf_medseg.data.features`):
a record's volume is cut into slices (:func:`tf_medseg.data.geometry.cut`), normalised per
channel as ``data.normalization`` says (:mod:`tf_medseg.data.normalization`; the parameters
come from the whole stored volume), and its mask (label map or bits) becomes bit-packed class
masks, one bit per declared class.

Until a batch is formed, slices travel compact: the image as float16 at the model's size, the
masks bit-packed in one integer (``features.unpack_mask``). The cache therefore holds 3 bytes a
pixel for one channel: 1.9 GB for the whole Kaggle training set at 128 x 128, 7.6 GB at
256 x 256. The 2.5D context is stacked after the cache, so ``data.context`` changes without
rebuilding anything. With several modalities the context stacks channels modality-major:
channel ``m * len(context) + k`` is modality m at offset ``context[k]``.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tf_medseg.config import Config
from tf_medseg.data import geometry, normalization
from tf_medseg.data.augment import augment, augment_volumes
from tf_medseg.data.dataset import DataSet
from tf_medseg.data.features import unpack_mask
from tf_medseg.data.labels import LabelSchema
from tf_medseg.data.patches import random_patch


def packed_dtype(labels: LabelSchema) -> tf.DType:
    return tf.uint8 if labels.num_classes <= 8 else tf.uint16


def pack_labels(mask: tf.Tensor, labels: LabelSchema) -> tf.Tensor:
    """A record's stored mask (label map or bits) -> bit-packed class masks (bit k = class k)."""
    dtype = packed_dtype(labels)
    if labels.encoding == "bits":
        return tf.cast(mask, dtype)
    packed = tf.zeros(tf.shape(mask), tf.int32)
    label = tf.cast(mask, tf.int32)
    for k, values in enumerate(labels.values):
        hit = tf.reduce_any(tf.equal(label[..., None], tf.constant(values, tf.int32)), -1)
        packed += tf.cast(hit, tf.int32) * (1 << k)
    return tf.cast(packed, dtype)


def stack_context(volume: tf.Tensor, offsets: Sequence[int]) -> tf.Tensor:
    """(D, H, W) -> (D, H, W, len(offsets)): channel k of slice i is slice i + offsets[k],
    clamped at the scan's ends. (D, H, W, M) -> (D, H, W, M * len(offsets)), modality-major:
    channel m * len(offsets) + k is modality m at offset k."""
    return tf.transpose(_context_first(volume, offsets), [0, 2, 3, 1])


def resize(image: tf.Tensor, mask: tf.Tensor, size: Sequence[int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Bilinear for images, nearest-neighbour for masks (labels are never interpolated)."""
    image = tf.image.resize(image, size, method="bilinear")
    mask = tf.image.resize(mask, size, method="nearest")
    return image, mask


def parse(example: dict, labels: LabelSchema) -> dict:
    """A record with its masks unpacked to (A0, A1, A2, K) uint8, in the stored order."""
    return {**example, "mask": unpack_mask(pack_labels(example["mask"], labels),
                                           labels.num_classes)}


def scan_slices(example: dict, config: Config, labels: LabelSchema
                ) -> tuple[tf.Tensor, tf.Tensor]:
    """One record -> (slices (D, h, w, C) float32 normalised, at the model's size for
    ``data.sampling: resize``, else at their own (or ``data.spacing``'s); masks
    (D, h, w) bit-packed).

    The normalisation parameters come from the whole stored volume; the raw slices are
    resampled to ``data.spacing`` before they are normalised, as the predictor does; resizing
    the volume before stacking the context is the same as resizing the stacked slices
    (resizing is per channel), for a fraction of the work.
    """
    data = config.data
    image = example["image"]
    params = normalization.params(image, labels)
    slices, _ = geometry.cut(image, example["spacing"], data.slice_axis, data.spacing)
    packed, _ = geometry.cut(pack_labels(example["mask"], labels)[..., None],
                             example["spacing"], data.slice_axis, data.spacing, nearest=True)
    volume = normalization.apply(slices, params)
    if data.sampling == "resize":
        # Nearest neighbour never mixes values, so bit-packed masks resize exactly.
        volume, packed = resize(volume, packed, data.image_size)
    return volume, packed[..., 0]


def has_organ(image: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    return tf.reduce_any(mask > 0)


def resample_organs(ds: tf.data.Dataset, fraction: float, length: int, seed: int
                    ) -> tf.data.Dataset:
    """Epochs of ``length`` slices of which about ``fraction`` show an organ, drawn anew
    (and deterministically for ``seed``) every epoch."""
    organ = ds.filter(has_organ).repeat()
    empty = ds.filter(lambda i, m: tf.logical_not(has_organ(i, m))).repeat()
    mixed = tf.data.Dataset.sample_from_datasets(
        [organ, empty], weights=[fraction, 1.0 - fraction], seed=seed,
        rerandomize_each_iteration=True)
    return mixed.take(length)


def draw_slices(volume: tf.Tensor, packed: tf.Tensor, seed: tf.Tensor, fraction: float,
                num_classes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """A scan's (D, ...) slices and (D, h, w) packed masks -> as many slices drawn anew: each,
    with probability ``fraction``, class first (a class the scan shows, uniformly, then one of
    the slices showing it, uniformly), else any slice; a scan showing no class keeps its
    slices. Small organs are then as often in a batch as large ones (``data.class_fraction``;
    nnU-Net draws its foreground patches so)."""
    depth = tf.shape(packed, out_type=tf.int64)[0]
    shows = tf.reduce_any(unpack_mask(packed, num_classes) > 0, axis=[1, 2])  # (D, K)
    any_shown = tf.reduce_any(shows)
    # (K,) the classes this scan shows; every class drawable in a scan that shows none (its
    # draws are not used), so that no draw falls outside the classes.
    shown = tf.logical_or(tf.reduce_any(shows, axis=0), tf.logical_not(any_shown))
    shows = tf.logical_or(shows, tf.logical_not(any_shown))
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    # log(0) = -inf: an absent class, or a slice without the class, is never drawn.
    classes = tf.random.stateless_categorical(
        tf.math.log(tf.cast(shown, tf.float32))[None], tf.cast(depth, tf.int32), seeds[0])[0]
    by_class = tf.math.log(tf.cast(tf.gather(tf.transpose(shows), classes), tf.float32))
    class_first = tf.random.stateless_categorical(by_class, 1, seeds[1])[:, 0]
    anywhere = tf.random.stateless_uniform([depth], seeds[2], 0, depth, tf.int64)
    first = tf.random.stateless_uniform([depth], seeds[3]) < fraction
    index = tf.where(first, class_first, anywhere)
    index = tf.where(any_shown, index, tf.range(depth, dtype=tf.int64))
    return tf.gather(volume, index), tf.gather(packed, index)


def make_dataset(config: Config, split: str, *, dataset: DataSet | None = None,
                 batch_size: int | None = None, shuffle: bool | None = None,
                 augment_batches: bool | None = None, drop_remainder: bool = False,
                 cache: bool | None = None) -> tf.data.Dataset:
    """Batches of (image (B, h, w, C) float32, mask (B, h, w, K) float32), K the data's
    classes.

    Args:
        config: The experiment config (``data`` and ``augment`` sections).
        split: ``train`` (shuffled, augmented, repeated when ``train.steps_per_epoch`` is
            set), ``val`` or ``all``.
        dataset: The prepared data set (:class:`~tf_medseg.data.dataset.DataSet`), so that
            callers making several splits build (and fingerprint) the source once; opened
            here if not given.
        batch_size: Overrides ``data.batch_size`` (global batch).
        shuffle: Overrides the default (shuffle only ``train``).
        augment_batches: Overrides the default (augment only ``train``, if ``data.augment``).
        drop_remainder: Leave out the last, partial batch (training on several replicas,
            where a replica must not receive an empty batch).
        cache: Overrides ``data.cache``.
    """
    data = config.data
    dataset = dataset.configured(data) if dataset is not None else DataSet.open(data)
    labels = dataset.labels
    shuffle = (split == "train") if shuffle is None else shuffle
    if augment_batches is None:
        augment_batches = split == "train" and data.augment
    seed = config.train.seed
    num_scans = len(dataset.split_scans(split))

    # The stages hold no Python control flow on tensors: AutoGraph's conversion of them (about
    # 2 s per data set) is skipped.
    @tf.autograph.experimental.do_not_convert
    def compact(example):
        volume, packed = scan_slices(example, config, labels)
        return tf.cast(volume, tf.float16), packed
    ds = dataset.records(split).map(compact, num_parallel_calls=tf.data.AUTOTUNE)
    if data.cache if cache is None else cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(num_scans, seed=seed, reshuffle_each_iteration=True)
    if config.model.dims == 3:
        ds = volume_patches(ds, config, labels, dataset.patches(split, data.image_size),
                            split)
    else:
        ds = slice_patches(ds, config, labels, *dataset.slices(split), split, shuffle)
    ds = ds.batch(batch_size or data.batch_size, drop_remainder=drop_remainder,
                  num_parallel_calls=tf.data.AUTOTUNE)
    if augment_batches:
        # New, seeded random numbers every epoch: deterministic for train.seed.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        low, high = normalization.value_range(labels)
        augmenter = augment if config.model.dims == 2 else augment_volumes
        ds = tf.data.Dataset.zip(ds, seeds).map(tf.autograph.experimental.do_not_convert(
            lambda batch, s: augmenter(*batch, s, config.augment, max_value=high,
                                       min_value=low, channels_first=True,
                                       unpack_masks=labels.num_classes)),
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(tf.autograph.experimental.do_not_convert(
            lambda images, packed: _decode(images, packed, labels.num_classes)),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def slice_patches(ds: tf.data.Dataset, config: Config, labels: LabelSchema, num_slices: int,
                  num_organ: int, split: str, shuffle: bool) -> tf.data.Dataset:
    """Compact scans -> (C, h, w) slices with their 2.5D context and (h, w) packed masks:
    unbatched, organ slices resampled (``data.organ_fraction``), shuffled, and cut to random
    patches for ``data.sampling: patch``."""
    data, seed = config.data, config.train.seed
    ds = ds.map(tf.autograph.experimental.do_not_convert(
        lambda volume, packed: (_context_first(volume, data.context), packed)),
        num_parallel_calls=tf.data.AUTOTUNE)
    if split == "train" and data.class_fraction is not None:
        draws = tf.data.Dataset.random(seed=seed + 2, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, draws).map(tf.autograph.experimental.do_not_convert(
            lambda scan, s: draw_slices(*scan, s, data.class_fraction, labels.num_classes)),
            num_parallel_calls=tf.data.AUTOTUNE)
    # Known length, so that Keras shows epoch progress and ends epochs without a warning.
    ds = ds.unbatch().apply(tf.data.experimental.assert_cardinality(num_slices))
    if split == "train" and data.organ_fraction is not None and 0 < num_organ < num_slices:
        ds = resample_organs(ds, data.organ_fraction, num_slices, seed)
    if shuffle:
        ds = ds.shuffle(data.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if split == "train" and config.train.steps_per_epoch:
        ds = ds.repeat()
    if data.sampling == "patch":
        @tf.autograph.experimental.do_not_convert
        def patch(slices, s):
            return random_patch(*slices, s, data.image_size, data.foreground_share,
                                labels.num_classes)
        ds = tf.data.Dataset.zip(ds, _patch_seeds(config, split)).map(
            patch, num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def volume_patches(ds: tf.data.Dataset, config: Config, labels: LabelSchema, count: int,
                   split: str) -> tf.data.Dataset:
    """Compact scans -> ``count`` 3D patches (C, d, h, w) with their (d, h, w) packed masks
    (``model.dims: 3``): the scans in turn (shuffled for training, every pass anew), one patch
    each, so every scan is sampled alike, as nnU-Net draws its cases."""
    data = config.data

    @tf.autograph.experimental.do_not_convert
    def patch(scan, s):
        image, masks = random_patch(tf.transpose(scan[0], [3, 0, 1, 2]), scan[1], s,
                                    data.image_size, data.foreground_share, labels.num_classes)
        return tf.ensure_shape(image, [labels.num_channels, *data.image_size]), masks
    ds = tf.data.Dataset.zip(ds.repeat(), _patch_seeds(config, split)).map(
        patch, num_parallel_calls=tf.data.AUTOTUNE)
    if split == "train" and config.train.steps_per_epoch:
        return ds
    return ds.take(count).apply(tf.data.experimental.assert_cardinality(count))


def _patch_seeds(config: Config, split: str) -> tf.data.Dataset:
    """A seed per patch: new patches every training epoch, the same validation patches."""
    return tf.data.Dataset.random(seed=config.train.seed + 1,
                                  rerandomize_each_iteration=split == "train").batch(2)


def _context_first(volume: tf.Tensor, offsets: Sequence[int]) -> tf.Tensor:
    """(D, h, w) -> (D, K, h, w), or (D, h, w, M) -> (D, M * K, h, w) modality-major:
    :func:`stack_context` with channels first, as one gather of whole slices. The training
    pipeline keeps this layout until batches are made channels-last in an XLA pass
    (:func:`_decode` or augmentation): 5x faster than stacking channels last per scan."""
    depth = tf.shape(volume)[0]
    index = tf.range(depth)[:, None] + tf.constant(offsets, tf.int32)[None, :]
    stacked = tf.gather(volume, tf.clip_by_value(index, 0, depth - 1))
    if len(volume.shape) == 3:
        return stacked
    # (D, K, h, w, M) -> (D, M, K, h, w) -> (D, M * K, h, w)
    shape = tf.shape(stacked)
    stacked = tf.transpose(stacked, [0, 4, 1, 2, 3])
    return tf.reshape(stacked, [shape[0], shape[4] * len(offsets), shape[2], shape[3]])


def _channels_last(images: tf.Tensor, packed: tf.Tensor, num_classes: int):
    rank = len(images.shape)
    images = tf.transpose(tf.cast(images, tf.float32), [0, *range(2, rank), 1])
    return images, tf.cast(unpack_mask(packed, num_classes), tf.float32)


# One XLA computation per rank: relaxed retracing generalises the shapes a function has seen,
# and between a 2D batch and a 3D one that is a shape of unknown rank, which the permutation
# cannot take (a process that had decoded 2D batches failed on its first 3D batch).
_CHANNELS_LAST = {rank: tf.function(_channels_last, jit_compile=True, reduce_retracing=True,
                                    autograph=False)
                  for rank in (4, 5)}


def _decode(images: tf.Tensor, packed: tf.Tensor, num_classes: int):
    """(B, C, h, w) float16, (B, h, w) packed -> channels-last float32 images, (B, h, w, K)
    float32 masks, in one XLA pass (3D patches alike: (B, C, d, h, w), (B, d, h, w))."""
    return _CHANNELS_LAST[len(images.shape)](images, packed, num_classes)
