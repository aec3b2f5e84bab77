"""PNG label maps of 2D images: label values for exclusive classes, a 0/255 mask per class for
overlapping ones."""

import dataclasses

import cv2
import numpy as np

from tf_medseg.data.labels import LabelSchema
from tf_medseg.export.contract import Contract
from tf_medseg.inference.inputs import InputCase
from tf_medseg.inference.writers.png import PngWriter

LABELS = LabelSchema(classes=("ball", "box"), exclusive=True, channels=("grey",),
                     metric="volume", encoding="labels", values=((1,), (2,)),
                     normalization=("percentile",), stats=(None,))
CONTRACT = Contract(labels=LABELS, head="softmax", context=(0,), input_size=(32, 32),
                    image_dtype="float32")


def _write(tmp_path, contract):
    masks = np.zeros((4, 5, 1, 2), bool)
    masks[1, 2, 0] = [True, True]
    masks[3, 4, 0, 0] = True
    writer = PngWriter(tmp_path / "out", contract)
    writer.write(InputCase("img", "image", ()), None, masks.astype(np.float32), masks)
    return writer.close()


def test_label_map(tmp_path):
    assert _write(tmp_path, CONTRACT) == {"files": ["img.png"]}
    label = cv2.imread(str(tmp_path / "out" / "img.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (4, 5) and label[1, 2] == 2 and label[3, 4] == 1


def test_a_mask_per_overlapping_class(tmp_path):
    overlapping = dataclasses.replace(CONTRACT, labels=dataclasses.replace(
        LABELS, exclusive=False, encoding="bits", values=()), head="sigmoid")
    _write(tmp_path, overlapping)
    ball = cv2.imread(str(tmp_path / "out" / "ball" / "img.png"), cv2.IMREAD_UNCHANGED)
    box = cv2.imread(str(tmp_path / "out" / "box" / "img.png"), cv2.IMREAD_UNCHANGED)
    assert ball[1, 2] == ball[3, 4] == 255 and box[1, 2] == 255 and box[3, 4] == 0
    assert set(np.unique(ball)) == {0, 255}
