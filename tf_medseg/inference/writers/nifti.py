"""NIfTI label maps: one ``CASE.nii.gz`` per case in ``--output``, uint8 (uint16 beyond 255),
the input's shape, affine and header (data type and scaling reset); with ``--probabilities``
also ``CASE.npz`` (``probabilities`` (K, X, Y, Z) float16 in the file's voxel order,
``classes``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tf_medseg.data.sources.volume_index import file_ending
from tf_medseg.files import atomic_open, temporary_path
from tf_medseg.inference.writers.base import Writer, entry


def paint(masks: np.ndarray, labels) -> np.ndarray:
    """(..., K) boolean masks -> (...) label map with the classes' label values (later
    classes over earlier ones)."""
    values = labels.label_values
    dtype = np.uint8 if max(values) <= 255 else np.uint16
    out = np.zeros(masks.shape[:-1], dtype)
    for k, v in enumerate(values):
        out[masks[..., k]] = v
    return out


def write_npz(path: Path, probs: np.ndarray, classes) -> None:
    """``probabilities`` (K, ...) float16 and ``classes`` of (..., K) probabilities."""
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, probabilities=np.moveaxis(probs, -1, 0).astype(np.float16),
                            classes=np.array(classes))


class NiftiWriter(Writer):
    def __init__(self, output, contract, probabilities: bool = False):
        super().__init__(output, contract, probabilities)
        self.files: list[str] = []

    def write(self, case, image, probs, masks) -> None:
        import nibabel as nib
        self.output.mkdir(parents=True, exist_ok=True)
        ref = nib.load(str(case.paths[0]))
        # The file's own shape: a 2-D NIfTI (X, Y) is answered with a 2-D label map.
        file_shape = tuple(ref.shape[:3])
        labels = paint(masks, self.contract.labels).reshape(file_shape)
        header = ref.header.copy()
        header.set_data_dtype(labels.dtype)
        out = type(ref)(labels, ref.affine, header)
        out.header.set_slope_inter(1.0, 0.0)
        name = case.name + case.ending
        # nibabel picks gzip by the name's ending, so the temporary name keeps it.
        with temporary_path(entry(self.output, name), file_ending(name)) as tmp:
            nib.save(out, str(tmp))
        self.files.append(name)
        self.written.append(name)
        if self.probabilities:
            write_npz(entry(self.output, f"{case.name}.npz"), probs.reshape(*file_shape, -1),
                      self.contract.classes)
            self.written.append(f"{case.name}.npz")

    def close(self) -> dict:
        return {"files": self.files}
