"""Score a predictor on a split of a data set: every scan predicted whole, at its stored size,
by the same :class:`~tf_medseg.inference.predictor.Predictor` that ``predict`` uses, and scored
against its truth (:class:`~tf_medseg.evaluation.scoring.Scoring`).

Used by the validation score of every training epoch and the final ``metrics.json``,
``python -m tf_medseg evaluate`` and the out-of-fold pass of ``--folds``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tf_medseg.data.dataset import DataSet
from tf_medseg.data.pipeline import parse
from tf_medseg.evaluation.scoring import Scoring
from tf_medseg.inference.predictor import Predictor


def evaluate(predictor: Predictor, dataset: DataSet, split: str = "val", *,
             both_empty: str = "skip", distances: bool = True, threshold: float | None = None,
             tolerance=2.0,
             progress: bool = False, scoring: Scoring | None = None,
             on_scan: Callable[[str, np.ndarray, np.ndarray, np.ndarray],
                               np.ndarray | None] | None = None) -> tuple[dict, list[dict]]:
    """(aggregate, per case-day or per case rows) of ``predictor`` over ``split``'s scans.

    The metric family is the data set's (:mod:`tf_medseg.evaluation.scoring`); the masks are
    the predictor's (its post-processing, else its threshold; ``threshold`` overrides).
    ``distances``: HD95 and the contour metrics for the volume metric, at ``tolerance`` mm
    (``eval.surface_tolerance_mm``; off for the per-epoch validation score).
    ``on_scan(name, probabilities, truth, spacing)`` sees every scan and may return the
    probabilities to score instead (the out-of-fold pass scores them as it stores them).
    ``scoring``: add the scans to this :class:`Scoring` (several folds' scans scored as one).

    The aggregate also has ``dice_pooled`` (and ``dice_pooled_<class>``): Dice of all voxels of
    the split pooled per class, averaged over classes.
    """
    labels = dataset.labels
    scoring = (scoring if scoring is not None else
               Scoring(labels, both_empty, distances, tolerance))
    info = {s.name: s for s in dataset.scans}
    scans = len(dataset.split_scans(split))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=scans, desc=f"Scoring {split} " + (
            "case-days" if scoring.competition else "cases"), unit="scan")
    for example in dataset.records(split):
        name = example["scan"].numpy().decode()
        spacing = example["spacing"].numpy()
        probs = predictor.probabilities(example["image"].numpy(), spacing, name=name)
        true = parse(example, labels)["mask"].numpy().astype(bool)
        if on_scan is not None:
            stored = on_scan(name, probs, true, spacing)
            probs = probs if stored is None else stored
        axis = dataset.axis(info[name])
        scoring.add(name, predictor.masks(probs, threshold), true, spacing,
                    slices=info[name].shape[axis], axis=axis)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return scoring.result(split)
