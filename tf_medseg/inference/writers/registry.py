"""Which writer answers which input (nnU-Net's reader/writer registry): one per input form."""

from __future__ import annotations

from pathlib import Path

from tf_medseg.inference.writers.base import Writer
from tf_medseg.inference.writers.nifti import NiftiWriter
from tf_medseg.inference.writers.png import PngWriter
from tf_medseg.inference.writers.submission import SubmissionWriter

#: The writer of each input form (:data:`tf_medseg.inference.inputs.FORMS`).
WRITERS = {"kaggle": SubmissionWriter, "nifti": NiftiWriter, "image": PngWriter}


def writer_for(form: str, output: Path, contract, probabilities: bool = False) -> Writer:
    """The writer of an input ``form`` (:data:`tf_medseg.inference.inputs.FORMS`)."""
    return WRITERS[form](output, contract, probabilities)


def target_of(contract) -> str:
    """What ``--output`` must be for a model of ``contract`` (before its inputs are read): a
    CSV ``file`` for 16-bit slice models, else a ``folder`` of label maps."""
    return "file" if contract.image_dtype == "uint16" else "folder"
