"""``data.image_size: auto`` for the resize recipe: the slice size from the data set.

The recipe resizes every slice to ``data.image_size``. A size far above the slices' own spends
the network's steps on interpolated pixels: the hippocampus's slices are 35 x 50 voxels (at most
43 x 59), and at 128 x 128 a training step costs 2.6 times what it costs at 64 x 64, which
trained 2.5 times the steps in the same 5 minutes and scored higher (docs/measurements.md,
the hippocampus table). ``auto`` takes the median slice's longer side (as the slices are cut,
at ``data.spacing`` where it is set), rounds it up to a multiple of the network's pooling, and
caps it at 128, the size the tables measured on large slices (CHAOS's 256 to 320 pixels,
head-and-neck CT's 128). Square, as every measured row.
"""

from __future__ import annotations

import math

import numpy as np

from tf_medseg.config import Config
from tf_medseg.config.values import pooling
from tf_medseg.data import geometry

MAX_SIDE = 128  # auto's largest side: every resize row of the tables was measured at 128


def slice_size(dataset, config: Config) -> tuple[tuple[int, int], str]:
    """``(side, side)`` for ``data.image_size: auto`` over ``dataset`` (a
    :class:`tf_medseg.data.dataset.DataSet`), and why, in words."""
    spacing = config.data.spacing
    sides = [max(geometry.planar_sizes(s.shape, s.spacing, dataset.axis(s), spacing)[2])
             for s in dataset.scans]
    median = float(np.median(sides))
    unit = math.lcm(*pooling(config.model, 2))  # a square side both axes' pooling divide
    cap = max(unit, MAX_SIDE // unit * unit)
    side = min(cap, max(unit, math.ceil(median / unit) * unit))
    why = (f"the median slice's longer side, {median:g} pixels"
           f"{' at data.spacing' if spacing else ''}, rounded up to a multiple of {unit}"
           + (f" and capped at {cap}" if side == cap and median > cap else ""))
    return (side, side), why
