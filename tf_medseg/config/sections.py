"""The config sections of what follows training: ``export:`` (the SavedModel), ``predict:``
(sliding windows over whole slices or volumes) and ``plan:`` (what ``python -m tf_medseg plan``
plans for). The data, augmentation, model, training and tuning sections are in
:mod:`tf_medseg.config.schema`."""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from tf_medseg.config.fields import field


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The ``export:`` section: the SavedModel written after training."""

    saved_model: bool = field(True, "write RUN_DIR/saved_model after training")


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """The ``predict:`` section: how a model trained on patches (``data.sampling: patch``)
    predicts whole slices; stored in the export, used by predict, evaluate and validation."""

    overlap: float = field(
        0.5, "share of a window that its neighbour overlaps (0 to 0.9), windows weighted by "
             "a Gaussian (nnU-Net's 0.5)", min=0.0, max=0.9)


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
