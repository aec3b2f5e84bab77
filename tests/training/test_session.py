"""train(): the run directory, the export, bad data, NaN, kill -9 and resume, determinism."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tf_medseg.config import load_config
from tf_medseg.data.sources.kaggle import CLASSES
from tf_medseg.run_dir import RunDir
from tf_medseg.training import resolve_runtime, train

from conftest import ROOT, cli, cli_here, tiny_overrides, tiny_train_args


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
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # 1-based, as the console
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


def test_best_checkpoint_kept_by_validation_score(tiny_run):
    _, run, result = tiny_run
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    scores = [float(r["val_score"]) for r in rows]
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["monitor"] == "val_score" and best["epoch"] == int(np.argmax(scores)) + 1
    assert best["value"] == pytest.approx(max(scores))
    assert result["kept_epoch"] == best["epoch"]
    # The kept model's score on whole scans is what the history said for its epoch.
    assert result["score"] == pytest.approx(best["value"], abs=1e-3)
    assert not (run / "checkpoints" / "backup").exists()  # removed after a finished run


@pytest.mark.slow
def test_attention_unet_deep_supervision_and_tversky(tmp_path):
    config = load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        "model.name=attention_unet", "model.deep_supervision=true", "model.depth=3",
        "train.loss={bce: 0.5, focal_tversky: 0.5}", "train.epochs=1"])
    result = train(config, verbose=0)
    assert 0 <= result["score"] <= 1
    loaded = tf.saved_model.load(str(tmp_path / "run" / "saved_model"))
    raw = tf.zeros((2, 40, 50, len(config.data.context)), tf.uint16)
    assert loaded.signatures["serving_default"](image=raw)["probabilities"].shape == (
        2, 40, 50, 3)


@pytest.mark.slow
def test_bad_data_stops_before_the_run_directory_is_touched(tiny_phantom, tmp_path):
    root = tmp_path / "kaggle"
    shutil.copytree(tiny_phantom, root)
    csv_path = root / "train.csv"
    lines = csv_path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if i and not line.endswith(","))
    lines[row] += " 7"  # odd number of RLE values
    csv_path.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    proc = cli_here("train.py", "--config", "tiny.yaml", "--set", "data.source=uwmgi",
                    f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
                    "data.num_folds=2", f"train.run_dir={run}")
    assert proc.returncode == 2
    sid, cls = lines[row].split(",")[:2]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {csv_path}: {sid} {cls}: RLE has an odd number of values "
        f"({len(lines[row].split(',')[2].split())}); expected 'start length' pairs")
    assert not run.exists()
    assert not list((tmp_path / "tfds").rglob("*.tfrecord*"))


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message(tmp_path):
    proc = cli_here(*tiny_train_args(tmp_path, "train.learning_rate=1e30",
                                     "train.warmup_epochs=0"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loss became NaN in epoch 1, batch ")
    assert "lower train.learning_rate" in last
    assert not (tmp_path / "run" / "history.csv").exists()
    assert not (tmp_path / "run" / "checkpoints" / "backup").exists()


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes(tmp_path):
    import os
    import signal
    import time
    extra = ["train.epochs=4", "train.monitor=val_dice", "train.overlay_slices=0"]
    args = tiny_train_args(tmp_path, *extra)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        # RunDir.has_backup: the `checkpoint` file a rerun resumes by, not the index alone.
        if RunDir(run).has_backup() and len(
                (run / "history.csv").read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len((run / "history.csv").read_text().splitlines()) - 1
    assert 2 <= killed_at < 4
    history = (run / "history.csv").read_bytes()

    # A changed model cannot continue that run: one line, nothing touched.
    from tf_medseg.errors import ConfigError
    with pytest.raises(ConfigError) as refused:
        train(load_config("tiny.yaml", tiny_overrides(tmp_path) + extra
                          + ["model.base_filters=8"]), verbose=0)
    assert str(refused.value).startswith(
        f"model.base_filters: {run} holds an unfinished run with "
        f"model.base_filters 4, this config has 8; ")
    assert (run / "history.csv").read_bytes() == history

    again = cli_here(*args)  # the same command (in this process: the kill was the other's)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming after epoch" in again.stdout
    with (run / "history.csv").open() as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == [1, 2, 3, 4]  # each epoch once
    assert json.loads((run / "metrics.json").read_text())["epochs_trained"] == 4
    assert (run / "saved_model" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_deterministic_ops_train(tmp_path):
    """train.deterministic: the run trains with TensorFlow's op determinism on (a setting of
    the whole process: in a process of its own) and says so in runtime.json. That two runs
    repeat to the last digit is tested without it (on this CPU it holds regardless:
    tests/scenarios/test_reproducible.py); on a GPU the setting is what makes it hold."""
    args = tiny_train_args(tmp_path, "train.deterministic=true", "train.epochs=1",
                           "train.monitor=val_dice", "train.overlay_slices=0",
                           "export.saved_model=false")
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) == 2
    runtime = json.loads((tmp_path / "run" / "runtime.json").read_text())
    assert runtime["deterministic_ops"] is True
