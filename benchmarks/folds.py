"""What the cross-validation benchmarks share (``peer_cv``, ``ablation``, ``units``): a fold's
config, the figures kept of its result, and the command-line wrapper."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence


def fold_config(base, fold: int, run_dir):
    """``base`` on ``fold``, training into ``run_dir``, the last epoch kept (no figure is
    chosen on the fold it is reported on)."""
    return dataclasses.replace(
        base, data=dataclasses.replace(base.data, fold=fold),
        train=dataclasses.replace(base.train, keep="last", run_dir=str(run_dir)))


def unit_figures(result: dict) -> dict:
    """The figures a unit's result file keeps of a scoring: per class and mean 3-D Dice, HD95
    and surface Dice (not the pooled Dice)."""
    return {k: v for k, v in result.items()
            if k.startswith(("dice", "hd95", "sdice")) and "pooled" not in k}


def fold_row(result: dict, seconds: float) -> dict:
    """A fold's 3-D Dice and HD95 (per class and mean) and its wall time."""
    row = {k: v for k, v in result.items()
           if k.startswith(("dice", "hd95")) and "pooled" not in k}
    row["seconds"] = round(seconds, 1)
    return row


def command(parser, run: Callable, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, then ``run(args)`` with tf_medseg's one-line errors and exit codes."""
    from tf_medseg.cli.common import quiet_tensorflow, run_command
    args = parser.parse_args(argv)
    quiet_tensorflow()
    return run_command(lambda: run(args))
