"""A configured data set: its records built once, its label schema with the normalisation
resolved, its patients dealt into folds and its scans by split.

:meth:`DataSet.open` is where records are built (:func:`tf_medseg.data.records.build_records`,
its one caller) and the label schema is resolved for the config; everything downstream (the
pipeline, the experiment, scoring) takes the :class:`DataSet`. A fold or a tuner trial of the
same data reuses the records with :meth:`DataSet.configured`.

Folds are grouped by patient: all scans (days) of a patient are in the same fold.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from tf_medseg.config import DataConfig
from tf_medseg.data import geometry, normalization
from tf_medseg.data.labels import LabelSchema, labels_of
from tf_medseg.errors import ConfigError, DataError

FOLD_SEED = 20220512
SPLITS = ("train", "val", "all")
# The data keys that choose the records: a configured() data set must agree on them.
RECORD_KEYS = ("source", "root", "data_dir", "drop_case_days", "unmatched", "group_pattern",
               "roi_map", "modality",
               "phantom_cases", "phantom_days", "phantom_slices", "phantom_seed")


def fold_cases(cases: Sequence[int], fold: int, num_folds: int) -> tuple[list[int], list[int]]:
    """(training cases, validation cases): cases shuffled with a fixed seed, dealt round-robin.

    Raises:
        DataError: if there are fewer cases than folds.
    """
    cases = sorted(int(c) for c in cases)
    if len(cases) < num_folds:
        raise DataError(f"the data set has {len(cases)} patient(s) (cases grouped by "
                        f"data.group_pattern where it is set), fewer than data.num_folds "
                        f"({num_folds}); lower data.num_folds or check data.group_pattern")
    order = np.random.default_rng(FOLD_SEED).permutation(cases)
    val = sorted(int(c) for i, c in enumerate(order) if i % num_folds == fold)
    train = sorted(c for c in cases if c not in val)
    return train, val


@dataclasses.dataclass(frozen=True)
class ScanInfo:
    """One record as the metadata describes it (its part of the fingerprint)."""

    name: str
    case: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    organ_slices: tuple[int, int, int]  # slices showing a class, along each axis
    class_voxels: tuple[int, ...]
    axcodes: str | None = None  # NIfTI: the orientation of its axes (tf_medseg.data.orientation)


class DataSet:
    """The prepared records of ``config``'s source and what their metadata says."""

    def __init__(self, builder, config: DataConfig):
        self.builder, self.config = builder, config
        self.metadata = builder.info.metadata
        self.labels: LabelSchema = normalization.resolve(
            labels_of(builder), config.normalization, self.metadata.get("intensity_stats"),
            config.window)
        self.cases: list[int] = sorted(int(c) for c in self.metadata["cases"])
        self.scans: list[ScanInfo] = [
            ScanInfo(name, int(f["case"]), tuple(f["shape"]), tuple(f["spacing"]),
                     tuple(f["organ_slices"]), tuple(f["class_voxels"]), f.get("axcodes"))
            for name, f in sorted(self.metadata["scans"].items())]
        self._check_resampled_size()

    def _check_resampled_size(self) -> None:
        """A fine ``data.spacing`` must not blow slices up (geometry.oversized): one line,
        before any memory is spent."""
        target, wanted = self.config.spacing, self.config.slice_axis
        for scan in self.scans if target else ():
            why = geometry.oversized(scan.shape, scan.spacing, wanted, target)
            if why:
                median = np.median([geometry.planar_sizes(s.shape, s.spacing, wanted)[1]
                                    for s in self.scans], axis=0)
                raise ConfigError(
                    f"data.spacing {list(target)}: scan {scan.name} {why}; choose a spacing "
                    f"near the data's own (median {median[0]:g} x {median[1]:g} mm) or null")

    @classmethod
    def open(cls, config: DataConfig) -> "DataSet":
        """The data set of ``config``, its records built first if they are not there yet."""
        from tf_medseg.data.records import build_records  # noqa: PLC0415 (TFDS is slow)
        return cls(build_records(config), config)

    def configured(self, config: DataConfig) -> "DataSet":
        """The same records under another data config (a fold, a trial): context, size,
        slicing, normalisation and folds may differ, the source may not."""
        for key in RECORD_KEYS:
            if getattr(config, key) != getattr(self.config, key):
                raise ConfigError(f"data.{key}: {getattr(config, key)!r} names other records "
                                  f"than {getattr(self.config, key)!r}")
        return DataSet(self.builder, config)

    @property
    def orientation(self) -> str | None:
        """The axis codes most scans share (what DICOM input is turned to face), None where
        the records do not note them (2D images, Kaggle slices, records built before)."""
        from tf_medseg.data.orientation import common_axcodes
        return common_axcodes(s.axcodes for s in self.scans)

    @property
    def image_dtype(self):
        """The records' image dtype (uint16 or float32, as a NumPy dtype)."""
        return np.dtype(self.builder.info.features["image"].np_dtype)

    def split_cases(self, split: str) -> list[int]:
        """The patients of ``split``: ``train``, ``val`` (``data.fold`` of ``data.num_folds``)
        or ``all``; with ``data.fold: all`` every case trains and ``val`` is empty."""
        if split == "all":
            return list(self.cases)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if self.config.fold == "all":  # every case trains, none validates
            return list(self.cases) if split == "train" else []
        train, val = fold_cases(self.cases, self.config.fold, self.config.num_folds)
        return train if split == "train" else val

    def split_scans(self, split: str) -> list[ScanInfo]:
        keep = set(self.split_cases(split))
        return [s for s in self.scans if s.case in keep]

    def axis(self, scan: ScanInfo) -> int:
        """The axis ``scan`` is cut into slices across (``data.slice_axis``)."""
        return geometry.slice_axis(scan.shape, scan.spacing, self.config.slice_axis)

    def slices(self, split: str) -> tuple[int, int]:
        """(slices, slices showing a class) of ``split`` as the pipeline cuts them."""
        scans = self.split_scans(split)
        return (sum(s.shape[self.axis(s)] for s in scans),
                sum(s.organ_slices[self.axis(s)] for s in scans))

    def patches(self, split: str, patch: Sequence[int]) -> int:
        """3D patches of ``patch`` (slices, rows, columns) that an epoch of ``split`` draws:
        per scan as many as would tile it at ``data.spacing`` (at least one), so that an epoch
        covers about as many voxels as the data set holds."""
        return sum(math.prod(max(1, math.ceil(n / p)) for n, p in zip(
            geometry.cut_shape(s.shape, s.spacing, self.config.slice_axis,
                               self.config.spacing), patch))
                   for s in self.split_scans(split))

    def records(self, split: str):
        """The raw records (``tf.data``) of ``split``'s scans, in the records' fixed order."""
        import tensorflow as tf  # noqa: PLC0415
        keep = tf.constant(self.split_cases(split), tf.int32)
        ds = self.builder.as_dataset(split="train", shuffle_files=False)
        return ds.filter(lambda ex: tf.reduce_any(tf.equal(ex["case"], keep)))
