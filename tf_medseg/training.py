"""Training: set up, restore, fit, finish.

:func:`train` reads as those steps; each concern lives in its own module:

* :mod:`tf_medseg.runtime`: precision, XLA, the ``tf.distribute`` strategy, the chief;
* :mod:`tf_medseg.optim`: schedule, optimiser, the compiled model;
* :mod:`tf_medseg.callbacks`: the callbacks (assembled once, for training and for tuning);
* :mod:`tf_medseg.checkpoints`: history, best checkpoint, the epoch backup;
* :mod:`tf_medseg.run_dir`: the run folder's safety rules (lock, overwrite, resume checks).

Run directory (``train.run_dir``)::

    config.yaml     the resolved config
    runtime.json    precision policy, jit_compile, strategy and loop picked, and why
    logs/           TensorBoard: train/ and validation/ (scalars per class, learning rate, the
                    config as text, overlays of fixed validation slices)
    checkpoints/    best.weights.h5 + best.json (the kept model: best train.monitor) and
                    backup/ (the last finished epoch, for resuming after a crash)
    history.csv     one row per finished epoch
    metrics.json    competition metric of the kept model on the validation cases
    saved_model/    the export, with metadata.json

Only the chief (the one process of single-machine training, or the chief of a multi-worker
cluster) writes the run directory; other workers keep their backups in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import keras
import tensorflow as tf

from tf_medseg.callbacks import NanGuard, make_callbacks, run_outputs
from tf_medseg.checkpoints import Backup, read_history
from tf_medseg.config import Config, dump_config
from tf_medseg.data.pipeline import task_for
from tf_medseg.data.task import output_of
from tf_medseg.errors import TrainingError
from tf_medseg.files import atomic_write
from tf_medseg.loop import Trainer, fit
from tf_medseg.optim import compiled_model
from tf_medseg.records import build_records
from tf_medseg.run_dir import RunDir, check_run_dir, identity, read_json
from tf_medseg.runtime import (
    check_global_batch,
    check_memory,
    get_strategy,
    is_chief,
    resolve_runtime,
    runtime_for,
    strategy_name,
    weights_fingerprint,
)

__all__ = ["train", "make_datasets", "epoch_steps", "resolve_runtime"]


def make_datasets(config: Config, strategy: tf.distribute.Strategy, builder
                  ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The training and validation data sets of ``config`` as ``strategy`` takes them; their
    shuffling, organ resampling and augmentation depend on ``train.seed`` alone."""
    from tf_medseg.data.pipeline import make_dataset
    # tf.data's seeded ops pair their seed with TensorFlow's global seed, read when they are
    # made: seeded here, whatever the process drew before (preparing data, another run).
    keras.utils.set_random_seed(config.train.seed)
    # Several replicas: whole training batches only, so that no replica gets an empty one.
    replicas = strategy.num_replicas_in_sync
    train_ds = make_dataset(config, "train", builder=builder, drop_remainder=replicas > 1)
    val_ds = make_dataset(config, "val", builder=builder)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Every worker reads the whole (small, cached) pipeline and keeps its share of each
        # batch: TFDS writes few shard files, too few to shard by file.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)
    return train_ds, val_ds


def epoch_steps(config: Config, train_ds: tf.data.Dataset) -> int:
    """Optimiser steps in an epoch: ``train.steps_per_epoch``, else the batches of the
    training set (the schedules span ``train.epochs`` of them)."""
    return config.train.steps_per_epoch or int(train_ds.cardinality())


@dataclasses.dataclass
class Session:
    """One training process: its config, where and how it runs, and its run folder (the
    chief's; None on other workers)."""

    config: Config
    strategy: tf.distribute.Strategy
    chief: bool
    policy: str
    jit: bool
    run: RunDir | None
    identity: dict
    overwrite: bool

    @property
    def run_dir(self) -> Path:
        return Path(self.config.train.run_dir).expanduser()


def train(config: Config, verbose: int | None = None, overwrite: bool = False) -> dict:
    """Train, keep the best model, score it on the validation cases and export it.

    Rerunning with the same run directory after a crash resumes from the last epoch backup.
    A run directory holding a finished run is refused unless ``overwrite``; then the earlier
    run is kept in ``previous/`` until this one's outputs are complete
    (:mod:`tf_medseg.run_dir`).

    Returns:
        The metrics written to ``metrics.json`` (on a non-chief worker: the last epoch's logs).
    """
    session = set_up(config, overwrite)
    try:
        # Data first: bad input stops here, before the run directory is changed. Built once
        # (the Kaggle source is fingerprinted once) for both splits and the final scoring.
        builder = build_records(config.data)
        task = task_for(config, builder)
        train_ds, val_ds = make_datasets(config, session.strategy, builder)
        steps = epoch_steps(config, train_ds)
        with session.strategy.scope():
            model = compiled_model(config, session.policy, session.jit, steps, task)
        backup, initial_epoch, trained = restore(session, model)
        outputs = (run_outputs(config, builder, session.run_dir, initial_epoch,
                               resuming=initial_epoch > 0, task=task,
                               output=output_of(config, task))
                   if session.chief else [])
        callbacks, nan_guard = make_callbacks(config, builder, steps,
                                              objective=config.train.monitor,
                                              outputs=outputs, verbose=int(session.chief))
        trainer = Trainer.for_config(model, session.strategy, config, task)
        if not trained:
            fit(trainer, train_ds, val_ds, epochs=config.train.epochs,
                steps_per_epoch=config.train.steps_per_epoch, initial_epoch=initial_epoch,
                callbacks=callbacks, verbose=_verbosity(verbose), on_epoch_saved=backup.save)
        stop_on_nan(nan_guard, backup)
        return finish(session, model, backup, trainer, builder, task)
    finally:
        if session.run is not None:
            session.run.release()


def _verbosity(verbose: int | None) -> int:
    """Keras's progress bar on a terminal, one line per epoch in a log file."""
    return (1 if sys.stdout.isatty() else 2) if verbose is None else verbose


def set_up(config: Config, overwrite: bool) -> Session:
    """The strategy (first: MultiWorkerMirroredStrategy requires it), the runtime, the checks
    that a batch fits, and the run folder checked and locked before any work (a second
    training into it, or a finished run there, stops at once). The folder is changed only
    once the data and the model are ready (:func:`restore`)."""
    strategy = get_strategy(config)
    chief = is_chief(strategy)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy, jit = runtime_for(config)
    check_global_batch(config, strategy)
    check_memory(config)
    run = RunDir(check_run_dir(config.train.run_dir)) if chief else None
    session = Session(config, strategy, chief, policy, jit, run, identity(config, policy),
                      overwrite)
    if chief:
        run.claim(session.identity, overwrite)
    return session


def restore(session: Session, model: keras.Model) -> tuple[Backup, int, bool]:
    """The epoch backup of an interrupted run loaded into ``model`` (or a fresh start), the
    run folder readied (an earlier run moved into ``previous/``, leftovers removed) and
    ``config.yaml`` and ``runtime.json`` written. Returns the backup, the epochs already
    trained and whether training had ended (only scoring and export were left)."""
    config, run_dir = session.config, session.run_dir
    backup = Backup(model, run_dir / "checkpoints" / "backup", session.chief, session.identity)
    if session.chief:
        resuming = session.run.mode == "resume"
        session.run.begin()
    else:  # the chief decides; a worker follows its backup (none after --overwrite)
        resuming = backup.latest() is not None and not session.overwrite
    initial_epoch = backup.restore() if resuming else 0  # >= 1 when resuming
    trained = resuming and backup.trained()

    strategy = session.strategy
    runtime = {"precision": session.policy, "jit_compile": session.jit,
               "strategy": strategy_name(strategy), "replicas": strategy.num_replicas_in_sync,
               "loop": "custom (strategy.run in a tf.function)",
               "loss_scaling": isinstance(model.optimizer,
                                          keras.optimizers.LossScaleOptimizer),
               "deterministic_ops": config.train.deterministic,
               "devices": [d.name for d in tf.config.list_logical_devices()],
               "auto": dict(zip(("precision", "jit_compile"), resolve_runtime()))}
    if session.chief:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        dump_config(config, run_dir / "config.yaml")
        atomic_write(run_dir / "runtime.json", json.dumps(runtime, indent=2) + "\n")
    where = ("training had ended; scoring and exporting" if trained else
             f"resuming after epoch {initial_epoch} (the last backup)" if resuming
             else "starting")
    print(f"Runtime: precision {session.policy}, jit_compile {session.jit}, "
          f"{runtime['strategy']} with {runtime['replicas']} replica(s), custom training "
          f"loop; {where} in {run_dir}"
          + ("" if session.chief else " (worker: the chief writes the outputs)"), flush=True)
    return backup, initial_epoch, trained


def stop_on_nan(nan_guard: NanGuard, backup: Backup) -> None:
    """A NaN loss ends the run with a one-line error; the last good backup is kept."""
    if nan_guard.batch is None:
        return
    backup.close(finished=False)
    kept = (f"the backup of epoch {int(backup.epoch.numpy())} is kept: lower "
            f"train.learning_rate (or set train.clipnorm) and rerun to continue from it, "
            f"or add --overwrite to start over (e.g. with train.precision float32)"
            if backup.latest() else
            "lower train.learning_rate (or set train.precision float32, or "
            "train.clipnorm) and rerun")
    raise TrainingError(f"loss became NaN in epoch {nan_guard.epoch + 1}, batch "
                        f"{nan_guard.batch + 1}; {kept}")


def finish(session: Session, model: keras.Model, backup: Backup, trainer, builder, task
           ) -> dict:
    """Score the kept model on the validation cases, export it and write ``metrics.json``
    (last: it marks the run finished); then the backup and any ``previous/`` run go. A
    non-chief worker waits for the chief's outputs and returns {}."""
    from tf_medseg.evaluate import evaluate_scans, json_safe
    from tf_medseg.export import export_saved_model
    from tf_medseg.models import main_output

    config, run_dir = session.config, session.run_dir
    # The backup stays until the outputs are complete: a crash while scoring or exporting
    # resumes here, with training marked as ended.
    if backup.latest():
        backup.mark_trained()
    # Every worker prints it: equal fingerprints show that the workers trained in sync.
    print(f"Weights fingerprint after training: {weights_fingerprint(model):.9e}", flush=True)
    if not session.chief:
        backup.close(finished=True)
        trainer.any_worker(False)  # wait for the chief's outputs, then leave together
        return {}
    ckpt_dir = run_dir / "checkpoints"
    best_path = ckpt_dir / "best.weights.h5"
    if config.train.keep == "best" and best_path.is_file():
        model.load_weights(str(best_path))
    model = main_output(model)

    print("Scoring the kept model on the validation cases (" +
          ("3-D competition metric" if task.kind == "scans" else "3-D Dice and HD95 in mm") +
          ")...", flush=True)
    result, per_case_day = evaluate_scans(lambda x: model(x, training=False), config, "val",
                                          builder=builder)
    result = json_safe({**result, ("case_days" if task.kind == "scans" else "cases"):
                        per_case_day})
    result["epochs_trained"] = len(read_history(run_dir / "history.csv"))
    if config.train.keep == "last":
        result["kept_epoch"] = result["epochs_trained"] - 1
    elif (ckpt_dir / "best.json").is_file():
        result["kept_epoch"] = read_json(ckpt_dir / "best.json", "record of the best epoch",
                                         "delete it and rerun")["epoch"]
    if config.export.saved_model:
        export_saved_model(model, config, run_dir / "saved_model", task=task,
                           extra_metadata={"validation": {
                               k: result[k] for k in ("dice", "hausdorff", "hd95", "score")
                               if k in result}})
    atomic_write(run_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    backup.close(finished=True)
    session.run.completed()  # the run this one replaced (--overwrite) goes only now
    trainer.any_worker(False)  # the other workers wait for this: the outputs are complete
    summary = ", ".join(f"{k} {result[k]:.4f}" if result[k] is not None else f"{k} n/a"
                        for k in ("dice_pooled", "dice", "hausdorff", "hd95", "score")
                        if k in result)
    print(f"Validation (kept model, whole scans): {summary}; outputs in {run_dir}", flush=True)
    return result
