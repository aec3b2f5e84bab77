"""One predictor: what ``evaluate`` reports is what ``predict`` writes. The validation figures of
a tiny run, recomputed from nothing but predict's written outputs (a Kaggle submission CSV;
NIfTI label maps) and the truth, equal evaluate's, and equal the training's own metrics.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tf_medseg.data import rle
from tf_medseg.data.dataset import DataSet
from tf_medseg.data.sources import kaggle_inventory
from tf_medseg.evaluation.scoring import Scoring
from tf_medseg.inference.predict import predict
from tf_medseg.workflows.evaluate import evaluate_saved_model

from synthetic_volumes import write_nnunet

KEYS = ("dice", "hausdorff", "score", "dice_pooled")


@pytest.mark.slow
def test_kaggle_layout(tiny_run, tmp_path):
    config, run, trained = tiny_run
    data = DataSet.open(config.data)
    val = data.split_scans("val")
    source = Path(data.metadata["source"])  # the phantom, written in the Kaggle layout
    inputs = tmp_path / "inputs"
    for scan in val:
        case = scan.name.split("_")[0]
        (inputs / "train" / case).mkdir(parents=True, exist_ok=True)
        (inputs / "train" / case / scan.name).symlink_to(source / "train" / case / scan.name)
    predict(run / "saved_model", inputs, tmp_path / "submission.csv", progress=False)
    evaluated, _ = evaluate_saved_model(run / "saved_model", config,
                                        out_dir=tmp_path / "evaluation")

    with (tmp_path / "submission.csv").open(newline="") as f:
        written = {(r["id"], r["class"]): r["predicted"] for r in csv.DictReader(f)}
    scoring = Scoring(data.labels)
    for scan in kaggle_inventory.iter_scans(source):
        if scan.case_day not in {s.name for s in val}:
            continue
        depth, height, width = scan.image.shape
        pred = np.zeros((depth, height, width, 3), bool)
        for i, number in enumerate(scan.slice_numbers):
            for c, cls in enumerate(data.labels.classes):
                sid = f"{scan.case_day}_slice_{number:04d}"
                pred[i, ..., c] = rle.decode(written[(sid, cls)], height, width) > 0
        scoring.add(scan.case_day, pred, scan.mask.astype(bool))
    from_csv, rows = scoring.result()
    assert len(rows) == len(val) == 4
    for key in KEYS:
        assert from_csv[key] == pytest.approx(evaluated[key], abs=1e-12), key
        # training scored the model in memory with the export's own functions
        assert trained[key] == pytest.approx(evaluated[key], abs=1e-6), key


@pytest.mark.slow
def test_nnunet_data_set(tmp_path):
    import nibabel as nib

    from tf_medseg.config import load_config
    from tf_medseg.evaluation import metrics
    from tf_medseg.training import train
    root = write_nnunet(tmp_path / "Dataset009_Tiny")
    config = load_config("tiny.yaml", [
        "data.source=nnunet", f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
        "data.batch_size=4", "data.context=[-1,0,1]", "train.epochs=1",
        f"train.run_dir={tmp_path / 'run'}", "train.overlay_slices=0"])
    trained = train(config, verbose=0)
    run = tmp_path / "run"
    evaluated, report = evaluate_saved_model(run / "saved_model", config,
                                             out_dir=tmp_path / "evaluation")
    val = [row["case"] for row in json.loads((report / "metrics.json").read_text())["cases"]]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for case in val:
        for image in (root / "imagesTr").glob(f"{case}_*.nii.gz"):
            (inputs / image.name).symlink_to(image)
    predict(run / "saved_model", inputs, tmp_path / "labels", progress=False)

    labels = DataSet.open(config.data).labels
    dices, distances = [], []
    for case in val:
        written = np.asanyarray(nib.load(str(tmp_path / "labels" / f"{case}.nii.gz")).dataobj)
        truth_file = nib.load(str(root / "labelsTr" / f"{case}.nii.gz"))
        truth = np.asanyarray(truth_file.dataobj)
        pred = np.stack([written == v for v in labels.label_values], -1)
        true = np.stack([np.isin(truth, v) for v in labels.values], -1)
        spacing = truth_file.header.get_zooms()[:3]
        dices.append(metrics.volume_dice(pred, true))
        distances.append(metrics.hd95(pred, true, spacing))
    from_files = metrics.summarize_volumes(dices, distances, labels.classes)
    for key in ("dice", "hd95", *(f"dice_{c}" for c in labels.classes)):
        assert from_files[key] == pytest.approx(evaluated[key], abs=1e-9), key
        assert trained[key] == pytest.approx(evaluated[key], abs=1e-6), key
