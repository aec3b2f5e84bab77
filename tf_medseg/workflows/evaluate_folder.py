"""``python -m tf_medseg evaluate-folder``: score a folder of label maps against a folder of
ground truth (nnU-Net's ``nnUNetv2_evaluate_folder``), or an export on a labelled test folder,
with no training config.

::

    python -m tf_medseg evaluate-folder --predictions PRED --labels LABELS [--output DIR]
    python -m tf_medseg evaluate-folder --model RUN_DIR/saved_model --images IMAGES \\
        --labels LABELS [--output DIR]

Files are paired by name (``CASE.nii.gz`` / ``CASE.nii`` or ``NAME.png`` / ``.tif``; for
overlapping classes of a 2D folder data set ``CLASS/NAME.png``); every prediction needs its
label and every label its prediction. What the label values mean comes from the model's
``metadata.json`` (``--model``, or the models ``PRED/prediction.json`` names), else from
``--dataset-json`` (an nnU-Net or Decathlon ``dataset.json``, a folder data set's
``labels.json``), else from a ``dataset.json`` / ``labels.json`` beside LABELS. The report
is evaluate's for volume data: ``metrics.json`` and ``cases.csv`` with per case and class 3-D
Dice and HD95 (mm from the NIfTI header; pixels for PNG), and with ``--model`` the predictions
in ``DIR/predictions/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from tf_medseg.data.labels import LabelSchema
from tf_medseg.data.sources.volume_index import IMAGE_ENDINGS, file_ending, strip_ending
from tf_medseg.errors import MedsegError

PREDICTIONS = "predictions"


def schema_of(labels_dir: Path, predictions: Path | None, model, dataset_json) -> LabelSchema:
    """What the label values mean (see the module docstring for the order)."""
    from tf_medseg.export.contract import read_contract, resolve_models
    if model is not None:
        exports, _ = resolve_models(model)
        return read_contract(exports[0], "--model").labels
    if dataset_json is None and predictions is not None:
        from tf_medseg.inference.writers.ownership import MARK
        try:
            record = json.loads((predictions / MARK).read_text())
            return read_contract(Path(record["models"][0]), f"{predictions / MARK}").labels
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            pass
    candidates = [Path(dataset_json).expanduser()] if dataset_json else [
        labels_dir.parent / "dataset.json", labels_dir.parent / "labels.json"]
    for path in candidates:
        if path.is_file():
            return _schema_from_json(path)
    raise MedsegError(f"--labels {labels_dir}: what its label values mean is unknown; pass "
                      f"--model (the export), or --dataset-json (dataset.json or labels.json)")


def _schema_from_json(path: Path) -> LabelSchema:
    from tf_medseg.data.sources.declarations import classes_from_labels
    from tf_medseg.data.sources.volume_index import read_json
    meta = read_json(path, "a dataset.json or labels.json")
    labels = meta.get("labels") if isinstance(meta, dict) and "labels" in meta else meta
    if isinstance(labels, list):  # labels.json: one binary mask per class
        return LabelSchema(classes=tuple(str(c) for c in labels), exclusive=False,
                           channels=(), metric="volume")
    if isinstance(labels, dict) and labels and all(str(k).isdigit() for k in labels):
        labels = {str(v): int(k) for k, v in labels.items()}  # Decathlon: value -> name
    regions = meta.get("regions_class_order") if isinstance(meta, dict) else None
    schema, _ = classes_from_labels(labels, path, nnunet=True, regions_order=regions)
    return schema


def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray | None]:
    """(label map as (A0, A1, A2), spacing, affine or None) of a NIfTI or PNG label file."""
    from tf_medseg.data.images import read_2d
    if file_ending(path.name) in IMAGE_ENDINGS:
        return read_2d(path, label=True)[..., None], (1.0, 1.0, 1.0), None
    from tf_medseg.data.sources.volumes import _load_nifti
    img = _load_nifti(path)
    try:
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise MedsegError(f"{path}: the voxel data cannot be read "
                          f"({str(exc).splitlines()[0]})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise MedsegError(f"{path}: a {data.ndim}-D array; a label map is 2-D or 3-D")
    if not np.issubdtype(data.dtype, np.integer):
        if not (np.all(np.isfinite(data)) and np.array_equal(data, np.round(data))):
            raise MedsegError(f"{path}: holds non-integer values; not a label map")
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    spacing += (1.0,) * (3 - len(spacing))
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise MedsegError(f"{path}: the header's voxel spacing {spacing} is not positive and "
                          f"finite; fix the header (pixdim)")
    return data.astype(np.int64), spacing, np.asarray(img.affine, float)


def _same_grid(pred: Path, truth: Path, p_map, t_map) -> None:
    """A prediction on its label's grid: the same shape and, for NIfTI, the same affine
    (within 0.01 mm), else one line saying so (scores of a shifted or flipped map mean
    nothing)."""
    if p_map[0].shape != t_map[0].shape:
        raise MedsegError(f"{pred}: shape {p_map[0].shape} but its label {truth.name} has "
                          f"{t_map[0].shape}")
    if p_map[2] is not None and t_map[2] is not None and not np.allclose(
            p_map[2], t_map[2], atol=0.01):
        raise MedsegError(f"{pred}: its affine differs from its label {truth.name}'s "
                          f"(origin {np.round(p_map[2][:3, 3], 2).tolist()} against "
                          f"{np.round(t_map[2][:3, 3], 2).tolist()} mm, spacing "
                          f"{[round(v, 3) for v in p_map[1]]} against "
                          f"{[round(v, 3) for v in t_map[1]]}); resample the prediction onto "
                          f"the label's grid")


def _masks(label: np.ndarray, schema: LabelSchema) -> np.ndarray:
    values = schema.values or tuple((v,) for v in schema.label_values)
    return np.stack([np.isin(label, vals) for vals in values], axis=-1)


def _cases(folder: Path, option: str, per_class: tuple[str, ...]) -> dict[str, list[Path]]:
    """{case: files (one, or one per class)} of a folder of label files."""
    if not folder.is_dir():
        raise MedsegError(f"{option} {folder}: not a folder")
    if per_class:
        found: dict[str, list[Path]] = {}
        for k, cls in enumerate(per_class):
            sub = folder / cls
            if not sub.is_dir():
                raise MedsegError(f"{option} {folder}: no {cls}/ folder (overlapping classes "
                                  f"are one CLASS/NAME.png mask per class)")
            for p in sorted(sub.iterdir()):
                ending = file_ending(p.name)
                if ending in IMAGE_ENDINGS and p.is_file():
                    files = found.setdefault(strip_ending(p.name, ending), [None] * len(per_class))
                    if files[k] is not None:
                        raise MedsegError(f"{option} {files[k]} and {p.name}: two masks of "
                                          f"one image; keep one of them")
                    files[k] = p
        for case, files in found.items():
            if None in files:
                missing = per_class[files.index(None)]
                raise MedsegError(f"{option} {folder / missing / (case + '.png')}: missing "
                                  f"(every class folder holds a mask of every image)")
        return found
    cases: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        ending = file_ending(p.name)
        if ending is None or not p.is_file():
            continue
        stem = strip_ending(p.name, ending)
        if stem in cases:
            raise MedsegError(f"{option} {p}: two label files of case {stem} "
                              f"({cases[stem][0].name} and {p.name})")
        cases[stem] = [p]
    if not cases:
        raise MedsegError(f"{option} {folder}: no label maps (.nii.gz, .nii, .png or .tif) found")
    return cases


def score_folders(predictions, labels, schema: LabelSchema, *, progress: bool = True,
                  tolerance=2.0) -> tuple[dict, list[dict]]:
    """(aggregate, per-case rows) of the label maps in ``predictions`` against ``labels``."""
    from tqdm.auto import tqdm

    from tf_medseg.evaluation.scoring import Scoring
    predictions, labels = Path(predictions).expanduser(), Path(labels).expanduser()
    if predictions.resolve() == labels.resolve():
        raise MedsegError(f"--predictions {predictions} is --labels: a folder scored against "
                          f"itself says nothing; give the predictions' folder")
    schema = dataclasses.replace(schema, metric="volume")
    per_class = () if schema.exclusive or schema.encoding == "labels" else schema.classes
    pred, true = (_cases(predictions, "--predictions", per_class),
                  _cases(labels, "--labels", per_class))
    for a, b, where, other in ((pred, true, predictions, labels),
                               (true, pred, labels, predictions)):
        missing = sorted(set(a) - set(b))
        if missing:
            raise MedsegError(f"{where / a[missing[0]][0].name}: no counterpart in {other} "
                              f"({len(missing)} case(s) without one); give folders of the "
                              f"same cases")
    for case in sorted(true):
        for p_path, t_path in zip(pred[case], true[case]):
            if os.path.samefile(p_path, t_path):
                raise MedsegError(f"{p_path}: is its own label {t_path} (a link or the same "
                                  f"file); give the predictions, not the labels")
    scoring = Scoring(schema, distances=True, tolerance=tolerance)
    for case in tqdm(sorted(true), desc="Scoring cases", unit="case", disable=not progress):
        maps = [[_read(p) for p in group] for group in (pred[case], true[case])]
        (p_maps, t_maps) = maps
        for p_path, t_path, p_map, t_map in zip(pred[case], true[case], p_maps, t_maps):
            _same_grid(p_path, t_path, p_map, t_map)
        if per_class:
            p_mask = np.stack([m[0] > 0 for m in p_maps], -1)
            t_mask = np.stack([m[0] > 0 for m in t_maps], -1)
        else:
            p_mask, t_mask = _masks(p_maps[0][0], schema), _masks(t_maps[0][0], schema)
        scoring.add(case, p_mask, t_mask, t_maps[0][1])
    return scoring.result("folder")


def evaluate_folder(labels, *, predictions=None, model=None, images=None, out_dir=None,
                    dataset_json=None, progress: bool = True,
                    tolerance=2.0) -> tuple[dict, Path]:
    """Score ``predictions`` (or ``model``'s predictions of ``images``) against ``labels``
    and write the report to ``out_dir``; (aggregate, report folder)."""
    from tf_medseg.evaluation.scoring import write_report
    from tf_medseg.files import check_output_path, check_outside
    from tf_medseg.workflows.evaluate import check_only_a_report
    labels = Path(labels).expanduser()
    if (predictions is None) == (images is None) or (images is not None and model is None):
        raise MedsegError("give --predictions PRED, or --model MODEL with --images IMAGES "
                          "(not both)")
    for option, folder in (("--labels", labels), ("--predictions", predictions),
                           ("--images", images)):
        if folder is not None and not Path(folder).expanduser().is_dir():
            raise MedsegError(f"{option} {Path(folder).expanduser()}: not a folder")
    if out_dir is None:
        out_dir = (Path(predictions).expanduser().parent / "evaluation" if predictions
                   else None)
        if out_dir is None:
            raise MedsegError("--output: required with --images (the report and the "
                              "predictions go there)")
    out = check_output_path(out_dir, "--output", "folder")
    inputs = {"--labels": labels, "--images": images,
              "--predictions": predictions, "--model": None}
    check_outside(out, "--output", inputs)
    check_only_a_report(out, also=(PREDICTIONS,))
    schema = schema_of(labels, Path(predictions).expanduser() if predictions else None,
                       model, dataset_json)
    if schema.metric == "competition" and images is not None:
        raise MedsegError(f"--model {model}: a Kaggle-layout model answers with a "
                          f"submission CSV; score it with evaluate --config")
    if images is not None:
        from tf_medseg.inference.predict import predict
        predictions = out / PREDICTIONS
        predict(model, images, predictions, progress=progress, overwrite=True)
    result, rows = score_folders(predictions, labels, schema, progress=progress,
                                 tolerance=tolerance)
    result.update({"scored_cases": len(rows), "predictions": str(predictions),
                   "labels": str(labels),
                   "models": [str(m) for m in ([model] if isinstance(model, (str, os.PathLike))
                                               else model or [])]})
    return result, write_report(result, rows, out, schema)
