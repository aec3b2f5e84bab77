"""Bring your own data: each format built, trained one tiny epoch, evaluated and predicted
(the ``nnunet`` / ``decathlon`` / ``folder`` sources and builders, softmax and sigmoid outputs,
the answer in the input's form)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tf_medseg.config import load_config
from tf_medseg.data.sources import volumes
from tf_medseg.errors import ConfigError

from conftest import ROOT
from synthetic_volumes import AFFINE, write_decathlon, write_folder, write_nnunet, write_nnunet_2d

CHAOS = ROOT.parent / "shared" / "data" / "chaos_t2" / "Dataset001_CHAOST2"


def tiny(tmp_path: Path, source: str, root: Path, *extra: str):
    return load_config("tiny.yaml", [
        f"data.source={source}", f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
        "data.image_size=[32,32]", "data.batch_size=4", "data.num_folds=2",
        "data.context=[-1,0,1]", "model.base_filters=4", "model.depth=2", "train.epochs=1",
        f"train.run_dir={tmp_path / 'run'}", "train.max_minutes=null",
        "train.overlay_slices=2", *extra])


def train_evaluate(config, tmp_path):
    from tf_medseg.training import train
    from tf_medseg.workflows.evaluate import evaluate_saved_model
    result = train(config, verbose=0)
    run = Path(config.train.run_dir)
    evaluation, out = evaluate_saved_model(run / "saved_model", config)
    return result, evaluation, run, out


def check_volume_metrics(result: dict, classes: list[str]) -> None:
    assert result["classes"] == classes
    for c in classes:
        assert f"dice_{c}" in result and f"hd95_{c}" in result
    assert result["score"] == result["dice"]
    for row in result["cases"]:
        for c in classes:
            d, h = row[f"dice_{c}"], row[f"hd95_{c}"]
            assert (d is None and h is None) or (0 <= d <= 1 and h >= 0)


@pytest.mark.slow
def test_nnunet_3d_two_channels_softmax(tmp_path):
    import nibabel as nib
    root = write_nnunet(tmp_path / "Dataset009_Tiny")
    config = tiny(tmp_path, "nnunet", root)
    result, evaluation, run, report = train_evaluate(config, tmp_path)
    check_volume_metrics(result, ["ball", "box"])
    assert [r["case"] for r in result["cases"]] == sorted(r["case"] for r in result["cases"])
    meta = json.loads((run / "saved_model" / "metadata.json").read_text())
    assert meta["model_output"] == "softmax" and meta["channels"] == ["T1", "T2"]
    assert meta["input"]["shape"][-1] == 6  # 2 modalities x 3 offsets
    assert evaluation["dice"] == pytest.approx(result["dice"], abs=1e-6)
    assert (report / "cases.csv").is_file()
    history = (run / "history.csv").read_text().splitlines()[0]
    assert "val_dice_ball" in history and "val_dice_box" in history
    # predict: NIfTI in, NIfTI label maps out with the input's shape and affine
    from tf_medseg.inference.predict import predict
    out = tmp_path / "pred"
    summary = predict(run / "saved_model", root / "imagesTr", out, probabilities=True,
                      progress=False)
    assert summary["scans"] == 4 and sorted(summary["files"])[0] == "case_000.nii.gz"
    img = nib.load(str(out / "case_000.nii.gz"))
    assert img.shape == (32, 28, 6) and np.allclose(img.affine, AFFINE)
    assert img.get_data_dtype() == np.uint8
    assert set(np.unique(np.asanyarray(img.dataobj))) <= {0, 1, 2}
    import tensorflow as tf
    serve = tf.saved_model.load(str(run / "saved_model")).signatures["serving_default"]
    raw = np.random.default_rng(0).normal(100, 10, (2, 40, 36, 6)).astype(np.float32)
    served = serve(image=tf.constant(raw))["probabilities"].numpy()
    assert served.shape == (2, 40, 36, 2) and np.all(served.sum(-1) <= 1 + 1e-5)
    probs = np.load(out / "case_000.npz")
    assert probs["probabilities"].shape == (2, 32, 28, 6)
    assert list(probs["classes"]) == ["ball", "box"]
    assert not list(out.glob(".partial-*"))
    assert json.loads((out / "prediction.json").read_text())["entries"][:2] == [
        "case_000.nii.gz", "case_000.npz"]
    # never over ground truth, and over an earlier prediction only when asked to
    from tf_medseg.errors import MedsegError
    truth = {p.name: p.read_bytes() for p in (root / "labelsTr").iterdir()}
    with pytest.raises(MedsegError, match="holds files predict did not write"):
        predict(run / "saved_model", root / "imagesTr", root / "labelsTr", progress=False,
                overwrite=True)
    assert {p.name: p.read_bytes() for p in (root / "labelsTr").iterdir()} == truth
    with pytest.raises(MedsegError, match="pass --overwrite"):
        predict(run / "saved_model", root / "imagesTr", out, progress=False)
    predict(run / "saved_model", root / "imagesTr", out, progress=False, overwrite=True)
    assert not list(out.glob("*.npz"))  # the earlier prediction's files went with it


def test_nnunet_regions_are_sigmoid_and_paint_in_order(tmp_path):
    root = write_nnunet(tmp_path / "Dataset010_Regions", channels=("CT",), regions=True,
                        ending=".nii")
    config = tiny(tmp_path, "nnunet", root)
    from tf_medseg.data.dataset import DataSet
    from tf_medseg.data.pipeline import make_dataset
    data = DataSet.open(config.data)
    labels = data.labels
    assert not labels.exclusive and labels.classes == ("whole", "ball")
    assert labels.normalization == ("ct",) and labels.label_values == (2, 1)
    stats = data.metadata["intensity_stats"][0]
    assert 200 < stats["mean"] < 500 and stats["p0_5"] < stats["p99_5"]
    _, masks = next(iter(make_dataset(config, "all", shuffle=False, augment_batches=False,
                                      dataset=data)))
    masks = masks.numpy()
    assert masks.shape[-1] == 2 and np.all(masks[..., 1] <= masks[..., 0])  # ball in whole
    with pytest.raises(ConfigError, match="model.output: softmax needs exclusive"):
        labels.head(tiny(tmp_path, "nnunet", root, "model.output=softmax").model.output)
    from tf_medseg.inference.postprocess import masks as to_masks
    from tf_medseg.inference.writers.nifti import paint
    probs = np.zeros((1, 2, 2), np.float32)
    probs[0, 0] = [0.9, 0.1]  # whole only: box (2)
    probs[0, 1] = [0.9, 0.8]  # whole and ball: ball (1) painted last
    label_map = paint(to_masks(probs, None, labels.classes, "sigmoid"), labels)
    assert label_map.tolist() == [[2, 1]]


@pytest.mark.slow
def test_nnunet_2d_png(tmp_path):
    root = write_nnunet_2d(tmp_path / "Dataset011_Png")
    config = tiny(tmp_path, "nnunet", root)
    result, _, run, _ = train_evaluate(config, tmp_path)
    check_volume_metrics(result, ["ball", "box"])
    assert all(r["slices"] == 1 for r in result["cases"])
    from tf_medseg.inference.predict import predict
    predict(run / "saved_model", root / "imagesTr", tmp_path / "out", progress=False,
            overlays=tmp_path / "overlays")
    label = cv2.imread(str(tmp_path / "out" / "img_000.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (32, 28) and label.dtype == np.uint8
    overlay = cv2.imread(str(tmp_path / "overlays" / "img_000_slice0000.png"))
    assert overlay.shape == (32, 28, 3)
    from tf_medseg.errors import MedsegError
    with pytest.raises(MedsegError, match="the input folder"):
        predict(run / "saved_model", root / "imagesTr", root / "imagesTr", progress=False)


@pytest.mark.slow
def test_decathlon_4d_multichannel(tmp_path):
    import nibabel as nib
    root = write_decathlon(tmp_path / "Task01_Tiny")
    config = tiny(tmp_path, "decathlon", root, "data.normalization=[zscore,percentile]",
                  "model.output=sigmoid")
    result, _, run, _ = train_evaluate(config, tmp_path)
    check_volume_metrics(result, ["ball", "box"])
    meta = json.loads((run / "saved_model" / "metadata.json").read_text())
    assert meta["normalization"]["methods"] == ["zscore", "percentile"]
    assert meta["model_output"] == "sigmoid"
    from tf_medseg.inference.predict import predict
    predict(run / "saved_model", root / "imagesTr", tmp_path / "out", progress=False)
    img = nib.load(str(tmp_path / "out" / "TASK_000.nii.gz"))
    assert img.shape == (32, 28, 6)


@pytest.mark.slow
def test_folder_label_maps_groups_patients(tmp_path):
    root = write_folder(tmp_path / "pngs")
    config = tiny(tmp_path, "folder", root, r"data.group_pattern=^(p\d+)_")
    from tf_medseg.data.dataset import DataSet
    data = DataSet.open(config.data)
    assert data.metadata["groups"] == ["p00", "p01", "p02", "p03"]
    val = {ex["scan"].numpy().decode() for ex in data.records("val")}
    assert len(val) == 4 and len({v.split("_")[0] for v in val}) == 2  # whole patients
    result, _, run, _ = train_evaluate(config, tmp_path)
    check_volume_metrics(result, ["ball", "box"])
    from tf_medseg.inference.predict import predict
    predict(run / "saved_model", root, tmp_path / "out", progress=False)  # finds images/
    assert len(list((tmp_path / "out").glob("p*_slice*.png"))) == 8


@pytest.mark.slow
def test_folder_per_class_masks_overlap(tmp_path):
    root = write_folder(tmp_path / "pngs", per_class=True, colour=True)
    config = tiny(tmp_path, "folder", root)
    from tf_medseg.data.dataset import DataSet
    labels = DataSet.open(config.data).labels
    assert labels.encoding == "bits" and not labels.exclusive
    assert labels.channels == ("R", "G", "B")
    result, _, run, _ = train_evaluate(config, tmp_path)
    check_volume_metrics(result, ["ball", "box"])
    from tf_medseg.inference.predict import predict
    predict(run / "saved_model", root / "images", tmp_path / "out", progress=False)
    mask = cv2.imread(str(tmp_path / "out" / "box" / "p00_slice0.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (32, 28) and set(np.unique(mask)) <= {0, 255}


def test_slice_axis_and_spacing(tmp_path):
    """Cases are read at their stored grid; data.slice_axis and data.spacing cut them."""
    from tf_medseg.data import geometry
    root = write_nnunet(tmp_path / "Dataset012_Axes", cases=2, channels=("MR",))
    index = volumes.index_source("nnunet", root)
    case = volumes.read_case(index, index.cases[0])
    assert case.image.shape == (32, 28, 6, 1) and case.spacing.tolist() == [1.5, 1.5, 4.0]
    auto, axis = geometry.cut(case.image, case.spacing)  # coarsest: axis 2 (4 mm)
    assert auto.shape == (6, 32, 28, 1) and int(axis) == 2
    across, axis = geometry.cut(case.image, case.spacing, 0, (3.0, 3.0))
    assert across.shape == (32, 14, 8, 1) and int(axis) == 0
    label, _ = geometry.cut(case.label[..., None], case.spacing, 0, (3.0, 3.0), nearest=True)
    assert label.shape == (32, 14, 8, 1) and set(np.unique(label.numpy())) <= {0, 1, 2}


@pytest.mark.slow
@pytest.mark.skipif(not CHAOS.is_dir(), reason=f"shared CHAOS sample not at {CHAOS}")
def test_real_chaos_sample_builds_and_reads(tmp_path):
    config = tiny(tmp_path, "nnunet", CHAOS, "data.num_folds=5", "data.image_size=[64,64]")
    from tf_medseg.data.dataset import DataSet
    from tf_medseg.data.pipeline import make_dataset
    data = DataSet.open(config.data)
    assert data.slices("all") == (365, 272)
    # the plan of chaos_t2.yaml from these records: 1.25 x 1.25 mm slices of 256 x 256
    # pixels in every scan, whole, pooled 5 times (base_filters 16 doubled to 512); 5% of
    # 10 x 256 x 256 x 36 voxels
    from tf_medseg.planning.planner import make_plan
    planned = make_plan(data, load_config("chaos_t2.yaml", [f"data.root={CHAOS}"]))
    values = planned.values
    assert values["data.slice_axis"] == "auto" and values["data.spacing"] is None
    assert values["data.image_size"] == [256, 256] and values["model.depth"] == 5
    assert values["data.batch_size"] == 18 and planned.network_3d.patch == (256, 256, 32)
    task = data.labels
    assert task.classes == ("liver", "right_kidney", "left_kidney", "spleen") and task.exclusive
    images, masks = next(iter(make_dataset(config, "val", dataset=data)))
    assert images.shape[1:] == (64, 64, 3) and masks.shape[1:] == (64, 64, 4)
    assert 0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.5
    # one short epoch, evaluated and predicted: NIfTI label maps with the input's grid
    import nibabel as nib

    from tf_medseg.inference.predict import predict
    from tf_medseg.training import train
    short = tiny(tmp_path, "nnunet", CHAOS, "data.num_folds=5", "data.image_size=[64,64]",
                 "train.steps_per_epoch=4")
    result = train(short, verbose=0)
    check_volume_metrics(result, list(task.classes))
    assert len(result["cases"]) == 2
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("chaos_001_0000.nii.gz", "chaos_003_0000.nii.gz"):
        (inputs / name).symlink_to(CHAOS / "imagesTr" / name)
    predict(tmp_path / "run" / "saved_model", inputs, tmp_path / "out", progress=False)
    for case in ("chaos_001", "chaos_003"):
        ours = nib.load(str(tmp_path / "out" / f"{case}.nii.gz"))
        theirs = nib.load(str(CHAOS / "imagesTr" / f"{case}_0000.nii.gz"))
        assert ours.shape == theirs.shape and np.allclose(ours.affine, theirs.affine)


@pytest.mark.slow
def test_benchmark_on_a_volume_source(tmp_path):
    from conftest import cli_here
    root = write_nnunet(tmp_path / "Dataset013_Bench", cases=2, channels=("MR",))
    proc = cli_here("-m", "tf_medseg", "benchmark", "--data-root", str(root), "--image-size",
                    "16", "16", "--seconds", "0.5", "--set", "model.base_filters=4",
                    "model.depth=2", "data.batch_size=4", "data.sampling=patch")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["source"] == "nnunet" and result["slices"] == 12
    assert result["sampling"] == "patch" and "sliding windows" in proc.stdout
    for key in ("pipeline_slices_per_s", "train_images_per_s", "infer_images_per_s",
                "infer_seconds_per_volume"):
        assert result[key] > 0, key
    assert np.isclose(result["pipeline_over_training"],
                      result["pipeline_slices_per_s"] / result["train_images_per_s"], rtol=0.01)
