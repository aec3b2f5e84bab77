"""The training loop: one custom loop for every ``tf.distribute`` strategy.

``Model.fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585: "Attempt to
convert a value (PerReplica ...)"), while ``strategy.run`` inside a ``tf.function`` over an
``experimental_distribute_dataset`` trains the same Keras model and optimizer in sync. So
training runs this loop under every strategy (default, mirrored, multi_worker), and behaves the
same under each: the loss, the metrics, the callbacks (progress bar, history, checkpoints,
TensorBoard), backup and resume.

The loop speaks the Keras callback protocol (``on_epoch_end(epoch, logs)`` ...), so Keras
callbacks (TensorBoard, EarlyStopping, ReduceLROnPlateau, the progress bar) work with it
unchanged. Epoch logs hold ``loss``, ``dice``, ``iou``, per class ``dice_<class>`` and
``iou_<class>``, the same with a ``val_`` prefix, and ``learning_rate``.

Metrics are computed from thresholded-pixel counts (intersection and total per class) that each
replica returns and the strategy sums: the Dice and IoU of all pixels of the epoch, as the
streaming :class:`tf_medseg.evaluation.metrics.DiceScore` computes them.
"""

from __future__ import annotations

import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf


def scores_from_counts(intersection: np.ndarray, total: np.ndarray, classes,
                       prefix: str = "") -> dict[str, float]:
    """Dice and IoU (mean and per class) from summed thresholded-pixel counts; a class empty in
    both prediction and truth scores 1, as in :class:`tf_medseg.evaluation.metrics.DiceScore`."""
    intersection, total = np.asarray(intersection, float), np.asarray(total, float)
    dice = np.where(total > 0, 2 * intersection / np.maximum(total, 1e-9), 1.0)
    union = total - intersection
    iou = np.where(union > 0, intersection / np.maximum(union, 1e-9), 1.0)
    logs = {f"{prefix}dice": float(dice.mean())}
    logs.update({f"{prefix}dice_{c}": float(v) for c, v in zip(classes, dice)})
    logs[f"{prefix}iou"] = float(iou.mean())
    logs.update({f"{prefix}iou_{c}": float(v) for c, v in zip(classes, iou)})
    return logs


def learning_rate(optimizer) -> float:
    """The optimizer's current learning rate (a schedule evaluated at its iteration)."""
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))


class Trainer:
    """Distributed train and validation steps for a compiled model.

    Args:
        model: Built and compiled (``model.optimizer``, ``model.loss``, ``model.jit_compile``)
            inside ``strategy.scope()``.
        strategy: The distribution strategy.
        classes: The class names (K).
        head: ``sigmoid`` (K logits) or ``softmax`` (background + K: a pixel is the most
            probable class if it beats the background).
        threshold: Probability above which a pixel counts as the class (metrics; sigmoid).
        freeze_encoder_epochs: Epochs the pretrained backbone stays frozen.
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, classes,
                 head: str, *, threshold: float = 0.5, freeze_encoder_epochs: int = 0):
        from tf_medseg.models.encoders import encoder_layer
        self.model, self.strategy = model, strategy
        self.classes, self.head, self.threshold = tuple(classes), head, float(threshold)
        self.optimizer, self.loss_fn = model.optimizer, model.loss
        self.replicas = strategy.num_replicas_in_sync
        self.scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        with strategy.scope():
            self.optimizer.build(model.trainable_variables)
        jit = bool(model.jit_compile)
        # The steps hold no Python control flow on tensors: AutoGraph's conversion (seconds of
        # a process's first training) is skipped here, as for every tf.function of tf_medseg.
        self._train = tf.function(self._train_replica, jit_compile=jit, autograph=False)
        self._val = tf.function(self._val_replica, jit_compile=jit, autograph=False)
        self._train_all = tf.function(self._distributed_train_step, autograph=False)
        self.val_step = tf.function(self._distributed_val_step, autograph=False)
        # train.freeze_encoder_epochs: a second step function, traced with the backbone frozen
        # (not trainable: no gradients, batch norm in inference mode); the optimiser was built
        # above over every variable, so both steps share its state.
        self.encoder = encoder_layer(model) if freeze_encoder_epochs else None
        self.freeze_epochs = freeze_encoder_epochs if self.encoder is not None else 0
        self.frozen = False
        if self.encoder is not None:
            replica_step = tf.function(self._train_replica, jit_compile=jit, autograph=False)
            self._train_frozen = tf.function(
                lambda batch: self._distributed_train_step(batch, replica_step), autograph=False)

    def start_epoch(self, epoch: int) -> None:
        """Freeze the backbone for the first ``freeze_encoder_epochs`` epochs, then thaw it."""
        if self.encoder is None:
            return
        self.frozen = epoch < self.freeze_epochs
        self.encoder.trainable = not self.frozen

    def train_step(self, batch):
        """One distributed training step; (loss x examples, examples, intersection, total)."""
        return (self._train_frozen if self.frozen else self._train_all)(batch)

    # Per replica ------------------------------------------------------------------------

    def _counts(self, y, logits):
        from tf_medseg.models import outputs
        if isinstance(logits, (list, tuple)):  # deep supervision: the main head counts
            logits = logits[0]
        probs = outputs.probabilities(logits, self.head, len(self.classes))
        pred = tf.cast(outputs.masks(probs, self.head, self.threshold), tf.float32)
        y = tf.cast(y, tf.float32)
        axes = tuple(range(len(y.shape) - 1))  # all but the classes (2D and 3D)
        return (tf.reduce_sum(pred * y, axis=axes),
                tf.reduce_sum(pred, axis=axes) + tf.reduce_sum(y, axis=axes))

    def _train_replica(self, x, y):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = tf.cast(self.loss_fn(y, logits), tf.float32)
            # Gradients are summed over replicas: scale so that they average instead.
            scaled = loss / self.replicas
            if self.scaled:
                scaled = self.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        return (loss * n, n, *self._counts(y, logits))

    def _val_replica(self, x, y):
        logits = self.model(x, training=False)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        # A replica can receive an empty final batch; its loss (a mean of nothing) is dropped.
        loss = tf.where(n > 0, tf.cast(self.loss_fn(y, logits), tf.float32), 0.0)
        return (loss * n, n, *self._counts(y, logits))

    # Across replicas --------------------------------------------------------------------

    def _reduce(self, per_replica):
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for v in per_replica]

    def _distributed_train_step(self, batch, replica_step=None):
        return self._reduce(self.strategy.run(replica_step or self._train, args=batch))

    def _distributed_val_step(self, batch):
        return self._reduce(self.strategy.run(self._val, args=batch))

    def any_worker(self, flag: bool) -> bool:
        """True if ``flag`` is true on any worker, so that every worker stops together (a
        worker that left the loop alone would leave the others waiting in a collective)."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return flag
        value = self.strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
        return float(self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)) > 0


class Accumulator:
    """Sums of (loss x examples, examples, intersection, total) over an epoch."""

    def __init__(self, classes):
        self.classes = tuple(classes)
        self.loss = self.n = 0.0
        self.intersection = self.total = np.zeros(len(self.classes))

    def add(self, loss_sum, n, intersection, total) -> None:
        self.loss += float(loss_sum)
        self.n += float(n)
        self.intersection = self.intersection + intersection.numpy()
        self.total = self.total + total.numpy()

    @property
    def mean_loss(self) -> float:
        return self.loss / self.n if self.n else math.nan

    def logs(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}loss": self.mean_loss,
                **scores_from_counts(self.intersection, self.total, self.classes, prefix)}


def fit(trainer: Trainer, train_ds: tf.data.Dataset, val_ds: tf.data.Dataset | None, *,
        epochs: int, steps_per_epoch: int | None, initial_epoch: int = 0,
        callbacks: list[keras.callbacks.Callback] = (), verbose: int = 1,
        on_epoch_saved: Callable[[int], None] | None = None) -> dict:
    """Train from ``initial_epoch`` to ``epochs``, validating after every epoch (unless
    ``val_ds`` is None).

    ``on_epoch_saved(epoch)`` runs after the epoch's callbacks (history, best checkpoint), and
    is where the backup is written, so that a crash never leaves a backup ahead of the
    history. Training stops early when a callback sets ``model.stop_training`` (on any worker).

    Returns:
        The logs of the last epoch.
    """
    model, strategy = trainer.model, trainer.strategy
    steps = steps_per_epoch or int(train_ds.cardinality())
    if steps <= 0:
        raise ValueError("the training data set is empty or of unknown length")
    train_dist = strategy.experimental_distribute_dataset(train_ds)
    val_dist = (strategy.experimental_distribute_dataset(val_ds) if val_ds is not None
                else None)  # data.fold all: no validation
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_progbar=verbose > 0, model=model, verbose=verbose,
        epochs=epochs, steps=steps)
    model.stop_training = False
    # With steps_per_epoch the data repeats and one iterator runs through every epoch.
    iterator = iter(train_dist) if steps_per_epoch else None
    logs: dict = {}
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        trainer.start_epoch(epoch)
        train_acc = Accumulator(trainer.classes)
        epoch_iter = iterator if iterator is not None else iter(train_dist)
        for step in range(steps):
            try:
                batch = next(epoch_iter)
            except StopIteration:
                break
            callback_list.on_train_batch_begin(step)
            train_acc.add(*trainer.train_step(batch))
            callback_list.on_train_batch_end(step, {"loss": train_acc.mean_loss})
            if model.stop_training:
                break
        if not math.isfinite(train_acc.mean_loss):
            # A NaN/inf loss (the same on every worker: it is summed over replicas): no
            # validation, no epoch logs, and above all no backup of the broken weights.
            model.stop_training = True
            break
        logs = {**train_acc.logs(), "learning_rate": learning_rate(trainer.optimizer)}
        if val_dist is not None:
            val_acc = Accumulator(trainer.classes)
            for batch in val_dist:
                val_acc.add(*trainer.val_step(batch))
            logs.update(val_acc.logs("val_"))
        callback_list.on_epoch_end(epoch, logs)
        if on_epoch_saved is not None:
            on_epoch_saved(epoch)
        if trainer.any_worker(bool(model.stop_training)):
            model.stop_training = True
            break
    callback_list.on_train_end(logs)
    return logs
