"""Post-processing chosen out of fold: per class, the threshold and a connected-component
rule (:mod:`tf_medseg.inference.postprocess` applies them).

:func:`choose` picks them on the out-of-fold probabilities of a cross-validation, greedily and
each only if it raises the out-of-fold score (the competition score for uwmgi and phantom
data; mean Dice over cases and classes for the other sources, as nnU-Net decides): first the
threshold of each class in turn, then its component rule. :func:`write` stores the choice in
``RUN_DIR/cv/postprocessing.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from tf_medseg.evaluation import metrics
from tf_medseg.inference.postprocess import Rule, components, masks
from tf_medseg.models import outputs

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_SIZES = (10, 30, 100, 300, 1000, 3000)


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


def class_sums(pred: np.ndarray, true: np.ndarray, competition: bool,
               to_true: np.ndarray | None = None) -> Sums:
    """The objective's sums for one class of one scan, boolean (D, H, W) masks; ``to_true``
    (:func:`metrics.distance_to` of ``true``) saves a distance transform per call."""
    if competition:
        sd = metrics.slice_dice(pred[..., None], true[..., None])
        sd = sd[~np.isnan(sd)]
        hd = metrics.hausdorff(pred[..., None], true[..., None],
                               to_true=None if to_true is None else [to_true])[0]
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
        winners = outputs.winner(probs) if output == "softmax" else None
        for k, cls in enumerate(classes):
            # The truth's distance map, once for all of the class's candidates.
            to_true = metrics.distance_to(true[..., k]) if competition else None
            seen: dict[bytes, Sums] = {}  # rules that give the same mask score the same
            for i, rule in enumerate(candidates(cls)):
                pred = masks(probs[..., k:k + 1], {cls: rule}, [cls], "sigmoid")[..., 0] \
                    if output != "softmax" else components(winners[..., k], rule)
                key = np.packbits(pred).tobytes()
                if key not in seen:
                    seen[key] = class_sums(pred, true[..., k], competition, to_true)
                table[cls][i] += seen[key]
    return table


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


# ---------------------------------------------------------------------- writing

def to_json(choice: dict, classes) -> dict:
    return {"objective": choice["objective"], "score_before": choice["score_before"],
            "score_after": choice["score_after"],
            "classes": {c: choice["rules"][c].to_dict() for c in classes},
            "candidates": choice["candidates"],
            "note": "chosen on the out-of-fold probabilities of the cross-validation; "
                    "components are 26-connected in the 3-D scan"}


def write(path: Path, choice: dict, classes) -> None:
    from tf_medseg.files import atomic_write
    atomic_write(path, json.dumps(to_json(choice, classes), indent=2) + "\n")
