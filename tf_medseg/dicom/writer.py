"""Answers to DICOM series (``--output-format``): an RT Structure Set (``RS_SERIESUID.dcm``, the
default), a DICOM SEG (``SEG_SERIESUID.dcm``: ``seg``, BINARY segments, what every SEG reader
takes; ``seg-labelmap``, one Label Map of exclusive classes, the 2023 IOD fewer systems read) or
a NIfTI label map (``SERIESUID.nii.gz``) per series in ``--output``.

The model's masks are turned back from the model's axes onto the series' own grid (slices,
rows, columns) before they are contoured (:mod:`tf_medseg.dicom.rtstruct`, one ROI per class,
named by ``export.roi_names`` and coloured as the overlays) or encoded
(:mod:`tf_medseg.dicom.seg`). Both reference the series' images and copy its patient, study
and frame of reference; both say they are automatic and unreviewed. The NIfTI label map is in
the model's axes with the series' RAS affine. Every file is written under a temporary name and
renamed.
"""

from __future__ import annotations

import numpy as np

from tf_medseg.errors import MedsegError
from tf_medseg.inference.writers.base import Writer, entry
from tf_medseg.inference.writers.nifti import paint, write_npz


class DicomWriter(Writer):
    """The masks of each series on its own grid, handed to :meth:`encode`."""

    prefix = ""
    ending = ".dcm"

    def __init__(self, output, contract, probabilities: bool = False):
        self.check(contract)
        super().__init__(output, contract, probabilities)
        self.files: list[str] = []

    @classmethod
    def check(cls, contract) -> None:
        """A one-line error where this format cannot hold what ``contract``'s model makes."""

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
    """BINARY segments, one per class (exclusive classes or not)."""

    prefix = "SEG_"
    labelmap = False

    @classmethod
    def check(cls, contract) -> None:
        if cls.labelmap and contract.head != "softmax":
            raise MedsegError("--output-format seg-labelmap: this model's classes may overlap "
                              f"(a {contract.head} head), and a label map holds one class a "
                              "pixel; use --output-format seg")

    def encode(self, case, masks, path) -> None:
        from tf_medseg.dicom.seg import segmentation, write_segmentation
        write_segmentation(segmentation(case.series, case.turn.inverse(masks),
                                        self.contract.roi_labels,
                                        exclusive=self.labelmap), path)


class SegLabelmapWriter(SegWriter):
    """One LABELMAP of a softmax model's exclusive classes."""

    labelmap = True


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
