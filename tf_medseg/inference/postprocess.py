"""Post-processing of predicted probabilities: per class, the threshold and a connected-component
rule, applied on the 3-D mask of a whole scan (26-connected components):

* ``threshold``: probability above which a pixel is the class (sigmoid outputs only; a
  softmax model takes the most probable class);
* ``min_size``: drop components of fewer voxels (0: keep all);
* ``largest``: keep only the largest component (nnU-Net's rule).

The rules are chosen out of fold by a cross-validation
(:mod:`tf_medseg.workflows.postprocessing`), written to ``RUN_DIR/cv/postprocessing.json`` and
applied here by the predictor (``predict``, ``evaluate``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy import ndimage

from tf_medseg.errors import MedsegError
from tf_medseg.models import outputs

STRUCTURE = np.ones((3, 3, 3), bool)  # 26-connectivity
FILE = "postprocessing.json"


@dataclasses.dataclass(frozen=True)
class Rule:
    """The post-processing of one class."""

    threshold: float = 0.5
    min_size: int = 0
    largest: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        parts = [f"threshold {self.threshold:g}"]
        if self.largest:
            parts.append("largest component only")
        elif self.min_size:
            parts.append(f"drop components < {self.min_size} voxels")
        return ", ".join(parts)


def components(mask: np.ndarray, rule: Rule) -> np.ndarray:
    """A boolean (D, H, W) mask with ``rule``'s component rule applied."""
    if not (rule.largest or rule.min_size) or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=STRUCTURE)
    if count <= 1 and not rule.min_size:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    if rule.largest:
        keep = np.zeros(count + 1, bool)
        keep[1 + int(np.argmax(sizes))] = True
    else:
        keep = np.concatenate([[False], sizes >= rule.min_size])
    return keep[labels]


def masks(probs: np.ndarray, rules: dict[str, Rule] | None, classes, head: str,
          threshold: float | None = None, default_threshold: float = 0.5) -> np.ndarray:
    """Boolean (D, H, W, K) masks of (D, H, W, K) class probabilities of one scan.

    ``rules``: class name -> :class:`Rule` (missing classes and None: ``default_threshold``
    only, the model's own). ``threshold`` (``--threshold``) overrides every threshold.
    ``head``: ``softmax`` probabilities (background left out) pick the most probable class if
    it beats the background (1 - their sum); thresholds do not apply.
    """
    probs = np.asarray(probs)
    rules = rules or {}
    thresholds = [threshold if threshold is not None else
                  rules.get(cls, Rule(default_threshold)).threshold for cls in classes]
    out = np.array(outputs.masks(probs, head, thresholds))  # a writable copy
    for k, cls in enumerate(classes):
        if cls in rules:
            out[..., k] = components(out[..., k], rules[cls])
    return out


def read(path: Path, classes) -> dict[str, Rule]:
    """The rules of a ``postprocessing.json`` (one-line errors naming the file)."""
    from tf_medseg.run_dir import read_json
    fix = "delete it to predict without post-processing, or rerun the cross-validation"
    spec = read_json(path, "post-processing", fix)
    rules = {}
    per_class = spec.get("classes")
    if not isinstance(per_class, dict):
        raise MedsegError(f"{path}: damaged post-processing (no 'classes'); {fix}")
    for cls, value in per_class.items():
        if cls not in classes:
            raise MedsegError(f"{path}: class {cls!r} is not one of the model's "
                              f"({', '.join(classes)}); {fix}")
        try:
            rule = Rule(threshold=float(value.get("threshold", 0.5)),
                        min_size=int(value.get("min_size", 0)),
                        largest=bool(value.get("largest", False)))
        except (AttributeError, TypeError, ValueError):
            raise MedsegError(f"{path}: damaged post-processing for {cls!r}; {fix}") from None
        if not 0 < rule.threshold < 1 or rule.min_size < 0:
            raise MedsegError(f"{path}: {cls}: threshold must be in (0, 1) and min_size >= 0; "
                              f"{fix}")
        rules[cls] = rule
    return rules
