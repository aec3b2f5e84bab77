"""Fold ensembles: export-ensemble (one SavedModel averaging the folds in its graph), and the
predictor, predict and evaluate with several exports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.errors import MedsegError
from tf_medseg.export.contract import resolve_models
from tf_medseg.export.ensemble import export_ensemble

pytestmark = pytest.mark.slow  # they read the tiny cross-validation


@pytest.fixture(scope="module")
def ensemble(tiny_cv, tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "ensemble"
    return export_ensemble(tiny_cv["run"], out)


def _raw(seed=0, n=5, h=40, w=48):
    return (np.random.default_rng(seed).random((n, h, w, 3)) * 3000).astype(np.uint16)


def test_export_ensemble_is_the_mean_of_its_members(tiny_cv, ensemble):
    run = tiny_cv["run"]
    members = [tf.saved_model.load(str(run / f"fold_{k}" / "saved_model")) for k in (0, 1)]
    loaded = tf.saved_model.load(str(ensemble))
    raw = _raw()
    got = loaded.signatures["serving_default"](image=raw)["probabilities"].numpy()
    each = [m.signatures["serving_default"](image=raw)["probabilities"].numpy()
            for m in members]
    np.testing.assert_allclose(got, np.mean(each, axis=0), atol=1e-5)
    assert np.abs(each[0] - each[1]).max() > 1e-3  # two different models
    # Each member normalises with its own signature; serving_scaled takes them stacked.
    volume = raw[..., 1:2]
    params = loaded.signatures["normalization"](volume=volume)["params"].numpy()
    assert params.shape == (2, 4, 1)
    scaled = loaded.signatures["serving_scaled"](image=raw, params=params)["probabilities"]
    own = [m.signatures["serving_scaled"](
        image=raw, params=m.signatures["normalization"](volume=volume)["params"])[
        "probabilities"].numpy() for m in members]
    np.testing.assert_allclose(scaled.numpy(), np.mean(own, axis=0), atol=1e-5)
    # logits: the log-odds of the mean probability, on inputs prepared as in training.
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    p = np.mean([tf.sigmoid(m.signatures["logits"](image=x)["logits"]).numpy()
                 for m in members], axis=0)
    logits = loaded.signatures["logits"](image=x)["logits"].numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), p, atol=1e-5)
    meta = json.loads((ensemble / "metadata.json").read_text())
    assert [m["path"] for m in meta["ensemble"]["members"]] == [
        str((run / f"fold_{k}" / "saved_model").resolve()) for k in (0, 1)]
    assert meta["classes"] == ["large_bowel", "small_bowel", "stomach"]
    assert (ensemble / "postprocessing.json").read_bytes() == (
        run / "cv" / "postprocessing.json").read_bytes()


def test_predict_with_a_cv_folder_equals_the_ensemble_export(tiny_cv, ensemble, tiny_phantom,
                                                             tmp_path):
    from tf_medseg.inference.predict import predict
    run = tiny_cv["run"]
    a = predict(run, tiny_phantom, tmp_path / "cv.csv", progress=False)
    b = predict(ensemble, tiny_phantom, tmp_path / "ens.csv", progress=False)
    c = predict([run / "fold_0" / "saved_model", run / "fold_1"], tiny_phantom,
                tmp_path / "two.csv", progress=False)
    d = predict(run, tiny_phantom, tmp_path / "raw.csv", progress=False, postprocess=False)
    assert a["models"] == 2 and a["postprocessing"] and b["postprocessing"]
    assert c["models"] == 2 and not c["postprocessing"] and not d["postprocessing"]
    assert (tmp_path / "cv.csv").read_text() == (tmp_path / "ens.csv").read_text()
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "raw.csv").read_text()
    assert a["rows"] == b["rows"] == c["rows"] == d["rows"] > 0


def test_evaluate_the_ensemble(tiny_cv, ensemble, tmp_path):
    from tf_medseg.workflows.evaluate import evaluate_saved_model
    config, run = tiny_cv["config"], tiny_cv["run"]
    a, _ = evaluate_saved_model(run, config, out_dir=tmp_path / "a")
    b, _ = evaluate_saved_model(ensemble, config, out_dir=tmp_path / "b")
    assert len(a["models"]) == 2 and a["postprocessing"].endswith("postprocessing.json")
    assert b["models"] == [str(ensemble)] and b["postprocessing"]
    # One predictor for both: the ensemble export averages in its graph what the predictor
    # averages over the CV folder's exports.
    assert a["score"] == pytest.approx(b["score"], abs=1e-6)
    with pytest.raises(MedsegError, match="^--output: required with several"):
        evaluate_saved_model([run / "fold_0", run / "fold_1"], config)


def test_members_must_agree(tiny_cv, tmp_path):
    from tf_medseg.inference.predictor import Models
    run = tiny_cv["run"]
    other = tmp_path / "other"
    shutil.copytree(run / "fold_1" / "saved_model", other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["context_offsets"] = [0]
    (other / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(MedsegError, match=r"context_offsets \[0\], but .* must agree"):
        Models.read([run / "fold_0", other])
    with pytest.raises(MedsegError, match="named twice"):
        resolve_models([run / "fold_0", run / "fold_0" / "saved_model"])
    unfinished = tmp_path / "cvrun"
    shutil.copytree(run / "fold_0", unfinished / "fold_0")
    (unfinished / "fold_1").mkdir()
    with pytest.raises(MedsegError, match=r"fold_1: no export yet"):
        resolve_models(unfinished)
    with pytest.raises(MedsegError, match="exists; give a new folder"):
        export_ensemble(run, run / "fold_0")
