"""Cross-validation: ``train.py --folds`` (tf_medseg/cv.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from tf_medseg.config import load_config
from tf_medseg.data.sources.kaggle import CLASSES
from tf_medseg.errors import ConfigError, MedsegError
from tf_medseg.evaluation import metrics
from tf_medseg.inference import postprocess as pp
from tf_medseg.workflows.cv import cross_validate, fold_config, parse_folds

from conftest import tiny_overrides


def test_parse_folds():
    assert parse_folds(["all"], 4) == [0, 1, 2, 3]
    assert parse_folds(["2", "0", "2"], 4) == [0, 2]
    for bad in (["4"], ["-1"], ["one"]):
        with pytest.raises(ConfigError, match="^--folds: .* from 0 to 3"):
            parse_folds(bad, 4)
    with pytest.raises(ConfigError, match="^--folds: 'all' stands alone .*; got all 1"):
        parse_folds(["all", "1"], 4)


def test_fold_config(tmp_path):
    config = load_config("unet.yaml", [f"train.run_dir={tmp_path / 'r'}"])
    c = fold_config(config, 3)
    assert c.data.fold == 3 and c.train.run_dir == str(tmp_path / "r" / "fold_3")
    assert dataclasses.replace(c, data=config.data, train=config.train) == config


@pytest.mark.slow
def test_folds_resume_after_a_kill_between_folds(tiny_cv):
    killed, resumed, run = tiny_cv["killed"], tiny_cv["resumed"], tiny_cv["run"]
    assert tiny_cv["returncode"] == -9
    assert "=== Fold 0 (1 of 2)" in killed and "Fold 0: finished earlier, kept" in killed
    assert "Cross-validation outputs" not in killed
    # The rerun kept fold 0 as it was, trained fold 1, then wrote cv/.
    assert "Fold 0: finished earlier, kept" in resumed
    assert (run / "fold_0" / "metrics.json").read_bytes() == tiny_cv["fold0_before"]
    assert "=== Fold 1 (2 of 2)" in resumed and "Epoch 2/2" in resumed
    assert resumed.index("Fold 0: finished") < resumed.index("Cross-validation outputs")
    for k in (0, 1):
        assert (run / f"fold_{k}" / "saved_model" / "saved_model.pb").is_file()
        assert not (run / f"fold_{k}" / "checkpoints" / "backup").exists()
    assert sorted(p.name for p in (run / "cv").iterdir()) == [
        "case_days.csv", "folds.csv", "metrics.json", "oof", "postprocessing.json"]
    assert not list(run.glob(".partial-*"))  # a killed writer's temporaries are gone


@pytest.mark.slow
def test_cv_outputs_are_out_of_fold(tiny_cv):
    run, report = tiny_cv["run"], tiny_cv["report"]
    assert report == json.loads((run / "cv" / "metrics.json").read_text())
    assert report["folds"] == [0, 1]
    # Every case-day once, scored by the fold that did not train on it.
    oof = sorted((run / "cv" / "oof").glob("*.npz"))
    assert len(oof) == 4 * 2  # 4 cases x 2 days
    slice_dices, hds = [], []
    for path in oof:
        with np.load(path) as z:
            q, shape, fold = z["probabilities"], tuple(z["shape"]), int(z["fold"])
            truth = np.unpackbits(z["truth"], count=int(np.prod(shape))).reshape(shape)
        assert q.dtype == np.uint8 and q.shape == shape and shape[-1] == 3
        case = int(path.stem.split("_")[0][4:])
        fold_cases = json.loads((run / f"fold_{fold}" / "metrics.json").read_text())
        assert path.stem in [r["case_day"] for r in fold_cases["case_days"]], case
        pred = q / 255.0 > 0.5
        slice_dices.append(metrics.slice_dice(pred, truth.astype(bool)))
        hds.append(metrics.hausdorff(pred, truth.astype(bool)))
    expected = metrics.summarize(slice_dices, hds, CLASSES)
    for key in ("dice", "hausdorff", "score"):
        assert report["out_of_fold"][key] == pytest.approx(expected[key], abs=1e-9)
    # The per-fold table: each fold's own metrics.json, then mean and sd.
    rows = report["per_fold"]
    assert [r["fold"] for r in rows] == [0, 1]
    scores = []
    for r in rows:
        own = json.loads((run / f"fold_{r['fold']}" / "metrics.json").read_text())
        assert r["score"] == own["score"] and r["epochs"] == 2
        # Minutes of the folds this cross-validation trained (fold 0 is the copied tiny run).
        assert (r["minutes"] is None) if r["fold"] == 0 else r["minutes"] > 0
        scores.append(own["score"])
    assert report["mean"]["score"] == pytest.approx(np.mean(scores))
    assert report["sd"]["score"] == pytest.approx(np.std(scores, ddof=1))
    table = (run / "cv" / "folds.csv").read_text().splitlines()
    assert table[0].startswith("fold,") and table[-2].startswith("mean,") and \
        table[-1].startswith("sd,")
    # Post-processing: chosen out of fold, never lower, and what cv reports after it.
    spec = json.loads((run / "cv" / "postprocessing.json").read_text())
    assert spec["score_before"] == pytest.approx(report["out_of_fold"]["score"], abs=1e-9)
    assert spec["score_after"] >= spec["score_before"]
    assert report["out_of_fold_postprocessed"]["score"] == pytest.approx(spec["score_after"])
    classes = ["large_bowel", "small_bowel", "stomach"]
    assert set(pp.read(run / "cv" / "postprocessing.json", classes)) == set(classes)


@pytest.mark.slow
def test_a_finished_cross_validation_is_not_replaced(tiny_cv):
    config, run = tiny_cv["config"], tiny_cv["run"]
    before = (run / "cv" / "metrics.json").read_bytes()
    with pytest.raises(MedsegError, match="finished cross-validation.*--overwrite"):
        cross_validate(config, [0, 1])
    # Nor replaced by the cross-validation of fewer folds.
    with pytest.raises(MedsegError, match=r"folds \[0, 1\], which --folds 1 would replace"):
        cross_validate(config, [1])
    assert (run / "cv" / "metrics.json").read_bytes() == before


@pytest.mark.slow
def test_a_finished_fold_of_another_config_is_named(tiny_cv, tmp_path):
    """A fold trained with another config is named, not silently mixed in."""
    run = tiny_cv["run"]
    shutil.copytree(run / "fold_0", tmp_path / "run" / "fold_0")
    other = load_config("tiny.yaml", [*tiny_overrides(run.parent), "model.base_filters=8",
                                      f"train.run_dir={tmp_path / 'run'}",
                                      f"data.data_dir={tiny_cv['config'].data.data_dir}"])
    with pytest.raises(ConfigError, match=r"^model.base_filters: .*fold_0 was trained with 4"):
        cross_validate(other, [0, 1])
    assert not (tmp_path / "run" / "fold_1").exists()


def test_a_single_run_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    config = load_config("unet.yaml", [f"train.run_dir={run}"])
    with pytest.raises(MedsegError, match="holds a single training run"):
        cross_validate(config, [0])
    config = load_config("unet.yaml", [f"train.run_dir={tmp_path / 'new'}",
                                       "export.saved_model=false"])
    with pytest.raises(ConfigError, match="^export.saved_model: --folds needs"):
        cross_validate(config, [0])
