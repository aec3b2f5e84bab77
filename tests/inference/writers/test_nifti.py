"""NIfTI label maps: the classes' label values painted on the input's grid (shape, affine),
probabilities beside them on request."""

import dataclasses

import nibabel as nib
import numpy as np

from tf_medseg.data.labels import LabelSchema
from tf_medseg.export.contract import Contract
from tf_medseg.inference.inputs import InputCase
from tf_medseg.inference.writers.nifti import NiftiWriter, paint

from synthetic_volumes import AFFINE, _nifti

LABELS = LabelSchema(classes=("ball", "box"), exclusive=True, channels=("T1",), metric="volume",
                     encoding="labels", values=((1,), (2,)), paint=(1, 7),
                     normalization=("zscore",), stats=(None,))
CONTRACT = Contract(labels=LABELS, head="softmax", context=(0,), input_size=(32, 32),
                    image_dtype="float32")


def test_paint_uses_the_label_values_later_classes_on_top():
    masks = np.zeros((2, 2, 2), bool)
    masks[0, 0] = [True, True]
    masks[1, 1] = [True, False]
    out = paint(masks, LABELS)
    assert out.dtype == np.uint8 and out.tolist() == [[7, 0], [0, 1]]
    big = dataclasses.replace(LABELS, paint=(1, 300))
    assert paint(masks, big).dtype == np.uint16


def test_label_maps_on_the_inputs_grid(tmp_path):
    image = tmp_path / "in" / "case_0000.nii.gz"
    image.parent.mkdir()
    _nifti(image, np.zeros((6, 5, 4), np.float32))
    masks = np.zeros((6, 5, 4, 2), bool)
    masks[1:3, 1:3, 1, 1] = True
    writer = NiftiWriter(tmp_path / "out", CONTRACT, probabilities=True)
    case = InputCase("case", "nifti", (image,), ending=".nii.gz")
    probs = masks.astype(np.float32) * 0.9
    writer.write(case, np.zeros((6, 5, 4, 1), np.float32), probs, masks)
    assert writer.close() == {"files": ["case.nii.gz"]}
    out = nib.load(str(tmp_path / "out" / "case.nii.gz"))
    assert out.shape == (6, 5, 4) and np.allclose(out.affine, AFFINE)
    assert np.asanyarray(out.dataobj)[1, 1, 1] == 7 and int(np.asanyarray(out.dataobj).sum()) == 28
    saved = np.load(tmp_path / "out" / "case.npz")
    assert saved["probabilities"].shape == (2, 6, 5, 4) and list(saved["classes"]) == [
        "ball", "box"]


def test_a_2d_nifti_gets_a_2d_label_map(tmp_path):
    image = tmp_path / "in" / "flat_0000.nii.gz"
    image.parent.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((6, 5), np.float32), AFFINE), str(image))
    masks = np.zeros((6, 5, 1, 2), bool)
    masks[2, 3, 0, 0] = True
    writer = NiftiWriter(tmp_path / "out", CONTRACT)
    writer.write(InputCase("flat", "nifti", (image,), ending=".nii.gz"),
                 np.zeros((6, 5, 1, 1), np.float32), masks.astype(np.float32), masks)
    out = nib.load(str(tmp_path / "out" / "flat.nii.gz"))
    assert out.shape == (6, 5) and np.asanyarray(out.dataobj)[2, 3] == 1
