"""The callbacks: their one assembly, TensorBoard contents, early stopping and the plateau
schedule."""

import csv

import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.training import train

from conftest import tiny_overrides


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


@pytest.mark.slow
def test_early_stopping_and_plateau_on_a_stalled_run(tmp_path):
    # A learning rate too small to move float32 weights and no batch norm: the validation
    # figures repeat exactly, so nothing improves after the first epoch.
    config = load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        "train.epochs=6", "train.learning_rate=1e-30", "train.warmup_epochs=0",
        "model.batch_norm=false", "train.schedule=plateau", "train.plateau_patience=1",
        "train.early_stopping=2", "train.monitor=val_dice", "train.overlay_slices=0",
        "export.saved_model=false"])
    result = train(config, verbose=0)
    with (tmp_path / "run" / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # stopped after 2 epochs without gain
    assert len({r["val_dice"] for r in rows}) == 1
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates[:2] == pytest.approx([1e-30, 1e-30]) and rates[2] == pytest.approx(5e-31)
    assert result["epochs_trained"] == 3 and result["kept_epoch"] == 1


def test_one_assembly_for_training_and_trials(tmp_path):
    """make_callbacks: the score first (the others read it), the guard, the schedule's, the
    warning for a class never predicted, the caller's outputs, then early stopping and the
    time budget; the score only when read."""
    import keras

    from tf_medseg.training.callbacks import NanGuard, make_callbacks
    from tf_medseg.training.experiment import Experiment
    tiny = Experiment(load_config("tiny.yaml", tiny_overrides(tmp_path)))
    config = load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        "train.schedule=plateau", "train.warmup_epochs=1", "train.early_stopping=2",
        "train.max_minutes=5"])
    history = keras.callbacks.History()
    callbacks, guard = make_callbacks(tiny.configured(config), 10, objective="val_loss",
                                      outputs=[history])
    assert [type(c).__name__ for c in callbacks] == [
        "ValidationScore", "NanGuard", "PlateauWarmup", "ReduceLROnPlateau", "SilentClass",
        "History", "EarlyStopping", "TimeBudget"]  # train.monitor val_score drives plateau and stopping
    assert isinstance(guard, NanGuard) and guard in callbacks
    plain = tiny.configured(load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        "train.max_minutes=null"]))
    assert [type(c).__name__ for c in make_callbacks(plain, 10, objective="val_loss")[0]
            ] == ["NanGuard", "SilentClass"]
    assert [type(c).__name__ for c in make_callbacks(plain, 10, objective="val_score")[0]
            ] == ["ValidationScore", "NanGuard", "SilentClass"]
