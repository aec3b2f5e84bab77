"""``python -m tf_medseg evaluate --model RUN_DIR/saved_model --config CONFIG``: score exports on
a split of a config's data set with the predictor ``predict`` uses, and write the report.

For the Kaggle layout and the phantom the report holds the competition metric per case-day and
over all of them; for the other sources (nnunet, decathlon, folder) per case and class 3-D Dice
and HD95 in mm (nnU-Net's summary.json figures). Written, beside the SavedModel (or in
``--output``)::

    evaluation/metrics.json     aggregate and one entry per case-day (case)
    evaluation/case_days.csv    uwmgi, phantom: one row per case-day: dice, hausdorff, score,
                                per class
    evaluation/cases.csv        other sources: one row per case: dice, hd95, per class
"""

from __future__ import annotations

import os
from pathlib import Path

from tf_medseg.config import Config
from tf_medseg.errors import MedsegError
from tf_medseg.evaluation.scoring import REPORT_FILES, write_report
from tf_medseg.files import PARTIAL, check_output_path, check_outside
from tf_medseg.inference.predictor import Models, Predictor
from tf_medseg.planning.planner import planned_config


def check_config(models: Models, config: Config) -> None:
    """``config`` prepares the data the way the models were trained (context offsets and input
    size), so that the split scored is the one they were validated on (one-line errors)."""
    contract, meta_path = models.contract, models.exports[0] / "metadata.json"
    for ours, theirs, label in ((list(config.data.context), list(contract.context),
                                 "data.context"),
                                (list(config.data.image_size), list(contract.input_size),
                                 "data.image_size")):
        if ours != theirs:
            raise MedsegError(f"{meta_path}: the model was trained with {label} {theirs}, the "
                              f"config has {ours}; pass the run's config.yaml")


def check_report_dir(out: Path, model_dir: Path, config: Config) -> None:
    """The report folder (``--output``) before any work: a folder that is new, empty or holds
    an earlier report only (so a run folder's metrics.json is never replaced), and outside
    the model and the data (one-line errors)."""
    check_output_path(out, "--output", "folder")
    check_outside(out, "--output", {"--model": model_dir, "data.root": config.data.root})
    check_only_a_report(out)


def check_only_a_report(out: Path, also: tuple[str, ...] = ()) -> None:
    """``out`` is new, empty, or holds an earlier report (and the entries ``also``) only."""
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in (*REPORT_FILES, *also)
                       and not p.name.startswith(PARTIAL))
        if other:
            raise MedsegError(f"--output {out}: holds other files than a report ("
                              f"{', '.join(other[:3])}); give a new or empty folder")


def report_dir(values: list, models: Models, out_dir) -> Path:
    """``--output``, or ``evaluation/`` beside the SavedModel (inside the run directory; for
    a cross-validation folder, ``RUN_DIR/evaluation``)."""
    from tf_medseg.run_dir import is_cv_run
    if out_dir is not None:
        return Path(out_dir).expanduser()
    if len(values) > 1:
        raise MedsegError("--output: required with several --model exports (the report of "
                          "their ensemble belongs to none of them)")
    first = Path(values[0]).expanduser().resolve()
    return first / "evaluation" if is_cv_run(first) else \
        models.exports[0].resolve().parent / "evaluation"


def evaluate_saved_model(model_dir, config: Config, *, split: str = "val",
                         both_empty: str = "skip", out_dir: str | os.PathLike | None = None,
                         postprocess: bool = True) -> tuple[dict, Path]:
    """Score an export (or several, averaged: a list, or a cross-validation run folder) on a
    split's scans and write the report; (aggregate, report dir).

    Post-processing that comes with the models (``cv/postprocessing.json``) is applied unless
    ``postprocess`` is False; the report says which.
    """
    from tf_medseg.data.dataset import DataSet
    from tf_medseg.evaluation.evaluate import evaluate
    if config.data.fold == "all" and split == "val":
        raise MedsegError("--split val: data.fold all trains on every case and has no "
                          "validation cases; score a labelled test set with evaluate-folder "
                          "(or --split all for the training cases)")
    values = [model_dir] if isinstance(model_dir, (str, os.PathLike)) else list(model_dir)
    models = Models.read(values)
    out = report_dir(values, models, out_dir)
    for export in models.exports:
        check_report_dir(out, export, config)
    dataset = DataSet.open(config.data)
    config = planned_config(config, dataset, verbose=False)
    check_config(models, config)
    if dataset.labels.classes != models.contract.classes:
        raise MedsegError(f"--model {models.exports[0]}: answers "
                          f"{', '.join(models.contract.classes)}, but the data set of the "
                          f"config declares "
                          f"{', '.join(dataset.labels.classes)}; pass the run's config.yaml")
    theirs = models.contract
    for what, ours_value, their_value in (
            ("image channels", dataset.labels.channels, theirs.labels.channels),
            ("image dtype", dataset.image_dtype.name, theirs.image_dtype),
            ("exclusive classes", dataset.labels.exclusive, theirs.labels.exclusive)):
        if ours_value != their_value:
            raise MedsegError(f"--model {models.exports[0]}: trained on data with {what} "
                              f"{their_value}, but the config's data has {ours_value}; pass "
                              f"the run's config.yaml (or evaluate-folder for a test folder)")
    predictor = Predictor.load(models, batch_size=config.data.batch_size,
                               postprocessing=postprocess)
    result, rows = evaluate(predictor, dataset, split, both_empty=both_empty, progress=True,
                            tolerance=config.eval.surface_tolerance_mm)
    result["models"] = [str(e) for e in models.exports]
    result["postprocessing"] = str(models.rules_path) if predictor.rules is not None else None
    return result, write_report(result, rows, out, dataset.labels)
