"""Tiny data sets in the field's formats, written into a test's tmp_path: nnU-Net v2 raw (3D
NIfTI or 2D PNG), Medical Segmentation Decathlon (4-D multi-channel) and image folders (label
maps or per-class masks). Two classes: a bright ball (1) and a darker box (2) on noise."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

AFFINE = np.diag([1.5, 1.5, 4.0, 1.0])


def scene(seed: int, shape=(32, 28, 6)) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8) of one case, in file order (X, Y, Z)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    cx, cy = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
    label = np.zeros(shape, np.uint8)
    label[((x - cx) ** 2 + (y - cy) ** 2 < 25) & (z >= 1) & (z < shape[2] - 1)] = 1
    bx = rng.integers(2, shape[0] - 8)
    label[bx:bx + 5, 2:7, 2:shape[2]] = 2
    image = rng.normal(100, 10, shape).astype(np.float32)
    image[label == 1] += 300
    image[label == 2] += 150
    return image, label


def _nifti(path: Path, data: np.ndarray, affine=AFFINE) -> None:
    import nibabel as nib
    nib.save(nib.Nifti1Image(data, affine), str(path))


def write_nnunet(root: Path, cases: int = 4, channels=("T1", "T2"), regions: bool = False,
                 ending: str = ".nii.gz", shape=(32, 28, 6), spacings=None) -> Path:
    """``spacings``: one (x, y, z) per case (default: every case :data:`AFFINE`'s)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    labels = ({"background": 0, "whole": [1, 2], "ball": 1} if regions else
              {"background": 0, "ball": 1, "box": 2})
    meta = {"channel_names": {str(i): c for i, c in enumerate(channels)}, "labels": labels,
            "numTraining": cases, "file_ending": ending}
    if regions:
        meta["regions_class_order"] = [2, 1]
    (root / "dataset.json").write_text(json.dumps(meta))
    for i in range(cases):
        image, label = scene(i, shape)
        affine = AFFINE if spacings is None else np.diag([*spacings[i], 1.0])
        for k in range(len(channels)):
            _nifti(root / "imagesTr" / f"case_{i:03d}_{k:04d}{ending}", image * (1 + k), affine)
        _nifti(root / "labelsTr" / f"case_{i:03d}{ending}", label, affine)
    return root


def write_nnunet_2d(root: Path, cases: int = 6) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "grey"}, "labels": {"background": 0, "ball": 1, "box": 2},
        "numTraining": cases, "file_ending": ".png"}))
    for i in range(cases):
        image, label = scene(i, (32, 28, 3))
        cv2.imwrite(str(root / "imagesTr" / f"img_{i:03d}_0000.png"),
                    image[..., 1].astype(np.uint16))
        cv2.imwrite(str(root / "labelsTr" / f"img_{i:03d}.png"), label[..., 1])
    return root


def write_decathlon(root: Path, cases: int = 4, modalities=("FLAIR", "T1w")) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i in range(cases):
        image, label = scene(i)
        name = f"TASK_{i:03d}.nii.gz"
        _nifti(root / "imagesTr" / name,
               np.stack([image * (1 + k) for k in range(len(modalities))], axis=-1))
        _nifti(root / "labelsTr" / name, label)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (root / "dataset.json").write_text(json.dumps({
        "name": "Tiny", "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": {"0": "background", "1": "ball", "2": "box"},
        "numTraining": cases, "training": training}))
    return root


def write_folder(root: Path, per_class: bool = False, images: int = 8,
                 colour: bool = False) -> Path:
    """Images named pNN_sliceM.png: two slices per patient (data.group_pattern '^(p\\d+)_')."""
    (root / "images").mkdir(parents=True)
    classes = ["ball", "box"]
    if per_class:
        for c in classes:
            (root / "masks" / c).mkdir(parents=True)
        (root / "labels.json").write_text(json.dumps(classes))
    else:
        (root / "masks").mkdir()
        (root / "labels.json").write_text(json.dumps({"background": 0, "ball": 1, "box": 2}))
    for i in range(images):
        image, label = scene(i, (32, 28, 3))
        name = f"p{i // 2:02d}_slice{i % 2}"
        grey = np.clip(image[..., 1] / 2, 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"{name}.png"),
                    np.stack([grey, grey // 2, grey], -1) if colour else grey)
        if per_class:
            ball = label[..., 1] == 1
            box = label[..., 1] == 2
            box |= np.roll(ball, 2, axis=0)  # overlapping classes
            cv2.imwrite(str(root / "masks" / "ball" / f"{name}.png"), ball.astype(np.uint8) * 255)
            cv2.imwrite(str(root / "masks" / "box" / f"{name}.png"), box.astype(np.uint8))
        else:
            cv2.imwrite(str(root / "masks" / f"{name}.png"), label[..., 1])
    return root


def error_of(fn, *args, **kwargs) -> str:
    """The one-line DataError message of ``fn(*args, **kwargs)`` (it must raise one)."""
    import pytest

    from tf_medseg.errors import DataError
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def read_all(root: Path, fmt: str = "nnunet") -> None:
    """Index a volume source folder and read every case."""
    from tf_medseg.data.sources import volumes
    index = volumes.index_source(fmt, root)
    for case in index.cases:
        volumes.read_case(index, case)
