"""KerasTuner search over the config: ``python train.py --config X --tune``.

The ``tune:`` section names the tuner, the objective and the search space
(:mod:`tf_medseg.config.search_space`). Every trial is an ordinary training run of the trial's
config, through its experiment (the same model builders, losses, optimiser, custom loop,
callbacks, strategy and precision as ``train.py``), scored at its best epoch. Output, in
``RUN_DIR/tuning/``::

    results.csv, results.json   one row per trial: its values, the objective and the
                                validation figures at its best epoch, status, seconds
    best_config.yaml            the config of the best trial; ``train.py --config`` takes it
    logs/                       TensorBoard: one folder per trial and execution, and the
                                HParams dashboard over all trials
    oracle.json, tuner_*.json,  KerasTuner's own state: rerunning the same command resumes
    trial_*/                    the search (an interrupted trial starts again); trial_*/
                                holds each trial's record and the weights of its best epoch

Distributed search uses KerasTuner's chief/worker mode: every process runs the same command,
with ``KERASTUNER_TUNER_ID`` (``chief``, or a unique worker name), ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` (the chief's address) set. The chief only hands out trials and
writes the results; the workers train.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.src.distribute import utils as kt_distribute

from tf_medseg.config import Config
from tf_medseg.config.search_space import SpaceEntry, apply_values, parse_space
from tf_medseg.errors import ConfigError, TrainingError
from tf_medseg.files import atomic_write
from tf_medseg.run_dir import RunDir, check_run_dir, read_json
from tf_medseg.workflows.tuning_results import (
    duration,
    format_table,
    hparams_config,
    keras_tuner_state,
    objective_of,
    show_trials,
    trial_number,
    values_text,
    write_results,
)


class ConfigHyperModel(keras_tuner.HyperModel):
    """The config as a KerasTuner HyperModel: ``build(hp)`` maps the trial's values onto the
    config and builds the trial's experiment's model
    (:meth:`tf_medseg.training.experiment.Experiment.model`); ``fit`` trains it with the
    ordinary loop (:func:`tf_medseg.training.loop.fit`) and callbacks."""

    def __init__(self, config: Config, *, strategy: tf.distribute.Strategy, policy: str,
                 jit: bool, experiment, verbose: int):
        super().__init__(name="tf_medseg")
        self.config, self.strategy, self.policy, self.jit = config, strategy, policy, jit
        self.experiment, self.verbose = experiment, verbose
        self.entries: list[SpaceEntry] = parse_space(config)
        self.epochs = config.tune.epochs or config.train.epochs
        self.execution = 0  # of the running trial: executions differ in seed
        self._datasets = None  # (config, datasets) of the execution being built and fitted

    def declare_hyperparameters(self, hp) -> None:
        for entry in self.entries:
            entry.declare(hp)

    def trial_config(self, hp) -> Config:
        """The base config with this trial's values, trained for ``tune.epochs`` (the
        learning-rate schedule spans the epochs a trial trains); the n-th execution of a
        trial has seed ``train.seed + n``."""
        values = {e.key: e.config_value(e.declare(hp)) for e in self.entries}
        return apply_values(self.config, {**values, "train.epochs": self.epochs,
                                          "train.seed": self.config.train.seed
                                          + self.execution})

    def trial(self, hp):
        """The experiment of this trial's config, over the search's records."""
        return self.experiment.configured(self.trial_config(hp))

    def datasets(self, trial):
        """The trial's data sets, made once per execution: build() needs the training set's
        length and fit() the sets themselves, for the same config."""
        if self._datasets is None or self._datasets[0] != trial.config:
            self._datasets = trial.config, trial.datasets(self.strategy)
        return self._datasets[1]

    def build(self, hp) -> keras.Model:
        from tf_medseg.training.runtime import check_global_batch
        trial = self.trial(hp)
        check_global_batch(trial.config, self.strategy)  # a trial's batch can be searched
        train_ds, _ = self.datasets(trial)  # for its length
        model = trial.model(self.policy, self.jit, trial.steps_per_epoch(train_ds))
        # Optimizer variables exist before Hyperband loads an earlier round's checkpoint into
        # the model, so that the moments and the step (the schedule) continue too.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, *args, callbacks=(), epochs=None, initial_epoch=0, verbose=None,
            **kwargs):
        """Train one execution of a trial; the History of its epochs (KerasTuner picks the
        best epoch by the objective)."""
        from tf_medseg.training.loop import fit
        trial = self.trial(hp)
        config = trial.config
        train_ds, val_ds = self.datasets(trial)
        steps = trial.steps_per_epoch(train_ds)
        history = keras.callbacks.History()
        callbacks, nan_guard = trial.callbacks(steps, objective=config.tune.objective,
                                               outputs=[*callbacks, history])
        trainer = trial.trainer(model, self.strategy)
        fit(trainer, train_ds, val_ds, epochs=epochs or self.epochs,
            steps_per_epoch=config.train.steps_per_epoch, initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=self.verbose if verbose is None else verbose)
        self.execution += 1
        self._datasets = None
        if nan_guard.batch is not None:
            raise keras_tuner.errors.FailedTrialError(
                f"loss became NaN in epoch {nan_guard.epoch + 1}, batch {nan_guard.batch + 1}")
        if not history.history:
            raise keras_tuner.errors.FailedTrialError("no epoch finished")
        return history


class _ConfigTuner:
    """What our tuners add to KerasTuner's: the space comes from the config alone, and a
    worker of a distributed search (whose oracle is the chief's) prints the trial lines."""

    entries: list[SpaceEntry] = []

    def run_trial(self, trial, *args, **kwargs):
        self.hypermodel.execution = 0
        return super().run_trial(trial, *args, **kwargs)

    def _populate_initial_space(self):
        # KerasTuner builds a model to find conditional hyperparameters; the config's space
        # has none, so declaring it is enough (and the chief needs neither data nor model).
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        if _is_worker():
            print(f"Trial {trial_number(trial.trial_id)} started on {self.tuner_id}: "
                  f"{values_text(trial, self.entries)}", flush=True)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if _is_worker():
            done = self.oracle.get_trial(trial.trial_id)
            score = (f": {self.oracle.objective.name} {done.score:.4f}"
                     if done.score is not None else "")
            print(f"Trial {trial_number(trial.trial_id)} {done.status.lower()} on "
                  f"{self.tuner_id}{score}", flush=True)


class RandomSearch(_ConfigTuner, keras_tuner.RandomSearch):
    pass


class BayesianOptimization(_ConfigTuner, keras_tuner.BayesianOptimization):
    pass


class Hyperband(_ConfigTuner, keras_tuner.Hyperband):
    pass


def _is_worker() -> bool:
    return kt_distribute.has_chief_oracle() and not kt_distribute.is_chief_oracle()


def _role() -> str:
    if not kt_distribute.has_chief_oracle():
        return "single"
    return "chief" if kt_distribute.is_chief_oracle() else "worker"


SEARCH_FILE = "search.json"
_RESUMABLE = ("tune.max_trials",)  # may change between runs: raising it extends a search


def _search_identity(config: Config) -> dict:
    d = config.to_dict()
    d["tune"] = {k: v for k, v in d["tune"].items() if f"tune.{k}" not in _RESUMABLE}
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("max_minutes",)}
    return d


def _check_same_search(folder: Path, config: Config) -> None:
    """A search is resumed only with the config it started with (a one-line error if not)."""
    path = folder / SEARCH_FILE
    ours = _search_identity(config)
    if not path.is_file():
        return
    theirs = read_json(path, "search record", f"delete {folder} to search again (or use "
                       f"another train.run_dir)")
    for section in ours:
        for key in sorted(set(ours[section]) | set(theirs.get(section, {}))):
            if ours[section].get(key) != theirs.get(section, {}).get(key):
                raise ConfigError(
                    f"{section}.{key}: {folder} holds a search with {section}.{key} "
                    f"{theirs.get(section, {}).get(key)!r}, this config has "
                    f"{ours[section].get(key)!r}; rerun with the same config to resume it, "
                    f"or delete {folder} (or use another train.run_dir) to search again")


def _make_tuner(config: Config, hypermodel: ConfigHyperModel,
                strategy: tf.distribute.Strategy, run_dir: Path):
    tune_config = config.tune
    common = dict(hypermodel=hypermodel, objective=objective_of(config),
                  seed=tune_config.seed if tune_config.seed is not None else config.train.seed,
                  directory=str(run_dir), project_name="tuning", overwrite=False,
                  executions_per_trial=tune_config.executions_per_trial,
                  distribution_strategy=strategy, max_consecutive_failed_trials=3)
    if tune_config.tuner == "hyperband":
        return Hyperband(max_epochs=hypermodel.epochs, factor=tune_config.hyperband_factor,
                         **common)
    if tune_config.tuner == "bayesian":
        return BayesianOptimization(max_trials=tune_config.max_trials,
                                    num_initial_points=tune_config.initial_points, **common)
    return RandomSearch(max_trials=tune_config.max_trials, **common)


def _search(tuner, folder: Path, callbacks: list, verbose: int) -> None:
    """``tuner.search``, with KerasTuner's fatal errors as one line."""
    try:
        tuner.search(callbacks=callbacks, verbose=verbose)
    except keras_tuner.errors.FatalError as exc:
        raise TrainingError(f"search stopped: {str(exc).strip().splitlines()[0]}; the trials' "
                            f"errors are in {folder}/trial_*/trial.json") from None
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        message = str(exc).strip().splitlines()
        raise TrainingError(f"search stopped: {message[0].rstrip('.')} (the last: "
                            f"{message[-1]}); the trials' errors are in "
                            f"{folder}/trial_*/trial.json") from None


def tune(config: Config, verbose: int | None = None) -> list[dict]:
    """Run (or resume) the search of ``config.tune``; the trial rows, best first (none on a
    worker of a distributed search).

    Raises:
        ConfigError: no search space, or a search of another config in the folder.
        TrainingError: no trial completed.
    """
    from tf_medseg.planning.planner import planned_config
    from tf_medseg.training.runtime import check_memory, get_strategy, runtime_for

    if not config.tune.space:
        raise ConfigError("tune.space: empty; --tune searches the keys listed there, e.g. "
                          "tune: {space: {model.base_filters: [16, 32]}} (see "
                          "configs/tune_unet.yaml)")
    if config.train.strategy == "multi_worker":
        raise ConfigError("train.strategy: multi_worker does not combine with --tune here; "
                          "distribute the search instead (KERASTUNER_TUNER_ID, "
                          "KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT; see the README)")
    role = _role()
    config = planned_config(config)  # data.plan auto: the trials start from the plan
    check_memory(config)
    strategy = get_strategy(config)
    tf.get_logger().setLevel("ERROR")  # each trial traces its own functions: no retracing notes
    policy, jit = runtime_for(config)
    # The run folder is locked by the process that writes the results (not the workers of a
    # distributed search, which share the chief's folder).
    run = RunDir(check_run_dir(config.train.run_dir))
    if role != "worker":
        run.path.mkdir(parents=True, exist_ok=True)
        run.lock.acquire()
    try:
        with keras_tuner_state(run.path / "tuning"):
            return _tune(config, role, strategy, policy, jit, run.path, verbose)
    finally:
        run.release()


def _tune(config: Config, role: str, strategy, policy: str, jit: bool, run_dir: Path,
          verbose: int | None) -> list[dict]:
    # Bad data stops here, before the tuning folder exists. The chief does not train.
    from tf_medseg.training.experiment import Experiment
    from tf_medseg.training.runtime import strategy_name
    experiment = Experiment(config) if role != "chief" else None
    folder = run_dir / "tuning"
    _check_same_search(folder, config)
    folder.mkdir(parents=True, exist_ok=True)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    hypermodel = ConfigHyperModel(config, strategy=strategy, policy=policy, jit=jit,
                                  experiment=experiment, verbose=verbose)
    entries = hypermodel.entries
    resuming = (folder / "oracle.json").is_file()
    try:
        tuner = _make_tuner(config, hypermodel, strategy, run_dir)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:  # reloading its state
        raise TrainingError(f"{folder}: damaged search state ({str(exc).splitlines()[0][:80]}"
                            f"); delete {folder} to search again (or use another "
                            f"train.run_dir)") from None
    tuner.entries = entries
    oracle, objective = tuner.oracle, objective_of(config)
    done = 0
    if role != "worker":
        atomic_write(folder / SEARCH_FILE, json.dumps(_search_identity(config)) + "\n")
        show_trials(oracle, config, entries, folder)
        hparams_config(entries, folder / "logs", objective.name)
        done = sum(t.status in ("COMPLETED", "FAILED") for t in oracle.trials.values())

    where = {"single": "", "chief": " (chief: hands out trials, the workers train)",
             "worker": f" (worker {tuner.tuner_id} of the chief at "
                       f"{os.environ.get('KERASTUNER_ORACLE_IP')}:"
                       f"{os.environ.get('KERASTUNER_ORACLE_PORT')})"}[role]
    tune_config = config.tune
    budget = (f"{tune_config.max_trials} trials" if tune_config.tuner != "hyperband"
              else f"up to {hypermodel.epochs} epochs a trial, factor "
                   f"{tune_config.hyperband_factor}")
    print(f"Search: {tune_config.tuner}, {budget}, {objective.name} ({objective.direction}) "
          f"over {', '.join(e.key for e in entries)}; precision {policy}, jit_compile {jit}, "
          f"{strategy_name(strategy)} with {strategy.num_replicas_in_sync} replica(s)"
          + (f"; resuming after {done} finished trial(s)" if resuming and done else "")
          + f"; in {folder}{where}", flush=True)

    started = time.monotonic()
    _search(tuner, folder, [keras.callbacks.TensorBoard(
        str(folder / "logs"), update_freq="epoch", write_graph=False)], verbose)
    if role == "worker":
        print(f"Worker {tuner.tuner_id}: no trials left after "
              f"{duration(time.monotonic() - started)}; the chief writes the results",
              flush=True)
        return []
    rows = write_results(oracle, config, entries, folder, oracle._display.seconds)
    print("\n" + format_table(rows, entries, objective.name) + "\n", flush=True)
    if not rows or rows[0]["objective"] is None:
        raise TrainingError(f"no trial completed; their errors are in "
                            f"{folder}/trial_*/trial.json")
    print(f"Best: trial {rows[0]['trial']}, {objective.name} {rows[0]['objective']:.4f}. "
          f"Results in {folder}/results.csv and results.json; train the best with:\n"
          f"  python train.py --config {folder / 'best_config.yaml'}", flush=True)
    return rows
