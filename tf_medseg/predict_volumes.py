"""``python -m tf_medseg predict`` for models trained on nnunet, decathlon or folder data: the
answer comes in the input's own form.

``--input`` is a folder of:

* NIfTI volumes (``.nii.gz`` / ``.nii``): nnU-Net naming ``CASE_0000.nii.gz`` (one file per
  channel, ``_0001`` ...), or for a one-channel model any ``CASE.nii.gz`` (a Decathlon image
  with its modalities on the 4th axis is one file too). Output: ``--output`` is a folder that
  gets one ``CASE.nii.gz`` label map per case: uint8 (uint16 beyond 255), the input's shape,
  affine and header (data type and scaling reset). ``--probabilities`` adds ``CASE.npz``
  (``probabilities`` (K, X, Y, Z) float16 in the file's voxel order, ``classes``).
* 2D images (``.png``, ``.tif``; nnU-Net 2D naming ``CASE_0000.png`` or plain ``NAME.png``,
  or an image folder's root holding ``images/``; a colour model takes colour images): one PNG
  label map per image in ``--output``
  (``NAME.png``), or for a model of overlapping classes one binary mask per class
  (``CLASS/NAME.png``, 0 or 255), as the ``folder`` source reads them.

Each case goes through the export's own graph: ``normalization`` once per volume, then
``serving_scaled`` batch by batch, slices cut across the training's ``slice_axis`` and
resampled to its ``spacing`` (and back) as in training. Label maps paint each class's label
value (dataset.json's; for regions nnU-Net's ``regions_class_order``) where it is predicted: the
class with the largest probability for a softmax model, every class above the threshold for a
sigmoid one (later classes over earlier ones). Every file is written under a temporary name
and renamed, so a file that exists is complete.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import numpy as np

from tf_medseg.data import volumes
from tf_medseg.data.task import Task
from tf_medseg.errors import DataError
from tf_medseg.files import atomic_open, atomic_png, temporary_path

CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
TTA_ZOOMS = (0.9, 1.1)


@dataclasses.dataclass(frozen=True)
class InputCase:
    name: str
    files: tuple[Path, ...]
    ending: str


def find_cases(input_dir: Path, channels: int, colour: bool = False) -> list[InputCase]:
    """The cases of a folder of NIfTI volumes or 2D images (see the module docstring);
    ``colour``: the model's channels are one colour image's R, G, B."""
    root = Path(input_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"--input {root}: not a folder")
    if (root / "images").is_dir() and not any(volumes._ending(p.name) for p in root.iterdir()
                                              if p.is_file()):
        root = root / "images"
    # Every file the readers open is checked to be a regular file first (no FIFO blocks).
    files = sorted(p for p in root.iterdir() if not p.is_dir() and not p.name.startswith("."))
    found = [(p, volumes._ending(p.name)) for p in files]
    found = [(p, e) for p, e in found if e]
    if not found:
        raise DataError(f"--input {root}: no NIfTI (.nii.gz, .nii) or image (.png, .tif) "
                        f"files")
    endings = {e for _, e in found}
    if len(endings) > 1:
        raise DataError(f"--input {root}: files of several kinds ({', '.join(sorted(endings))});"
                        f" keep one kind per folder")
    ending = endings.pop()
    groups: dict[str, dict[int, Path]] = {}
    plain = []
    for path, _ in found:
        stem = volumes._stem(path.name, ending)
        m = CHANNEL_RE.match(stem)
        if m:
            groups.setdefault(m["case"], {})[int(m["channel"])] = path
        else:
            plain.append(path)
    if plain and groups:
        raise DataError(f"{plain[0]}: not named CASE_0000{ending} like the other files; use "
                        f"nnU-Net's channel naming for every file, or for none")
    if plain:
        if channels != 1 and ending not in volumes.NIFTI_ENDINGS and not colour:
            raise DataError(f"{plain[0]}: the model takes {channels} channels; name the files "
                            f"CASE_0000{ending}, CASE_0001{ending}, ...")
        return [InputCase(volumes._stem(p.name, ending), (p,), ending) for p in plain]
    cases = []
    for case, by_channel in sorted(groups.items()):
        missing = [k for k in range(channels) if k not in by_channel]
        if missing:
            raise DataError(f"{root / f'{case}_{missing[0]:04d}{ending}'}: missing: the model "
                            f"takes {channels} channel(s), _0000 to _{channels - 1:04d}")
        extra = sorted(set(by_channel) - set(range(channels)))
        if extra:
            raise DataError(f"{by_channel[extra[0]]}: channel {extra[0]}, but the model takes "
                            f"{channels} channel(s)")
        cases.append(InputCase(case, tuple(by_channel[k] for k in range(channels)), ending))
    return cases


def label_map(probs: np.ndarray, task: Task, output: str, threshold: float) -> np.ndarray:
    """(..., K) class probabilities -> (...) label map with the classes' label values."""
    from tf_medseg.postprocess import masks
    return paint(masks(probs, None, task.classes, output, threshold), task)


def paint(masks: np.ndarray, task: Task) -> np.ndarray:
    """(..., K) boolean masks -> (...) label map with the classes' label values (later
    classes over earlier ones)."""
    values = task.label_values
    dtype = np.uint8 if max(values) <= 255 else np.uint16
    out = np.zeros(masks.shape[:-1], dtype)
    for k, v in enumerate(values):
        out[masks[..., k]] = v
    return out


def _write_nifti(path: Path, labels: np.ndarray, reference: Path) -> None:
    import nibabel as nib
    ref = nib.load(str(reference))
    header = ref.header.copy()
    header.set_data_dtype(labels.dtype)
    image = type(ref)(labels, ref.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    # nibabel picks gzip by the name's ending, so the temporary name keeps it.
    with temporary_path(path, volumes._ending(path.name)) as tmp:
        nib.save(image, str(tmp))


def _write_npz(path: Path, probs: np.ndarray, task: Task) -> None:
    """``probabilities`` (K, ...) float16 and ``classes`` of (..., K) probabilities."""
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, probabilities=np.moveaxis(probs, -1, 0).astype(np.float16),
                            classes=np.array(task.classes))


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_png(path, image)


def predict_volumes(model, input_dir, output, *, overlays=None, tta: bool = False,
                    threshold: float | None = None, batch_size: int = 16,
                    probabilities: bool = False, progress: bool = True,
                    postprocessing=None) -> dict:
    """Predict every case of ``input_dir`` with an :class:`~tf_medseg.predict.ExportedModel`
    (or :class:`~tf_medseg.ensemble.Ensemble`) of a volume source and write label maps to the
    folder ``output``. ``postprocessing``: class -> :class:`~tf_medseg.postprocess.Rule`
    (on the 3-D masks of each case; ``threshold`` overrides their thresholds)."""
    import tensorflow as tf
    from tqdm.auto import tqdm

    from tf_medseg import postprocess as pp
    from tf_medseg.data.pipeline import stack_context
    start = time.perf_counter()
    meta = model.metadata
    task = Task.from_dict(meta["task"])
    output_kind = meta.get("model_output", "sigmoid")
    spacing = meta.get("spacing")
    out_dir = Path(output).expanduser()  # checked by predict(): not on the input
    input_root = Path(input_dir).expanduser()
    cases = find_cases(input_root, task.num_channels, task.channels == ("R", "G", "B"))
    index = volumes.SourceIndex("predict", input_root, task, frozenset(), (), cases[0].ending,
                                four_d=task.num_channels > 1 and len(cases[0].files) == 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay_dir = Path(overlays).expanduser() if overlays else None
    offsets = list(meta["context_offsets"])
    nifti = cases[0].ending in volumes.NIFTI_ENDINGS
    slices = 0
    written = []
    for case in tqdm(cases, desc="Predicting", unit="case", disable=not progress):
        files = volumes.CaseFiles(case.name, case.name, case.files)
        image, header = volumes.read_images(index, files)
        file_shape = image.shape[:3]
        axis = volumes.case_axis(image.shape, header.spacing, meta.get("slice_axis", "auto"))
        native = tuple(n for i, n in enumerate(file_shape) if i != axis)
        vol, _ = volumes.cut(image, axis, header.spacing, spacing, nearest=False)  # (D, H, W, C)
        params = model.normalization(vol)
        stacks = stack_context(tf.constant(vol), offsets).numpy()
        probs = []
        for b in range(0, len(stacks), batch_size):
            probs.append(model.volume_probabilities(stacks[b:b + batch_size], params, tta))
        probs = np.concatenate(probs)
        if probs.shape[1:3] != native:
            probs = volumes.resample_slices(probs, native, nearest=False)
        slices += len(probs)
        slice_masks = pp.masks(probs, postprocessing, task.classes, output_kind, threshold,
                               float(meta.get("threshold", 0.5)))
        slice_labels = paint(slice_masks, task)
        labels = volumes.from_slices(slice_labels, axis)
        if nifti:
            name = case.name + case.ending
            _write_nifti(out_dir / name, labels.reshape(file_shape), case.files[0])
            written.append(name)
            if probabilities:
                p = volumes.from_slices(probs, axis).reshape(*file_shape, -1)
                _write_npz(out_dir / f"{case.name}.npz", p, task)
        else:
            labels = labels[:, :, 0]
            if task.exclusive:
                _write_png(out_dir / f"{case.name}.png", labels)
            else:
                for k, cls in enumerate(task.classes):
                    _write_png(out_dir / cls / f"{case.name}.png",
                               (slice_masks[0][..., k] * 255).astype(np.uint8))
            written.append(f"{case.name}.png")
            if probabilities:
                _write_npz(out_dir / f"{case.name}.npz", probs[0], task)
        if overlay_dir is not None:
            _write_overlays(overlay_dir, case.name, volumes.to_slices(image, axis),
                            slice_masks, task)
    end = time.perf_counter()
    return {"scans": len(cases), "slices": slices, "rows": len(written), "files": written,
            "output": str(out_dir), "seconds": end - start, "load_seconds": 0.0,
            "predict_seconds": end - start}


def _write_overlays(folder: Path, name: str, vol: np.ndarray, masks: np.ndarray,
                    task: Task) -> None:
    from tf_medseg.overlay import contours, to_grey, write_png
    folder.mkdir(parents=True, exist_ok=True)
    first = vol[..., 0]
    scale = float(np.percentile(first, 99.5)) or 1.0
    for i in range(len(vol)):
        write_png(folder / f"{name}_slice{i:04d}.png",
                  contours(to_grey(first[i], scale), masks[i], classes=task.classes))
