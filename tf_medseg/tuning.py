"""KerasTuner search over the config: ``python train.py --config X --tune``.

The ``tune:`` section names the tuner, the objective and the search space
(:mod:`tf_medseg.search_space`). Every trial is an ordinary training run of the trial's config
(the same model builders, losses, optimiser, custom loop, strategy and precision as
``train.py``), scored at its best epoch. Output, in ``RUN_DIR/tuning/``::

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

import csv
import contextlib
import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.src.distribute import utils as kt_distribute
from keras_tuner.src.engine.oracle import Display

from tf_medseg.config import Config, dump_config, improves
from tf_medseg.errors import ConfigError, TrainingError
from tf_medseg.files import atomic_open, atomic_write
from tf_medseg.run_dir import RunDir, check_run_dir, read_json
from tf_medseg.search_space import SpaceEntry, apply_values, parse_space

#: Logged per epoch and kept per trial (at its best epoch) in the results.
RESULT_METRICS = ("val_score", "val_hausdorff", "val_dice", "val_iou", "val_loss", "loss")


def objective_of(config: Config) -> keras_tuner.Objective:
    tune = config.tune
    direction = improves(tune.objective) if tune.direction == "auto" else tune.direction
    return keras_tuner.Objective(tune.objective, direction)


class ConfigHyperModel(keras_tuner.HyperModel):
    """The config as a KerasTuner HyperModel: ``build(hp)`` maps the trial's values onto the
    config and calls the ordinary builders (:func:`tf_medseg.training.compiled_model`);
    ``fit`` trains with the ordinary loop (:func:`tf_medseg.loop.fit`)."""

    def __init__(self, config: Config, *, strategy: tf.distribute.Strategy, policy: str,
                 jit: bool, builder, verbose: int):
        super().__init__(name="tf_medseg")
        self.config, self.strategy, self.policy, self.jit = config, strategy, policy, jit
        self.builder, self.verbose = builder, verbose
        self.entries: list[SpaceEntry] = parse_space(config)
        self.epochs = config.tune.epochs or config.train.epochs
        self.execution = 0  # of the running trial: executions differ in seed

    def task(self, config: Config):
        """The data's task for a trial's config (normalisation resolved)."""
        from tf_medseg.data.pipeline import task_for
        return task_for(config, self.builder)

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

    def build(self, hp) -> keras.Model:
        from tf_medseg.training import check_global_batch, compiled_model, make_datasets
        config = self.trial_config(hp)
        check_global_batch(config, self.strategy)  # a trial's batch can be searched
        train_ds, _ = make_datasets(config, self.strategy, self.builder)  # for its length
        steps = config.train.steps_per_epoch or int(train_ds.cardinality())
        model = compiled_model(config, self.policy, self.jit, steps, self.task(config))
        # Optimizer variables exist before Hyperband loads an earlier round's checkpoint into
        # the model, so that the moments and the step (the schedule) continue too.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, *args, callbacks=(), epochs=None, initial_epoch=0, verbose=None,
            **kwargs):
        """Train one execution of a trial; the History of its epochs (KerasTuner picks the
        best epoch by the objective)."""
        from tf_medseg.loop import Trainer, fit
        from tf_medseg.training import NanGuard, TimeBudget, ValidationScore, make_datasets
        config = self.trial_config(hp)
        train_ds, val_ds = make_datasets(config, self.strategy, self.builder)
        nan_guard, history = NanGuard(), keras.callbacks.History()
        ours = [nan_guard]
        if config.tune.objective == "val_score":
            ours.insert(0, ValidationScore(config, self.builder))  # first: the others see it
        after = [history]
        if config.train.max_minutes:
            after.append(TimeBudget(config.train.max_minutes))
        trainer = Trainer.for_config(model, self.strategy, config, self.task(config))
        fit(trainer, train_ds, val_ds, epochs=epochs or self.epochs,
            steps_per_epoch=config.train.steps_per_epoch, initial_epoch=initial_epoch,
            callbacks=ours + list(callbacks) + after,
            verbose=self.verbose if verbose is None else verbose)
        self.execution += 1
        if nan_guard.batch is not None:
            raise keras_tuner.errors.FailedTrialError(
                f"loss became NaN in epoch {nan_guard.epoch + 1}, batch {nan_guard.batch + 1}")
        if not history.history:
            raise keras_tuner.errors.FailedTrialError("no epoch finished")
        return history


def _values_text(trial, entries: list[SpaceEntry]) -> str:
    values = trial.hyperparameters.values
    parts = [f"{e.key}={_short(values[e.key])}" for e in entries if e.key in values]
    if "tuner/epochs" in values:
        parts.append(f"epochs {values['tuner/initial_epoch']}-{values['tuner/epochs']}")
    return ", ".join(parts) or "the base config"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def best_epoch(trial) -> int | None:
    """The 1-based epoch of a completed trial's best value (a Hyperband trial that continues
    an earlier round's model starts at ``tuner/initial_epoch``)."""
    if trial.status != "COMPLETED" or trial.best_step is None:
        return None
    return int(trial.best_step) + 1 + int(trial.hyperparameters.values.get(
        "tuner/initial_epoch", 0))


def _number(trial_id: str) -> int:
    return int(trial_id) + 1 if str(trial_id).isdigit() else 0


class TrialLines(Display):
    """KerasTuner's progress display, one line per trial start and end, on the process that
    holds the oracle (a single process, or the chief). It also keeps each trial's duration in
    the oracle's state, and calls ``on_end(seconds)`` after every trial (to write the
    results)."""

    def __init__(self, oracle, entries: list[SpaceEntry], on_end, seconds: dict):
        super().__init__(oracle, verbose=1)
        self.entries, self.on_end, self.seconds = entries, on_end, dict(seconds)

    def get_state(self):
        return {**super().get_state(), "seconds": self.seconds}

    def set_state(self, state):
        super().set_state(state)
        self.seconds = dict(state.get("seconds", {}))

    def _total(self) -> str:
        total = self.oracle.max_trials
        return f"/{total}" if total else ""

    def on_trial_begin(self, trial):
        now = datetime.now()
        self.trial_start[trial.trial_id] = now
        self.search_start = self.search_start or now
        print(f"Trial {_number(trial.trial_id)}{self._total()} started: "
              f"{_values_text(trial, self.entries)}", flush=True)

    def on_trial_end(self, trial):
        start = self.trial_start.get(trial.trial_id)
        seconds = (datetime.now() - start).total_seconds() if start else math.nan
        self.seconds[trial.trial_id] = seconds
        name = self.oracle.objective.name
        head = f"Trial {_number(trial.trial_id)}{self._total()} {trial.status.lower()}"
        if trial.status == "COMPLETED":
            best = self.oracle.get_best_trials(1)
            best_text = (f"; best so far {best[0].score:.4f} (trial {_number(best[0].trial_id)})"
                         if best else "")
            print(f"{head} in {_duration(seconds)}: {name} {trial.score:.4f} at epoch "
                  f"{best_epoch(trial)}{best_text}", flush=True)
        else:
            reason = (trial.message or "").strip().splitlines()
            print(f"{head} after {_duration(seconds)}: {reason[-1] if reason else 'no reason'}",
                  flush=True)
        self.on_end(self.seconds)


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
            print(f"Trial {_number(trial.trial_id)} started on {self.tuner_id}: "
                  f"{_values_text(trial, self.entries)}", flush=True)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if _is_worker():
            done = self.oracle.get_trial(trial.trial_id)
            score = (f": {self.oracle.objective.name} {done.score:.4f}"
                     if done.score is not None else "")
            print(f"Trial {_number(trial.trial_id)} {done.status.lower()} on "
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


# ------------------------------------------------------------------------------------ results

def _trial_rows(oracle, entries: list[SpaceEntry], seconds: dict) -> list[dict]:
    rows = []
    for trial_id in oracle.start_order:
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row = {"trial": _number(trial_id), "trial_id": trial_id, "status": trial.status}
        for entry in entries:
            row[entry.key] = values.get(entry.key)
        if "tuner/epochs" in values:
            row["epochs"] = values["tuner/epochs"]
        row["objective"] = trial.score if trial.status == "COMPLETED" else None
        row["best_epoch"] = best_epoch(trial)
        for name in RESULT_METRICS:
            metric = trial.metrics.metrics.get(name)
            row[name] = metric.get_history()[-1].value[0] if (
                metric and metric.get_history()) else None
        row["seconds"] = round(seconds[trial_id], 1) if trial_id in seconds else None
        rows.append(row)
    return rows


def _ranked(rows: list[dict], direction: str) -> list[dict]:
    done = [r for r in rows if r["objective"] is not None and math.isfinite(r["objective"])]
    done.sort(key=lambda r: r["objective"], reverse=direction == "max")
    return done + [r for r in rows if r not in done]


@contextlib.contextmanager
def keras_tuner_state(folder: Path):
    """While it lasts, KerasTuner's own state files (``oracle.json``, ``tuner_*.json``,
    ``trial_*/trial.json``, ...) are written atomically, as every other output (KerasTuner
    writes them in place: a kill mid-write would leave a file no later run can read), and a
    damaged one is reported in one line naming it. KerasTuner reads and writes them all
    through ``keras_tuner.src.utils.save_json`` / ``load_json``, replaced here and restored
    after."""
    from keras_tuner.src import utils as kt_utils

    def save_json(path, obj):
        text = json.dumps(obj)
        atomic_write(path, text)
        return text

    def load_json(path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TrainingError(f"{path}: damaged search state ({str(exc).splitlines()[0][:80]}"
                                f"); delete {folder} to search again (or use another "
                                f"train.run_dir)") from None

    saved = kt_utils.save_json, kt_utils.load_json
    kt_utils.save_json, kt_utils.load_json = save_json, load_json
    try:
        yield
    finally:
        kt_utils.save_json, kt_utils.load_json = saved


def write_results(oracle, config: Config, entries: list[SpaceEntry], folder: Path,
                  seconds: dict) -> list[dict]:
    """results.csv, results.json and best_config.yaml (once a trial has completed), each
    written atomically; the rows, best first."""
    objective = objective_of(config)
    rows = _trial_rows(oracle, entries, seconds)
    fields = list(rows[0]) if rows else ["trial"]
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    ranked = _ranked(rows, objective.direction)
    best = ranked[0] if ranked and ranked[0]["objective"] is not None else None
    summary = {"tuner": config.tune.tuner, "objective": objective.name,
               "direction": objective.direction,
               "space": {e.key: e.describe() for e in entries},
               "best_trial": best["trial"] if best else None, "trials": rows}
    atomic_write(folder / "results.json", json.dumps(summary, indent=2, default=str) + "\n")
    if best is not None:
        trial = oracle.trials[best["trial_id"]]
        values = {e.key: e.config_value(trial.hyperparameters.values[e.key])
                  for e in entries if e.key in trial.hyperparameters.values}
        dump_config(apply_values(config, values), folder / "best_config.yaml", header=(
            f"Best trial ({best['trial']}) of the search in {folder}: {objective.name} "
            f"{best['objective']:.4f} at epoch {best['best_epoch']}.\n"
            f"Train it with: python train.py --config {folder / 'best_config.yaml'}"))
    return ranked


def format_table(rows: list[dict], entries: list[SpaceEntry], objective: str) -> str:
    """The trials as a text table, best first."""
    columns = (["trial"] + [e.key for e in entries]
               + (["epochs"] if any("epochs" in r for r in rows) else [])
               + [objective, "best_epoch"]
               + [m for m in ("val_score", "val_dice", "val_loss") if m != objective]
               + ["seconds", "status"])
    metrics = {objective, "val_score", "val_dice", "val_loss"}

    def cell(row, column):
        value = row.get("objective" if column == objective else column)
        if value is None:
            return "-"
        if isinstance(value, float):
            if column == "seconds":
                return f"{value:.0f}"
            return f"{value:.4f}" if column in metrics else f"{value:.4g}"
        return str(value)

    table = [columns] + [[cell(r, c) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(text.rjust(w) for text, w in zip(line, widths)) for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _hparams_config(entries: list[SpaceEntry], log_dir: Path, objective: str) -> None:
    """The HParams dashboard's experiment: one column per entry, the validation metrics."""
    from tensorboard.plugins.hparams import api as hp_api
    hparams = []
    for entry in entries:
        if entry.type == "choice":
            domain = hp_api.Discrete(entry.hp_values())
        elif entry.type == "int" and not entry.step:
            domain = hp_api.IntInterval(int(entry.min), int(entry.max))
        elif entry.type in ("int", "float") and not entry.step:
            domain = hp_api.RealInterval(float(entry.min), float(entry.max))
        else:
            domain = None
        hparams.append(hp_api.HParam(entry.key, domain))
    names = ["score", "dice", "hausdorff", "loss"] if objective == "val_score" else [
        "dice", "loss"]
    metrics = [hp_api.Metric(f"epoch_{n}", group="validation", display_name=f"val_{n}")
               for n in names] + [hp_api.Metric("epoch_loss", group="train",
                                                display_name="loss")]
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp_api.hparams_config(hparams=hparams, metrics=metrics)


# ------------------------------------------------------------------------------------- search

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


def _show_trials(oracle, config: Config, entries: list[SpaceEntry], folder: Path) -> None:
    """Replace KerasTuner's display by the trial lines, which also write the results after
    every trial; trial durations carry over from an interrupted run."""
    saved = folder / "oracle.json"
    state = (read_json(saved, "search state", f"delete {folder} to search again (or use "
                       f"another train.run_dir)") if saved.is_file() else {})
    seconds = state.get("display", {}).get("seconds", {})
    if not isinstance(seconds, dict):
        seconds = {}
    lines = TrialLines(oracle, entries, lambda durations: write_results(
        oracle, config, entries, folder, durations), seconds)
    lines.set_state({**oracle._display.get_state(), "seconds": seconds})
    oracle._display = lines


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
    from tf_medseg.training import check_memory, get_strategy, runtime_for

    if not config.tune.space:
        raise ConfigError("tune.space: empty; --tune searches the keys listed there, e.g. "
                          "tune: {space: {model.base_filters: [16, 32]}} (see "
                          "configs/tune_unet.yaml)")
    if config.train.strategy == "multi_worker":
        raise ConfigError("train.strategy: multi_worker does not combine with --tune here; "
                          "distribute the search instead (KERASTUNER_TUNER_ID, "
                          "KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT; see the README)")
    role = _role()
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
    from tf_medseg.data.prepare import prepare
    from tf_medseg.training import strategy_name
    builder = prepare(config.data) if role != "chief" else None
    folder = run_dir / "tuning"
    _check_same_search(folder, config)
    folder.mkdir(parents=True, exist_ok=True)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    hypermodel = ConfigHyperModel(config, strategy=strategy, policy=policy, jit=jit,
                                  builder=builder, verbose=verbose)
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
        _show_trials(oracle, config, entries, folder)
        _hparams_config(entries, folder / "logs", objective.name)
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
              f"{_duration(time.monotonic() - started)}; the chief writes the results",
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
