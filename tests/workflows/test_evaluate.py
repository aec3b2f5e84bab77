"""Scoring exports on a split of a config's data set: the report folder's rules, a config that
does not fit the models, and the figures of training's metrics.json."""

import json
import shutil

import pytest

from tf_medseg.config import load_config
from tf_medseg.errors import MedsegError
from tf_medseg.workflows.evaluate import evaluate_saved_model


def test_the_export_scores_what_training_wrote(tiny_run, tmp_path):
    config, run, result = tiny_run
    export = tmp_path / "model"
    shutil.copytree(run / "saved_model", export)
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "metrics.json").write_text("{}")  # an earlier report: replaced
    report, out = evaluate_saved_model(export, config)
    assert out == tmp_path / "evaluation" and (out / "case_days.csv").is_file()
    for key in ("dice", "hausdorff", "score", "dice_pooled"):
        assert report[key] == pytest.approx(result[key], abs=1e-6), key
    assert report["models"] == [str(export)] and report["postprocessing"] is None
    written = json.loads((out / "metrics.json").read_text())
    assert written["score"] == pytest.approx(report["score"])
    (out / "notes.txt").write_text("mine")  # anything but a report is never replaced
    with pytest.raises(MedsegError, match="holds other files than a report"):
        evaluate_saved_model(export, config)


def test_a_config_of_other_data_is_refused(tiny_run, tmp_path):
    config, run, _ = tiny_run
    other = load_config("tiny.yaml", [f"data.data_dir={config.data.data_dir}",
                                      "data.image_size=[64,64]"])
    with pytest.raises(MedsegError, match=r"trained with data.image_size \[32, 32\], the config "
                                          r"has \[64, 64\]"):
        evaluate_saved_model(run / "saved_model", other, out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_model_on_data_of_other_channels_or_dtype_is_refused(tiny_run, tmp_path):
    import json

    from synthetic_volumes import write_nnunet
    config, run, _ = tiny_run
    root = write_nnunet(tmp_path / "Dataset001_Same", cases=2, channels=("MRI",))
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "large_bowel": 1, "small_bowel": 2, "stomach": 3}
    (root / "dataset.json").write_text(json.dumps(meta))  # the phantom's class names
    other = load_config("tiny.yaml", ["data.source=nnunet", f"data.root={root}",
                                      f"data.data_dir={tmp_path / 'tfds'}",
                                      f"data.context={list(config.data.context)}"])
    with pytest.raises(MedsegError, match=r"trained on data with (image dtype uint16|exclusive "
                                          r"classes False), but the config's data has"):
        evaluate_saved_model(run / "saved_model", other, out_dir=tmp_path / "r")
