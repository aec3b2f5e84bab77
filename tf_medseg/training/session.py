"""A training session: set up, restore, fit, finish.

:func:`train` reads as those steps; each concern lives in its own module:

* :mod:`~tf_medseg.training.experiment`: the data set, model, trainer and callbacks of a config;
* :mod:`~tf_medseg.training.runtime`: precision, XLA, the ``tf.distribute`` strategy, the chief;
* :mod:`~tf_medseg.training.optim`: schedule, optimiser, the compiled model;
* :mod:`~tf_medseg.training.callbacks`: the callbacks (assembled once, for training and tuning);
* :mod:`~tf_medseg.training.checkpoints`: history, best checkpoint, the epoch backup;
* :mod:`tf_medseg.run_dir`: the run folder's safety rules (lock, overwrite, resume checks).

Run directory (``train.run_dir``)::

    config.yaml     the resolved config
    runtime.json    precision policy, jit_compile, strategy and loop picked, and why
    logs/           TensorBoard: train/ and validation/ (scalars per class, learning rate, the
                    config as text, overlays of fixed validation slices)
    checkpoints/    best.weights.h5 + best.json (the kept model: best train.monitor) and
                    backup/ (the last finished epoch, for resuming after a crash)
    history.csv     one row per finished epoch
    metrics.json    the kept model scored on the validation cases (the data set's metric)
    budget.json     with train.max_minutes: the measured step rate and the epochs it fixed
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

from tf_medseg.config import Config, dump_config
from tf_medseg.errors import ConfigError, TrainingError
from tf_medseg.files import atomic_write
from tf_medseg.planning.planner import planned_config
from tf_medseg.run_dir import (
    BUDGET,
    RunDir,
    check_records_outside_runs,
    check_run_dir,
    identity,
    is_cv_run,
    read_json,
)
from tf_medseg.training.callbacks import NanGuard, budget_recorder
from tf_medseg.training.checkpoints import Backup, read_history
from tf_medseg.training.experiment import Experiment
from tf_medseg.training.loop import fit
from tf_medseg.training.runtime import (
    check_global_batch,
    check_memory,
    get_strategy,
    is_chief,
    resolve_runtime,
    runtime_for,
    strategy_name,
    weights_fingerprint,
)

__all__ = ["train", "resolve_runtime"]


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
    config = planned_config(config)  # data.plan auto: before any check of its values
    session = set_up(config, overwrite)
    try:
        # Data first: bad input stops here, before the run directory is changed. The records
        # are built once (the Kaggle source is fingerprinted once) for both splits and the
        # final scoring.
        experiment = Experiment(config)
        train_ds, val_ds = experiment.datasets(session.strategy)
        steps = experiment.steps_per_epoch(train_ds)
        with session.strategy.scope():
            model = experiment.model(session.policy, session.jit, steps)
        backup, initial_epoch, trained = restore(session, model)
        outputs = (experiment.run_outputs(session.run_dir, initial_epoch,
                                          resuming=initial_epoch > 0)
                   if session.chief else [])
        callbacks, nan_guard = experiment.callbacks(
            steps, objective=config.train.monitor if config.train.keep == "best" else None,
            outputs=outputs, verbose=int(session.chief),
            budget=stored_budget(session, initial_epoch),
            record_budget=budget_recorder(session.run_dir) if session.chief else None)
        trainer = experiment.trainer(model, session.strategy)
        if not trained:
            fit(trainer, train_ds, val_ds, epochs=config.train.epochs,
                steps_per_epoch=config.train.steps_per_epoch, initial_epoch=initial_epoch,
                callbacks=callbacks, verbose=_verbosity(verbose), on_epoch_saved=backup.save)
        stop_on_nan(nan_guard, backup)
        return finish(session, experiment, model, backup, trainer)
    finally:
        if session.run is not None:
            session.run.release()


def stored_budget(session: Session, initial_epoch: int) -> dict | None:
    """``train.max_minutes``'s plan of the run being resumed (``budget.json``: the epochs it
    fixed), so that the resumed run trains the same steps; None for a fresh start or a run
    without a budget."""
    path = session.run_dir / BUDGET
    if not session.config.train.max_minutes or initial_epoch == 0 or not path.is_file():
        return None
    plan = read_json(path, "time budget plan", "delete it to plan the budget anew")
    if not isinstance(plan.get("epochs"), int) or plan["epochs"] < 1:
        raise TrainingError(f"{path}: damaged time budget plan (no epochs); delete it to "
                            f"plan the budget anew")
    return plan


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
    if chief:
        check_records_outside_runs(config.data.data_dir, run.path)
        if is_cv_run(run.path):
            raise ConfigError(f"train.run_dir {run.path}: holds a cross-validation (fold_K/ "
                              f"folders); continue it with --folds, or give another "
                              f"train.run_dir")
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
    gpus = len(tf.config.list_logical_devices("GPU"))
    print(f"Runtime: {f'{gpus} GPU(s)' if gpus else 'CPU'}, precision {session.policy}, "
          f"jit_compile {session.jit}, {runtime['strategy']} with {runtime['replicas']} "
          f"replica(s), custom training loop; {where} in {run_dir}"
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


def finish(session: Session, experiment: Experiment, model: keras.Model, backup: Backup,
           trainer) -> dict:
    """Score the kept model on the validation cases, export it and write ``metrics.json``
    (last: it marks the run finished); then the backup and any ``previous/`` run go. A
    non-chief worker waits for the chief's outputs and returns {}."""
    from tf_medseg.evaluation.scoring import json_safe, rows_name

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
    if not experiment.validates:
        return finish_without_validation(session, experiment, model, backup, trainer)
    if config.train.keep == "best" and best_path.is_file():
        model.load_weights(str(best_path))

    print("Scoring the kept model on the validation cases (" +
          ("3-D competition metric" if experiment.labels.metric == "competition"
           else "3-D Dice and HD95 in mm") + ")...", flush=True)
    result, rows = experiment.score(model, "val")
    result = json_safe({**result, rows_name(experiment.labels): rows})
    result["epochs_trained"] = len(read_history(run_dir / "history.csv"))
    if config.train.keep == "last":
        result["kept_epoch"] = result["epochs_trained"]  # 1-based, as history.csv
    elif (ckpt_dir / "best.json").is_file():
        result["kept_epoch"] = read_json(ckpt_dir / "best.json", "record of the best epoch",
                                         "delete it and rerun")["epoch"]
    if config.export.saved_model:
        experiment.export(model, run_dir / "saved_model", {"validation": {
            k: result[k] for k in ("dice", "hausdorff", "hd95", "score") if k in result}})
    atomic_write(run_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    backup.close(finished=True)
    session.run.completed()  # the run this one replaced (--overwrite) goes only now
    trainer.any_worker(False)  # the other workers wait for this: the outputs are complete
    summary = ", ".join(f"{k} {result[k]:.4f}" if result[k] is not None else f"{k} n/a"
                        for k in ("dice_pooled", "dice", "hausdorff", "hd95", "score")
                        if k in result)
    print(f"Validation (kept model, whole scans): {summary}; outputs in {run_dir}", flush=True)
    return result


def finish_without_validation(session: Session, experiment: Experiment, model: keras.Model,
                              backup: Backup, trainer) -> dict:
    """``data.fold: all``: the last epoch is kept, exported and recorded in ``metrics.json``
    with no validation figures (every case trained)."""
    run_dir = session.run_dir
    epochs = len(read_history(run_dir / "history.csv"))
    result = {"fold": "all", "classes": list(experiment.labels.classes),
              "train_cases": len(experiment.dataset.cases), "epochs_trained": epochs,
              "kept_epoch": epochs}
    if session.config.export.saved_model:
        experiment.export(model, run_dir / "saved_model", {"validation": None})
    atomic_write(run_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    backup.close(finished=True)
    session.run.completed()
    trainer.any_worker(False)
    print(f"Trained on all {result['train_cases']} cases (data.fold all): no validation "
          f"cases to score, the last epoch ({epochs}) is kept; score it on a labelled test "
          f"set with: python -m tf_medseg evaluate-folder --model {run_dir / 'saved_model'} "
          f"--images IMAGES --labels LABELS; outputs in {run_dir}", flush=True)
    return result
