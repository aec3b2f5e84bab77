"""The KerasTuner search (``train.py --tune``): a tiny search end to end, the HParams
dashboard, resume after kill -9, and a chief with one worker on 127.0.0.1."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tf_medseg.config import load_config
from tf_medseg.errors import ConfigError

from conftest import ROOT, cli_here, tiny_overrides

SPACE = ("tune.space={model.base_filters: [4, 8], "
         "train.learning_rate: {type: float, min: 1.0e-3, max: 1.0e-2, sampling: log}, "
         "data.context: [[0], [-1, 0, 1]]}")
SPACE_KEYS = ["model.base_filters", "train.learning_rate", "data.context"]


def _overrides(tmp_path: Path, *extra: str) -> list[str]:
    return tiny_overrides(tmp_path) + [SPACE, "tune.max_trials=2", "train.epochs=1",
                                       "train.overlay_slices=0", "export.saved_model=false",
                                       *extra]


def _cli_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["train.py", "--config", "tiny.yaml", "--tune", "--set",
            *_overrides(tmp_path, *extra)]


def _read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _hparams_events(folder: Path) -> list:
    """The HParams plugin records in the event files directly in ``folder``."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2
    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    found.append(plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content))
    return found


def _scalars(folder: Path, tag: str) -> list[float]:
    import tensorflow as tf
    values = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            values += [float(tf.make_ndarray(v.tensor)) for v in event.summary.value
                       if v.tag == tag]
    return values


@pytest.mark.slow
def test_tiny_search_end_to_end(tmp_path):
    """One trial of two executions (which trial is best among several, and a search of two
    trials resumed after kill -9, in the test below)."""
    from tf_medseg.training import train
    from tf_medseg.workflows.tune import tune
    config = load_config("tiny.yaml", _overrides(tmp_path, "tune.executions_per_trial=2",
                                                 "tune.max_trials=1"))
    rows = tune(config, verbose=0)
    folder = tmp_path / "run" / "tuning"

    # Results: one row per trial, values from the space.
    table = _read_csv(folder / "results.csv")
    assert [r["trial"] for r in table] == ["1"]
    assert all(r["status"] == "COMPLETED" for r in table)
    for r in table:
        assert int(r["model.base_filters"]) in (4, 8)
        assert 1e-3 <= float(r["train.learning_rate"]) <= 1e-2
        assert r["data.context"] in ("[0]", "[-1, 0, 1]")
        assert float(r["objective"]) == pytest.approx(float(r["val_score"]))
        assert r["best_epoch"] == "1" and float(r["seconds"]) > 0
    summary = json.loads((folder / "results.json").read_text())
    assert summary["objective"] == "val_score" and summary["direction"] == "max"
    assert rows[0]["objective"] == pytest.approx(float(table[0]["objective"]))
    assert summary["best_trial"] == rows[0]["trial"]

    # best_config.yaml: the base config with the best trial's values, loaded as it is.
    best = load_config(folder / "best_config.yaml")
    assert best.model.base_filters == rows[0]["model.base_filters"]
    assert best.train.learning_rate == pytest.approx(rows[0]["train.learning_rate"])
    assert list(best.data.context) == json.loads(rows[0]["data.context"])
    assert best.train.epochs == config.train.epochs  # not tune.epochs
    assert (best.model.depth, best.data.image_size) == (config.model.depth,
                                                        config.data.image_size)

    # HParams dashboard: the experiment at logs/, one session per trial with its values.
    experiment = _hparams_events(folder / "logs")
    assert [h.name for h in experiment[0].experiment.hparam_infos] == SPACE_KEYS
    metric_tags = {m.name.tag for m in experiment[0].experiment.metric_infos}
    assert "epoch_score" in metric_tags
    for r in table:
        sessions = _hparams_events(folder / "logs" / r["trial_id"] / "execution0")
        start = next(s.session_start_info for s in sessions if s.HasField(
            "session_start_info"))
        assert int(start.hparams["model.base_filters"].number_value) == int(
            r["model.base_filters"])
        assert start.hparams["data.context"].string_value == r["data.context"]
        # Two executions with different seeds; the objective is the mean of their scores.
        scores = [_scalars(folder / "logs" / r["trial_id"] / f"execution{n}" / "validation",
                           "epoch_score") for n in (0, 1)]
        assert scores[0] != scores[1]
        assert float(r["objective"]) == pytest.approx(sum(s[-1] for s in scores) / 2, abs=1e-6)

    # The search folder belongs to this config: another one is refused, naming the key.
    changed = load_config("tiny.yaml", _overrides(tmp_path, "model.depth=3",
                                                  "data.image_size=[64,64]"))
    with pytest.raises(ConfigError, match=r"^data.image_size: .* holds a search with "):
        tune(changed, verbose=0)

    # train.py trains the best config as it is.
    result = train(best, verbose=0)
    assert result["epochs_trained"] == 1


def test_tune_needs_a_space_and_a_single_worker_strategy(tmp_path):
    from tf_medseg.workflows.tune import tune
    with pytest.raises(ConfigError, match=r"^tune.space: empty; --tune searches"):
        tune(load_config("tiny.yaml", tiny_overrides(tmp_path)))
    with pytest.raises(ConfigError, match="^train.strategy: multi_worker does not combine"):
        tune(load_config("tiny.yaml", _overrides(tmp_path, "train.strategy=multi_worker")))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_failing_trial_is_reported_and_a_search_without_results_is_an_error(tmp_path,
                                                                               capsys):
    from tf_medseg.errors import TrainingError
    from tf_medseg.workflows.tune import tune
    config = load_config("tiny.yaml", _overrides(
        tmp_path, "tune.space={train.learning_rate: [1.0e+30]}", "tune.max_trials=1",
        "train.warmup_epochs=0", "tune.objective=val_dice"))
    with pytest.raises(TrainingError, match="^no trial completed; their errors are in "):
        tune(config, verbose=0)
    assert "Trial 1/1 failed after" in capsys.readouterr().out
    rows = _read_csv(tmp_path / "run" / "tuning" / "results.csv")
    assert [r["status"] for r in rows] == ["FAILED"] and rows[0]["objective"] == ""
    assert not (tmp_path / "run" / "tuning" / "best_config.yaml").exists()


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_the_search(tmp_path):
    args = _cli_args(tmp_path, "tune.objective=val_dice")
    folder = tmp_path / "run" / "tuning"
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (folder / "results.csv").is_file():  # written when trial 1 ends
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the search ended before it could be killed"
    time.sleep(1.0)  # into trial 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = _read_csv(folder / "results.csv")
    assert [r["status"] for r in first] == ["COMPLETED"]

    again = cli_here(*args)  # the same command (in this process: the kill was the other's)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming after 1 finished trial(s)" in again.stdout
    assert "Trial 2/2 started" in again.stdout and "Trial 1/2 started" not in again.stdout
    rows = _read_csv(folder / "results.csv")
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert [r["trial"] for r in rows] == ["1", "2"]
    assert rows[0] == first[0]  # the finished trial is kept as it was
    # the best of the two (val_dice, higher is better), whichever process trained it
    best = max(rows, key=lambda r: float(r["objective"]))
    assert str(json.loads((folder / "results.json").read_text())["best_trial"]) == best["trial"]
    assert load_config(folder / "best_config.yaml").model.base_filters == int(
        best["model.base_filters"])


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_one_worker_on_loopback(tmp_path):
    port = str(_free_port())
    args = _cli_args(tmp_path, "tune.objective=val_dice")
    procs = {}
    for tuner_id in ("chief", "tuner0"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id,
               "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
        procs[tuner_id] = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                                           text=True, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE)
    outs = {name: p.communicate(timeout=300) for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}: {outs[name][1][-3000:]}"
    chief, worker = outs["chief"][0], outs["tuner0"][0]
    # The worker trains both trials; the chief hands them out and writes the results.
    assert "Trial 1 started on tuner0" in worker and "Trial 2 started on tuner0" in worker
    assert "val_dice:" in worker and "val_dice:" not in chief  # epoch lines
    assert "Trial 2/2 completed" in chief and "Best: trial" in chief
    folder = tmp_path / "run" / "tuning"
    rows = _read_csv(folder / "results.csv")
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert load_config(folder / "best_config.yaml").model.base_filters in (4, 8)


def _watch(tuning, seen: list) -> tuple:
    """Wrappers of ConfigHyperModel.build/fit that record what each trial ran under."""
    import keras
    import tensorflow as tf
    build, fit = tuning.ConfigHyperModel.build, tuning.ConfigHyperModel.fit

    def watch_build(self, hp):
        model = build(self, hp)
        seen.append({"policy": model.dtype_policy.name,
                     "strategy": type(tf.distribute.get_strategy()).__name__,
                     "scaled": isinstance(model.optimizer,
                                          keras.optimizers.LossScaleOptimizer)})
        return model

    def watch_fit(self, hp, model, *args, **kwargs):
        seen[-1].update(trial=hp.values.get("tuner/trial_id"),
                        initial_epoch=kwargs.get("initial_epoch", 0),
                        iterations=int(model.optimizer.iterations.numpy()),
                        replicas=self.strategy.num_replicas_in_sync)
        return fit(self, hp, model, *args, **kwargs)
    return watch_build, watch_fit


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path[:0] = ["tests", "tests/workflows"]
from pathlib import Path
from test_tune import _overrides, _watch
from tf_medseg.config import load_config
from tf_medseg.workflows import tune as tuning

seen = []
tuning.ConfigHyperModel.build, tuning.ConfigHyperModel.fit = _watch(tuning, seen)
config = load_config("tiny.yaml", _overrides(
    Path(sys.argv[1]), "train.strategy=mirrored", "train.precision=mixed_float16",
    "tune.max_trials=1", "tune.objective=val_dice"))
rows = tuning.tune(config, verbose=0)
print("REPORT " + json.dumps({"seen": seen, "rows": rows}, default=str))
"""


@pytest.mark.slow
def test_trials_run_under_the_training_strategy_and_precision(tmp_path):
    """A trial builds and trains as training would: here MirroredStrategy over 2 logical CPUs
    and mixed_float16 with loss scaling."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "precision mixed_float16, jit_compile False, MirroredStrategy with 2 replica(s)" in (
        proc.stdout)
    report = json.loads(proc.stdout.split("REPORT ")[-1])
    [trial] = report["seen"]
    assert trial["policy"] == "mixed_float16" and trial["scaled"]
    assert trial["strategy"] == "MirroredStrategy" and trial["replicas"] == 2
    assert [r["status"] for r in report["rows"]] == ["COMPLETED"]


@pytest.mark.slow
def test_hyperband_continues_earlier_trials(tmp_path, monkeypatch):
    """Hyperband's later rounds start from an earlier trial's weights and optimizer step."""
    from tf_medseg.workflows import tune as tuning
    seen: list = []
    build, fit = _watch(tuning, seen)
    monkeypatch.setattr(tuning.ConfigHyperModel, "build", build)
    monkeypatch.setattr(tuning.ConfigHyperModel, "fit", fit)
    config = load_config("tiny.yaml", _overrides(
        tmp_path, "tune.tuner=hyperband", "tune.epochs=2", "tune.hyperband_factor=2",
        "tune.objective=val_dice"))
    rows = tuning.tune(config, verbose=0)
    assert len(seen) == len(rows) >= 3 and all(r["status"] == "COMPLETED" for r in rows)
    continued = [s for s in seen if s["trial"] is not None]
    assert continued and all(s["initial_epoch"] == 1 and s["iterations"] == 6
                             for s in continued)  # 6 steps: 48 training slices, batch 8
    assert all(s["iterations"] == 0 for s in seen if s["trial"] is None)
    assert {r["epochs"] for r in rows} == {1, 2}
    assert all(r["best_epoch"] <= r["epochs"] for r in rows)
