"""The callbacks: their one assembly, TensorBoard contents, early stopping and the plateau
schedule; train.max_minutes planned for a time budget (a fake clock), its schedule laid over
the epochs that fit, the plan kept by a resumed run; the warning for a class never predicted."""

import csv
import json

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
        "train.max_minutes=5", "train.monitor=val_score"])
    history = keras.callbacks.History()
    callbacks, guard = make_callbacks(tiny.configured(config), 10, objective="val_loss",
                                      outputs=[history])
    assert [type(c).__name__ for c in callbacks] == [
        "ValidationScore", "NanGuard", "PlateauWarmup", "ReduceLROnPlateau", "SilentClass",
        "History", "EarlyStopping", "TimeBudget"]  # val_score drives plateau and stopping
    assert isinstance(guard, NanGuard) and guard in callbacks
    plain = tiny.configured(load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        "train.max_minutes=null"]))
    assert [type(c).__name__ for c in make_callbacks(plain, 10, objective="val_loss")[0]
            ] == ["NanGuard", "SilentClass"]
    assert [type(c).__name__ for c in make_callbacks(plain, 10, objective="val_score")[0]
            ] == ["ValidationScore", "NanGuard", "SilentClass"]

def fake_clock(monkeypatch, seconds_per_call: float, fail_at: int | None = None,
               first: tuple[int, float] = (0, 0.0)):
    """The budget's clock advanced by ``seconds_per_call`` at every reading (by first[1] at
    the first first[0] readings); KeyboardInterrupt at reading ``fail_at`` (a kill)."""
    from tf_medseg.training import callbacks
    calls = {"n": 0, "t": 0.0}

    def clock():
        calls["n"] += 1
        if fail_at is not None and calls["n"] >= fail_at:
            raise KeyboardInterrupt("killed by the test")
        calls["t"] += first[1] if calls["n"] <= first[0] else seconds_per_call
        return calls["t"]
    monkeypatch.setattr(callbacks, "clock", clock)
    return calls


def history(run):
    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


def budgeted(tmp_path, name, *extra):
    # 6 steps an epoch (48 training slices, batch 8); a cap far above what fits.
    return load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        f"train.run_dir={tmp_path / name}", "train.epochs=50", "train.max_minutes=0.75",
        "train.learning_rate=0.01", "train.warmup_epochs=1", "train.overlay_slices=0",
        "train.monitor=val_dice", "export.saved_model=false", *extra])


@pytest.mark.slow
def test_the_schedule_ends_where_the_budget_does_and_a_resumed_run_repeats_it(tmp_path,
                                                                           monkeypatch, capsys):
    """A 45 s budget; the clock read once at the start, 8 times an epoch while timing (its
    start, 6 steps, its end). The first epoch (its pipeline cold) runs at 3 s a reading: 3 s a
    step, 21 s an epoch, 21 s left: 1 more would fit. The second at 1 s a reading: 1 s a step,
    7 s an epoch, 13 s left: 1 more. 3 epochs, the linear decay at 0 after the last. Then
    cosine at 1 s a reading (6 epochs), whole and killed at the start of its epoch 4: resumed,
    it trains the steps of the whole run at its learning rates."""
    fake_clock(monkeypatch, 1.0, first=(9, 3.0))
    train(budgeted(tmp_path, "linear", "train.schedule=linear"), verbose=0)
    run = tmp_path / "linear"
    plan = json.loads((run / "budget.json").read_text())
    assert plan["epochs"] == 3 and plan["steps"] == 18 and plan["steps_per_epoch"] == 6
    assert plan["seconds_per_step"] == pytest.approx(1.0) and plan["measured_epochs"] == 2
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates[0] == pytest.approx(0.01)  # the warm-up's end
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)  # the schedule's end, at the budget's
    # until the plan is fixed, linear over the configured 50 epochs (300 steps); then to 0
    # at step 18
    assert rates[1] == pytest.approx(0.01 * (1 - (12 - 6) / 294), rel=1e-5)

    # cosine ends at train.min_lr_fraction of the peak (6 epochs at 1 s a reading); 36 steps
    # are too few to converge, and the user is told so when they are fixed
    fake_clock(monkeypatch, 1.0)
    capsys.readouterr()
    train(budgeted(tmp_path, "cosine"), verbose=1)
    whole = history(tmp_path / "cosine")
    assert float(whole[-1]["learning_rate"]) == pytest.approx(0.01 * 0.05, rel=1e-5)
    assert ("warning: train.max_minutes 0.75 fits only 36 optimiser steps at 1 s a step here; "
            "every measured training under 300 steps stayed far below the 2D recipe "
            "(docs/measurements.md): raise train.max_minutes or train cheaper steps (plan.dims "
            "2, a smaller data.image_size)") in capsys.readouterr().out

    # Killed at the start of epoch 4 (readings: 1 at the start, 8 in each of the 2 measured
    # epochs, then 1 at each epoch's start).
    fake_clock(monkeypatch, 1.0, fail_at=1 + 8 + 8 + 2)
    config = budgeted(tmp_path, "killed")
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0)
    assert len(history(tmp_path / "killed")) == 3
    # Resumed on a machine now 100 times slower: measured again, one epoch would fit; the
    # stored plan is kept instead.
    fake_clock(monkeypatch, 100.0)
    result = train(config, verbose=0)
    resumed = history(tmp_path / "killed")
    assert [int(r["epoch"]) for r in resumed] == list(range(1, 7))
    assert result["epochs_trained"] == 6
    assert [float(r["learning_rate"]) for r in resumed] == pytest.approx(
        [float(r["learning_rate"]) for r in whole])


def test_a_budget_that_fits_train_epochs_trains_them_all(tmp_path, monkeypatch, capsys):
    """... and a machine busy with other work while the steps were timed is said so, its load
    average kept in budget.json."""
    from tf_medseg.data import workers
    from tf_medseg.training import callbacks
    fake_clock(monkeypatch, 1.0)
    cores = workers.cores()
    monkeypatch.setattr(callbacks, "load_average", lambda: 2.0 * cores)
    train(budgeted(tmp_path, "capped", "train.epochs=3", "train.schedule=linear"), verbose=1)
    plan = json.loads((tmp_path / "capped" / "budget.json").read_text())
    assert plan["epochs"] == 3 and plan["capped_by_train_epochs"] is True
    assert (plan["load_average"], plan["cores"]) == (2.0 * cores, cores)
    assert float(history(tmp_path / "capped")[-1]["learning_rate"]) == pytest.approx(0.0,
                                                                                   abs=1e-9)
    out = capsys.readouterr().out
    assert "train.epochs (3) fit: training 3 epochs (18 steps)" in out
    assert "optimiser steps" not in out  # few steps, but the ones train.epochs asked for
    assert (f"warning: the machine was busy while the steps were timed (load average "
            f"{2.0 * cores:g} on {cores} cores): fewer epochs fit than on a quiet machine"
            ) in out


def test_silent_class_warns_once(capsys):
    from tf_medseg.training.callbacks import SilentClass
    cb = SilentClass(["liver", "brainstem"], patience=3)
    for epoch, dice in enumerate([0.2, 0.0, 0.0, 0.0, 0.0, 0.0]):
        cb.on_epoch_end(epoch, {"val_dice_liver": 0.9, "val_dice_brainstem": dice})
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["warning: class brainstem has had validation Dice 0 for 3 epochs "
                   "(epochs 2-4): the network predicts none of it; a small organ: "
                   "data.class_fraction (docs/training.md, small organs)"]
