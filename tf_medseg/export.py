"""SavedModel export whose serving signature takes raw slices.

Signatures:

* ``serving_default`` (raw slices in, probabilities out, below), what TensorFlow Serving calls;
* ``intensity_scale`` (a raw scan (D, H, W) uint16 in, its normalisation scale out) and
  ``serving_scaled`` (raw slices and that scale in, probabilities out): the same computation
  split so that ``predict`` can send a long scan in batches and still normalise it as one;
* ``logits`` (the network on normalised, model-size 2.5D stacks as the training pipeline
  prepares them; float32 logits out), which ``python -m tf_medseg evaluate`` uses.

``serving_default`` (the signature TensorFlow Serving calls) takes a batch of raw slices,
uint16, (B, H, W, C) with C the number of 2.5D context offsets, any H and W, and returns per-class
probabilities (B, H, W, 3) at the input size. Normalisation and resizing are inside the graph, so
they cannot drift from training. The batch is normalised as one scan (the pipeline's per-scan
99.5th-percentile scale): send the slices of one scan together. ``metadata.json`` beside it
states the contract.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from tf_medseg.config import CLASSES, Config
from tf_medseg.data.pipeline import CLIP, PERCENTILE, intensity_scale, normalize
from tf_medseg.errors import MedsegError


def scaled_fn(model: keras.Model, image_size):
    """(raw uint16 (B, H, W, C), scale) -> probabilities (B, H, W, 3) float32."""
    def serve(raw, scale):
        height, width = tf.shape(raw)[1], tf.shape(raw)[2]
        x = normalize(raw, tf.reshape(tf.cast(scale, tf.float32), []))
        x = tf.image.resize(x, image_size, method="bilinear")
        logits = tf.cast(model(x, training=False), tf.float32)
        logits = tf.image.resize(logits, tf.stack([height, width]), method="bilinear")
        return {"probabilities": tf.sigmoid(logits)}
    return serve


def serving_fn(model: keras.Model, image_size):
    """raw uint16 (B, H, W, C) -> probabilities (B, H, W, 3) float32, the batch normalised as
    one scan."""
    scaled = scaled_fn(model, image_size)
    return lambda raw: scaled(raw, intensity_scale(raw))


def export_saved_model(model: keras.Model, config: Config, out_dir: str | os.PathLike,
                       extra_metadata: dict | None = None) -> Path:
    """Write ``out_dir`` (SavedModel) and ``out_dir/metadata.json``, atomically."""
    out_dir = Path(out_dir)
    channels = len(config.data.context)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=tf.function(serving_fn(model, config.data.image_size)),
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint16, name="image")],
    )
    archive.add_endpoint(
        name="serving_scaled",
        fn=tf.function(scaled_fn(model, config.data.image_size)),
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint16, name="image"),
                         tf.TensorSpec([], tf.float32, name="scale")],
    )
    archive.add_endpoint(
        name="intensity_scale",
        fn=tf.function(lambda volume: {"scale": intensity_scale(volume)}),
        input_signature=[tf.TensorSpec([None, None, None], tf.uint16, name="volume")],
    )
    # The model itself on inputs prepared as in training (what `evaluate` calls).
    archive.add_endpoint(
        name="logits",
        fn=tf.function(lambda image: {"logits": tf.cast(model(image, training=False),
                                                        tf.float32)}),
        input_signature=[tf.TensorSpec([None, *config.data.image_size, channels], tf.float32,
                                       name="image")],
    )
    tmp = Path(tempfile.mkdtemp(prefix=".saved_model.partial-", dir=out_dir.parent))
    try:
        archive.write_out(str(tmp), verbose=False)
        metadata = {
            "format": "tf_saved_model",
            "signature": "serving_default",
            "signatures": ["serving_default", "serving_scaled", "intensity_scale", "logits"],
            "classes": list(CLASSES),
            "context_offsets": list(config.data.context),
            "input": {"name": "image", "dtype": "uint16", "shape": ["batch", "height", "width",
                                                                    channels],
                      "value_range": [0, 65535],
                      "note": "raw slices of one scan; any height and width; channel k of "
                              "slice i is slice i + context_offsets[k], clamped at the "
                              "scan's ends"},
            "output": {"name": "probabilities", "dtype": "float32",
                       "shape": ["batch", "height", "width", len(CLASSES)],
                       "activation": "sigmoid, one independent channel per class"},
            "normalization": {"method": "divide by the batch's intensity percentile, clip",
                              "percentile": PERCENTILE, "clip": [0.0, CLIP]},
            "model_input_size": list(config.data.image_size),
            "model": config.model.name,
            "threshold": config.train.threshold,
            "config_digest": config.digest(),
            **(extra_metadata or {}),
        }
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_metadata(model_dir: Path, label: str) -> dict:
    """``metadata.json`` of an export, after checking that ``model_dir`` is one (else a
    one-line MedsegError starting with ``label``, e.g. the command-line option)."""
    if not (model_dir / "saved_model.pb").is_file() or not (model_dir / "metadata.json"
                                                            ).is_file():
        raise MedsegError(f"{label}: not a tf_medseg SavedModel (expected saved_model.pb and "
                          f"metadata.json; train.py writes them to RUN_DIR/saved_model)")
    return json.loads((model_dir / "metadata.json").read_text())


def load_signatures(model_dir: Path, names, label: str):
    """The loaded SavedModel, after checking it has the signatures ``names`` (an export
    written by an older tf_medseg may lack some: a one-line MedsegError)."""
    loaded = tf.saved_model.load(str(model_dir))
    missing = sorted(set(names) - set(loaded.signatures))
    if missing:
        raise MedsegError(f"{label}: this export has no {missing[0]!r} signature (written by "
                          f"an older tf_medseg); export it again with train.py")
    return loaded
