"""Score a model on whole case-day volumes with the competition metric."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_medseg import metrics
from tf_medseg.config import CLASSES, Config
from tf_medseg.data.pipeline import parse, prepare_scan, scan_dataset


def predict_scan(model, example: dict, config: Config, batch_size: int) -> np.ndarray:
    """Boolean (D, H, W, 3) prediction of one scan record at its native size."""
    images, _ = prepare_scan(example, config.data.context, config.data.image_size)
    height, width = example["image"].shape[1:3]
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = tf.cast(model(images[start:start + batch_size], training=False), tf.float32)
        out.append(tf.image.resize(logits, (height, width), method="bilinear").numpy())
    threshold = config.train.threshold
    return np.concatenate(out) > np.log(threshold / (1 - threshold))


def evaluate_scans(model, config: Config, split: str = "val", both_empty: str = "skip",
                   builder=None) -> tuple[dict, list[dict]]:
    """(aggregate, per case-day rows) of the competition metric over a split's scans.

    The aggregate also has ``dice_pooled`` (and ``dice_pooled_<class>``): Dice of all voxels of
    the split pooled per class, averaged over classes.
    """
    rows, slice_dices, class_hds = [], [], []
    inter, total = np.zeros(len(CLASSES)), np.zeros(len(CLASSES))
    for example in scan_dataset(config, split, builder=builder):
        pred = predict_scan(model, example, config, config.data.batch_size)
        true = parse(example)["mask"].numpy().astype(bool)
        inter += (pred & true).sum(axis=(0, 1, 2))
        total += pred.sum(axis=(0, 1, 2)) + true.sum(axis=(0, 1, 2))
        sd = metrics.slice_dice(pred, true, both_empty)
        hd = metrics.hausdorff(pred, true, both_empty)
        slice_dices.append(sd)
        class_hds.append(hd)
        rows.append({"case_day": example["case_day"].numpy().decode(),
                     **metrics.summarize([sd], [hd])})
    result = metrics.summarize(slice_dices, class_hds)
    # Dice of all voxels pooled per class (what the Keras metric reports, at native size).
    pooled = np.where(total > 0, 2 * inter / np.maximum(total, 1), np.nan)
    result["dice_pooled"] = float(np.nanmean(pooled))
    result.update({f"dice_pooled_{c}": float(v) for c, v in zip(CLASSES, pooled)})
    return result, rows
