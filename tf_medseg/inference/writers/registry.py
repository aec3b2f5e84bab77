"""Which writer answers which input (nnU-Net's reader/writer registry): one per input form and
output format (``predict --output-format``)."""

from __future__ import annotations

from pathlib import Path

from tf_medseg.dicom.writer import DicomNiftiWriter, RtstructWriter, SegLabelmapWriter, SegWriter
from tf_medseg.errors import MedsegError
from tf_medseg.inference.writers.base import Writer
from tf_medseg.inference.writers.nifti import NiftiWriter
from tf_medseg.inference.writers.png import PngWriter
from tf_medseg.inference.writers.submission import SubmissionWriter

#: The output formats of each input form (:data:`tf_medseg.inference.inputs.FORMS`), the
#: default first.
WRITERS = {"kaggle": {"csv": SubmissionWriter}, "nifti": {"nifti": NiftiWriter},
           "image": {"png": PngWriter},
           "dicom": {"rtstruct": RtstructWriter, "seg": SegWriter,
                     "seg-labelmap": SegLabelmapWriter, "nifti": DicomNiftiWriter}}
OUTPUT_FORMATS = ("rtstruct", "seg", "seg-labelmap", "nifti", "png", "csv")


def writer_class(form: str, output_format: str | None = None) -> type[Writer]:
    """The writer of an input ``form`` in ``output_format`` (None: the form's default); a
    format the form cannot be written in is a one-line error."""
    formats = WRITERS[form]
    if output_format is None:
        return next(iter(formats.values()))
    if output_format not in formats:
        raise MedsegError(f"--output-format {output_format}: not for {form} input; it is "
                          f"answered with {' or '.join(formats)}")
    return formats[output_format]


def writer_for(form: str, output: Path, contract, probabilities: bool = False,
               output_format: str | None = None) -> Writer:
    """The writer of an input ``form`` (:data:`tf_medseg.inference.inputs.FORMS`)."""
    return writer_class(form, output_format)(output, contract, probabilities)


def target_of(contract, form: str | None = None, output_format: str | None = None) -> str:
    """What ``--output`` must be: a CSV ``file`` for a submission, else a ``folder``. Without
    a ``form``, from the model alone: a file for 16-bit slice models."""
    if form is None:
        return "file" if contract.image_dtype == "uint16" else "folder"
    return writer_class(form, output_format).target
