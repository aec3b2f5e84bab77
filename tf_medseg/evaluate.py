"""Score a model on whole volumes: the competition metric (uwmgi, phantom), or per case and
class 3-D Dice and HD95 in mm (nnunet, decathlon, folder; nnU-Net's summary.json figures).

``python -m tf_medseg evaluate --model RUN_DIR/saved_model --config CONFIG`` loads the export,
predicts every validation scan at its native size and writes, beside the SavedModel (or in
``--output``)::

    evaluation/metrics.json     aggregate and one entry per case-day (case)
    evaluation/case_days.csv    uwmgi, phantom: one row per case-day: dice, hausdorff, score,
                                per class
    evaluation/cases.csv        other sources: one row per case: dice, hd95, per class
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
from tf_medseg.config import Config
from tf_medseg.data.pipeline import parse, scan_dataset, scan_inputs, task_for
from tf_medseg.data.task import KAGGLE, output_of
from tf_medseg.errors import MedsegError
from tf_medseg.files import PARTIAL, atomic_open, atomic_write, check_output_path, check_outside


def predict_scan(predict: Callable, example: dict, config: Config, batch_size: int,
                 task=KAGGLE) -> np.ndarray:
    """Boolean (D, H, W, K) prediction of one scan record at its native size.

    ``predict`` maps a batch of normalised, model-size 2.5D stacks to logits: a Keras model,
    or the ``logits`` endpoint of an exported SavedModel. Logits are resized bilinearly to
    the native size, then thresholded (sigmoid) or their largest taken (softmax).
    """
    images, _ = scan_inputs(example, config.data.context, config.data.image_size, task)
    height, width = example["image"].shape[1:3]
    output = output_of(config, task)
    threshold = config.train.threshold
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = tf.cast(predict(images[start:start + batch_size]), tf.float32)
        logits = tf.image.resize(logits, (height, width), method="bilinear")
        out.append(np.asarray(metrics.predicted_masks(
            logits, task.num_classes, output, float(np.log(threshold / (1 - threshold))))))
    return np.concatenate(out)


def scan_probabilities(predicts, example: dict, config: Config, batch_size: int,
                       task=KAGGLE) -> np.ndarray:
    """Float32 (D, H, W, K) class probabilities of one scan record at its native size: the
    mean over ``predicts`` (one or several logits callables, as :func:`predict_scan` takes)
    of each one's probabilities (logits resized bilinearly, then sigmoid, or softmax with the
    background left out)."""
    if callable(predicts):
        predicts = [predicts]
    images, _ = scan_inputs(example, config.data.context, config.data.image_size, task)
    height, width = example["image"].shape[1:3]
    output = output_of(config, task)
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size]
        total = 0.0
        for predict in predicts:
            logits = tf.cast(predict(batch), tf.float32)
            logits = tf.image.resize(logits, (height, width), method="bilinear")
            total += (tf.nn.softmax(logits, axis=-1)[..., 1:] if output == "softmax"
                      else tf.sigmoid(logits)).numpy()
        out.append(total / len(predicts))
    return np.concatenate(out)


class Scoring:
    """Scores scan by scan, then the aggregate: the competition metric (``scans`` tasks:
    uwmgi, phantom) or per case and class 3-D Dice and HD95 in mm (other sources)."""

    def __init__(self, task, both_empty: str = "skip", distances: bool = True):
        self.task, self.both_empty, self.distances = task, both_empty, distances
        self.scans_mode = task.kind == "scans"
        self.rows, self.slice_dices, self.class_hds = [], [], []
        self.inter = np.zeros(len(task.classes))
        self.total = np.zeros(len(task.classes))

    def add(self, name: str, pred: np.ndarray, true: np.ndarray, spacing=None) -> dict:
        """Score one scan's boolean (D, H, W, K) prediction against its truth."""
        classes = self.task.classes
        self.inter += metrics.slice_counts(pred & true).sum(axis=0)
        self.total += (metrics.slice_counts(pred).sum(axis=0)
                       + metrics.slice_counts(true).sum(axis=0))
        if self.scans_mode:
            sd = metrics.slice_dice(pred, true, self.both_empty)
            hd = metrics.hausdorff(pred, true, self.both_empty)
            row = {"case_day": name, "slices": int(pred.shape[0]),
                   **metrics.summarize([sd], [hd], classes)}
        else:
            sd = metrics.volume_dice(pred, true)
            hd = metrics.hd95(pred, true, spacing) if self.distances else None
            row = {"case": name, "slices": int(pred.shape[0]),
                   **metrics.summarize_volumes([sd], None if hd is None else [hd], classes)}
            del row["score"]
        self.slice_dices.append(sd)
        self.class_hds.append(hd)
        self.rows.append(row)
        return row

    def result(self, split: str = "val") -> tuple[dict, list[dict]]:
        """(aggregate, rows sorted by case-day or case)."""
        classes, rows = self.task.classes, self.rows
        if self.scans_mode:
            rows.sort(key=lambda r: _case_day_key(r["case_day"]))
            result = metrics.summarize(self.slice_dices, self.class_hds, classes)
        else:
            rows.sort(key=lambda r: r["case"])
            if not rows:
                raise MedsegError(f"the {split} split holds no cases")
            result = metrics.summarize_volumes(self.slice_dices,
                                               self.class_hds if self.distances else None,
                                               classes)
        # Dice of all voxels pooled per class (what the Keras metric reports, at native size).
        pooled = np.where(self.total > 0, 2 * self.inter / np.maximum(self.total, 1), np.nan)
        result["dice_pooled"] = (float(np.nanmean(pooled)) if np.isfinite(pooled).any()
                                 else math.nan)
        result.update({f"dice_pooled_{c}": float(v) for c, v in zip(classes, pooled)})
        if self.scans_mode:
            result["both_empty"] = self.both_empty
        else:
            result["classes"] = list(classes)
            result["empty_in_one"] = ("Dice 0, HD95 the volume's diagonal in mm; empty in "
                                      "both: left out of the means")
        return result, rows


def scan_name(example: dict, task) -> str:
    return (example["case_day"] if task.kind == "scans" else example["scan"]).numpy().decode()


def evaluate_scans(predict, config: Config, split: str = "val",
                   both_empty: str = "skip", builder=None, progress: bool = False,
                   distances: bool = True, postprocessing=None,
                   threshold: float | None = None) -> tuple[dict, list[dict]]:
    """(aggregate, per case-day or per case rows) over a split's scans.

    uwmgi and phantom: the competition metric (``both_empty`` as documented there). Other
    sources: per case and class 3-D Dice and (``distances``) HD95 in mm, means per class and
    overall (:func:`tf_medseg.metrics.summarize_volumes`).

    ``predict``: a logits callable (:func:`predict_scan`), or a list of them (an ensemble:
    their probabilities are averaged). ``postprocessing``: class -> :class:`~tf_medseg.
    postprocess.Rule` applied to the probabilities; ``threshold`` overrides its thresholds
    (default: ``train.threshold``, or the rules').

    The aggregate also has ``dice_pooled`` (and ``dice_pooled_<class>``): Dice of all voxels of
    the split pooled per class, averaged over classes.
    """
    if builder is None:
        from tf_medseg.records import build_records
        builder = build_records(config.data)
    task = task_for(config, builder)
    scoring = Scoring(task, both_empty, distances)
    scans_ds, scans, _, _ = scan_dataset(config, split, with_count=True, builder=builder)
    by_probability = not callable(predict) or postprocessing is not None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=scans, desc=f"Scoring {split} " + ("case-days" if scoring.scans_mode
                                                            else "cases"), unit="scan")
    for example in scans_ds:
        if by_probability:
            from tf_medseg import postprocess
            probs = scan_probabilities(predict, example, config, config.data.batch_size, task)
            pred = postprocess.masks(probs, postprocessing, task.classes,
                                     output_of(config, task), threshold,
                                     config.train.threshold)
        else:
            pred = predict_scan(predict, example, config, config.data.batch_size, task)
        true = parse(example, task)["mask"].numpy().astype(bool)
        scoring.add(scan_name(example, task), pred, true,
                    None if scoring.scans_mode else example["spacing"].numpy())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return scoring.result(split)


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


def write_report(result: dict, rows: list[dict], out_dir: str | os.PathLike,
                 classes=KAGGLE.classes) -> Path:
    """``metrics.json`` (aggregate + rows) and ``case_days.csv`` (uwmgi, phantom) or
    ``cases.csv`` (other sources) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scans_mode = not rows or "case_day" in rows[0]
    name = "case_days" if scans_mode else "cases"
    report = json_safe({**result, name: rows})
    atomic_write(out_dir / "metrics.json", json.dumps(report, indent=2) + "\n")
    if scans_mode:
        fields = ["case_day", "slices", "dice", "hausdorff", "score"] + [
            f"{m}_{c}" for m in ("dice", "hausdorff") for c in classes]
    else:
        fields = ["case", "slices", "dice", "hd95"] + [
            f"{m}_{c}" for m in ("dice", "hd95") for c in classes]
    with atomic_open(out_dir / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                                 round(v, 6) if isinstance(v, float) else v)
                             for k, v in row.items()})
    return out_dir


REPORT_FILES = ("metrics.json", "case_days.csv", "cases.csv")


def check_report_dir(out: Path, model_dir: Path, config: Config) -> None:
    """The report folder (``--output``) before any work: a folder that is new, empty or holds
    an earlier report only (so a run folder's metrics.json is never replaced), and outside
    the model and the data (one-line errors)."""
    check_output_path(out, "--output", "folder")
    check_outside(out, "--output", {"--model": model_dir, "data.root": config.data.root})
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in REPORT_FILES
                       and not p.name.startswith(PARTIAL))
        if other:
            raise MedsegError(f"--output {out}: holds other files than a report ("
                              f"{', '.join(other[:3])}); give a new or empty folder")


def json_safe(value):
    """NaN (a class skipped everywhere) becomes null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def evaluate_saved_model(model_dir, config: Config, *,
                         split: str = "val", both_empty: str = "skip",
                         out_dir: str | os.PathLike | None = None,
                         postprocess: bool = True) -> tuple[dict, Path]:
    """Score an export (or several, averaged: a list, or a cross-validation run folder) on a
    split's case-days and write the report; (aggregate, report dir).

    The report goes to ``out_dir``, by default ``evaluation/`` beside the SavedModel (inside
    the run directory; for a cross-validation folder, ``RUN_DIR/evaluation``). Post-processing
    that comes with the models (``cv/postprocessing.json``) is applied unless ``postprocess``
    is False; the report says which.
    """
    from tf_medseg import postprocess as pp
    from tf_medseg.ensemble import resolve_models
    from tf_medseg.records import build_records
    from tf_medseg.run_dir import is_cv_run
    values = [model_dir] if isinstance(model_dir, (str, os.PathLike)) else list(model_dir)
    exports, rules_path = resolve_models(values)
    if out_dir is not None:
        out = Path(out_dir).expanduser()
    elif len(values) > 1:
        raise MedsegError("--output: required with several --model exports (the report of "
                          "their ensemble belongs to none of them)")
    else:
        first = Path(values[0]).expanduser().resolve()
        out = first / "evaluation" if is_cv_run(first) else exports[0].resolve().parent / \
            "evaluation"
    for export in exports:
        check_report_dir(out, export, config)
    predicts = [load_exported(e, config) for e in exports]
    builder = build_records(config.data)
    classes = task_for(config, builder).classes
    rules = pp.read(rules_path, classes) if rules_path is not None and postprocess else None
    result, rows = evaluate_scans(predicts[0] if len(predicts) == 1 else predicts, config,
                                  split, both_empty, builder=builder, progress=True,
                                  postprocessing=rules)
    result["models"] = [str(e) for e in exports]
    result["postprocessing"] = str(rules_path) if rules is not None else None
    return result, write_report(result, rows, out, classes)
