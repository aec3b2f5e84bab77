"""The config sections of what follows training: ``export:`` (the SavedModel), ``predict:``
(sliding windows over whole slices or volumes), ``eval:`` (the contour metrics) and ``plan:``
(what ``python -m tf_medseg plan`` plans for). The data, augmentation, model, training and
tuning sections are in :mod:`tf_medseg.config.schema`."""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional, Union

from tf_medseg.config.fields import field


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The ``export:`` section: the SavedModel written after training."""

    saved_model: bool = field(True, "write RUN_DIR/saved_model after training")
    roi_names: Optional[Union[Literal["tg263"], dict]] = field(
        None, "the ROI name of each class in the RT structure sets and DICOM SEGs that predict "
              "writes, e.g. {stomach: Stomach, large_bowel: Bowel_Large}; classes left out "
              "keep their own name; tg263: every class by its AAPM TG-263 standard name "
              "(large_bowel -> Bowel_Large, parotid_left -> Parotid_L; a class it does not "
              "know is an error naming it); stored in the export",
        check=lambda v: (isinstance(v, str) or all(
            isinstance(k, str) and isinstance(n, str) and 0 < len(n) <= 64 and n.isprintable()
            for k, n in v.items()),
            "must map class names to ROI names of 1 to 64 printable characters"))


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """The ``predict:`` section: how a model trained on patches (``data.sampling: patch``)
    predicts whole slices; stored in the export, used by predict, evaluate and validation."""

    overlap: float = field(
        0.5, "share of a window that its neighbour overlaps (0 to 0.9), windows weighted by "
             "a Gaussian (nnU-Net's 0.5)", min=0.0, max=0.9)
    tta: Literal["none", "flips", "zoom", "flips+zoom"] = field(
        "none", "test-time augmentation: flips (the logits averaged over every combination of "
                "mirrors along predict.mirror_axes, window by window, inside the export's "
                "graph: nnU-Net's), zoom (the probabilities averaged with those of the slices "
                "zoomed by 0.9 and 1.1), both, or none")
    mirror_axes: Optional[tuple[int, ...]] = field(
        None, "with tta flips: the network's axes to mirror, 2D 0 (rows) and 1 (columns), 3D "
              "0 (slices), 1 and 2; null: the axes training flips (augment.flip_ud rows, "
              "augment.flip_lr columns). Caution: a left-right mirror turns a left organ into "
              "a right one (kidneys): mirror only axes that training flipped",
        check=lambda v: (all(a in (0, 1, 2) for a in v) and len(set(v)) == len(v),
                         "must be distinct axes 0, 1 or 2"))

    def mirrors(self, dims: int, augment) -> tuple[int, ...]:
        """The axes ``tta`` flips mirror for a ``dims``-D network trained with ``augment``."""
        if "flips" not in self.tta:
            return ()
        if self.mirror_axes is not None:
            return tuple(sorted(self.mirror_axes))
        rows, columns = dims - 2, dims - 1
        return tuple(a for a, p in ((rows, augment.flip_ud), (columns, augment.flip_lr)) if p)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The ``eval:`` section: how contours are judged beside Dice and HD95 (volume data)."""

    surface_tolerance_mm: Union[float, tuple[float, ...]] = field(
        2.0, "surface Dice and added path length: the distance in mm within which a contour "
             "counts as right; one value, or one per class in the data's class order",
        min=0.0, max=100.0)


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """The ``plan:`` section: what ``python -m tf_medseg plan`` plans for (the machine that
    will train)."""

    device: Literal["gpu", "cpu"] = field(
        "gpu", "gpu (patches and batch for a GPU's memory, plan.memory_gb default 8) or cpu "
               "(default 2: smaller batches, a training step a CPU finishes in seconds)")
    dims: Literal[2, 3] = field(
        2, "the network the written plan trains: 2 (2D patches of slices) or 3 (a 3D U-Net "
           "on 3D patches, with per-axis pooling and kernels; volume data only)")
    memory_gb: Optional[float] = field(
        None, "memory a training step may take for the activations (GB); null takes 8 for "
              "gpu, 2 for cpu", min=0.05, max=1024.0)
