"""``python -m tf_medseg predict``: exported models on new inputs, the answer in the input's
form.

::

    python -m tf_medseg predict --model RUN_DIR/saved_model --input DIR --output OUT
        [--output-format rtstruct|seg|nifti|png|csv] [--overlays DIR] [--tta]
        [--threshold T] [--batch-size N] [--probabilities]

The inputs (:mod:`tf_medseg.inference.inputs`) are read as volumes; the predictor
(:mod:`tf_medseg.inference.predictor`) answers each whole volume through the exports' own
graphs (normalisation and resizing as in training), averaged over several models, with the
post-processing that comes with them; a writer (:mod:`tf_medseg.inference.writers`) chosen from
the input's form writes the answer:

* Kaggle-layout folders and slice PNGs -> ``--output`` is the competition's submission CSV:
  ``id,class,predicted`` with one row per slice and class;
* NIfTI volumes -> ``--output`` is a folder of ``CASE.nii.gz`` label maps (the input's shape,
  affine and header); ``--probabilities`` adds ``CASE.npz``;
* 2D images -> a folder of PNG label maps (``NAME.png``, or ``CLASS/NAME.png`` for overlapping
  classes);
* DICOM series -> a folder of RT Structure Sets ``RS_SERIESUID.dcm`` (``--output-format
  rtstruct``, the default), DICOM SEGs ``SEG_SERIESUID.dcm`` (``seg``) or NIfTI label maps
  ``SERIESUID.nii.gz`` (``nifti``): :mod:`tf_medseg.dicom.writer`.

Label maps paint each class's label value (dataset.json's; for regions nnU-Net's
``regions_class_order``) where it is predicted. ``--overlays DIR`` writes one PNG per slice:
the slice with each predicted class's contour in colour. ``--tta`` averages the probabilities
of each slice as it is and zoomed by 0.9 and 1.1. Every file is written under a temporary name
and renamed, so a file that exists is complete.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tf_medseg.errors import MedsegError
from tf_medseg.inference.predictor import Models, Predictor


def check_paths(models: Models, input_dir, output, overlays, overwrite: bool = False,
                target: str | None = None) -> None:
    """Before any work: the input a folder, and the outputs of the right kind (a CSV file, or
    a folder of label maps), outside the input and the models, and new, empty or predict's own
    earlier output with ``overwrite`` (:mod:`~tf_medseg.inference.writers.ownership`;
    one-line errors)."""
    from tf_medseg.errors import DataError
    from tf_medseg.files import check_output_path, check_outside
    from tf_medseg.inference.writers.ownership import check_replaceable
    from tf_medseg.inference.writers.registry import target_of
    root = Path(input_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"--input {root}: not a folder")
    inputs = {"--input": root, **{f"--model {m}": m for m in models.exports}}
    target = target or target_of(models.contract)
    out = check_output_path(output, "--output", target)
    if target == "folder" and out.suffix.lower() == ".csv":
        raise MedsegError(f"--output {out}: this input is answered with a file per case; "
                          f"give a folder (a CSV is for Kaggle-layout slices)")
    check_outside(out, "--output", inputs)
    check_replaceable(out, "--output", target, overwrite)
    if overlays is not None:
        folder = check_output_path(overlays, "--overlays", "folder")
        check_outside(overlays, "--overlays", {**inputs, "--output": out})
        if target == "file":
            check_outside(out, "--output", {"--overlays": overlays})
        check_replaceable(folder, "--overlays", "folder", overwrite)


def predict(model_dir, input_dir: str | os.PathLike, output: str | os.PathLike, *,
            overlays: str | os.PathLike | None = None, tta: bool = False,
            threshold: float | None = None, batch_size: int = 16, progress: bool = True,
            probabilities: bool = False, postprocess: bool = True,
            overwrite: bool = False, output_format: str | None = None) -> dict:
    """Predict every case of ``input_dir`` and write the answer to ``output`` (and overlays).

    ``model_dir``: an export, a run folder, a cross-validation run folder or a list of those
    (:func:`tf_medseg.export.contract.resolve_models`): several exports are averaged.
    Post-processing that comes with them (a CV folder's ``cv/postprocessing.json``) is applied
    unless ``postprocess`` is False; ``threshold`` overrides its per-class thresholds.
    ``output`` (and ``overlays``) must be new or empty, or predict's own earlier output and
    ``overwrite`` given; a folder gets a ``prediction.json`` that lists what it holds.
    ``output_format`` (:data:`~tf_medseg.inference.writers.registry.OUTPUT_FORMATS`): what a
    DICOM series is answered with (``rtstruct``, ``seg`` or ``nifti``); other inputs have one
    format each (None: the input's own).

    Returns:
        ``{"scans", "slices", "output", "seconds", "load_seconds", "predict_seconds",
        "models", "postprocessing"}`` and ``rows`` (CSV) or ``files`` (label maps).
    """
    from tqdm.auto import tqdm

    from tf_medseg.data.geometry import slice_axis
    from tf_medseg.inference.inputs import find_inputs
    from tf_medseg.inference.writers.overlays import OverlayWriter
    from tf_medseg.inference.writers.ownership import publish
    from tf_medseg.inference.writers.registry import target_of, writer_for
    start = time.perf_counter()
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise MedsegError(f"--threshold: must be between 0 and 1 (exclusive), got {threshold}")
    if batch_size < 1:
        raise MedsegError(f"--batch-size: must be at least 1, got {batch_size}")
    models = Models.read(model_dir)
    contract = models.contract
    cases = find_inputs(input_dir, contract)  # checks --input is a folder
    form = cases[0].form
    check_paths(models, input_dir, output, overlays, overwrite,
                target_of(contract, form, output_format))
    writer = writer_for(form, Path(output).expanduser(), contract, probabilities,
                        output_format)
    overlay = OverlayWriter(Path(overlays).expanduser(), contract) if overlays else None
    try:
        predictor = Predictor.load(models, tta=tta, batch_size=batch_size,
                                   postprocessing=postprocess)
        loaded = time.perf_counter()
        by_slice = all(c.ids for c in cases)
        total = sum(len(c.ids) for c in cases) if by_slice else len(cases)
        slices = 0
        with tqdm(total=total, desc="Predicting", unit="slice" if by_slice else "case",
                  disable=not progress) as bar:
            for case in cases:
                bar.set_postfix_str(case.name)
                image, spacing = case.read(contract)
                where = (case.name if case.form == "kaggle" else f"series {case.name} in "
                         f"{case.paths[0].parent}" if case.form == "dicom"
                         else str(case.paths[0]))
                probs = predictor.probabilities(image, spacing, name=where,
                                                progress=bar.update if by_slice else None)
                masks = predictor.masks(probs, threshold)  # whole volumes: 3-D components
                writer.write(case, image, probs, masks)
                if overlay is not None:
                    overlay.write(case, image, spacing, masks)
                slices += image.shape[slice_axis(image.shape, spacing, contract.slice_axis)]
                if not by_slice:
                    bar.update(1)
        summary = writer.close()
        info = {"models": [str(m) for m in models.exports], "input": str(input_dir)}
        if writer.target == "folder":
            publish(writer.output, writer.written, info)
        if overlay is not None:
            publish(overlay.folder, overlay.written, info)
    except BaseException:
        writer.abort()
        raise
    end = time.perf_counter()
    return {"scans": len(cases), "slices": slices, "output": str(Path(output).expanduser()),
            "seconds": end - start, "load_seconds": loaded - start,
            "predict_seconds": end - loaded, "models": len(models.exports),
            "postprocessing": predictor.rules is not None, **summary}
