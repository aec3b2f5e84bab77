"""The names and weights ``train.loss`` takes (a name, or a mapping of terms to weights), and
which way a logged metric improves."""

from __future__ import annotations

import typing

LOSS_TERMS = ("bce", "dice", "tversky", "focal_tversky", "lovasz")
LOSS_NAMES = ("bce_dice", *LOSS_TERMS)  # bce_dice: shorthand for {bce: 1, dice: 1}
LOSS_SHORTHANDS = {"bce_dice": {"bce": 1.0, "dice": 1.0}}


def loss_weights(spec: str | typing.Mapping[str, float]) -> dict[str, float]:
    """``train.loss`` as {name: weight}: a name has weight 1, ``bce_dice`` is BCE + Dice."""
    if isinstance(spec, str):
        return dict(LOSS_SHORTHANDS.get(spec, {spec: 1.0}))
    return {str(k): float(v) for k, v in spec.items()}


def improves(metric: str) -> str:
    """"min" for a loss, "max" for a score: which way a logged metric improves
    (``train.monitor``, ``tune.objective``)."""
    return "min" if metric.endswith("loss") else "max"


def _check_loss(value) -> tuple[bool, str]:
    if not isinstance(value, dict):
        return True, ""
    allowed = LOSS_TERMS
    bad = [k for k in value if k not in allowed]
    if bad:
        return False, f"unknown loss {bad[0]!r} (allowed: {', '.join(allowed)})"
    weights = list(value.values())
    if not weights or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0
                          for w in weights) or not any(weights):
        return False, "weights must be numbers >= 0, at least one of them > 0"
    return True, ""
