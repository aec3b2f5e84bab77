"""The SavedModel export: raw uint16 slices in, probabilities at the input size out; the same
functions in memory (what the predictor serves a model under training with)."""

import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.data.normalization import apply, integer_percentile
from tf_medseg.data.pipeline import stack_context
from tf_medseg.data.sources import kaggle
from tf_medseg.data.sources.kaggle import CLASSES
from tf_medseg.export.saved_model import export_saved_model, serving_functions

from conftest import kaggle_contract, network, tiny_overrides


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """An untrained tiny 2.5D U-Net, exported (what is tested here is the graph around it)."""
    tmp = tmp_path_factory.mktemp("export")
    config = load_config("tiny.yaml", tiny_overrides(tmp) + ["data.image_size=[64,64]"])
    import keras
    keras.utils.set_random_seed(0)
    model = network(config)
    out = export_saved_model(model, kaggle_contract(config), tmp / "saved_model",
                             {"config_digest": config.digest()})
    return config, model, out


def _phantom_scan(tiny_phantom, size):
    scans = [s for s in kaggle.index_folder(tiny_phantom) if (s.slices[0].width,
                                                             s.slices[0].height) == size]
    return np.stack([kaggle.read_png(f) for f in scans[0].slices])


def test_serving_a_raw_310x360_scan_matches_the_training_pipeline(export, tiny_phantom):
    config, model, out = export
    volume = _phantom_scan(tiny_phantom, (360, 310))  # (D, 310, 360) uint16, raw
    assert volume.shape[1:] == (310, 360) and volume.dtype == np.uint16
    raw = tf.constant(np.moveaxis(volume[np.clip(
        np.arange(len(volume))[:, None] + np.array([-2, 0, 2]), 0, len(volume) - 1)], 1, -1))
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    probs = serve(image=raw)["probabilities"].numpy()
    assert probs.shape == (len(volume), 310, 360, 3) and probs.dtype == np.float32
    assert 0 <= probs.min() and probs.max() <= 1
    # The same slices through the training pipeline's own functions and the Keras model.
    scale = integer_percentile(tf.constant(volume))
    x = apply(tf.constant(volume)[..., None], tf.stack([[0.0], [scale], [0.0], [1.5]]))
    x = stack_context(tf.image.resize(x, (64, 64))[..., 0], [-2, 0, 2])
    logits = tf.image.resize(model(x, training=False), (310, 360))
    expected = tf.sigmoid(logits).numpy()
    # Whole-scan normalisation: the context copies at the ends barely move the percentile.
    assert np.abs(probs - expected).max() < 2e-2
    assert np.abs(probs - expected).mean() < 1e-3


def test_batched_scaled_serving_equals_one_call(export, tiny_phantom):
    _, _, out = export
    loaded = tf.saved_model.load(str(out))
    volume = _phantom_scan(tiny_phantom, (266, 266))
    stacks = np.stack([volume] * 3, axis=-1)
    params = loaded.signatures["normalization"](volume=volume[..., None])["params"]
    assert float(params[1, 0]) == float(integer_percentile(tf.constant(volume)))
    assert params.numpy()[[0, 2, 3], 0].tolist() == [0.0, 0.0, 1.5]
    scaled = loaded.signatures["serving_scaled"]
    parts = np.concatenate([scaled(image=stacks[i:i + 5], params=params)["probabilities"]
                            for i in range(0, len(stacks), 5)])
    whole = scaled(image=stacks, params=params)["probabilities"].numpy()
    assert np.allclose(parts, whole, atol=1e-6)


def test_the_functions_in_memory_are_the_export(export, tiny_phantom):
    config, model, out = export
    loaded = tf.saved_model.load(str(out))
    fns = serving_functions(model, kaggle_contract(config))
    volume = _phantom_scan(tiny_phantom, (266, 266))
    stacks = np.stack([volume] * 3, axis=-1)[:4]
    params = fns["normalization"](volume[..., None])["params"]
    np.testing.assert_array_equal(params.numpy(), loaded.signatures["normalization"](
        volume=volume[..., None])["params"].numpy())
    np.testing.assert_allclose(fns["serving_scaled"](stacks, params)["probabilities"].numpy(),
                               loaded.signatures["serving_scaled"](
                                   image=stacks, params=params)["probabilities"].numpy(),
                               atol=1e-6)


@pytest.mark.slow
def test_metadata_and_saved_model_cli(export):
    config, _, out = export
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["classes"] == list(CLASSES) and meta["context_offsets"] == [-2, 0, 2]
    assert meta["input"]["dtype"] == "uint16" and meta["input"]["value_range"] == [0, 65535]
    assert meta["model_input_size"] == [64, 64] and meta["threshold"] == 0.5
    assert meta["config_digest"] == config.digest() and meta["export_version"] == 2
    assert meta["labels"]["metric"] == "competition" and meta["model_output"] == "sigmoid"
    try:
        proc = subprocess.run(["saved_model_cli", "show", "--dir", str(out), "--tag_set",
                               "serve", "--signature_def", "serving_default"],
                              capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("saved_model_cli is not on PATH")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "inputs['image']" in proc.stdout and "DT_UINT16" in proc.stdout
    assert "outputs['probabilities']" in proc.stdout and "(-1, -1, -1, 3)" in proc.stdout


def test_mirroring_tta_is_the_hand_computed_average(export, tiny_phantom):
    """predict.tta flips: every combination of mirrors, each mirrored back, logits averaged,
    inside the export's graph (resize path: the model on the resized slices)."""
    import dataclasses

    import keras

    from tf_medseg.export.saved_model import mirrored
    from tf_medseg.models.outputs import probabilities
    config, model, _ = export
    rng = np.random.default_rng(1)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    net = lambda v: model(v, training=False).numpy()  # noqa: E731
    by_hand = (net(x) + net(x[:, ::-1])[:, ::-1] + net(x[:, :, ::-1])[:, :, ::-1]
               + net(x[:, ::-1, ::-1])[:, ::-1, ::-1]) / 4
    np.testing.assert_allclose(mirrored(model, (0, 1))(tf.constant(x)).numpy(), by_hand,
                               atol=1e-5)
    np.testing.assert_allclose(mirrored(model, (1,))(tf.constant(x)).numpy(),
                               (net(x) + net(x[:, :, ::-1])[:, :, ::-1]) / 2, atol=1e-5)
    assert not np.allclose(by_hand, net(x), atol=1e-3)  # the network is not symmetric
    # 3D: axes after the batch axis
    net3 = keras.Sequential([keras.Input((4, 6, 6, 1)), keras.layers.Conv3D(2, 3)])
    v = rng.random((1, 4, 6, 6, 1)).astype("float32")
    want = (net3(v).numpy() + net3(v[:, ::-1]).numpy()[:, ::-1]) / 2
    np.testing.assert_allclose(mirrored(net3, (0,))(tf.constant(v)).numpy(), want, atol=1e-5)
    # In the serving graph: the same average on the slices resized to the network's size
    contract = dataclasses.replace(kaggle_contract(config), tta="flips", mirror_axes=(0, 1))
    fns = serving_functions(model, contract)
    volume = _phantom_scan(tiny_phantom, (266, 266))
    stacks = np.stack([volume] * 3, axis=-1)[:2]
    params = fns["normalization"](volume[..., None])["params"]
    got = fns["serving_scaled"](stacks, params)["probabilities"].numpy()
    scaled = apply(tf.constant(stacks), tf.repeat(params, 3, axis=1))
    resized = tf.image.resize(scaled, (64, 64)).numpy()
    logits = (net(resized) + net(resized[:, ::-1])[:, ::-1] + net(resized[:, :, ::-1])[:, :, ::-1]
              + net(resized[:, ::-1, ::-1])[:, ::-1, ::-1]) / 4
    want = probabilities(tf.image.resize(logits, (266, 266)), "sigmoid", 3).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
