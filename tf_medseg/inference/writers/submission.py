"""The competition's submission: ``id,class,predicted`` with one row per slice and class,
``predicted`` the RLE of the mask (empty if nothing is predicted), written to a temporary file
and renamed when every scan is done."""

from __future__ import annotations

import contextlib
import csv

from tf_medseg.data import rle
from tf_medseg.errors import MedsegError
from tf_medseg.files import atomic_open
from tf_medseg.inference.writers.base import Writer


class SubmissionWriter(Writer):
    target = "file"

    def __init__(self, output, contract, probabilities: bool = False):
        super().__init__(output, contract, probabilities)
        if probabilities:
            raise MedsegError("--probabilities: for NIfTI and image-folder models; a Kaggle "
                              "submission holds masks only")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._stack = contextlib.ExitStack()
        self._csv = csv.writer(self._stack.enter_context(atomic_open(self.output, "w",
                                                                     newline="")))
        self._csv.writerow(["id", "class", "predicted"])
        self.rows = 0

    def write(self, case, image, probs, masks) -> None:
        for i, mask in enumerate(masks):
            for c, cls in enumerate(self.contract.classes):
                self._csv.writerow([case.ids[i], cls, rle.encode(mask[..., c])])
                self.rows += 1

    def close(self) -> dict:
        self._stack.close()  # the file is published
        return {"rows": self.rows}

    def abort(self) -> None:
        # Leaving with an error removes the temporary file; the output stays as it was.
        self._stack.__exit__(RuntimeError, RuntimeError("prediction stopped"), None)
