"""The label schema: what a data set's masks mean and how its predictions are judged.

Classes come from the data, never from a constant: the Kaggle layout and the phantom declare
the three overlapping organs of UW-Madison (:data:`tf_medseg.data.sources.kaggle.LABELS`); an
nnU-Net, Decathlon or image folder declares its own in ``dataset.json`` or ``labels.json``. The
builders store the schema in the records' metadata; :func:`labels_of` reads it back, and every
stage takes it as an argument (no function falls back to the Kaggle classes).

Two kinds of classes:

* exclusive: one label per voxel (an integer label map). The model can end in a softmax over
  background and the classes (``model.output: softmax``, what ``auto`` picks), or in one sigmoid
  per class.
* overlapping: nnU-Net regions (a label whose value is a list of label values), one binary mask
  per class (``folder`` with ``masks/CLASS/``), UW-Madison's organs. One sigmoid per class.

How a record stores its mask (``encoding``):

* ``bits``: bit k set where class k is (the Kaggle records, per-class masks);
* ``labels``: the data's own label map; class k is where the label is one of ``values[k]``.

How predictions are scored (``metric``, chosen once, by the data set):

* ``competition``: the UW-Madison competition score (uwmgi, phantom);
* ``volume``: per case and class 3-D Dice and HD95 in mm (nnU-Net's figures; other sources).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from tf_medseg.errors import ConfigError, DataError

# Classes packed one bit each into an integer of this many bits (the pipeline's masks).
MAX_CLASSES = 16
METRICS = ("competition", "volume")
HEADS = ("sigmoid", "softmax")


@dataclasses.dataclass(frozen=True)
class LabelSchema:
    """Classes, mask encoding, image channels and their normalisation, and the metric family of
    a prepared data set."""

    classes: tuple[str, ...]
    exclusive: bool
    channels: tuple[str, ...]  # one name per image channel (modality)
    metric: Literal["competition", "volume"]
    encoding: Literal["bits", "labels"] = "bits"
    values: tuple[tuple[int, ...], ...] = ()  # labels: label values that make class k
    paint: tuple[int, ...] = ()  # label value written for class k in predicted label maps
    normalization: tuple[str, ...] = ()  # per channel, resolved (no auto); () until resolved
    stats: tuple[dict | None, ...] = ()  # per channel: foreground statistics of the data set

    def __post_init__(self):
        if not 1 <= len(self.classes) <= MAX_CLASSES:
            raise ValueError(f"1 to {MAX_CLASSES} classes are supported, got "
                             f"{len(self.classes)}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def label_values(self) -> tuple[int, ...]:
        """The label value painted for each class (1, 2, ... unless the data says)."""
        return self.paint or tuple(range(1, self.num_classes + 1))

    def head(self, wanted: str) -> str:
        """``model.output`` resolved for these classes: ``sigmoid`` or ``softmax``.

        Raises:
            ConfigError: for softmax over classes that overlap.
        """
        if wanted == "auto":
            return "softmax" if self.exclusive else "sigmoid"
        if wanted == "softmax" and not self.exclusive:
            raise ConfigError("model.output: softmax needs exclusive classes (one label per "
                              "pixel), but the data declares overlapping ones "
                              f"({', '.join(self.classes)}); use sigmoid or auto")
        return wanted

    def outputs(self, head: str) -> int:
        """Logit channels of a network with this ``head``: background + classes for softmax,
        else one per class."""
        return self.num_classes + (head == "softmax")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSchema":
        """The schema of :meth:`to_dict` (KeyError/TypeError/ValueError for a damaged one)."""
        return cls(classes=tuple(d["classes"]), exclusive=bool(d["exclusive"]),
                   channels=tuple(d["channels"]), metric=d["metric"],
                   encoding=d.get("encoding") or "bits",
                   values=tuple(tuple(int(x) for x in v) for v in d.get("values") or ()),
                   paint=tuple(int(x) for x in d.get("paint") or ()),
                   normalization=tuple(d.get("normalization") or ()),
                   # a data set whose label maps are all empty has no foreground statistics
                   stats=tuple(dict(s) if s else None for s in d.get("stats") or ()))


def labels_of(builder) -> LabelSchema:
    """The label schema a prepared builder's records declare.

    Raises:
        DataError: for records without one (written by another tf_medseg).
    """
    meta = builder.info.metadata or {}
    if "labels" not in meta:
        raise DataError(f"{builder.data_dir}: records without a label schema; delete the "
                        f"folder and run again to rebuild them")
    return LabelSchema.from_dict(meta["labels"])
