"""``tf_medseg.metrics``: the public name DESIGN.md gives the metrics, which live in
:mod:`tf_medseg.evaluation.metrics` (nothing in the package imports this alias)."""

from tf_medseg.evaluation.metrics import (
    BOTH_EMPTY,
    DiceScore,
    IoUScore,
    aggregate_score,
    competition_score,
    hausdorff,
    hd95,
    slice_dice,
    summarize,
    summarize_volumes,
    volume_dice,
)

__all__ = ["BOTH_EMPTY", "DiceScore", "IoUScore", "aggregate_score", "competition_score",
           "hausdorff", "hd95", "slice_dice", "summarize", "summarize_volumes", "volume_dice"]
