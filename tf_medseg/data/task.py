"""What a prepared data set declares: its classes, how its masks are stored, its channels.

Classes come from the data, never from a constant: the Kaggle layout and the phantom declare
the three overlapping organs of UW-Madison (:data:`KAGGLE`); an nnU-Net, Decathlon or image
folder declares its own in ``dataset.json`` or ``labels.json``. The builders store a
:class:`Task` in the records' metadata; training, evaluation, export and prediction read it
back with :func:`task_of`.

Two kinds of classes:

* exclusive: one label per voxel (an integer label map). The model can end in a softmax over
  background and the classes (``model.output: softmax``, what ``auto`` picks), or in one sigmoid
  per class.
* overlapping: nnU-Net regions (a label whose value is a list of label values), one binary mask
  per class (``folder`` with ``masks/CLASS/``), UW-Madison's organs. One sigmoid per class.

How a record stores its mask (``encoding``):

* ``bits``: bit k set where class k is (the Kaggle records, per-class masks);
* ``labels``: the data's own label map; class k is where the label is one of ``values[k]``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from tf_medseg.config import CLASSES
from tf_medseg.errors import ConfigError

# Classes packed one bit each into an integer of this many bits (the pipeline's masks).
MAX_CLASSES = 16


@dataclasses.dataclass(frozen=True)
class Task:
    """Classes, mask encoding and channels of a prepared data set."""

    classes: tuple[str, ...]
    exclusive: bool
    encoding: Literal["bits", "labels"] = "bits"
    values: tuple[tuple[int, ...], ...] = ()  # labels: label values that make class k
    paint: tuple[int, ...] = ()  # label value written for class k in predicted label maps
    channels: tuple[str, ...] = ("MRI",)  # one name per image channel (modality)
    kind: Literal["scans", "volumes"] = "scans"  # record format: Kaggle scans or volumes
    normalization: tuple[str, ...] = ("percentile",)  # per channel (resolved, no auto)
    stats: tuple[dict, ...] = ()  # per channel: foreground statistics of the data set

    def __post_init__(self):
        if not 1 <= len(self.classes) <= MAX_CLASSES:
            raise ValueError(f"1 to {MAX_CLASSES} classes are supported, got "
                             f"{len(self.classes)}")

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

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(classes=tuple(d["classes"]), exclusive=bool(d["exclusive"]),
                   encoding=d.get("encoding", "bits"),
                   values=tuple(tuple(int(x) for x in v) for v in d.get("values", ())),
                   paint=tuple(int(x) for x in d.get("paint", ())),
                   channels=tuple(d.get("channels", ("MRI",))),
                   kind=d.get("kind", "scans"),
                   normalization=tuple(d.get("normalization", ("percentile",))),
                   stats=tuple(dict(s) for s in d.get("stats", ())))


# The UW-Madison organs: overlapping, bit-packed, one MRI channel, normalised per scan.
KAGGLE = Task(classes=CLASSES, exclusive=False)


def task_of(builder) -> Task:
    """The task a prepared builder declares (records without one are Kaggle-layout ones)."""
    meta = builder.info.metadata or {}
    return Task.from_dict(meta["task"]) if "task" in meta else KAGGLE


def output_of(config, task: Task) -> str:
    """``model.output`` resolved for the data: ``sigmoid`` or ``softmax``.

    Raises:
        ConfigError: for softmax over classes that overlap.
    """
    wanted = config.model.output
    if wanted == "auto":
        return "softmax" if task.exclusive else "sigmoid"
    if wanted == "softmax" and not task.exclusive:
        raise ConfigError("model.output: softmax needs exclusive classes (one label per "
                          "pixel), but the data declares overlapping ones "
                          f"({', '.join(task.classes)}); use sigmoid or auto")
    return wanted


def num_outputs(output: str, task: Task) -> int:
    """Logit channels of the network: background + classes for softmax, else the classes."""
    return task.num_classes + (output == "softmax")
