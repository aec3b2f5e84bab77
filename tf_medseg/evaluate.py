"""Score a model on whole case-day volumes with the competition metric.

``python -m tf_medseg evaluate --model RUN_DIR/saved_model --config CONFIG`` loads the export,
predicts every validation scan at its native size and writes, beside the SavedModel (or in
``--output``)::

    evaluation/metrics.json     aggregate (competition way) and one entry per case-day
    evaluation/case_days.csv    one row per case-day: dice, hausdorff, score, per class
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from tf_medseg import metrics
from tf_medseg.config import CLASSES, Config
from tf_medseg.data.pipeline import parse, prepare_scan, scan_dataset
from tf_medseg.errors import MedsegError


def predict_scan(predict: Callable, example: dict, config: Config, batch_size: int
                 ) -> np.ndarray:
    """Boolean (D, H, W, 3) prediction of one scan record at its native size.

    ``predict`` maps a batch of normalised, model-size 2.5D stacks to logits: a Keras model,
    or the ``logits`` endpoint of an exported SavedModel.
    """
    images, _ = prepare_scan(example, config.data.context, config.data.image_size)
    height, width = example["image"].shape[1:3]
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = tf.cast(predict(images[start:start + batch_size]), tf.float32)
        out.append(tf.image.resize(logits, (height, width), method="bilinear").numpy())
    threshold = config.train.threshold
    return np.concatenate(out) > np.log(threshold / (1 - threshold))


def evaluate_scans(predict: Callable, config: Config, split: str = "val",
                   both_empty: str = "skip", builder=None, progress: bool = False
                   ) -> tuple[dict, list[dict]]:
    """(aggregate, per case-day rows) of the competition metric over a split's scans.

    The aggregate also has ``dice_pooled`` (and ``dice_pooled_<class>``): Dice of all voxels of
    the split pooled per class, averaged over classes.
    """
    rows, slice_dices, class_hds = [], [], []
    inter, total = np.zeros(len(CLASSES)), np.zeros(len(CLASSES))
    scans_ds, scans, _, _ = scan_dataset(config, split, with_count=True, builder=builder)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=scans, desc=f"Scoring {split} case-days", unit="scan")
    for example in scans_ds:
        pred = predict_scan(predict, example, config, config.data.batch_size)
        true = parse(example)["mask"].numpy().astype(bool)
        inter += metrics.slice_counts(pred & true).sum(axis=0)
        total += metrics.slice_counts(pred).sum(axis=0) + metrics.slice_counts(true).sum(axis=0)
        sd = metrics.slice_dice(pred, true, both_empty)
        hd = metrics.hausdorff(pred, true, both_empty)
        slice_dices.append(sd)
        class_hds.append(hd)
        rows.append({"case_day": example["case_day"].numpy().decode(),
                     "slices": int(pred.shape[0]), **metrics.summarize([sd], [hd])})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    rows.sort(key=lambda r: _case_day_key(r["case_day"]))
    result = metrics.summarize(slice_dices, class_hds)
    # Dice of all voxels pooled per class (what the Keras metric reports, at native size).
    pooled = np.where(total > 0, 2 * inter / np.maximum(total, 1), np.nan)
    result["dice_pooled"] = float(np.nanmean(pooled)) if np.isfinite(pooled).any() else math.nan
    result.update({f"dice_pooled_{c}": float(v) for c, v in zip(CLASSES, pooled)})
    result["both_empty"] = both_empty
    return result, rows


def _case_day_key(case_day: str) -> tuple[int, int]:
    case, _, day = case_day.partition("_")
    return int(case.removeprefix("case")), int(day.removeprefix("day") or 0)


# ------------------------------------------------------------------------ exported SavedModel

def load_exported(model_dir: str | os.PathLike, config: Config) -> Callable:
    """The ``logits`` endpoint of an export, after checking that ``config`` prepares inputs
    the way the model was trained (context offsets and input size in ``metadata.json``)."""
    from tf_medseg.export import load_signatures, read_metadata
    model_dir = Path(model_dir)
    meta_path = model_dir / "metadata.json"
    meta = read_metadata(model_dir, str(model_dir))
    for key, ours, label in (("context_offsets", list(config.data.context), "data.context"),
                             ("model_input_size", list(config.data.image_size),
                              "data.image_size")):
        if key in meta and meta[key] != ours:
            raise MedsegError(f"{meta_path}: the model was trained with {label} {meta[key]}, "
                              f"the config has {ours}; pass the run's config.yaml")
    endpoint = load_signatures(model_dir, ["logits"], str(model_dir)).signatures["logits"]
    return lambda images: endpoint(image=tf.convert_to_tensor(images, tf.float32))["logits"]


def write_report(result: dict, rows: list[dict], out_dir: str | os.PathLike) -> Path:
    """``metrics.json`` (aggregate + case-days) and ``case_days.csv`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = json_safe({**result, "case_days": rows})
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out_dir / "metrics.json")
    fields = ["case_day", "slices", "dice", "hausdorff", "score"] + [
        f"{m}_{c}" for m in ("dice", "hausdorff") for c in CLASSES]
    tmp = out_dir / "case_days.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                                 round(v, 6) if isinstance(v, float) else v)
                             for k, v in row.items()})
    os.replace(tmp, out_dir / "case_days.csv")
    return out_dir


def json_safe(value):
    """NaN (a class skipped everywhere) becomes null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def evaluate_saved_model(model_dir: str | os.PathLike, config: Config, *,
                         split: str = "val", both_empty: str = "skip",
                         out_dir: str | os.PathLike | None = None) -> tuple[dict, Path]:
    """Score an export on a split's case-days and write the report; (aggregate, report dir).

    The report goes to ``out_dir``, by default ``evaluation/`` beside the SavedModel (inside
    the run directory).
    """
    from tf_medseg.data.prepare import prepare
    predict = load_exported(model_dir, config)
    builder = prepare(config.data)
    result, rows = evaluate_scans(predict, config, split, both_empty, builder=builder,
                                  progress=True)
    out = Path(out_dir) if out_dir else Path(model_dir).resolve().parent / "evaluation"
    return result, write_report(result, rows, out)
