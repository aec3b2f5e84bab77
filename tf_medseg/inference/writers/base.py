"""The interface every output format implements (:mod:`tf_medseg.inference.writers`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tf_medseg.files import plain_name


def entry(folder: Path, *parts: str) -> Path:
    """``folder/part/...``, each part checked as a name from data may be
    (:func:`tf_medseg.files.plain_name`): a case's name (a series' UID, a file's stem) or a
    class's name never climbs out of ``folder``."""
    for part in parts:
        plain_name(part, f"output {folder}")
    return folder.joinpath(*parts)


class Writer:
    """The interface every output format implements."""

    #: What ``--output`` is: a ``file`` (one CSV) or a ``folder`` (one file per case).
    target = "folder"

    def __init__(self, output: Path, contract, probabilities: bool = False):
        self.output, self.contract, self.probabilities = Path(output), contract, probabilities
        #: Every file written, relative to a folder ``output`` (for its ``prediction.json``).
        self.written: list[str] = []

    def write(self, case, image: np.ndarray, probs: np.ndarray, masks: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> dict:
        """Publish what is pending; ``{"rows": n}`` or ``{"files": [...]}``."""
        return {}

    def abort(self) -> None:
        """Leave nothing half-written behind (after an error)."""
