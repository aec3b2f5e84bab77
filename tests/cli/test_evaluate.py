"""``python -m tf_medseg evaluate``: the export scored like training scored it, its report files,
and a config that does not fit the model refused in one line."""

import csv
import json

import pytest

from tf_medseg.data.sources.kaggle import CLASSES

from conftest import cli_here


@pytest.mark.slow
def test_evaluate_cli_scores_the_export_like_training(tiny_run):
    config, run, result = tiny_run
    proc = cli_here("-m", "tf_medseg", "evaluate", "--model", str(run / "saved_model"),
                     "--config", str(run / "config.yaml"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((run / "evaluation" / "metrics.json").read_text())
    # The exported graph on the same validation scans gives the figures training wrote.
    for key in ("dice", "hausdorff", "score", *(f"dice_{c}" for c in CLASSES)):
        assert report[key] == pytest.approx(result[key], abs=1e-6), key
    with (run / "evaluation" / "case_days.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["case_day"] for r in rows] == [r["case_day"] for r in report["case_days"]]
    assert len(rows) == 4 and {f"hausdorff_{c}" for c in CLASSES} <= set(rows[0])
    for row in rows:
        assert float(row["score"]) == pytest.approx(
            0.4 * float(row["dice"]) + 0.6 * (1 - float(row["hausdorff"])), abs=1e-5)
    assert "score" in proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_evaluate_refuses_a_mismatched_config(tiny_run):
    _, run, _ = tiny_run
    proc = cli_here("-m", "tf_medseg", "evaluate", "--model", str(run / "saved_model"),
                     "--config", str(run / "config.yaml"), "--set", "data.context=[0]")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "the model was trained with data.context [-2, 0, 2], the config has [0]; pass the "
        "run's config.yaml")
