"""The writers of ``predict``'s answers, one per output format, behind one interface, and
chosen from the input's form (nnU-Net's reader/writer registry by file ending):

* ``kaggle`` input -> :class:`~.submission.SubmissionWriter`: the competition's CSV;
* ``nifti`` input -> :class:`~.nifti.NiftiWriter`: ``CASE.nii.gz`` label maps;
* ``image`` input -> :class:`~.png.PngWriter`: ``NAME.png`` label maps (or per-class masks).

A writer is made with the output path and the model's contract, :meth:`~Writer.write` is
called once per case with its input, stored volume, probabilities and masks (both in the
stored order), and :meth:`~Writer.close` publishes what is not yet published and returns the
summary (``rows`` or ``files``). Every file is written under a temporary name and renamed, so a
file that exists is complete. A new format (DICOM) is one more writer in :data:`WRITERS`.
"""

from tf_medseg.inference.writers.base import Writer
from tf_medseg.inference.writers.registry import WRITERS, target_of, writer_for

__all__ = ["WRITERS", "Writer", "target_of", "writer_for"]
