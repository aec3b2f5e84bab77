"""The predictor: one or several models answering as one, on whole volumes.

``predict``, ``evaluate``, the out-of-fold pass of ``--folds`` and the validation score of a
training all call it, so evaluation scores exactly what ``predict`` ships. A member is an
export (:class:`ExportMember`: its ``normalization`` and ``serving_scaled`` signatures) or a
Keras model in memory (:class:`ModelMember`: the same functions, :func:`~tf_medseg.export.
saved_model.serving_functions`). For a volume (A0, A1, A2, M) in its stored order and spacing,
:meth:`Predictor.probabilities`:

1. cuts it into slices across the contract's ``slice_axis``, resampled to its ``spacing``
   (:func:`tf_medseg.data.geometry.cut`, as the training pipeline does);
2. has each member find the volume's normalisation parameters (from the whole volume) and
   answer the 2.5D stacks batch by batch, a 3D network all the slices at once in 3D
   windows (with ``tta``, or the contract's ``predict.tta`` zoom: also the stacks zoomed by
   0.9 and 1.1, each answer resized back, averaged; ``predict.tta`` flips mirror each window
   inside the members' graphs, :func:`tf_medseg.export.saved_model.mirrored`);
3. averages the members' probabilities, resizes them to the stored in-plane size and puts
   them back in the stored order (:func:`tf_medseg.data.geometry.uncut`).

:meth:`Predictor.masks` turns probabilities into masks with the post-processing that comes with
the models (``cv/postprocessing.json``), or the model's threshold.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np

from tf_medseg.errors import DataError
from tf_medseg.export.contract import (
    Contract,
    check_members,
    read_contract,
    resolve_models,
)
from tf_medseg.inference import postprocess

# Test-time augmentation: zooms within training's scale augmentation. (A left-right mirror,
# the usual choice, lowered the score of a held-out phantom scan from 0.874 to 0.780: the
# organs are lateralised and training does not flip them.)
TTA_ZOOMS = (0.9, 1.1)


class ExportMember:
    """A tf_medseg SavedModel, as the predictor calls it."""

    def __init__(self, path: Path):
        from tf_medseg.export.saved_model import load_signatures
        self.path = path
        self._loaded = load_signatures(path, ["normalization", "serving_scaled"],
                                       f"--model {path}")  # keeps the variables alive
        self._params = self._loaded.signatures["normalization"]
        self._scaled = self._loaded.signatures["serving_scaled"]

    def normalization(self, volume):
        return self._params(volume=volume)["params"]

    def probabilities(self, image, params):
        return self._scaled(image=image, params=params)["probabilities"]


class ModelMember:
    """A Keras model in memory, served by the export's own functions."""

    def __init__(self, model, contract: Contract):
        from tf_medseg.export.saved_model import serving_functions
        self._fns = serving_functions(model, contract)

    def normalization(self, volume):
        return self._fns["normalization"](volume)["params"]

    def probabilities(self, image, params):
        return self._fns["serving_scaled"](image, params)["probabilities"]


@dataclasses.dataclass(frozen=True)
class Models:
    """What ``--model`` names, read and checked once before anything is loaded: the exports,
    their contracts (one, shared) and the post-processing that comes with them."""

    exports: tuple[Path, ...]
    contract: Contract
    rules_path: Path | None

    @classmethod
    def read(cls, values) -> "Models":
        """Raises: MedsegError (one line) for what is not an export, damaged metadata, or
        members that disagree."""
        exports, rules_path = resolve_models(values)
        contracts = [read_contract(p, f"--model {p}") for p in exports]
        check_members(contracts, exports)
        return cls(tuple(exports), contracts[0], rules_path)

    def rules(self, enabled: bool = True) -> dict | None:
        """The post-processing rules (None without them, or when not ``enabled``)."""
        if self.rules_path is None or not enabled:
            return None
        return postprocess.read(self.rules_path, self.contract.classes)


class Predictor:
    """Members of one contract answering as one (see the module docstring)."""

    def __init__(self, members, contract: Contract, *, rules: dict | None = None,
                 tta: bool = False, batch_size: int = 16):
        self.members, self.contract = list(members), contract
        # Zooms here (``tta``, or predict.tta zoom stored in the contract); mirrors, where the
        # contract has them, inside the members' graphs.
        self.tta = tta or "zoom" in contract.tta
        self.rules, self.batch_size = rules, batch_size

    @classmethod
    def load(cls, models: "Models | str | os.PathLike | list", *, tta: bool = False,
             batch_size: int = 16, postprocessing: bool = True) -> "Predictor":
        """The exports ``models`` names (:class:`Models`, or what ``--model`` takes)."""
        if not isinstance(models, Models):
            models = Models.read(models)
        return cls([ExportMember(p) for p in models.exports], models.contract,
                   rules=models.rules(postprocessing), tta=tta, batch_size=batch_size)

    @classmethod
    def of_model(cls, model, contract: Contract, batch_size: int = 16) -> "Predictor":
        """A Keras model in memory (a training's validation score)."""
        return cls([ModelMember(model, contract)], contract, batch_size=batch_size)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.contract.classes

    def probabilities(self, image: np.ndarray, spacing,
                      progress: Callable[[int], None] | None = None,
                      name: str = "the image") -> np.ndarray:
        """(A0, A1, A2, K) float32 class probabilities of a raw (A0, A1, A2, M) volume in its
        stored order with ``spacing`` mm; ``progress(n)`` after every batch of n slices.
        ``name`` (a file or scan) begins the message when the volume cannot be served."""

        from tf_medseg.data import geometry
        from tf_medseg.data.pipeline import stack_context
        c = self.contract
        image = np.asarray(image, c.image_dtype)
        why = geometry.oversized(image.shape, spacing, c.slice_axis, c.spacing)
        if why:
            raise DataError(f"{name}: {why} at the model's spacing {list(c.spacing)} mm; "
                            "check the voxel spacing in its header")
        slices, axis = geometry.cut(image, spacing, c.slice_axis, c.spacing)
        count = int(slices.shape[0])
        # A 3D network takes the whole volume (its windows span the slices).
        step = count if c.dims == 3 else max(self.batch_size, 1)
        reach = max((abs(o) for o in c.context), default=0)
        total = None  # the members' sum, filled batch by batch: no copy of the volume's
        for m, member in enumerate(self.members):  # probabilities is ever made
            params = member.normalization(image)
            for begin in range(0, count, step):
                end = min(count, begin + step)
                # each batch's context from the slices around it (clamped at the ends as
                # stack_context clamps them over the whole volume)
                low, high = max(0, begin - reach), min(count, end + reach)
                batch = stack_context(slices[low:high], c.context)[begin - low:end - low]
                part = np.asarray(self._answer(member, batch, params), np.float32)
                if total is None:
                    total = np.empty((count, *part.shape[1:]), np.float32)
                if m == 0:
                    total[begin:end] = part
                else:
                    total[begin:end] += part
                if progress is not None and m == len(self.members) - 1:
                    progress(end - begin)
        if len(self.members) > 1:
            total /= np.float32(len(self.members))
        size = geometry.cut_size(image.shape, int(axis))
        if tuple(total.shape[:3]) == tuple(size):  # back in the stored order: a view
            return np.transpose(total, (*geometry.INVERSE[int(axis)], 3))
        return geometry.uncut(total, axis, size).numpy()

    def _answer(self, member, stacks, params):
        """A member's probabilities of one batch, with ``tta`` averaged over the zooms."""
        import tensorflow as tf

        from tf_medseg.data import geometry
        out = member.probabilities(stacks, params)
        if not self.tta:
            return out
        height, width = int(stacks.shape[1]), int(stacks.shape[2])
        for zoom in TTA_ZOOMS:
            size = (max(1, round(height * zoom)), max(1, round(width * zoom)))
            zoomed = member.probabilities(geometry.resize(stacks, size, nearest=False), params)
            out += tf.image.resize(zoomed, (height, width), method="bilinear")
        return out / (1 + len(TTA_ZOOMS))

    def masks(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Boolean masks of :meth:`probabilities`: the post-processing rules, else the
        model's threshold; ``threshold`` overrides every class's."""
        return postprocess.masks(probs, self.rules, self.classes, self.contract.head,
                                 threshold, self.contract.threshold)
