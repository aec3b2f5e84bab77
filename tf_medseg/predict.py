"""``python -m tf_medseg predict``: an exported model on new scans -> Kaggle submission.

::

    python -m tf_medseg predict --model RUN_DIR/saved_model --input DIR --output submission.csv
        [--overlays DIR] [--tta] [--threshold T] [--batch-size N]

``--input`` is one of:

* a Kaggle-layout folder: ``test/caseN/caseN_dayM/scans/slice_*.png`` (or ``train/...``);
* one ``caseN`` folder, one ``caseN_dayM`` folder, or its ``scans/`` folder;
* any folder of slice PNGs (8- or 16-bit grayscale, one size): they are taken as one scan in
  the order of their names (slice number for Kaggle names), and each row's id is the file name
  without ``.png``.

Each scan goes through the export's own graph (``intensity_scale`` once per scan, then
``serving_scaled`` batch by batch), so normalisation and resizing are those of training; the
2.5D context is assembled per scan from ``metadata.json``'s offsets, clamped at the ends.

The output is the competition's submission format: ``id,class,predicted`` with one row per
slice and class (large_bowel, small_bowel, stomach), ``predicted`` the RLE of the mask (empty
if nothing is predicted). It is written to a temporary file and renamed, so a file that exists
is complete. ``--overlays DIR`` writes one PNG per slice: the slice with each predicted organ's
contour in colour (large bowel orange, small bowel sky blue, stomach green).
``--tta`` averages the probabilities of each slice as it is and zoomed by 0.9 and 1.1.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from tf_medseg.config import CLASSES
from tf_medseg.data import kaggle, rle
from tf_medseg.data.images import png_header
from tf_medseg.data.pipeline import stack_context
from tf_medseg.errors import DataError, MedsegError
from tf_medseg.files import atomic_open

# Test-time augmentation: zooms within training's scale augmentation. (A left-right mirror,
# the usual choice, lowered the score of a held-out phantom scan from 0.874 to 0.780: the
# organs are lateralised and training does not flip them.)
TTA_ZOOMS = (0.9, 1.1)


@dataclasses.dataclass(frozen=True)
class InputScan:
    """One scan to predict: its name, and per slice the submission id and the file."""

    name: str
    ids: tuple[str, ...]
    paths: tuple[Path, ...]
    files: tuple[kaggle.SliceFile, ...] | None = None  # Kaggle slice names: sizes to check


def _from_case_day(scan: kaggle.ScanFiles) -> InputScan:
    return InputScan(scan.case_day, tuple(scan.slice_id(s) for s in scan.slices),
                     tuple(s.path for s in scan.slices), scan.slices)


def find_scans(input_dir: str | os.PathLike) -> list[InputScan]:
    """The scans of an input folder (see the module docstring), in case, day, slice order.

    Raises:
        DataError: if the folder does not exist or holds no PNG slices, naming what it expected.
    """
    root = Path(input_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"--input {root}: not a folder")
    for split in ("test", "train"):
        if (root / split).is_dir():
            return [_from_case_day(s) for s in kaggle.index_folder(root, split=split)]
    day_dir = root.parent if root.name == "scans" else root
    scan = kaggle.case_day_files(day_dir)
    if scan is not None:
        return [_from_case_day(scan)]
    days = [kaggle.case_day_files(d) for d in sorted(root.iterdir()) if d.is_dir()]
    days = sorted((d for d in days if d is not None), key=lambda s: (s.case, s.day))
    if days:
        return [_from_case_day(d) for d in days]
    pngs = list(root.glob("*.png"))  # each one's header is checked before it is read
    if not pngs:
        raise DataError(f"--input {root}: no PNG slices found (expected a Kaggle folder with "
                        f"test/ or train/, a caseN_dayM folder, or a folder of slice PNGs)")
    try:
        files = sorted((kaggle.parse_slice_filename(p) for p in pngs),
                       key=lambda s: s.slice_number)
        pngs = [s.path for s in files]
    except DataError:  # not Kaggle slice names: name order
        files, pngs = None, sorted(pngs)
    return [InputScan(root.name, tuple(p.stem for p in pngs), tuple(pngs),
                      tuple(files) if files else None)]


def read_volume(scan: InputScan) -> np.ndarray:
    """The slices of a scan as a (D, H, W) uint16 volume.

    Raises:
        DataError: naming the file, for an unreadable PNG, a colour or float image, a size
            that differs from the scan's other slices or from its file name.
    """
    if scan.files is not None:
        slices = [kaggle.read_png(f) for f in scan.files]
    else:
        slices = []
        for path in scan.paths:
            png_header(path)  # an ordinary PNG within the pixel limit, not decoded yet
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise DataError(f"{path}: not a readable PNG")
            if image.ndim == 3:
                if not (np.array_equal(image[..., 0], image[..., 1])
                        and np.array_equal(image[..., 0], image[..., 2])):
                    raise DataError(f"{path}: a colour image; expected a grayscale MRI slice")
                image = image[..., 0]
            if image.dtype not in (np.uint8, np.uint16):
                raise DataError(f"{path}: expected an 8- or 16-bit grayscale PNG, got "
                                f"{image.dtype}")
            slices.append(image.astype(np.uint16))
    first = slices[0].shape
    for path, image in zip(scan.paths, slices):
        if image.shape != first:
            raise DataError(f"{path}: the image is {image.shape[1]}x{image.shape[0]} (WxH) but "
                            f"{scan.paths[0].name} is {first[1]}x{first[0]}; the slices of "
                            f"one scan must share a size")
    return np.stack(slices)


class ExportedModel:
    """A tf_medseg SavedModel and its ``metadata.json``."""

    def __init__(self, model_dir: str | os.PathLike):
        from tf_medseg.export import load_signatures, read_metadata
        self.dir = Path(model_dir).expanduser()
        self.metadata = read_metadata(self.dir, f"--model {self.dir}")
        self.volumes = self.metadata.get("task", {}).get("kind") == "volumes"
        scale = "normalization" if self.volumes else "intensity_scale"
        loaded = load_signatures(self.dir, ["serving_scaled", scale], f"--model {self.dir}")
        self._loaded = loaded  # keeps the signatures' variables alive
        self._scale = loaded.signatures[scale]
        self._scaled = loaded.signatures["serving_scaled"]
        self.context = list(self.metadata["context_offsets"])
        self.threshold = float(self.metadata.get("threshold", 0.5))

    def normalization(self, volume: np.ndarray):
        """(4, M) normalisation parameters of a raw (D, H, W, M) volume (volume sources)."""
        return self._scale(volume=np.asarray(volume, np.float32))["params"]

    def volume_probabilities(self, stacks: np.ndarray, params, tta: bool = False
                             ) -> np.ndarray:
        """Raw float32 (B, H, W, C) stacks -> (B, H, W, K) class probabilities (volume
        sources); ``tta`` as in :meth:`probabilities`."""
        return _averaged(np.asarray(stacks, np.float32),
                         lambda x: self._scaled(image=x, params=params)["probabilities"], tta)

    def scale(self, volume: np.ndarray):
        return self._scale(volume=volume)["scale"]

    def probabilities(self, images: np.ndarray, scale, tta: bool = False) -> np.ndarray:
        """Raw (B, H, W, C) uint16 stacks -> (B, H, W, 3) float32 probabilities.

        ``tta``: the mean over the slices as they are and zoomed by 0.9 and 1.1 (the range of
        training's scale augmentation), each prediction resized back.
        """
        import tensorflow as tf
        return _averaged(images, lambda x: self._scaled(image=x, scale=scale)["probabilities"],
                         tta, lambda z: tf.cast(tf.clip_by_value(tf.round(z), 0, 65535),
                                                tf.uint16))


def load_models(exports: list[Path]):
    """One :class:`~tf_medseg.predict.ExportedModel`, or an :class:`Ensemble` of several."""
    from tf_medseg.ensemble import Ensemble
    models = [ExportedModel(p) for p in exports]
    return models[0] if len(models) == 1 else Ensemble(models)


def _averaged(images, run, tta: bool, to_input=lambda z: z) -> np.ndarray:
    """``run(images)`` as numpy, or with ``tta`` its mean with the runs on the images zoomed by
    ``TTA_ZOOMS`` (bilinear, ``to_input`` casting them back), each resized back."""
    import tensorflow as tf
    out = run(images).numpy()
    if not tta:
        return out
    height, width = images.shape[1:3]
    for zoom in TTA_ZOOMS:
        size = (max(1, round(height * zoom)), max(1, round(width * zoom)))
        zoomed = to_input(tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear"))
        out += tf.image.resize(run(zoomed), (height, width), method="bilinear").numpy()
    return out / (1 + len(TTA_ZOOMS))


def check_paths(model_dirs, input_dir, output, overlays) -> None:
    """Before any work: the models are exports, the input a folder, and the outputs of the
    right kind (a CSV file, or a folder of label maps for a volume model) and outside the
    input and the models (one-line errors)."""
    from tf_medseg.ensemble import check_members
    from tf_medseg.export import read_metadata
    from tf_medseg.files import check_output_path, check_outside
    model_dirs = [Path(m).expanduser() for m in (
        [model_dirs] if isinstance(model_dirs, (str, os.PathLike)) else model_dirs)]
    metas = [read_metadata(m, f"--model {m}") for m in model_dirs]
    check_members(metas, model_dirs)
    meta = metas[0]
    volumes = meta.get("task", {}).get("kind") == "volumes"
    root = Path(input_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"--input {root}: not a folder")
    inputs = {"--input": root, **{f"--model {m}": m for m in model_dirs}}
    out = check_output_path(output, "--output", "folder" if volumes else "file")
    if volumes and out.suffix.lower() == ".csv":
        raise MedsegError(f"--output {out}: this model answers with label maps; give a "
                          f"folder (a CSV is for the Kaggle layout)")
    check_outside(out, "--output", inputs)
    if overlays is not None:
        check_output_path(overlays, "--overlays", "folder")
        check_outside(overlays, "--overlays", {**inputs, "--output": out})
        if not volumes:
            check_outside(out, "--output", {"--overlays": overlays})


def predict(model_dir, input_dir: str | os.PathLike,
            output: str | os.PathLike, *, overlays: str | os.PathLike | None = None,
            tta: bool = False, threshold: float | None = None, batch_size: int = 16,
            progress: bool = True, probabilities: bool = False,
            postprocess: bool = True) -> dict:
    """Predict every slice of ``input_dir`` and write the submission (and overlays); for a
    model of a volume source, label maps in the input's form
    (:func:`tf_medseg.predict_volumes.predict_volumes`).

    ``model_dir``: an export, a run folder, a cross-validation run folder or a list of those
    (:func:`tf_medseg.ensemble.resolve_models`): several exports are averaged. Post-processing
    that comes with them (a CV folder's ``cv/postprocessing.json``) is applied unless
    ``postprocess`` is False; ``threshold`` overrides its per-class thresholds.

    Returns:
        ``{"scans", "slices", "rows", "output", "seconds", "load_seconds",
        "predict_seconds"}`` (loading the SavedModel, then reading, predicting and writing).
    """
    import time

    from tqdm.auto import tqdm

    from tf_medseg.overlay import contours, to_grey, write_png
    start = time.perf_counter()
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise MedsegError(f"--threshold: must be between 0 and 1 (exclusive), got {threshold}")
    if batch_size < 1:
        raise MedsegError(f"--batch-size: must be at least 1, got {batch_size}")
    from tf_medseg import postprocess as pp
    from tf_medseg.ensemble import resolve_models
    exports, rules_path = resolve_models(model_dir)
    check_paths(exports, input_dir, output, overlays)
    model = load_models(exports)
    classes = model.metadata["classes"]
    rules = pp.read(rules_path, classes) if rules_path is not None and postprocess else None
    loaded = time.perf_counter()
    if model.volumes:
        from tf_medseg.predict_volumes import predict_volumes
        result = predict_volumes(model, input_dir, output, overlays=overlays, tta=tta,
                                 threshold=threshold, batch_size=batch_size,
                                 probabilities=probabilities, progress=progress,
                                 postprocessing=rules)
        result["load_seconds"] = loaded - start
        result.update(models=len(exports), postprocessing=rules is not None)
        return result
    if probabilities:
        raise MedsegError("--probabilities: for NIfTI and image-folder models; a Kaggle "
                          "submission holds masks only")
    scans = find_scans(input_dir)
    output = Path(output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    overlay_dir = Path(overlays).expanduser() if overlays else None
    if overlay_dir is not None:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    total = sum(len(s.ids) for s in scans)
    rows = 0
    with atomic_open(output, "w", newline="") as f, tqdm(
            total=total, desc="Predicting", unit="slice", disable=not progress) as bar:
        writer = csv.writer(f)
        writer.writerow(["id", "class", "predicted"])
        for scan in scans:
            bar.set_postfix_str(scan.name)
            volume = read_volume(scan)
            scale = model.scale(volume)
            stacks = stack_context(volume, model.context)  # the pipeline's own
            probs = []
            for begin in range(0, len(volume), batch_size):
                probs.append(model.probabilities(stacks[begin:begin + batch_size], scale,
                                                 tta))
                bar.update(len(probs[-1]))
            # Whole scans: post-processing rules act on 3-D components.
            masks = pp.masks(np.concatenate(probs), rules, CLASSES, "sigmoid", threshold,
                             model.threshold)
            for i, mask in enumerate(masks):
                sid = scan.ids[i]
                for c, cls in enumerate(CLASSES):
                    writer.writerow([sid, cls, rle.encode(mask[..., c])])
                    rows += 1
                if overlay_dir is not None:
                    grey = to_grey(volume[i], float(np.asarray(scale).reshape(-1)[0]))
                    write_png(overlay_dir / f"{sid}.png", contours(grey, mask))
    end = time.perf_counter()
    return {"scans": len(scans), "slices": total, "rows": rows, "output": str(output),
            "seconds": end - start, "load_seconds": loaded - start,
            "predict_seconds": end - loaded, "models": len(exports),
            "postprocessing": rules is not None}
