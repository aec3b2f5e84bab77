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
    assert again.returncode == 2 and again.stderr.strip() == (
        f"error: {out} exists and is not an empty folder; choose another --out")
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


# ------------------------------------------------------------------ runtime and optimisation

def test_precision_policies_loss_scaling_and_jit_flags(tmp_path):
    import keras

    from tf_medseg.training import compiled_model
    config = load_config("unet.yaml", tiny_overrides(tmp_path))
    for policy, jit in (("mixed_float16", True), ("mixed_bfloat16", False),
                        ("float32", False)):
        model = compiled_model(config, policy, jit, steps_per_epoch=10)
        assert model.dtype_policy.name == policy and model.jit_compile is jit
        # float16 needs loss scaling (its range underflows small gradients); bfloat16 not.
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
            policy == "mixed_float16")
        assert model.outputs[0].dtype == "float32"
    policy, jit = resolve_runtime()
    cpuinfo = open("/proc/cpuinfo").read() if sys.platform == "linux" else ""
    if not tf.config.list_physical_devices("GPU"):
        assert jit is False
        assert policy == ("mixed_bfloat16" if "amx_bf16" in cpuinfo or "avx512_bf16" in cpuinfo
                          else "float32")


def test_warmup_cosine_step_and_plateau_schedules(tmp_path):
    from tf_medseg.training import Warmup, learning_rate_schedule, make_optimizer
    base = tiny_overrides(tmp_path) + ["train.learning_rate=0.01", "train.epochs=10",
                                       "train.warmup_epochs=2"]
    cosine = learning_rate_schedule(load_config("unet.yaml", base).train, steps_per_epoch=5)
    values = [float(cosine(s)) for s in range(50)]
    assert values[0] == pytest.approx(0.001) and values[9] == pytest.approx(0.01)
    assert values[10] == pytest.approx(0.01)
    assert values[49] == pytest.approx(0.01 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * 39 / 40))),
                                       rel=1e-4)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))  # decays after the warm-up
    step = learning_rate_schedule(load_config("unet.yaml", base + [
        "train.schedule=step", "train.step_epochs=3", "train.step_factor=0.1"]).train, 5)
    assert [round(float(step(s)), 6) for s in (10, 24, 25, 40)] == [0.01, 0.01, 0.001, 0.0001]
    config = load_config("unet.yaml", base + ["train.schedule=plateau"])
    assert learning_rate_schedule(config.train, 5) == 0.01
    assert float(Warmup.from_config(cosine.get_config())(20)) == pytest.approx(values[20])
    # AdamW leaves biases and batch-norm parameters out of the weight decay.
    optimizer = make_optimizer(load_config("unet.yaml", base).train, 5)
    import keras
    kernel, bias = keras.Variable(np.ones((2, 2)), name="kernel"), keras.Variable(
        np.ones(2), name="bias")
    optimizer.build([kernel, bias])
    assert optimizer._use_weight_decay(kernel) and not optimizer._use_weight_decay(bias)
    assert optimizer.weight_decay == pytest.approx(1e-4)


def test_tensorboard_has_classes_learning_rate_config_and_overlays(tiny_run):
    _, run, _ = tiny_run
    tags = {}
    for event_file in (run / "logs").rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(event_file)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(event_file.parent.name, set()).add(value.tag)
    assert {"epoch_learning_rate", "epoch_dice_stomach", "epoch_iou_large_bowel", "config"
            } <= tags["train"]
    assert {"epoch_dice_small_bowel", "epoch_score", "overlays (true | predicted)"
            } <= tags["validation"]


def test_best_checkpoint_kept_by_validation_score(tiny_run):
    _, run, result = tiny_run
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    scores = [float(r["val_score"]) for r in rows]
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["monitor"] == "val_score" and best["epoch"] == int(np.argmax(scores))
    assert best["value"] == pytest.approx(max(scores))
    assert result["kept_epoch"] == best["epoch"]
    # The kept model's score on whole scans is what the history said for its epoch.
    assert result["score"] == pytest.approx(best["value"], abs=1e-3)
    assert not (run / "checkpoints" / "backup").exists()  # removed after a finished run


# --------------------------------------------------------------------------------- survival

def _tiny_train_args(tmp_path, *extra):
    return ["train.py", "--config", "unet.yaml", "--set", *tiny_overrides(tmp_path), *extra]


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    proc = _cli(*_tiny_train_args(tmp_path, "train.learning_rate=1e30",
                                  "train.warmup_epochs=0"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loss became NaN in epoch 1, batch ")
    assert "lower train.learning_rate" in last
    assert not (tmp_path / "run" / "history.csv").exists()
    assert not (tmp_path / "run" / "checkpoints" / "backup").exists()


def test_kill_9_then_the_same_command_resumes(tmp_path):
    import os
    import signal
    import time
    args = _tiny_train_args(tmp_path, "train.epochs=5", "train.monitor=val_dice",
                            "train.overlay_slices=0")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((run / "checkpoints" / "backup").glob("ckpt-*.index"))) and len(
                (run / "history.csv").read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len((run / "history.csv").read_text().splitlines()) - 1
    assert 2 <= killed_at < 5

    # A changed model cannot continue that run: one line, nothing touched.
    other = _cli(*args, "model.base_filters=8")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines()[-1].startswith(
        f"error: model.base_filters: {run} holds an unfinished run with "
        f"model.base_filters 4, this config has 8; ")

    again = _cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming after epoch" in again.stdout
    with (run / "history.csv").open() as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == [0, 1, 2, 3, 4]  # each epoch once
    assert json.loads((run / "metrics.json").read_text())["epochs_trained"] == 5
    assert (run / "saved_model" / "saved_model.pb").is_file()


def _free_ports(count):
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_on_loopback(tmp_path):
    """Two worker processes on 127.0.0.1 train in sync; only the chief writes outputs."""
    import os
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    args = _tiny_train_args(tmp_path, "train.strategy=multi_worker", "train.epochs=2")
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    prints = [[line for line in out.splitlines() if line.startswith("Weights fingerprint")]
              for out, _ in outs]
    assert prints[0] and prints[0] == prints[1]  # the same weights on both workers
    assert "the chief writes the outputs" in outs[1][0]
    run = tmp_path / "run"
    runtime = json.loads((run / "runtime.json").read_text())
    assert runtime["strategy"] == "MultiWorkerMirroredStrategy" and runtime["replicas"] == 2
    with (run / "history.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    assert (run / "saved_model" / "saved_model.pb").is_file()
    assert (run / "metrics.json").is_file()


def test_multi_worker_without_tf_config_is_a_config_error(tmp_path):
    import os
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([sys.executable, *_tiny_train_args(
        tmp_path, "train.strategy=multi_worker")], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: train.strategy: multi_worker needs the TF_CONFIG environment variable")


def test_history_drops_epochs_after_the_backup_and_keeps_new_columns(tmp_path):
    from tf_medseg.training import HistoryLog, read_history
    path = tmp_path / "history.csv"
    first = HistoryLog(path, initial_epoch=0)
    first.on_train_begin()
    for epoch in range(3):  # epoch 2 was logged, then the process died before its backup
        first.on_epoch_end(epoch, {"loss": 1.0 - epoch / 10, "val_dice": epoch / 10})
    resumed = HistoryLog(path, initial_epoch=2)
    resumed.on_train_begin()
    assert [r["epoch"] for r in read_history(path)] == ["0", "1"]
    resumed.on_epoch_end(2, {"loss": 0.5, "val_dice": 0.6, "val_score": 0.8})  # new monitor
    rows = read_history(path)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["val_score"] == "" and rows[2]["val_score"] == "0.8"


def test_early_stopping_and_plateau_on_a_stalled_run(tmp_path):
    # A learning rate too small to move float32 weights and no batch norm: the validation
    # figures repeat exactly, so nothing improves after the first epoch.
    config = load_config("unet.yaml", tiny_overrides(tmp_path) + [
        "train.epochs=6", "train.learning_rate=1e-30", "train.warmup_epochs=0",
        "model.batch_norm=false", "train.schedule=plateau", "train.plateau_patience=1",
        "train.early_stopping=2", "train.monitor=val_dice", "train.overlay_slices=0",
        "export.saved_model=false"])
    result = train(config, verbose=0)
    with (tmp_path / "run" / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # stopped after 2 epochs without gain
    assert len({r["val_dice"] for r in rows}) == 1
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates[:2] == pytest.approx([1e-30, 1e-30]) and rates[2] == pytest.approx(5e-31)
    assert result["epochs_trained"] == 3 and result["kept_epoch"] == 0


def test_deterministic_ops_train_and_repeat(tmp_path):
    """train.deterministic: two runs give the same history, to the last digit (the first
    builds the records, the second reuses them)."""
    histories = []
    for name in ("a", "b"):
        args = _tiny_train_args(tmp_path, "train.deterministic=true", "train.epochs=1",
                                "train.monitor=val_dice", f"train.run_dir={tmp_path / name}",
                                "train.overlay_slices=0", "export.saved_model=false")
        proc = _cli(*args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert ("Preparing " in proc.stdout) == (name == "a")
        histories.append((tmp_path / name / "history.csv").read_text())
    assert histories[0] == histories[1]
    runtime = json.loads((tmp_path / "a" / "runtime.json").read_text())
    assert runtime["deterministic_ops"] is True
