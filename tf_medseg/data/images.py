"""2D image files: the checks made before one is decoded (an ordinary file, never a FIFO or a
device; a PNG header within the pixel limit: a decompression bomb costs 26 bytes of reading),
and :func:`read_2d`, the reader of the image/mask folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tf_medseg.errors import DataError
from tf_medseg.files import regular_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_PIXELS = 2 ** 26  # 8192 x 8192: checked in the header, so a bomb is never decoded
PNG_GRAY_TYPES = {0: "gray", 2: "RGB", 4: "gray+alpha", 6: "RGBA"}


def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk, without decoding.

    Raises:
        DataError: if the file cannot be read or is not a PNG.
    """
    require_regular(path)
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG file (truncated or another format); replace it "
                        f"with the original")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: {width}x{height} pixels, more than the "
                        f"{MAX_IMAGE_PIXELS:,} a slice may have; not decoded")
    return width, height, head[24], head[25]


def require_regular(path: Path) -> None:
    """Only regular files are opened: a FIFO, device or socket named like an input would
    block (or feed) the reader."""
    if not regular_file(path):
        kind = "a folder" if Path(path).is_dir() else "missing" if not os.path.lexists(
            path) else "not a regular file (a FIFO, device or socket)"
        raise DataError(f"{path}: {kind}; inputs must be ordinary files")


def read_2d(path: Path, label: bool) -> np.ndarray:
    """A 2D image file (PNG, TIFF) as an array: grey (H, W), or colour (H, W, 3) in RGB order
    (a grey image saved in colour is grey); ``label``: an integer label map, never colour."""
    import cv2  # noqa: PLC0415  (OpenCV is slow to import; not every caller needs it)
    if path.name.lower().endswith(".png"):
        png_header(path)  # within the pixel limit, before decoding (TIFFs: OpenCV's limit)
    else:
        require_regular(path)
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DataError(f"{path}: not a readable image")
    if data.ndim == 3:
        if data.shape[2] == 4:
            data = data[..., :3]
        grey = all(np.array_equal(data[..., 0], data[..., k]) for k in (1, 2))
        if grey:
            data = data[..., 0]
        elif label:
            raise DataError(f"{path}: a colour image; masks must be single-channel integer "
                            f"label maps")
        else:
            data = data[..., ::-1]  # BGR -> RGB
    if label and not np.issubdtype(data.dtype, np.integer):
        raise DataError(f"{path}: the mask is {data.dtype}; masks must hold whole numbers")
    return data
