"""The callbacks of a training, and the one function that assembles them for ``train()`` and
for every KerasTuner trial (:func:`make_callbacks`).

In the order they run after an epoch: the validation score (the others read it), the NaN guard,
the plateau schedule, what records the run (history, best checkpoint, TensorBoard; or
KerasTuner's own), early stopping, and the time budget.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_medseg.config import Config, improves
from tf_medseg.data import workers
from tf_medseg.training.checkpoints import BestCheckpoint, HistoryLog, best_record


def clock() -> float:
    """The time budget's clock, in seconds (one place, so that a test can replace it)."""
    return time.monotonic()


def load_average() -> float | None:
    """The machine's load average over the last minute (None where the system has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def budget_recorder(folder: Path):
    """What :class:`TimeBudget` hands its plan to: ``budget.json`` in ``folder``, atomically
    (a training's run folder; the peer's of ``benchmarks/``)."""
    from tf_medseg.files import atomic_write
    from tf_medseg.run_dir import BUDGET

    def record(plan: dict) -> None:
        atomic_write(Path(folder) / BUDGET, json.dumps(plan, indent=2) + "\n")
    return record


class TimeBudget(keras.callbacks.Callback):
    """``train.max_minutes``: the training planned for a time budget, not cut by it.

    A schedule that decays to its end within the budget beats one stopped part-way (Li, Yumer
    and Ramanan, "Budgeted Training", ICLR 2020). So the first epochs this process trains are
    timed: their steps (from the end of the second: the first ones trace the step function)
    and what follows them (validation, the other callbacks). After the first, the epochs that
    fit the rest of the budget at its rate are counted (if none does, training stops there);
    after the second, whose input pipeline reads from a warm cache (the first one's fills it
    and runs slower), they are fixed (at most ``epochs``, at least those trained), the
    optimiser's decay, which has run on the configured length until then, is laid over their
    steps (:func:`~tf_medseg.training.optim.set_schedule_length`) and the plan is
    handed to ``record`` (``budget.json`` in the run folder). Training stops after the
    planned epochs, wherever the clock is. A ``planned`` plan (a resumed run's) is applied
    before the first step and nothing is measured, so a resumed run trains the steps an
    uninterrupted one would.
    """

    MEASURED_EPOCHS = 2
    # Fewer optimiser steps than this in a budget is warned of: in docs/measurements.md every
    # unit under 300 steps scored far below its table's 2D recipe (planned 3D on CHAOS, 102
    # steps: 0.085 over 5 folds; head-and-neck CT, 100: 0.00; planned 2D on CHAOS, 220: 0.53),
    # while planned 3D on the hippocampus came within 0.03 of it at 300.
    FEW_STEPS = 300

    def __init__(self, minutes: float, epochs: int, steps_per_epoch: int, *,
                 planned: dict | None = None, record=None, verbose: int = 1):
        super().__init__()
        self.seconds, self.epochs, self.steps = minutes * 60, int(epochs), int(steps_per_epoch)
        self.plan, self.record, self.verbose = planned, record, verbose
        self.marks: list[float] = []
        self.measured = 0  # epochs timed so far

    def on_train_begin(self, logs=None):
        self.start = clock()
        if self.plan is not None:
            self._apply(self.plan["epochs"])

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start, self.marks = clock(), []

    def on_train_batch_end(self, batch, logs=None):
        if self.plan is None:
            self.marks.append(clock())

    def on_epoch_end(self, epoch, logs=None):
        if self.plan is None:
            self.measured += 1
            plan = self._measure(epoch)
            if self.measured >= self.MEASURED_EPOCHS or plan["epochs"] <= epoch + 1:
                self.plan = plan
                self._apply(plan["epochs"])
                self._announce(plan, epoch)
                if self.record is not None:
                    self.record(plan)
        if self.plan is not None and epoch + 1 >= self.plan["epochs"]:
            self.model.stop_training = True

    def _measure(self, epoch: int) -> dict:
        now, marks = clock(), self.marks or [clock()]
        if len(marks) >= 4:
            per_step = (marks[-1] - marks[1]) / (len(marks) - 2)
        else:
            per_step = (marks[-1] - self.epoch_start) / len(marks)
        per_epoch = per_step * self.steps + (now - marks[-1])
        left = self.seconds - (now - self.start)
        fits = int(left // per_epoch) if per_epoch > 0 else self.epochs
        epochs = max(epoch + 1, min(self.epochs, epoch + 1 + fits))
        plan = {"budget_minutes": self.seconds / 60, "epochs": epochs,
                "steps_per_epoch": self.steps, "steps": epochs * self.steps,
                "seconds_per_step": round(per_step, 4),
                "seconds_per_epoch": round(per_epoch, 2),
                "capped_by_train_epochs": epochs == self.epochs and fits + epoch + 1 > epochs,
                "measured_epochs": self.measured,
                # the rate is this machine's now: other work on it while the epochs were timed
                # makes fewer of them fit (a training's own threads load it up to its cores)
                "load_average": load_average(), "cores": workers.cores()}
        return plan

    def _announce(self, plan: dict, epoch: int) -> None:
        epochs, per_step, per_epoch = (plan["epochs"], plan["seconds_per_step"],
                                       plan["seconds_per_epoch"])
        if self.verbose:
            why = (f"train.epochs ({self.epochs}) fit" if plan["capped_by_train_epochs"]
                   else f"{epochs} fit")
            print(f"train.max_minutes {self.seconds / 60:g}: {per_step:.3g} s a step, about "
                  f"{per_epoch:.3g} s an epoch with its validation; {why}: training "
                  f"{epochs} epochs ({plan['steps']} steps), the schedule laid over them",
                  flush=True)
            load, cores = plan["load_average"], plan["cores"]
            if load is not None and load > 1.5 * cores:
                print(f"warning: the machine was busy while the steps were timed (load "
                      f"average {load:g} on {cores} cores): fewer epochs fit than on a quiet "
                      f"machine; to repeat a quiet run's length, set train.epochs to its "
                      f"budget.json's epochs and train.max_minutes to null", flush=True)
            if plan["steps"] < self.FEW_STEPS and not plan["capped_by_train_epochs"]:
                print(f"warning: train.max_minutes {self.seconds / 60:g} fits only "
                      f"{plan['steps']} optimiser steps at {per_step:.3g} s a step here; "
                      f"every measured training under {self.FEW_STEPS} steps stayed far "
                      f"below the 2D recipe (docs/measurements.md): raise train.max_minutes "
                      f"or train cheaper steps (plan.dims 2, a smaller data.image_size)",
                      flush=True)
            if epochs == epoch + 1 < self.epochs:
                print(f"warning: train.max_minutes {self.seconds / 60:g} fits only the "
                      f"{epochs} epoch(s) trained so far: the schedule ends early in its "
                      f"decay; raise train.max_minutes or lower train.steps_per_epoch",
                      flush=True)

    def _apply(self, epochs: int) -> None:
        from tf_medseg.training.optim import set_schedule_length
        set_schedule_length(self.model.optimizer, epochs * self.steps)
        # Keras's progress bar reads the epoch count from the shared params.
        self.params["epochs"] = epochs


class SilentClass(keras.callbacks.Callback):
    """Warns, once per class, when a class's validation Dice has stayed at 0 for
    ``patience`` epochs in a row: the network has stopped predicting it (or never did), which
    a falling loss alone does not show."""

    def __init__(self, classes, patience: int = 3, verbose: int = 1):
        super().__init__()
        self.classes, self.patience, self.verbose = tuple(classes), int(patience), verbose
        self.zero_since: dict[str, int] = {}
        self.warned: set[str] = set()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for name in self.classes:
            value = logs.get(f"val_dice_{name}")
            if value is None or value >= 1e-3:
                self.zero_since.pop(name, None)
                continue
            first = self.zero_since.setdefault(name, epoch)
            if epoch - first + 1 >= self.patience and name not in self.warned:
                self.warned.add(name)
                if self.verbose:
                    print(f"warning: class {name} has had validation Dice 0 for "
                          f"{epoch - first + 1} epochs (epochs {first + 1}-{epoch + 1}): the "
                          f"network predicts none of it; a small organ: data.class_fraction "
                          f"(docs/training.md, small organs)", flush=True)


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first NaN/inf loss and remembers where."""

    def __init__(self):
        super().__init__()
        self.epoch, self.batch = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.batch = batch
            self.model.stop_training = True


class ValidationScore(keras.callbacks.Callback):
    """Adds ``val_score`` and ``val_hausdorff`` (the competition metric on whole validation
    scans at their native size, as metrics.json) to every epoch's logs; for the volume
    sources ``val_score`` is the mean 3-D Dice over validation cases and classes (the
    distances are computed once, for metrics.json). The scans are predicted by the predictor
    ``predict`` and an export use (:meth:`Experiment.predictor`). Runs on every worker, so
    that they all take the same early-stopping decisions."""

    def __init__(self, experiment):
        super().__init__()
        self.experiment = experiment

    def on_train_begin(self, logs=None):
        self.predictor = self.experiment.predictor(self.model)  # traced once

    def on_epoch_end(self, epoch, logs=None):
        from tf_medseg.evaluation.evaluate import evaluate
        result, _ = evaluate(self.predictor, self.experiment.dataset, "val", distances=False)
        if logs is not None:
            logs["val_score"] = result["score"]
            if "hausdorff" in result:
                logs["val_hausdorff"] = result["hausdorff"]


class PlateauWarmup(keras.callbacks.Callback):
    """Linear warm-up of a variable learning rate (the plateau schedule, where
    ReduceLROnPlateau owns the rate afterwards)."""

    def __init__(self, peak: float, warmup_steps: int):
        super().__init__()
        self.peak, self.warmup_steps = peak, warmup_steps

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations)
        if step < self.warmup_steps:
            self.model.optimizer.learning_rate = self.peak * (step + 1) / self.warmup_steps
        elif step == self.warmup_steps:
            self.model.optimizer.learning_rate = self.peak


class TensorBoardExtras(keras.callbacks.Callback):
    """The resolved config as text (once), and after every epoch an image panel of fixed
    validation slices (of 3D patches: each one's most labelled slice): true contours on the
    left, predicted on the right."""

    def __init__(self, log_dir: Path, config: Config, slices: tuple | None, labels, head: str):
        super().__init__()
        self.log_dir, self.config, self.slices = log_dir, config, slices
        self.labels, self.head = labels, head

    def on_train_begin(self, logs=None):
        import yaml
        self.writer = tf.summary.create_file_writer(str(self.log_dir / "validation"))
        text = yaml.safe_dump(self.config.to_dict(), sort_keys=False)
        with tf.summary.create_file_writer(str(self.log_dir / "train")).as_default():
            tf.summary.text("config", "```yaml\n" + text + "```", step=0)

    def on_epoch_end(self, epoch, logs=None):
        if self.slices is None:
            return
        from tf_medseg.inference.writers.overlays import side_by_side
        from tf_medseg.models import main_output, outputs
        images, masks = self.slices
        logits = main_output(self.model)(images, training=False)
        probs = outputs.probabilities(logits, self.head, self.labels.num_classes)
        pred = np.asarray(outputs.masks(probs, self.head, self.config.train.threshold))
        images, masks = images.numpy(), masks.numpy() > 0.5
        if images.ndim == 5:  # 3D patches: each one's slice with the most labelled pixels
            pick = masks.sum(axis=(2, 3, 4)).argmax(axis=1)
            rows = np.arange(len(images))
            images, masks, pred = images[rows, pick], masks[rows, pick], pred[rows, pick]
        centre = self.config.data.context.index(0)  # of the first channel (modality)
        panels = [side_by_side(img[..., centre], true, p, self.labels.classes)
                  for img, true, p in zip(images, masks, pred)]
        with self.writer.as_default():
            tf.summary.image("overlays (true | predicted)", np.stack(panels), step=epoch,
                             max_outputs=len(panels))
        self.writer.flush()


def overlay_slices(experiment):
    """``train.overlay_slices`` fixed validation slices to watch: those showing the most organ
    classes, then the largest organ area, among the first validation batches."""
    count = experiment.config.train.overlay_slices
    if not count or not experiment.validates:
        return None
    images, masks = [], []
    # Uncached: partly reading a cached data set would make tf.data drop its cache.
    for x, y in experiment.make_dataset("val", cache=False).take(64):
        images.append(x.numpy())
        masks.append(y.numpy())
    if not images:
        return None
    images, masks = np.concatenate(images), np.concatenate(masks)
    spatial = tuple(range(1, masks.ndim - 1))  # slices (2D), or 3D patches
    classes = (masks.sum(axis=spatial) > 0).sum(axis=1)
    order = np.lexsort((-masks.sum(axis=(*spatial, masks.ndim - 1)), -classes))[:count]
    order.sort()
    return tf.constant(images[order]), tf.constant(masks[order])



def schedule_callbacks(config: Config, steps_per_epoch: int, verbose: int = 1) -> list:
    """``train.schedule: plateau``: its warm-up, then ReduceLROnPlateau on ``train.monitor``
    (the other schedules live in the optimiser,
    :func:`tf_medseg.training.optim.learning_rate_schedule`)."""
    t = config.train
    if t.schedule != "plateau":
        return []
    warmup = int(round(t.warmup_epochs * steps_per_epoch))
    callbacks: list = [PlateauWarmup(t.learning_rate, warmup)] if warmup else []
    callbacks.append(keras.callbacks.ReduceLROnPlateau(
        monitor=t.monitor, mode=improves(t.monitor), factor=t.plateau_factor,
        patience=t.plateau_patience, verbose=verbose))
    return callbacks


def run_outputs(experiment, run_dir: Path, initial_epoch: int, resuming: bool) -> list:
    """The callbacks that record a run in its folder (the chief's): ``history.csv``, the best
    checkpoint, TensorBoard scalars and the overlay panels."""
    config = experiment.config
    ckpt_dir = run_dir / "checkpoints"
    monitor = config.train.monitor
    best, seed = best_record(ckpt_dir, monitor, initial_epoch) if resuming else (None, None)
    # data.fold all and train.keep last keep the last epoch: no best checkpoint to choose
    keep_best = [BestCheckpoint(ckpt_dir / "best.weights.h5", monitor, best, seed)
                 ] if experiment.validates and config.train.keep == "best" else []
    return [
        HistoryLog(run_dir / "history.csv", initial_epoch),
        *keep_best,
        keras.callbacks.TensorBoard(str(run_dir / "logs"), update_freq="epoch",
                                    write_graph=False),
        TensorBoardExtras(run_dir / "logs", config, overlay_slices(experiment),
                          experiment.labels, experiment.head),
    ]


def make_callbacks(experiment, steps_per_epoch: int, *, objective: str,
                   outputs: Sequence[keras.callbacks.Callback] = (), verbose: int = 1,
                   budget: dict | None = None, record_budget=None
                   ) -> tuple[list, NanGuard]:
    """The callbacks of one training of ``experiment``
    (:class:`~tf_medseg.training.experiment.Experiment`), in the order they run, and its NaN
    guard.

    Args:
        objective: The metric the caller reads from the epoch logs (``train.monitor`` for
            the best checkpoint, ``tune.objective`` for a trial; None: none); ``val_score`` is
            computed when it, or the plateau schedule or early stopping on
            ``train.monitor``, needs it.
        outputs: What records the run: :func:`run_outputs`, or KerasTuner's callbacks.
        verbose: 1 to announce learning-rate cuts and early stops (0 on non-chief workers).
        budget: ``train.max_minutes``'s plan of an interrupted run (its ``budget.json``), to
            keep; None to measure and plan (:class:`TimeBudget`).
        record_budget: Called with the plan once it is made (the chief writes it).
    """
    config = experiment.config
    t = config.train
    watched = {objective} if objective else set()
    if t.schedule == "plateau" or t.early_stopping:
        watched.add(t.monitor)
    nan_guard = NanGuard()
    callbacks: list = ([ValidationScore(experiment)]
                       if "val_score" in watched and experiment.validates else [])
    callbacks.append(nan_guard)
    callbacks += schedule_callbacks(config, steps_per_epoch, verbose)
    if experiment.validates:
        callbacks.append(SilentClass(experiment.labels.classes, verbose=verbose))
    callbacks += list(outputs)
    if t.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=t.monitor, mode=improves(t.monitor), patience=t.early_stopping,
            verbose=verbose))
    if t.max_minutes:
        callbacks.append(TimeBudget(t.max_minutes, t.epochs, steps_per_epoch, planned=budget,
                                    record=record_budget, verbose=verbose))
    return callbacks, nan_guard
