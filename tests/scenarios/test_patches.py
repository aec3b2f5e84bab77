"""Training on patches (``data.sampling: patch``) and predicting whole slices in sliding
windows: the export, evaluate and predict on NIfTI volumes larger than the patch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.models.sliding_window import sliding_window

from synthetic_volumes import write_nnunet


@pytest.mark.slow
def test_patches_trained_and_served_in_windows(tmp_path):
    import nibabel as nib

    from tf_medseg.inference.predict import predict
    from tf_medseg.training import train
    from tf_medseg.workflows.evaluate import evaluate_saved_model
    root = write_nnunet(tmp_path / "Dataset010_Patches", channels=("T2",))
    config = load_config("tiny.yaml", [
        "data.source=nnunet", f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
        "data.sampling=patch", "data.image_size=[16,16]", "data.batch_size=4",
        "data.num_folds=2", "data.context=[0]", "predict.overlap=0.5", "model.base_filters=4",
        "model.depth=2", "train.epochs=1", f"train.run_dir={tmp_path / 'run'}",
        "train.max_minutes=null", "train.overlay_slices=0"])
    result = train(config, verbose=0)
    export = tmp_path / "run" / "saved_model"
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["sampling"] == "patch" and meta["overlap"] == 0.5
    assert meta["model_input_size"] == [16, 16]
    # evaluate on the export reproduces the run's validation figures (both in windows)
    evaluation, _ = evaluate_saved_model(export, config)
    assert np.isclose(evaluation["dice"], result["dice"], atol=1e-6)
    # the served probabilities of 32 x 28 slices are the network's windows
    loaded = tf.saved_model.load(str(export))
    image = nib.load(str(root / "imagesTr" / "case_000_0000.nii.gz")).get_fdata()
    slices = tf.constant(np.transpose(image, (2, 0, 1))[..., None], tf.float32)
    params = loaded.signatures["normalization"](volume=slices)["params"]
    served = loaded.signatures["serving_scaled"](image=slices, params=params)["probabilities"]
    assert served.shape == (6, 32, 28, 2)
    from tf_medseg.data import normalization
    x = normalization.apply(slices, tf.cast(params, tf.float32))
    logits = sliding_window(lambda p: loaded.signatures["logits"](image=p)["logits"], x,
                            (16, 16), 0.5)
    soft = tf.nn.softmax(logits)[..., 1:]
    assert np.abs(served.numpy() - soft.numpy()).max() < 1e-4
    out = tmp_path / "pred"
    predict(export, root / "imagesTr", out, progress=False)
    label = nib.load(str(out / "case_000.nii.gz"))
    assert label.shape == (32, 28, 6)
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2}


def test_an_older_export_without_sampling_reads_as_resize(tmp_path):
    from tf_medseg.export.contract import Contract

    from conftest import kaggle_contract
    contract = kaggle_contract(load_config("tiny.yaml"))
    meta = contract.to_metadata()
    del meta["sampling"], meta["overlap"]
    read = Contract.from_metadata(meta, Path("metadata.json"))
    assert read.sampling == "resize" and read.overlap == 0.5
