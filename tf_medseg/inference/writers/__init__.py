"""The writers of ``predict``'s answers, one per output format, behind one interface, and
chosen from the input's form (nnU-Net's reader/writer registry by file ending):

* ``kaggle`` input -> :class:`~.submission.SubmissionWriter`: the competition's CSV;
* ``nifti`` input -> :class:`~.nifti.NiftiWriter`: ``CASE.nii.gz`` label maps;
* ``image`` input -> :class:`~.png.PngWriter`: ``NAME.png`` label maps (or per-class masks).

A writer is made with the output path and the model's contract, :meth:`~Writer.write` is
called once per case with its input, stored volume, probabilities and masks (both in the
stored order), and :meth:`~Writer.close` publishes what is not yet published and returns the
summary (``rows`` or ``files``). Every file is written under a temporary name and renamed, so a
file that exists is complete. A new format is one more writer in :data:`WRITERS`, as DICOM's
(:mod:`tf_medseg.dicom.writer`: RT Structure Set, SEG, NIfTI) are.
"""

from tf_medseg.inference.writers.base import Writer

__all__ = ["WRITERS", "Writer", "target_of", "writer_for"]


def __getattr__(name: str):
    # The registry names every writer, DICOM's among them (tf_medseg.dicom.writer, which
    # builds on base.Writer): loaded on first use, so that importing base loads no writer.
    if name in ("WRITERS", "target_of", "writer_for"):
        from tf_medseg.inference.writers import registry
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
