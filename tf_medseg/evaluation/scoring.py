"""Scoring predicted volumes against their truth, scan by scan, then the aggregate, with the
metric family the data set declares (its label schema's ``metric``):

* ``competition`` (uwmgi, phantom): the competition score per case-day and over all of them;
* ``volume`` (nnunet, decathlon, folder): per case and class 3-D Dice and HD95 in mm,
  means per class and overall (nnU-Net's summary.json figures), and with them the contour
  metrics of radiotherapy (:mod:`tf_medseg.evaluation.surfaces`): surface Dice at
  ``eval.surface_tolerance_mm`` (``sdice``) and the added path length in mm (``apl``) and
  relative to the reference contour's length (``apl_rel``).

:func:`write_report` writes ``metrics.json`` and ``case_days.csv`` (competition) or
``cases.csv`` (volume).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from tf_medseg.data.labels import LabelSchema
from tf_medseg.errors import MedsegError
from tf_medseg.evaluation import metrics
from tf_medseg.files import atomic_open, atomic_write

REPORT_FILES = ("metrics.json", "case_days.csv", "cases.csv")
CONTOUR_METRICS = ("sdice", "apl", "apl_rel")


def case_day_key(case_day: str) -> tuple[int, int]:
    case, _, day = case_day.partition("_")
    return int(case.removeprefix("case")), int(day.removeprefix("day") or 0)


class Scoring:
    """Scores scan by scan (:meth:`add`), then the aggregate (:meth:`result`)."""

    def __init__(self, labels: LabelSchema, both_empty: str = "skip", distances: bool = True,
                 tolerance=2.0):
        self.labels, self.both_empty, self.distances = labels, both_empty, distances
        self.competition = labels.metric == "competition"
        self.rows, self.slice_dices, self.class_hds = [], [], []
        self.contours: dict[str, list] = {name: [] for name in CONTOUR_METRICS}
        values = np.atleast_1d(np.asarray(tolerance, float))
        if len(values) not in (1, labels.num_classes):
            raise MedsegError(f"eval.surface_tolerance_mm: {len(values)} values for "
                              f"{labels.num_classes} classes ({', '.join(labels.classes)}); "
                              f"give one value, or one per class")
        self.tolerance = values if len(values) > 1 else float(values[0])
        self.inter = np.zeros(labels.num_classes)
        self.total = np.zeros(labels.num_classes)

    def add(self, name: str, pred: np.ndarray, true: np.ndarray, spacing=None,
            slices: int | None = None, axis: int | None = None) -> dict:
        """Score one scan's boolean (A0, A1, A2, K) prediction against its truth (stored
        order: the competition's slices first; ``spacing`` mm along the three axes;
        ``slices``: how many 2D slices the scan was cut into, default A0; ``axis``: the axis
        it was cut across, where contours are drawn, default the coarsest)."""
        slices = int(pred.shape[0]) if slices is None else int(slices)
        classes = self.labels.classes
        self.inter += metrics.slice_counts(pred & true).sum(axis=0)
        self.total += (metrics.slice_counts(pred).sum(axis=0)
                       + metrics.slice_counts(true).sum(axis=0))
        if self.competition:
            sd = metrics.slice_dice(pred, true, self.both_empty)
            hd = metrics.hausdorff(pred, true, self.both_empty)
            row = {"case_day": name, "slices": slices,
                   **metrics.summarize([sd], [hd], classes)}
        else:
            sd, hd, contours = metrics.volume_dice(pred, true), None, {}
            if self.distances:
                hd, contours = self._distances(pred, true, spacing, axis)
                for key, value in contours.items():
                    self.contours[key].append(value)
            row = {"case": name, "slices": slices,
                   **metrics.summarize_volumes([sd], None if hd is None else [hd], classes,
                                               {k: [v] for k, v in contours.items()})}
            del row["score"]
        self.slice_dices.append(sd)
        self.class_hds.append(hd)
        self.rows.append(row)
        return row

    def _distances(self, pred, true, spacing, axis) -> tuple[np.ndarray, dict]:
        """HD95 and the contour metrics of one scan."""
        from tf_medseg.data.geometry import slice_axis
        from tf_medseg.evaluation.surfaces import added_path_length, surface_metrics
        hd, sdice = surface_metrics(pred, true, spacing, self.tolerance)
        axis = slice_axis(pred.shape, spacing) if axis is None else int(axis)
        apl, rel = added_path_length(pred, true, spacing, axis, self.tolerance)
        return hd, {"sdice": sdice, "apl": apl, "apl_rel": rel}

    def result(self, split: str = "val") -> tuple[dict, list[dict]]:
        """(aggregate, rows sorted by case-day or case)."""
        classes, rows = self.labels.classes, self.rows
        if not rows:
            raise MedsegError(f"the {split} split holds no cases")
        if self.competition:
            rows.sort(key=lambda r: case_day_key(r["case_day"]))
            result = metrics.summarize(self.slice_dices, self.class_hds, classes)
        else:
            rows.sort(key=lambda r: r["case"])
            result = metrics.summarize_volumes(self.slice_dices,
                                               self.class_hds if self.distances else None,
                                               classes, self.contours if self.distances
                                               else None)
        # Dice of all voxels pooled per class (what the Keras metric reports, at native size).
        pooled = np.where(self.total > 0, 2 * self.inter / np.maximum(self.total, 1), np.nan)
        result["dice_pooled"] = (float(np.nanmean(pooled)) if np.isfinite(pooled).any()
                                 else math.nan)
        result.update({f"dice_pooled_{c}": float(v) for c, v in zip(classes, pooled)})
        if self.competition:
            result["both_empty"] = self.both_empty
        else:
            result["classes"] = list(classes)
            result["empty_in_one"] = ("Dice 0, HD95 the volume's diagonal in mm; empty in "
                                      "both: left out of the means")
            if self.distances:
                result["surface_tolerance_mm"] = json_safe(np.asarray(
                    self.tolerance, float).tolist())
        return result, rows


def json_safe(value):
    """NaN (a class skipped everywhere) becomes null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def rows_name(labels: LabelSchema) -> str:
    """What the rows are called in reports: ``case_days`` or ``cases``."""
    return "case_days" if labels.metric == "competition" else "cases"


def write_report(result: dict, rows: list[dict], out_dir: str | os.PathLike,
                 labels: LabelSchema) -> Path:
    """``metrics.json`` (aggregate + rows) and ``case_days.csv`` (competition) or
    ``cases.csv`` (volume) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = rows_name(labels)
    report = json_safe({**result, name: rows})
    atomic_write(out_dir / "metrics.json", json.dumps(report, indent=2) + "\n")
    distance = "hausdorff" if labels.metric == "competition" else "hd95"
    key = "case_day" if labels.metric == "competition" else "case"
    per_class = ("dice", distance) + (() if labels.metric == "competition" else
                                      CONTOUR_METRICS)
    fields = [key, "slices", "dice", distance] + (
        ["score"] if labels.metric == "competition" else list(CONTOUR_METRICS)) + [
        f"{m}_{c}" for m in per_class for c in labels.classes]
    with atomic_open(out_dir / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                                 round(v, 6) if isinstance(v, float) else v)
                             for k, v in row.items()})
    return out_dir
