"""evaluate-folder: label maps against ground truth (NIfTI and PNG), values checked by hand;
and data.fold all: train on every case, predict and score an external test folder."""

import json
import shutil

import cv2
import nibabel as nib
import numpy as np
import pytest

from tf_medseg.errors import MedsegError
from tf_medseg.workflows.evaluate_folder import evaluate_folder

from synthetic_volumes import AFFINE, write_nnunet, write_nnunet_2d


def _shifted_copy(src, dst, ending):
    """dst: src's label maps with class 1 (ball) moved by one voxel along axis 0."""
    dst.mkdir()
    for p in sorted(src.iterdir()):
        if ending == ".png":
            label = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        else:
            label = np.asarray(nib.load(str(p)).dataobj)
        moved = label.copy()
        moved[moved == 1] = 0
        moved[np.roll(label == 1, 1, axis=0)] = 1
        if ending == ".png":
            cv2.imwrite(str(dst / p.name), moved)
        else:
            nib.save(nib.Nifti1Image(moved, AFFINE), str(dst / p.name))


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_nifti_predictions_against_labels(tmp_path):
    root = write_nnunet(tmp_path / "Dataset001_Tiny", cases=2)
    pred = tmp_path / "pred"
    _shifted_copy(root / "labelsTr", pred, ".nii.gz")
    result, out = evaluate_folder(root / "labelsTr", predictions=pred, progress=False)
    assert out == tmp_path / "evaluation" and (out / "cases.csv").is_file()
    assert result["classes"] == ["ball", "box"] and result["scored_cases"] == 2
    truth = np.asarray(nib.load(str(root / "labelsTr" / "case_000.nii.gz")).dataobj)
    moved = np.asarray(nib.load(str(pred / "case_000.nii.gz")).dataobj)
    row = json.loads((out / "metrics.json").read_text())["cases"][0]
    assert row["case"] == "case_000"
    assert row["dice_ball"] == pytest.approx(_dice(moved == 1, truth == 1), abs=1e-6)
    assert row["dice_box"] == pytest.approx(1.0) and row["hd95_box"] == pytest.approx(0.0)
    assert row["hd95_ball"] == pytest.approx(1.5, abs=1e-6)  # one voxel along axis 0: 1.5 mm


def test_a_folder_against_itself_and_a_prediction_on_another_grid_are_refused(tmp_path):
    """Scoring the labels against themselves (the same folder, or a link to a label) says
    nothing; a prediction whose affine differs from its label's (another origin or spacing)
    is not on the label's grid: each is one line, and no report is written."""
    import os
    root = write_nnunet(tmp_path / "Dataset001_Tiny", cases=2)
    labels = root / "labelsTr"
    with pytest.raises(MedsegError, match=r"--predictions .*labelsTr is --labels: a folder "
                                          r"scored against itself"):
        evaluate_folder(labels, predictions=labels, out_dir=tmp_path / "e1", progress=False)
    linked = tmp_path / "linked"
    linked.mkdir()
    for p in labels.iterdir():
        os.symlink(p, linked / p.name)
    with pytest.raises(MedsegError, match=r"case_000\.nii\.gz: is its own label"):
        evaluate_folder(labels, predictions=linked, out_dir=tmp_path / "e2", progress=False)
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in sorted(labels.iterdir()):
        img = nib.load(str(p))
        affine = img.affine.copy()
        affine[:3, 3] += (5.0, 0.0, 0.0)  # the same voxels 5 mm away
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(moved / p.name))
    with pytest.raises(MedsegError, match=r"case_000\.nii\.gz: its affine differs from its "
                                          r"label case_000\.nii\.gz's \(origin .*; resample"):
        evaluate_folder(labels, predictions=moved, out_dir=tmp_path / "e3", progress=False)
    assert not any((tmp_path / e).exists() for e in ("e1", "e2", "e3"))


def test_png_predictions_against_labels_with_a_dataset_json(tmp_path):
    root = write_nnunet_2d(tmp_path / "Dataset002_Png", cases=2)
    labels = tmp_path / "labels"
    shutil.copytree(root / "labelsTr", labels)  # no dataset.json beside it
    pred = tmp_path / "pred"
    _shifted_copy(labels, pred, ".png")
    with pytest.raises(MedsegError, match="pass --model .* or --dataset-json"):
        evaluate_folder(labels, predictions=pred, progress=False)
    result, out = evaluate_folder(labels, predictions=pred, out_dir=tmp_path / "report",
                                  dataset_json=root / "dataset.json", progress=False)
    truth = cv2.imread(str(labels / "img_000.png"), cv2.IMREAD_UNCHANGED)
    moved = cv2.imread(str(pred / "img_000.png"), cv2.IMREAD_UNCHANGED)
    row = result_row = [r for r in json.loads((out / "metrics.json").read_text())["cases"]
                        if r["case"] == "img_000"][0]
    assert result_row["dice_ball"] == pytest.approx(_dice(moved == 1, truth == 1), abs=1e-6)
    assert row["hd95_ball"] == pytest.approx(1.0)  # pixels
    (pred / "img_000.png").unlink()
    with pytest.raises(MedsegError, match="img_000.png: no counterpart"):
        evaluate_folder(labels, predictions=pred, out_dir=tmp_path / "report",
                        dataset_json=root / "dataset.json", progress=False)
    (tmp_path / "report" / "notes.txt").write_text("mine")
    with pytest.raises(MedsegError, match="holds other files than a report"):
        evaluate_folder(labels, predictions=pred, out_dir=tmp_path / "report",
                        dataset_json=root / "dataset.json", progress=False)


@pytest.mark.slow
def test_tif_labels_pair_with_png_predictions_and_two_endings_are_refused(tmp_path):
    root = write_nnunet_2d(tmp_path / "Dataset003_Tif", cases=2)
    labels = tmp_path / "labels"
    labels.mkdir()
    for p in sorted((root / "labelsTr").iterdir()):
        cv2.imwrite(str(labels / (p.stem + ".tif")), cv2.imread(str(p), cv2.IMREAD_UNCHANGED))
    pred = tmp_path / "pred"
    _shifted_copy(root / "labelsTr", pred, ".png")
    result, _ = evaluate_folder(labels, predictions=pred, out_dir=tmp_path / "report",
                                dataset_json=root / "dataset.json", progress=False)
    png, _ = evaluate_folder(root / "labelsTr", predictions=pred, out_dir=tmp_path / "png",
                             dataset_json=root / "dataset.json", progress=False)
    assert result["scored_cases"] == 2 and result["dice"] == pytest.approx(png["dice"])
    shutil.copy(root / "labelsTr" / "img_000.png", labels)
    with pytest.raises(MedsegError, match="two label files of case img_000"):
        evaluate_folder(labels, predictions=pred, out_dir=tmp_path / "report",
                        dataset_json=root / "dataset.json", progress=False)


def test_fold_all_trains_on_every_case_and_scores_an_external_folder(tmp_path, capsys):
    from tf_medseg.cli import main
    from tf_medseg.config import load_config
    from tf_medseg.training import train
    root = write_nnunet(tmp_path / "Dataset003_Train", cases=3, channels=("MR",))
    test = write_nnunet(tmp_path / "Dataset004_Test", cases=2, channels=("MR",))
    config = load_config("tiny.yaml", [
        "data.source=nnunet", f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
        "data.fold=all", "data.image_size=[32,32]", "data.batch_size=4", "data.context=[0]",
        "model.base_filters=4", "model.depth=2", "train.epochs=2",
        f"train.run_dir={tmp_path / 'run'}", "train.max_minutes=null"])
    result = train(config, verbose=0)
    assert result["fold"] == "all" and result["train_cases"] == 3
    assert result["kept_epoch"] == 2 and "dice" not in result
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_" not in history[0]
    assert not (tmp_path / "run" / "checkpoints" / "best.json").exists()
    capsys.readouterr()
    assert main(["evaluate-folder", "--model", str(tmp_path / "run" / "saved_model"),
                 "--images", str(test / "imagesTr"), "--labels", str(test / "labelsTr"),
                 "--output", str(tmp_path / "test_report")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("Scored 2 case(s): dice ") and "dice_ball" in line
    report = tmp_path / "test_report"
    assert sorted(p.name for p in (report / "predictions").glob("*.nii.gz")) == [
        "case_000.nii.gz", "case_001.nii.gz"]
    scored = json.loads((report / "metrics.json").read_text())
    again, _ = evaluate_folder(test / "labelsTr", predictions=report / "predictions",
                               out_dir=tmp_path / "again", progress=False)  # prediction.json
    assert again["dice"] == pytest.approx(scored["dice"])
