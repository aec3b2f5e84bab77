"""Post-processing chosen out of fold: per class, the threshold and a connected-component rule.

Rules, per class, on the 3-D mask of a whole scan (26-connected components):

* ``threshold``: probability above which a pixel is the class (sigmoid outputs only; a
  softmax model takes the most probable class);
* ``min_size``: drop components of fewer voxels (0: keep all);
* ``largest``: keep only the largest component (nnU-Net's rule).

:func:`choose` picks them on the out-of-fold probabilities of a cross-validation, greedily and
each only if it raises the out-of-fold score (the competition score for uwmgi and phantom
data; mean Dice over cases and classes for the other sources, as nnU-Net decides): first the
threshold of each class in turn, then its component rule. The choice is written to
``RUN_DIR/cv/postprocessing.json`` and :func:`apply` applies it (``predict``, ``evaluate``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from scipy import ndimage

from tf_medseg import metrics
from tf_medseg.errors import MedsegError

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_SIZES = (10, 30, 100, 300, 1000, 3000)
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


def masks(probs: np.ndarray, rules: dict[str, Rule] | None, classes, output: str = "sigmoid",
          threshold: float | None = None, default_threshold: float = 0.5) -> np.ndarray:
    """Boolean (D, H, W, K) masks of (D, H, W, K) class probabilities of one scan.

    ``rules``: class name -> :class:`Rule` (missing classes and None: ``default_threshold``
    only, the model's own). ``threshold`` (``--threshold``) overrides every threshold.
    ``output``: ``softmax`` probabilities (background left out) pick the most probable class
    if it beats the background (1 - their sum); thresholds do not apply.
    """
    probs = np.asarray(probs)
    if output == "softmax":
        background = 1.0 - probs.sum(axis=-1, keepdims=True)
        winner = np.argmax(np.concatenate([background, probs], axis=-1), axis=-1)
        out = np.stack([winner == k + 1 for k in range(probs.shape[-1])], axis=-1)
    else:
        out = np.empty(probs.shape, bool)
        for k, cls in enumerate(classes):
            rule = (rules or {}).get(cls, Rule(default_threshold))
            t = threshold if threshold is not None else rule.threshold
            out[..., k] = probs[..., k] > t
    for k, cls in enumerate(classes):
        rule = (rules or {}).get(cls)
        if rule is not None:
            out[..., k] = components(out[..., k], rule)
    return out


# ------------------------------------------------------------------------- choosing rules

@dataclasses.dataclass
class Sums:
    """Additive parts of the objective for one class: Dice over (slice or case, class) pairs,
    Hausdorff over (scan, class) pairs (competition score), skipped pairs in neither."""

    dice: float = 0.0
    dice_n: int = 0
    hd: float = 0.0
    hd_n: int = 0

    def __iadd__(self, other: "Sums") -> "Sums":
        self.dice += other.dice
        self.dice_n += other.dice_n
        self.hd += other.hd
        self.hd_n += other.hd_n
        return self


def class_sums(pred: np.ndarray, true: np.ndarray, competition: bool) -> Sums:
    """The objective's sums for one class of one scan, boolean (D, H, W) masks."""
    if competition:
        sd = metrics.slice_dice(pred[..., None], true[..., None])
        sd = sd[~np.isnan(sd)]
        hd = metrics.hausdorff(pred[..., None], true[..., None])[0]
        return Sums(float(sd.sum()), int(sd.size), 0.0 if np.isnan(hd) else float(hd),
                    0 if np.isnan(hd) else 1)
    d = metrics.volume_dice(pred[..., None], true[..., None])[0]
    return Sums(0.0 if np.isnan(d) else float(d), 0 if np.isnan(d) else 1)


def objective(sums: Iterable[Sums], competition: bool) -> float:
    """The out-of-fold score of per-class sums: the competition score, or mean Dice."""
    total = Sums()
    for s in sums:
        total += s
    dice = total.dice / total.dice_n if total.dice_n else float("nan")
    if not competition:
        return dice
    hd = total.hd / total.hd_n if total.hd_n else float("nan")
    return 0.4 * dice + 0.6 * (1 - hd)


def _table(scans: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], classes,
           candidates: Callable[[str], list[Rule]], output: str, competition: bool
           ) -> dict[str, list[Sums]]:
    """One pass over the scans: the sums of every candidate rule of every class."""
    table = {cls: [Sums() for _ in candidates(cls)] for cls in classes}
    for probs, true in scans():
        for k, cls in enumerate(classes):
            for i, rule in enumerate(candidates(cls)):
                pred = masks(probs[..., k:k + 1], {cls: rule}, [cls], "sigmoid")[..., 0] \
                    if output != "softmax" else components(_winner(probs, k), rule)
                table[cls][i] += class_sums(pred, true[..., k], competition)
    return table


def _winner(probs: np.ndarray, k: int) -> np.ndarray:
    background = 1.0 - probs.sum(axis=-1, keepdims=True)
    return np.argmax(np.concatenate([background, probs], axis=-1), axis=-1) == k + 1


def _greedy(table: dict[str, list[Sums]], candidates: dict[str, list[Rule]],
            chosen: dict[str, int], competition: bool) -> float:
    """Per class in turn, the candidate that raises the objective most (kept only if it
    does); ``chosen`` (class -> index, the baseline) is updated in place."""
    def score():
        return objective((table[c][i] for c, i in chosen.items()), competition)
    best = score()
    for cls in table:
        for i in range(len(candidates[cls])):
            before = chosen[cls]
            chosen[cls] = i
            value = score()
            if value > best + 1e-12:
                best = value
            else:
                chosen[cls] = before
    return best


def choose(scans: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], classes, *,
           output: str = "sigmoid", competition: bool = True, threshold: float = 0.5,
           thresholds=THRESHOLDS, min_sizes=MIN_SIZES) -> dict:
    """The post-processing of each class that raises the out-of-fold score.

    Args:
        scans: Called once per pass (two passes); yields (probabilities (D, H, W, K) float,
            truth (D, H, W, K) bool) of each out-of-fold scan.
        classes: The K class names.
        output: ``sigmoid`` (thresholds searched) or ``softmax``.
        competition: The competition score (uwmgi, phantom) or mean Dice (other sources).
        threshold: The models' own threshold (the baseline).

    Returns:
        ``{"rules": {class: Rule}, "score_before", "score_after", "objective",
        "candidates"}``.
    """
    classes = list(classes)
    base = Rule(threshold=threshold)
    # Pass 1: thresholds (the baseline first, so a tie keeps it).
    if output == "softmax":
        t_cands = {c: [base] for c in classes}
    else:
        # Nearest the model's threshold first: of two equal scores, the smaller move.
        near = sorted((t for t in thresholds if t != threshold),
                      key=lambda t: (abs(t - threshold), t))
        t_cands = {c: [base] + [Rule(threshold=t) for t in near] for c in classes}
    table = _table(scans, classes, lambda c: t_cands[c], output, competition)
    chosen = {c: 0 for c in classes}
    before = objective((table[c][0] for c in classes), competition)
    _greedy(table, t_cands, chosen, competition)
    picked = {c: t_cands[c][chosen[c]] for c in classes}
    # Pass 2: component rules at the chosen thresholds (no rule first).
    r_cands = {c: [picked[c]]
               + [dataclasses.replace(picked[c], min_size=s) for s in min_sizes]
               + [dataclasses.replace(picked[c], largest=True)] for c in classes}
    table = _table(scans, classes, lambda c: r_cands[c], output, competition)
    chosen = {c: 0 for c in classes}
    after = _greedy(table, r_cands, chosen, competition)
    rules = {c: r_cands[c][chosen[c]] for c in classes}
    return {"objective": "competition score" if competition else "mean Dice",
            "score_before": before, "score_after": after,
            "rules": rules,
            "candidates": {"thresholds": list(thresholds) if output != "softmax" else [],
                           "min_sizes": list(min_sizes), "largest": True}}


# ---------------------------------------------------------------------- reading and writing

def to_json(choice: dict, classes) -> dict:
    return {"objective": choice["objective"], "score_before": choice["score_before"],
            "score_after": choice["score_after"],
            "classes": {c: choice["rules"][c].to_dict() for c in classes},
            "candidates": choice["candidates"],
            "note": "chosen on the out-of-fold probabilities of the cross-validation; "
                    "components are 26-connected in the 3-D scan"}


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


def write(path: Path, choice: dict, classes) -> None:
    from tf_medseg.files import atomic_write
    atomic_write(path, json.dumps(to_json(choice, classes), indent=2) + "\n")
