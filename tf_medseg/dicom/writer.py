"""Answers to DICOM series (``--output-format``): an RT Structure Set (``RS_SERIESUID.dcm``, the
default), a DICOM SEG (``SEG_SERIESUID.dcm``) or a NIfTI label map (``SERIESUID.nii.gz``) per
series in ``--output``.

The model's masks are turned back from the model's axes onto the series' own grid (slices,
rows, columns) before they are contoured (:mod:`tf_medseg.dicom.rtstruct`, one ROI per class,
named by ``export.roi_names`` and coloured as the overlays) or encoded
(:mod:`tf_medseg.dicom.seg`: a LABELMAP for exclusive classes, BINARY segments for overlapping
ones). Both reference the series' images and copy its patient, study and frame of reference;
both say they are automatic and unreviewed. The NIfTI label map is in the model's axes with
the series' RAS affine. Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import numpy as np

from tf_medseg.inference.writers.base import Writer, entry
from tf_medseg.inference.writers.nifti import paint, write_npz


class DicomWriter(Writer):
    """The masks of each series on its own grid, handed to :meth:`encode`."""

    prefix = ""
    ending = ".dcm"

    def __init__(self, output, contract, probabilities: bool = False):
        super().__init__(output, contract, probabilities)
        self.files: list[str] = []

    def write(self, case, image, probs, masks) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        name = f"{self.prefix}{case.name}{self.ending}"
        self.encode(case, np.asarray(masks, bool), entry(self.output, name))
        self.files.append(name)
        self.written.append(name)
        if self.probabilities:
            write_npz(entry(self.output, f"{case.name}.npz"), case.turn.inverse(probs),
                      self.contract.classes)
            self.written.append(f"{case.name}.npz")

    def encode(self, case, masks: np.ndarray, path) -> None:
        raise NotImplementedError

    def close(self) -> dict:
        return {"files": self.files}


class RtstructWriter(DicomWriter):
    prefix = "RS_"

    def encode(self, case, masks, path) -> None:
        from tf_medseg.dicom.rtstruct import structure_set, write_structure_set
        from tf_medseg.inference.writers.overlays import colour
        colours = [colour(c, k) for k, c in enumerate(self.contract.classes)]
        write_structure_set(structure_set(case.series, case.turn.inverse(masks),
                                          self.contract.roi_labels, colours), path)


class SegWriter(DicomWriter):
    prefix = "SEG_"

    def encode(self, case, masks, path) -> None:
        from tf_medseg.dicom.seg import segmentation, write_segmentation
        write_segmentation(segmentation(case.series, case.turn.inverse(masks),
                                        self.contract.roi_labels,
                                        exclusive=self.contract.head == "softmax"), path)


class DicomNiftiWriter(DicomWriter):
    ending = ".nii.gz"

    def encode(self, case, masks, path) -> None:
        import nibabel as nib

        from tf_medseg.data.orientation import LPS_TO_RAS
        from tf_medseg.files import temporary_path
        labels = paint(masks, self.contract.labels)
        affine = case.turn.affine(LPS_TO_RAS @ case.series.affine)
        out = nib.Nifti1Image(labels, affine)
        out.header.set_xyzt_units("mm")
        with temporary_path(path, ".nii.gz") as tmp:
            nib.save(out, str(tmp))
