"""The experiment (Model Garden's task): built once from a config, it owns the data set (its
records and label schema), the network's head, and makes everything a training needs: the data
sets for a strategy, the compiled model, the trainer, the callbacks, the serving contract and
the predictor that scores a model.

Training (:mod:`~tf_medseg.training.session`), every KerasTuner trial, cross-validation, the
benchmark and the peer comparisons in ``benchmarks/`` all go through it, so the wiring
(records -> label schema -> data sets -> steps -> model -> trainer -> callbacks) is written
once::

    experiment = Experiment(config)
    train_ds, val_ds = experiment.datasets(strategy)
    steps = experiment.steps_per_epoch(train_ds)
    with strategy.scope():
        model = experiment.model(policy, jit, steps)
    trainer = experiment.trainer(model, strategy)
    callbacks, nan_guard = experiment.callbacks(steps, objective="val_score")
    fit(trainer, train_ds, val_ds, epochs=..., callbacks=callbacks)
    metrics, rows = experiment.score(model)

A network of your own trains the same way: build it inside ``optim.building(policy, seed)``
with :attr:`Experiment.input_shape` and :attr:`Experiment.num_outputs`, then
:meth:`Experiment.compile` it.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from tf_medseg.config import Config
from tf_medseg.data.dataset import DataSet
from tf_medseg.errors import ConfigError
from tf_medseg.export.contract import Contract, roi_names


class Experiment:
    """One config and its data set (see the module docstring)."""

    def __init__(self, config: Config, dataset: DataSet | None = None):
        if config.data.image_size == "auto":
            raise ConfigError("data.image_size: auto is sized from the data set by "
                              "tf_medseg.planning.planner.planned_config(config); pass its "
                              "result (train, cv, tune and benchmark do so)")
        self.config = config
        # The records are built (or found) here, once; a fold or a trial reuses them.
        self.dataset = (DataSet.open(config.data) if dataset is None
                        else dataset.configured(config.data))
        self.labels = self.dataset.labels
        self.head = self.labels.head(config.model.output)  # sigmoid | softmax

    def configured(self, config: Config) -> "Experiment":
        """The experiment of another config over the same records (a fold, a trial)."""
        return Experiment(config, self.dataset)

    # Data -------------------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels): the data's channels x the context offsets."""
        d = self.config.data
        return (*d.image_size, self.labels.num_channels * len(d.context))

    @property
    def num_outputs(self) -> int:
        """Logit channels: background + classes for a softmax head, else the classes."""
        return self.labels.outputs(self.head)

    def make_dataset(self, split: str, **options) -> tf.data.Dataset:
        """Batches of ``split`` (:func:`tf_medseg.data.pipeline.make_dataset` options)."""
        from tf_medseg.data.pipeline import make_dataset
        return make_dataset(self.config, split, dataset=self.dataset, **options)

    @property
    def validates(self) -> bool:
        """False for ``data.fold: all`` (every case trains, none validates)."""
        return self.config.data.fold != "all"

    def datasets(self, strategy: tf.distribute.Strategy
                 ) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
        """The training and validation data sets as ``strategy`` takes them (no validation
        set for ``data.fold: all``); their shuffling, organ resampling and augmentation depend
        on ``train.seed`` alone."""
        # tf.data's seeded ops pair their seed with TensorFlow's global seed, read when they
        # are made: seeded here, whatever the process drew before (preparing data, another
        # run).
        keras.utils.set_random_seed(self.config.train.seed)
        # Several replicas: whole training batches only, so that no replica gets an empty one.
        replicas = strategy.num_replicas_in_sync
        train_ds = self.make_dataset("train", drop_remainder=replicas > 1)
        val_ds = self.make_dataset("val") if self.validates else None
        val_ds = self._val_sample(val_ds)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Every worker reads the whole (small, cached) pipeline and keeps its share of each
            # batch: TFDS writes few shard files, too few to shard by file.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA)
            train_ds = train_ds.with_options(options)
            val_ds = val_ds.with_options(options) if val_ds is not None else None
        return train_ds, val_ds

    def _val_sample(self, val_ds: tf.data.Dataset | None) -> tf.data.Dataset | None:
        """``train.val_steps``: every k-th validation batch, so that the epoch's validation
        pass takes about that many batches spread over every validation case (nnU-Net
        validates 50 batches an epoch); the kept model is still scored on whole scans."""
        cap = self.config.train.val_steps
        if val_ds is None or not cap:
            return val_ds
        batches = int(val_ds.cardinality())
        if batches <= cap:  # also unknown (-2) or infinite (-1) lengths: left whole
            return val_ds
        return val_ds.shard(-(-batches // cap), 0)

    def steps_per_epoch(self, train_ds: tf.data.Dataset) -> int:
        """Optimiser steps in an epoch: ``train.steps_per_epoch``, else the batches of the
        training set (the schedules span ``train.epochs`` of them)."""
        return self.config.train.steps_per_epoch or int(train_ds.cardinality())

    # Model ------------------------------------------------------------------------------

    def network(self) -> keras.Model:
        """The configured network, uncompiled (build it inside :func:`~tf_medseg.training.
        optim.building`)."""
        from tf_medseg.models import build_model
        return build_model(self.config.model, self.input_shape, self.num_outputs)

    def compile(self, model: keras.Model, jit: bool, steps_per_epoch: int) -> keras.Model:
        """``model`` compiled with the configured optimiser, schedule and loss."""
        from tf_medseg.training.optim import compile_model
        return compile_model(model, self.config.train, self.head, jit, steps_per_epoch,
                             metric=self.labels.metric)

    def model(self, policy: str, jit: bool, steps_per_epoch: int) -> keras.Model:
        """The configured network built under ``policy`` and compiled; call it inside the
        strategy's scope. The initial weights depend on ``train.seed`` alone."""
        from tf_medseg.training.optim import building
        with building(policy, self.config.train.seed):
            return self.compile(self.network(), jit, steps_per_epoch)

    def trainer(self, model: keras.Model, strategy: tf.distribute.Strategy):
        """The distributed train and validation steps of a compiled ``model``."""
        from tf_medseg.training.loop import Trainer
        t = self.config.train
        return Trainer(model, strategy, self.labels.classes, self.head, threshold=t.threshold,
                       freeze_encoder_epochs=t.freeze_encoder_epochs)

    def callbacks(self, steps_per_epoch: int, *, objective: str, outputs=(),
                  verbose: int = 1, budget: dict | None = None, record_budget=None):
        """The callbacks of one training and its NaN guard
        (:func:`tf_medseg.training.callbacks.make_callbacks`)."""
        from tf_medseg.training.callbacks import make_callbacks
        return make_callbacks(self, steps_per_epoch, objective=objective, outputs=outputs,
                              verbose=verbose, budget=budget, record_budget=record_budget)

    def run_outputs(self, run_dir: Path, initial_epoch: int, resuming: bool) -> list:
        """The callbacks that record a run in its folder (the chief's)."""
        from tf_medseg.training.callbacks import run_outputs
        return run_outputs(self, run_dir, initial_epoch, resuming)

    # Serving and scoring ----------------------------------------------------------------

    @property
    def contract(self) -> Contract:
        """What a model of this experiment takes and answers (its export's metadata)."""
        d = self.config.data
        return Contract(labels=self.labels, head=self.head, context=tuple(d.context),
                        input_size=tuple(d.image_size),
                        image_dtype=self.dataset.image_dtype.name, slice_axis=d.slice_axis,
                        spacing=tuple(d.spacing) if d.spacing else None,
                        threshold=self.config.train.threshold, sampling=d.sampling,
                        overlap=self.config.predict.overlap, tta=self.config.predict.tta,
                        mirror_axes=self.config.predict.mirrors(self.config.model.dims,
                                                                self.config.augment),
                        orientation=self.dataset.orientation,
                        roi_names=roi_names(self.config.export.roi_names, self.labels.classes))

    def predictor(self, model: keras.Model):
        """The predictor of a model in memory (its full-resolution head), as its export would
        serve it."""
        from tf_medseg.inference.predictor import Predictor
        from tf_medseg.models import main_output
        return Predictor.of_model(main_output(model), self.contract,
                                  batch_size=self.config.data.batch_size)

    def score(self, model: keras.Model, split: str = "val", **options) -> tuple[dict, list]:
        """(aggregate, rows) of ``model`` on ``split``'s whole scans, with the data set's
        metric (:func:`tf_medseg.evaluation.evaluate.evaluate` options)."""
        from tf_medseg.evaluation.evaluate import evaluate
        options.setdefault("tolerance", self.config.eval.surface_tolerance_mm)
        return evaluate(self.predictor(model), self.dataset, split, **options)

    def export(self, model: keras.Model, out_dir: Path, extra_metadata: dict | None = None
               ) -> Path:
        """The SavedModel of ``model``'s full-resolution head, with this contract."""
        from tf_medseg import __version__
        from tf_medseg.export.saved_model import export_saved_model
        from tf_medseg.models import main_output
        extra = {"model": self.config.model.name, "config_digest": self.config.digest(),
                 "tf_medseg_version": __version__, **(extra_metadata or {})}
        return export_saved_model(main_output(model), self.contract, out_dir, extra)
