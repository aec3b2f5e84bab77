"""Optimisation: the learning-rate schedule (with warm-up), the optimiser, and a model built
under a precision policy (:func:`building`) and compiled with its loss (:func:`compile_model`).

``train.schedule: plateau`` is the one schedule that is not a Keras schedule: its warm-up and
its decay are callbacks (:func:`tf_medseg.training.callbacks.schedule_callbacks`).

The decays (cosine, poly, linear) run over a length held in a variable (:class:`Decay`), so
that a time budget (``train.max_minutes``) can lay them over the steps it finds will fit, once
it has measured the step rate (:func:`set_schedule_length`,
:class:`tf_medseg.training.callbacks.TimeBudget`): a budgeted run ends where its schedule ends.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable("tf_medseg")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``peak / warmup_steps`` to ``peak`` over ``warmup_steps``, then
    ``after`` (evaluated from 0 at the end of the warm-up)."""

    def __init__(self, peak: float, warmup_steps: int, after=None):
        self.peak, self.warmup_steps, self.after = float(peak), int(warmup_steps), after

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rest = (self.after(keras.ops.maximum(step - self.warmup_steps, 0.0))
                if self.after is not None else self.peak)
        if self.warmup_steps <= 0:
            return keras.ops.cast(rest, "float32")
        warm = self.peak * (step + 1.0) / self.warmup_steps
        return keras.ops.where(step < self.warmup_steps, warm, rest)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "after": keras.optimizers.schedules.serialize(self.after)
                if self.after is not None else None}

    @classmethod
    def from_config(cls, config):
        after = config.get("after")
        return cls(config["peak"], config["warmup_steps"],
                   keras.optimizers.schedules.deserialize(after) if after else None)


POLY_EXPONENT = 0.9  # nnU-Net's PolyLRScheduler
DECAYS = ("cosine", "poly", "linear")


@keras.saving.register_keras_serializable("tf_medseg")
class Decay(keras.optimizers.schedules.LearningRateSchedule):
    """From ``peak`` at step 0 to its end over ``steps`` steps, then constant: ``cosine``
    (Keras's CosineDecay: to ``peak * alpha``), ``poly`` (Keras's PolynomialDecay with
    nnU-Net's exponent 0.9: to 0) or ``linear`` (to 0).

    The length is a variable: :meth:`set_steps` re-lays the decay over another number of
    steps (a time budget's), before or during training.
    """

    def __init__(self, peak: float, steps: int, kind: str = "cosine", alpha: float = 0.0):
        if kind not in DECAYS:
            raise ValueError(f"unknown decay {kind!r}; choose from {DECAYS}")
        self.peak, self.kind, self.alpha = float(peak), kind, float(alpha)
        self.length = tf.Variable(float(max(1, int(steps))), trainable=False,
                                  dtype=tf.float32, name="schedule_length")

    @property
    def steps(self) -> int:
        return int(self.length.numpy())

    def set_steps(self, steps: int) -> None:
        self.length.assign(float(max(1, int(steps))))

    def __call__(self, step):
        steps = tf.cast(self.length, tf.float32)
        p = tf.minimum(tf.cast(step, tf.float32), steps) / steps
        if self.kind == "cosine":
            decayed = (1.0 - self.alpha) * 0.5 * (1.0 + tf.cos(3.141592653589793 * p)) \
                + self.alpha
        elif self.kind == "poly":
            decayed = tf.pow(1.0 - p, POLY_EXPONENT)
        else:
            decayed = 1.0 - p
        return self.peak * decayed

    def get_config(self):
        return {"peak": self.peak, "steps": self.steps, "kind": self.kind,
                "alpha": self.alpha}


def learning_rate_schedule(train_config, steps_per_epoch: int):
    """The learning rate ``train.schedule`` describes, warm-up included: a Keras schedule, or
    the peak as a number for ``plateau`` (a callback warms it up and lowers it)."""
    t = train_config
    warmup = int(round(t.warmup_epochs * steps_per_epoch))
    rest = max(1, t.epochs * steps_per_epoch - warmup)
    schedules = keras.optimizers.schedules
    if t.schedule == "plateau":
        return float(t.learning_rate)
    if t.schedule in DECAYS:
        after = Decay(t.learning_rate, rest, t.schedule,
                      t.min_lr_fraction if t.schedule == "cosine" else 0.0)
    elif t.schedule == "step":
        after = schedules.ExponentialDecay(t.learning_rate, t.step_epochs * steps_per_epoch,
                                           t.step_factor, staircase=True)
    else:
        after = None
    return Warmup(t.learning_rate, warmup, after)


def schedule_of(optimizer) -> keras.optimizers.schedules.LearningRateSchedule | float:
    """The learning rate ``optimizer`` was made with (its schedule, or a number); a
    LossScaleOptimizer's inner one's."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    # Keras keeps the schedule object only in this attribute (``learning_rate`` evaluates it).
    return inner._learning_rate


def set_schedule_length(optimizer, total_steps: int) -> bool:
    """Lay ``optimizer``'s decay (after its warm-up) over ``total_steps`` optimiser steps in
    all, so that it ends at the last of them; False where the schedule has no decay to lay
    (constant, step, plateau)."""
    schedule = schedule_of(optimizer)
    if isinstance(schedule, Warmup) and isinstance(schedule.after, Decay):
        schedule.after.set_steps(total_steps - schedule.warmup_steps)
        return True
    return False


def make_optimizer(train_config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """AdamW or SGD with Nesterov momentum (weight decay off for biases and normalisation
    parameters), or Adam, with the schedule and optional global-norm gradient clipping."""
    t = train_config
    lr = learning_rate_schedule(t, steps_per_epoch)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(lr, global_clipnorm=t.clipnorm)
    if t.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=t.momentum, nesterov=True,
                                         weight_decay=t.weight_decay or None,
                                         global_clipnorm=t.clipnorm)
    else:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=t.weight_decay,
                                           global_clipnorm=t.clipnorm)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


@contextlib.contextmanager
def building(policy: str, seed: int):
    """Make a model's layers under ``policy``, from generators seeded with ``seed``.

    Keras seeds every unseeded initializer and dropout layer from Python's global ``random``
    when the layer is made: seeded here, the weights are a function of ``train.seed`` whatever
    the process drew before (building TFDS records did: TFDS names its temporary folder with
    ``random.choice``). The global policy is float32 again afterwards.
    """
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def compile_model(model: keras.Model, train_config, head: str, jit: bool,
                  steps_per_epoch: int, *, metric: str) -> keras.Model:
    """``model`` compiled with the configured optimiser, schedule and loss for its ``head``
    (sigmoid or softmax) and the data set's ``metric`` (competition or volume); call it
    inside :func:`building` (a LossScaleOptimizer wraps the optimiser under mixed_float16)
    and the strategy's scope.

    With ``model.deep_supervision`` the model returns its heads as a list, main head first,
    and the loss scores each at its resolution; :func:`tf_medseg.models.main_output` is the
    full-resolution head alone.
    """
    from tf_medseg.training.losses import deep_supervision, get_loss, head_factors
    loss = get_loss(train_config, head, metric=metric)
    if len(model.outputs) > 1:
        loss = deep_supervision(loss, head_factors(model))
    model.compile(optimizer=make_optimizer(train_config, steps_per_epoch), loss=loss,
                  jit_compile=jit)
    return model
