"""One tiny end-to-end run: phantom -> TFDS -> tf.data -> fit -> metrics -> SavedModel."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tf_medseg.config import CLASSES, load_config
from tf_medseg.training import resolve_runtime, train

from conftest import ROOT, tiny_overrides


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    config = load_config("unet.yaml", tiny_overrides(tmp))
    result = train(config, verbose=0)
    return config, tmp / "run", result


def test_run_directory(tiny_run):
    config, run, result = tiny_run
    for name in ("config.yaml", "runtime.json", "history.csv", "metrics.json",
                 "checkpoints/best.weights.h5", "saved_model/saved_model.pb",
                 "saved_model/metadata.json"):
        assert (run / name).exists(), name
    assert list((run / "logs" / "train").glob("events.out.tfevents.*"))
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["base_filters"] == 4
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "dice", "iou", "val_dice", "val_dice_stomach", "val_iou_stomach"
            } <= set(rows[0])
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("dice", "hausdorff", "score", *(f"dice_{c}" for c in CLASSES)):
        assert key in metrics
    assert 0 <= metrics["dice"] <= 1 and 0 <= metrics["hausdorff"] <= 1
    assert metrics["score"] == pytest.approx(0.4 * metrics["dice"]
                                             + 0.6 * (1 - metrics["hausdorff"]))
    assert len(metrics["case_days"]) == 4 and metrics == result | {}
    runtime = json.loads((run / "runtime.json").read_text())
    assert (runtime["precision"], runtime["jit_compile"]) == resolve_runtime()


def test_saved_model_serves_raw_slices(tiny_run):
    config, run, _ = tiny_run
    loaded = tf.saved_model.load(str(run / "saved_model"))
    serve = loaded.signatures["serving_default"]
    channels = len(config.data.context)
    raw = tf.constant(np.random.default_rng(0).integers(0, 4000, (3, 310, 360, channels)),
                      tf.uint16)
    out = serve(image=raw)["probabilities"].numpy()
    assert out.shape == (3, 310, 360, 3)
    assert out.min() >= 0 and out.max() <= 1
    meta = json.loads((run / "saved_model" / "metadata.json").read_text())
    assert meta["classes"] == list(CLASSES)
    assert meta["context_offsets"] == list(config.data.context)
    assert meta["input"]["dtype"] == "uint16" and meta["config_digest"] == config.digest()


def _cli(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_evaluate_cli_scores_the_export_like_training(tiny_run):
    config, run, result = tiny_run
    proc = _cli("-m", "tf_medseg", "evaluate", "--model", str(run / "saved_model"),
                "--config", str(run / "config.yaml"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((run / "evaluation" / "metrics.json").read_text())
    # The exported graph on the same validation scans gives the figures training wrote.
    for key in ("dice", "hausdorff", "score", *(f"dice_{c}" for c in CLASSES)):
        assert report[key] == pytest.approx(result[key], abs=2e-3), key
    with (run / "evaluation" / "case_days.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["case_day"] for r in rows] == [r["case_day"] for r in report["case_days"]]
    assert len(rows) == 4 and {f"hausdorff_{c}" for c in CLASSES} <= set(rows[0])
    for row in rows:
        assert float(row["score"]) == pytest.approx(
            0.4 * float(row["dice"]) + 0.6 * (1 - float(row["hausdorff"])), abs=1e-5)
    assert "score" in proc.stdout.strip().splitlines()[-1]


def test_evaluate_refuses_a_mismatched_config(tiny_run):
    _, run, _ = tiny_run
    proc = _cli("-m", "tf_medseg", "evaluate", "--model", str(run / "saved_model"),
                "--config", str(run / "config.yaml"), "--set", "data.context=[0]")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "the model was trained with data.context [-2, 0, 2], the config has [0]; pass the "
        "run's config.yaml")


def test_attention_unet_deep_supervision_and_tversky(tmp_path):
    config = load_config("attention_unet.yaml", tiny_overrides(tmp_path) + [
        "model.deep_supervision=true", "train.loss={bce: 0.5, focal_tversky: 0.5}",
        "train.epochs=1"])
    result = train(config, verbose=0)
    assert 0 <= result["score"] <= 1
    loaded = tf.saved_model.load(str(tmp_path / "run" / "saved_model"))
    raw = tf.zeros((2, 40, 50, len(config.data.context)), tf.uint16)
    assert loaded.signatures["serving_default"](image=raw)["probabilities"].shape == (
        2, 40, 50, 3)


def test_cli_config_error_is_one_line():
    proc = _cli("train.py", "--config", "unet.yaml", "--set", "train.epocs=1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: train.epocs: unknown key; did you mean train.epochs? (allowed: "
        + proc.stderr.split("(allowed: ")[1].strip())
    assert "Traceback" not in proc.stderr


def test_cli_phantom(tmp_path):
    out = tmp_path / "ph"
    proc = _cli("-m", "tf_medseg", "phantom", "--out", str(out), "--cases", "1", "--days", "2",
                "--slices", "8")
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.rglob("*.png"))) == 16 and (out / "train.csv").is_file()
    again = _cli("-m", "tf_medseg", "phantom", "--out", str(out))
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
    assert "Traceback" not in again.stderr


def test_bad_data_stops_before_the_run_directory_is_touched(tiny_phantom, tmp_path):
    root = tmp_path / "kaggle"
    shutil.copytree(tiny_phantom, root)
    csv_path = root / "train.csv"
    lines = csv_path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if i and not line.endswith(","))
    lines[row] += " 7"  # odd number of RLE values
    csv_path.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    proc = _cli("train.py", "--config", "unet.yaml", "--set", "data.source=uwmgi",
                f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}", "data.num_folds=2",
                f"train.run_dir={run}")
    assert proc.returncode == 2
    sid, cls = lines[row].split(",")[:2]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {csv_path}: {sid} {cls}: RLE has an odd number of values "
        f"({len(lines[row].split(',')[2].split())}); expected 'start length' pairs")
    assert not run.exists()
    assert not list((tmp_path / "tfds").rglob("*.tfrecord*"))


def test_benchmark_prints_one_json_line_last(tiny_phantom):
    proc = _cli("-m", "tf_medseg", "benchmark", "--data-root", str(tiny_phantom),
                "--image-size", "32", "32", "--seconds", "0.5", "--set", "model.base_filters=4",
                "model.depth=2", "data.batch_size=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("pipeline_slices_per_s", "train_images_per_s", "infer_images_per_s",
                "peak_rss_mb"):
        assert result[key] > 0, key
    assert result["image_size"] == [32, 32] and result["context"] == [-2, 0, 2]
    assert result["slices"] == 8 * 12
