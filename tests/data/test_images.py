"""2D image files: checked before they are decoded (a PNG bomb costs 26 bytes of reading, a FIFO
is never opened), grey and colour read the same way every source reads them."""

import os

import cv2
import numpy as np
import pytest

from tf_medseg.data.images import png_header, read_2d, require_regular
from tf_medseg.errors import DataError


def test_png_header_without_decoding(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((3, 5), np.uint16))
    assert png_header(tmp_path / "a.png") == (5, 3, 16, 0)
    (tmp_path / "b.png").write_bytes(b"not a png at all, just text here")
    with pytest.raises(DataError, match="not a PNG file"):
        png_header(tmp_path / "b.png")
    head = bytearray((tmp_path / "a.png").read_bytes()[:33])
    head[16:24] = (100000).to_bytes(4, "big") * 2  # 10^10 pixels claimed
    (tmp_path / "bomb.png").write_bytes(bytes(head))
    with pytest.raises(DataError, match="more than the 67,108,864 a slice may have"):
        png_header(tmp_path / "bomb.png")


def test_grey_colour_and_labels(tmp_path):
    grey_rgb = np.repeat(np.arange(12, dtype=np.uint8).reshape(3, 4, 1), 3, -1)
    cv2.imwrite(str(tmp_path / "g.png"), grey_rgb)
    assert read_2d(tmp_path / "g.png", label=False).shape == (3, 4)  # grey saved as colour
    colour = grey_rgb.copy()
    colour[..., 0] = 200  # OpenCV writes BGR: blue 200
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    rgb = read_2d(tmp_path / "c.png", label=False)
    assert rgb.shape == (3, 4, 3) and (rgb[..., 2] == 200).all()  # RGB order
    with pytest.raises(DataError, match="a colour image; masks must be single-channel"):
        read_2d(tmp_path / "c.png", label=True)


def test_only_regular_files_are_read(tmp_path):
    os.mkfifo(tmp_path / "slice.png")
    with pytest.raises(DataError, match="not a regular file"):
        require_regular(tmp_path / "slice.png")
    with pytest.raises(DataError, match="missing"):
        require_regular(tmp_path / "none.png")
