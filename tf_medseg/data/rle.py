"""Run-length encoding of masks as in the Kaggle UW-Madison GI Tract data.

Format: space-separated ``start length`` pairs; starts are 1-indexed positions in the row-major
(C order) flattening of the (H, W) mask; an empty mask is the empty string. The canonical
encoding (sorted, non-touching runs) round-trips exactly: ``encode(decode(s, h, w)) == s``.
"""

from __future__ import annotations

import re

import numpy as np

from tf_medseg.errors import DataError

_DIGITS = re.compile(r"[0-9]+")


def parse(rle: str | float | None, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate an RLE string and return its 0-indexed (starts, ends) arrays.

    Raises:
        DataError: odd number of values, non-numeric values, zero/negative lengths, a start
            below 1, a run past the end of the image, or unsorted/overlapping runs.
    """
    if rle is None or (isinstance(rle, float) and np.isnan(rle)) or not str(rle).strip():
        empty = np.zeros(0, np.int64)
        return empty, empty
    tokens = str(rle).split()
    if len(tokens) % 2:
        raise DataError(f"RLE has an odd number of values ({len(tokens)}); "
                        f"expected 'start length' pairs")
    bad = next((t for t in tokens if not _DIGITS.fullmatch(t)), None)
    if bad is not None:
        raise DataError(f"RLE value {bad[:20]!r} is not a non-negative integer")
    huge = next((t for t in tokens if len(t) > 12), None)  # beyond any image, before int64
    if huge is not None:
        raise DataError(f"RLE value {huge[:20]}{'...' if len(huge) > 20 else ''} is past the "
                        f"end of the {height}x{width} image ({height * width} pixels)")
    values = np.array(tokens, dtype=np.int64)
    starts, lengths = values[0::2] - 1, values[1::2]
    ends = starts + lengths
    if (starts < 0).any():
        raise DataError("RLE start 0 found; starts are 1-indexed")
    if (lengths <= 0).any():
        raise DataError("RLE has a run of length 0 or less")
    if ends[-1] > height * width or (ends > height * width).any():
        raise DataError(f"RLE run ends at pixel {int(ends.max())}, past the end of the "
                        f"{height}x{width} image ({height * width} pixels)")
    if (starts[1:] < ends[:-1]).any():
        raise DataError("RLE runs are unsorted or overlap")
    return starts, ends


def decode(rle: str | float | None, height: int, width: int) -> np.ndarray:
    """Decode an RLE string into a (height, width) uint8 mask of 0 and 1.

    Args:
        rle: The encoded mask; '' (or NaN/None, as pandas reads an empty field) is empty.
        height: Image rows (the SECOND number in a Kaggle file name).
        width: Image columns (the FIRST number in a Kaggle file name).
    """
    starts, ends = parse(rle, height, width)
    edges = np.zeros(height * width + 1, np.int32)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    return (np.cumsum(edges[:-1]) > 0).astype(np.uint8).reshape(height, width)


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (any nonzero value is foreground) as a canonical RLE string."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects a 2-D (H, W) mask, got shape {mask.shape}")
    flat = np.concatenate([[0], (mask.reshape(-1) != 0).astype(np.int8), [0]])
    changes = np.flatnonzero(np.diff(flat))
    if changes.size == 0:
        return ""
    starts, ends = changes[0::2], changes[1::2]
    pairs = np.stack([starts + 1, ends - starts], axis=1).reshape(-1)
    return " ".join(map(str, pairs.tolist()))
