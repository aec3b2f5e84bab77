"""The SavedModel export: raw uint16 slices in, probabilities at the input size out."""

import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import CLASSES, load_config
from tf_medseg.data import kaggle
from tf_medseg.data.pipeline import intensity_scale, normalize, stack_context
from tf_medseg.export import export_saved_model
from tf_medseg.models import build_model

from conftest import tiny_overrides


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """An untrained tiny 2.5D U-Net, exported (what is tested here is the graph around it)."""
    tmp = tmp_path_factory.mktemp("export")
    config = load_config("unet.yaml", tiny_overrides(tmp) + ["data.image_size=[64,64]"])
    import keras
    keras.utils.set_random_seed(0)
    model = build_model(config)
    out = export_saved_model(model, config, tmp / "saved_model")
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
    x = normalize(tf.constant(volume), intensity_scale(tf.constant(volume)))
    x = stack_context(tf.image.resize(x[..., None], (64, 64))[..., 0], [-2, 0, 2])
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
    scale = loaded.signatures["intensity_scale"](volume=volume)["scale"]
    assert float(scale) == float(intensity_scale(tf.constant(volume)))
    scaled = loaded.signatures["serving_scaled"]
    parts = np.concatenate([scaled(image=stacks[i:i + 5], scale=scale)["probabilities"]
                            for i in range(0, len(stacks), 5)])
    whole = scaled(image=stacks, scale=scale)["probabilities"].numpy()
    assert np.allclose(parts, whole, atol=1e-6)


@pytest.mark.slow
def test_metadata_and_saved_model_cli(export):
    config, _, out = export
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["classes"] == list(CLASSES) and meta["context_offsets"] == [-2, 0, 2]
    assert meta["input"]["dtype"] == "uint16" and meta["input"]["value_range"] == [0, 65535]
    assert meta["model_input_size"] == [64, 64] and meta["threshold"] == 0.5
    assert meta["config_digest"] == config.digest()
    try:
        proc = subprocess.run(["saved_model_cli", "show", "--dir", str(out), "--tag_set",
                               "serve", "--signature_def", "serving_default"],
                              capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("saved_model_cli is not on PATH")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "inputs['image']" in proc.stdout and "DT_UINT16" in proc.stdout
    assert "outputs['probabilities']" in proc.stdout and "(-1, -1, -1, 3)" in proc.stdout
