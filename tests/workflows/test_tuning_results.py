"""A search's results: every trial a row (its values, the objective, the validation figures at
its best epoch), ranked, as a table, and written with the best config a user trains next."""

import json

import keras_tuner

from tf_medseg.config import load_config
from tf_medseg.config.search_space import parse_space
from tf_medseg.workflows import tuning_results as results

SPACE = "tune.space={model.base_filters: [4, 8], train.learning_rate: {type: float, " \
        "min: 1.0e-3, max: 1.0e-2, sampling: log}}"


def _oracle(config, entries, folder):
    """A real KerasTuner oracle with two trials, one completed, one failed."""
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=results.objective_of(config), max_trials=3, seed=1)
    oracle._set_project_dir(str(folder), "tuning")
    hp = oracle.get_space()
    for entry in entries:
        entry.declare(hp)
    oracle.update_space(hp)
    first = oracle.create_trial("a")
    oracle.update_trial(first.trial_id, {"val_score": 0.25, "val_dice": 0.5}, step=0)
    oracle.update_trial(first.trial_id, {"val_score": 0.75, "val_dice": 0.6}, step=1)
    first.status = "COMPLETED"
    oracle.end_trial(first)
    second = oracle.create_trial("a")
    second.status = "FAILED"
    oracle.end_trial(second)
    return oracle


def test_rows_ranking_table_and_files(tmp_path):
    config = load_config("tiny.yaml", [SPACE, f"train.run_dir={tmp_path}"])
    entries = parse_space(config)
    oracle = _oracle(config, entries, tmp_path)
    rows = results.trial_rows(oracle, entries, {"0": 12.3})
    assert [r["trial"] for r in rows] == [1, 2] and rows[0]["objective"] == 0.75
    assert rows[0]["best_epoch"] == 2 and rows[0]["seconds"] == 12.3
    assert rows[1]["status"] == "FAILED" and rows[1]["objective"] is None
    assert results.ranked(list(reversed(rows)), "max")[0]["trial"] == 1
    table = results.format_table(rows, entries, "val_score")
    assert table.splitlines()[0].split()[:3] == ["trial", "model.base_filters",
                                                 "train.learning_rate"]
    assert "0.7500" in table and "FAILED" in table
    order = results.write_results(oracle, config, entries, tmp_path, {})
    assert order[0]["trial"] == 1
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["best_trial"] == 1 and summary["direction"] == "max"
    best = load_config(tmp_path / "best_config.yaml")
    values = oracle.trials[rows[0]["trial_id"]].hyperparameters.values
    assert best.model.base_filters == values["model.base_filters"]
    assert (tmp_path / "results.csv").read_text().startswith("trial,trial_id,status")


def test_small_formatters():
    assert results.duration(75) == "1 min 15 s" and results.duration(9.6) == "10 s"
    assert results.short(0.000123456) == "0.0001235" and results.short(3) == "3"
    assert results.trial_number("07") == 8 and results.trial_number("x") == 0
