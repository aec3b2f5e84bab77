"""3D networks (``model.dims: 3``) end to end at tiny shapes: anisotropic volumes resampled
across their slices, 3D patches with per-axis pooling and kernels, training on two logical CPUs
under MirroredStrategy in mixed precision with XLA, resumed, exported, and served in 3D sliding
windows that equal the same windows computed step by step in Python."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tf_medseg.run_dir import RunDir

from synthetic_volumes import write_nnunet

ROOT = Path(__file__).resolve().parents[2]

# 32 x 28 pixels of 1 mm, 12 slices 2.5 mm apart; resampled to 2 mm across the slices (15),
# patches of 8 slices x 16 x 16 pixels pooled in-plane first, then along every axis.
SETTINGS = [
    "data.source=nnunet", "data.sampling=patch", "model.dims=3", "data.context=[0]",
    "data.image_size=[8,16,16]", "data.spacing=[2.0,1.0,1.0]", "data.batch_size=2",
    "data.num_folds=2", "model.base_filters=4", "model.depth=2",
    "model.strides=[[1,2,2],[2,2,2]]", "model.kernels=[[1,3,3],[3,3,3],[3,3,3]]",
    "train.steps_per_epoch=2", "train.epochs=3", "train.max_minutes=null", "train.overlay_slices=2",
    "train.monitor=val_dice", "augment.elastic=0.5",
]

SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_medseg.config import load_config
    from tf_medseg.training import train
    train(load_config("tiny.yaml", json.loads(sys.argv[1])), verbose=1)
""")


def _train_killed(settings, wait_for_epochs: int, run: Path):
    """Train in a subprocess on two logical CPUs; kill -9 it once ``wait_for_epochs`` epochs
    are in history.csv and a checkpoint is backed up."""
    import os
    import signal
    import time
    args = [sys.executable, "-c", SCRIPT, json.dumps(settings)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    history = run / "history.csv"
    while time.monotonic() < deadline and proc.poll() is None:
        # The condition a rerun resumes by: TensorFlow's `checkpoint` file names a written
        # backup (its index alone may precede it, and a kill between them leaves none).
        if (RunDir(run).has_backup() and history.is_file()
                and len(history.read_text().splitlines()) > wait_for_epochs):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_3d_unet_trains_resumes_exports_and_serves_in_3d_windows(tmp_path, capsys):
    import nibabel as nib
    import tensorflow as tf

    from tf_medseg.config import load_config
    from tf_medseg.data import geometry, normalization
    from tf_medseg.inference.predict import predict
    from tf_medseg.models.sliding_window import sliding_window
    from tf_medseg.workflows.evaluate import evaluate_saved_model
    root = write_nnunet(tmp_path / "Dataset011_Volumes", channels=("T2",), shape=(32, 28, 12),
                        spacings=[(1.0, 1.0, 2.5)] * 4)
    settings = SETTINGS + [f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
                           "train.precision=mixed_bfloat16", f"train.run_dir={tmp_path / 'run'}"]
    run = tmp_path / "run"
    _train_killed(settings + ["train.strategy=mirrored"], wait_for_epochs=1, run=run)
    runtime = json.loads((run / "runtime.json").read_text())
    assert runtime["strategy"] == "MirroredStrategy" and runtime["replicas"] == 2
    assert runtime["precision"] == "mixed_bfloat16"
    # The same settings resume it (on one device, in this process: train.strategy may change).
    from tf_medseg.training import train
    report = train(load_config("tiny.yaml", settings), verbose=1)
    assert "resuming after epoch" in capsys.readouterr().out
    with (run / "history.csv").open() as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["1", "2", "3"]

    export = run / "saved_model"
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["model_dims"] == 3 and meta["model_input_size"] == [8, 16, 16]
    assert meta["spacing"] == [2.0, 1.0, 1.0]
    config = load_config("tiny.yaml", settings)
    evaluation, _ = evaluate_saved_model(export, config)
    assert np.isclose(evaluation["dice"], report["dice"], atol=1e-6)

    # The export's 3D windows over a whole volume (15 x 32 x 28 after resampling, larger
    # than the patch on every axis) equal the network's windows computed here.
    loaded = tf.saved_model.load(str(export))
    image = nib.load(str(root / "imagesTr" / "case_000_0000.nii.gz")).get_fdata()
    slices, axis = geometry.cut(image[..., None].astype(np.float32), (1.0, 1.0, 2.5),
                                target=(2.0, 1.0, 1.0))
    assert int(axis) == 2 and slices.shape == (15, 32, 28, 1)
    params = loaded.signatures["normalization"](volume=slices)["params"]
    served = loaded.signatures["serving_scaled"](image=slices, params=params)["probabilities"]
    assert served.shape == (15, 32, 28, 2)
    x = normalization.apply(slices, tf.cast(params, tf.float32))[None]
    logits = sliding_window(lambda p: loaded.signatures["logits"](image=p)["logits"], x,
                            (8, 16, 16), 0.5)[0]
    assert np.abs(served.numpy() - tf.nn.softmax(logits)[..., 1:].numpy()).max() < 1e-4

    out = tmp_path / "pred"
    predict(export, root / "imagesTr", out, progress=False)
    label = nib.load(str(out / "case_000.nii.gz"))
    assert label.shape == (32, 28, 12)  # back on the stored grid
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2}


def test_3d_training_step_under_xla_in_mixed_precision(tmp_path):
    """The 3D network's step compiled by XLA in mixed_bfloat16 (as a GPU runs it, with
    mixed_float16's loss scaling checked in tests/training/test_loop.py)."""
    import tensorflow as tf

    from tf_medseg.config import load_config

    from conftest import compiled, kaggle_trainer
    config = load_config("tiny.yaml", SETTINGS[1:12])
    model = compiled(config, "mixed_bfloat16", True, steps=10)
    assert model.jit_compile and model.input_shape == (None, 8, 16, 16, 1)
    trainer = kaggle_trainer(model, config)
    rng = np.random.default_rng(0)
    batch = (tf.constant(rng.random((2, 8, 16, 16, 1)), tf.float32),
             tf.constant(rng.random((2, 8, 16, 16, 3)) > 0.8, tf.float32))
    before = [w.copy() for w in model.get_weights()]
    loss_sum, n, inter, total = trainer.train_step(batch)
    assert np.isfinite(loss_sum.numpy()) and float(n) == 2 and inter.shape == (3,)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    assert model.layers[1].compute_dtype == "bfloat16"


def test_3d_settings_are_checked_up_front():
    from tf_medseg.config import load_config
    from tf_medseg.errors import ConfigError
    base = ["model.dims=3", "data.sampling=patch", "data.context=[0]",
            "data.image_size=[4,16,16]", "model.depth=2"]
    assert load_config("tiny.yaml", base).model.dims == 3
    for extra, message in (
            (["data.image_size=[16,16]"], "data.image_size: model.dims 3 needs [slices, "
                                          "height, width], got [16, 16]"),
            (["data.context=[-1,0,1]"], "data.context: model.dims 3 needs [0]"),
            (["data.sampling=resize"], "data.sampling: model.dims 3 needs patch"),
            (["model.strides=[[1,2,2]]"], "model.strides: needs 2 entries of 3 values"),
            (["model.strides=[[1,2,2],[2,2,2]]", "data.image_size=[3,16,16]"],
             "data.image_size: 3x16x16 must be divisible by the product of model.strides = "
             "2x4x4"),
            (["data.image_size=[6,16,16]"], "data.image_size: 6x16x16 must be divisible by "
                                            "2**model.depth = 4"),
            (["model.kernels=[[3,3,3],[3,3,3]]"], "model.kernels: needs 3 entries"),
            (["model.strides=[[1,3,2],[2,2,2]]"], "model.strides: every factor must be 1 "
                                                  "or 2")):
        with pytest.raises(ConfigError) as error:
            load_config("tiny.yaml", base + extra)
        assert str(error.value).startswith(message), str(error.value)
    with pytest.raises(ConfigError) as error:
        load_config("tiny.yaml", ["data.spacing=[2.0,1.0,1.0]"])
    assert str(error.value).startswith("data.spacing: three values (across the slices too) "
                                       "need model.dims 3")
