"""The callbacks of a training, and the one function that assembles them for ``train()`` and
for every KerasTuner trial (:func:`make_callbacks`).

In the order they run after an epoch: the validation score (the others read it), the NaN guard,
the plateau schedule, what records the run (history, best checkpoint, TensorBoard; or
KerasTuner's own), early stopping, and the time budget.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_medseg.config import Config, improves
from tf_medseg.training.checkpoints import BestCheckpoint, HistoryLog, best_record


class TimeBudget(keras.callbacks.Callback):
    """Stops training before an epoch that would end past ``train.max_minutes``.

    The next epoch is assumed to take as long as the slowest one so far.
    """

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds, self.start = minutes * 60, time.monotonic()
        self.epoch_start, self.longest = self.start, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        self.longest = max(self.longest, now - self.epoch_start)
        last = epoch + 1 >= self.params.get("epochs", epoch + 1)
        if not last and now - self.start + self.longest > self.seconds:
            print(f"train.max_minutes ({self.seconds / 60:g}) would be exceeded by another "
                  f"epoch; stopping after epoch {epoch + 1}", flush=True)
            self.model.stop_training = True


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
    keep_best = [BestCheckpoint(ckpt_dir / "best.weights.h5", monitor, best, seed)
                 ] if experiment.validates else []  # data.fold all keeps the last epoch
    return [
        HistoryLog(run_dir / "history.csv", initial_epoch),
        *keep_best,
        keras.callbacks.TensorBoard(str(run_dir / "logs"), update_freq="epoch",
                                    write_graph=False),
        TensorBoardExtras(run_dir / "logs", config, overlay_slices(experiment),
                          experiment.labels, experiment.head),
    ]


def make_callbacks(experiment, steps_per_epoch: int, *, objective: str,
                   outputs: Sequence[keras.callbacks.Callback] = (), verbose: int = 1
                   ) -> tuple[list, NanGuard]:
    """The callbacks of one training of ``experiment``
    (:class:`~tf_medseg.training.experiment.Experiment`), in the order they run, and its NaN
    guard.

    Args:
        objective: The metric the caller reads from the epoch logs (``train.monitor`` for
            the best checkpoint, ``tune.objective`` for a trial); ``val_score`` is computed
            when it, or the plateau schedule or early stopping on ``train.monitor``, needs it.
        outputs: What records the run: :func:`run_outputs`, or KerasTuner's callbacks.
        verbose: 1 to announce learning-rate cuts and early stops (0 on non-chief workers).
    """
    config = experiment.config
    t = config.train
    watched = {objective}
    if t.schedule == "plateau" or t.early_stopping:
        watched.add(t.monitor)
    nan_guard = NanGuard()
    callbacks: list = ([ValidationScore(experiment)]
                       if "val_score" in watched and experiment.validates else [])
    callbacks.append(nan_guard)
    callbacks += schedule_callbacks(config, steps_per_epoch, verbose)
    callbacks += list(outputs)
    if t.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=t.monitor, mode=improves(t.monitor), patience=t.early_stopping,
            verbose=verbose))
    if t.max_minutes:
        callbacks.append(TimeBudget(t.max_minutes))
    return callbacks, nan_guard
