"""PNG label maps of 2D images: ``NAME.png`` per image in ``--output`` (the label values), or
for a model of overlapping classes one binary mask per class (``CLASS/NAME.png``, 0 or 255), as
the ``folder`` source reads them; with ``--probabilities`` also ``NAME.npz``."""

from __future__ import annotations

import numpy as np

from tf_medseg.files import atomic_png
from tf_medseg.inference.writers.base import Writer, entry
from tf_medseg.inference.writers.nifti import paint, write_npz


class PngWriter(Writer):
    def __init__(self, output, contract, probabilities: bool = False):
        super().__init__(output, contract, probabilities)
        self.files: list[str] = []

    def _png(self, path, image: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_png(path, image)

    def write(self, case, image, probs, masks) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        masks, probs = masks[:, :, 0], probs[:, :, 0]  # (H, W, 1, K) -> (H, W, K)
        labels = self.contract.labels
        if labels.exclusive:
            self._png(entry(self.output, f"{case.name}.png"), paint(masks, labels))
            self.written.append(f"{case.name}.png")
        else:
            for k, cls in enumerate(labels.classes):
                self._png(entry(self.output, cls, f"{case.name}.png"),
                          (masks[..., k] * 255).astype(np.uint8))
                self.written.append(f"{cls}/{case.name}.png")
        self.files.append(f"{case.name}.png")
        if self.probabilities:
            write_npz(entry(self.output, f"{case.name}.npz"), probs, labels.classes)
            self.written.append(f"{case.name}.npz")

    def close(self) -> dict:
        return {"files": self.files}
