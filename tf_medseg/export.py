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

For the volume sources (nnunet, decathlon, folder) the images are float32, C = modalities x
context offsets (modality-major), and the normalisation is per modality
(``data.normalization``): ``normalization`` (a raw volume (D, H, W, M) in, ``params`` (4, M)
[centre, scale, low, high] out; the data set's CT statistics are constants in the graph) and
``serving_scaled`` (raw stacks and those params in) replace ``intensity_scale``; the
probabilities are those of the K declared classes (for a softmax model, the class channels of
the softmax over background + classes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import tensorflow as tf

from tf_medseg.config import CLASSES, MAX_OFFSET, Config
from tf_medseg.data.pipeline import (
    CLIP,
    PERCENTILE,
    apply_normalization,
    intensity_scale,
    normalization_params,
    normalize,
)
from tf_medseg.data.task import KAGGLE, output_of
from tf_medseg.errors import MedsegError


def _activation(logits, output: str):
    return tf.nn.softmax(logits, axis=-1)[..., 1:] if output == "softmax" else tf.sigmoid(logits)


def volume_scaled_fn(model: keras.Model, image_size, offsets: int, output: str):
    """(raw float32 (B, H, W, M * offsets), params (4, M)) -> class probabilities (B, H, W, K)."""
    def serve(raw, params):
        height, width = tf.shape(raw)[1], tf.shape(raw)[2]
        x = apply_normalization(raw, tf.repeat(tf.cast(params, tf.float32), offsets, axis=1))
        x = tf.image.resize(x, image_size, method="bilinear")
        logits = tf.cast(model(x, training=False), tf.float32)
        logits = tf.image.resize(logits, tf.stack([height, width]), method="bilinear")
        return {"probabilities": _activation(logits, output)}
    return serve


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


# What predict and evaluate read from metadata.json (a file without them is damaged).
METADATA_KEYS = ("classes", "context_offsets", "model_input_size")


def export_saved_model(model: keras.Model, config: Config, out_dir: str | os.PathLike,
                       extra_metadata: dict | None = None, task=None) -> Path:
    """Write ``out_dir`` (SavedModel) and ``out_dir/metadata.json``, atomically. ``task``: the
    data's (:func:`tf_medseg.data.pipeline.task_for`); default the UW-Madison one."""
    task = task or KAGGLE
    if task.kind == "volumes":
        return _export_volumes(model, config, Path(out_dir), task, extra_metadata)
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
    _add_logits(archive, model, config.data.image_size, channels)
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
    _write(archive, metadata, out_dir)
    return out_dir


def _add_logits(archive, model: keras.Model, size, channels: int) -> None:
    """The model itself on inputs prepared as in training (what ``evaluate`` calls)."""
    archive.add_endpoint(
        name="logits",
        fn=tf.function(lambda image: {"logits": tf.cast(model(image, training=False),
                                                        tf.float32)}),
        input_signature=[tf.TensorSpec([None, *size, channels], tf.float32, name="image")])


def _write(archive, metadata: dict, out_dir: Path) -> None:
    """The SavedModel and its metadata.json, written beside ``out_dir`` and then moved in
    place: an export that exists is complete."""
    from tf_medseg.files import atomic_dir
    with atomic_dir(out_dir) as tmp:  # with the permissions of the other outputs
        archive.write_out(str(tmp), verbose=False)
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")


def _export_volumes(model: keras.Model, config: Config, out_dir: Path, task,
                    extra_metadata: dict | None) -> Path:
    offsets = len(config.data.context)
    modalities = task.num_channels
    channels = modalities * offsets
    centre = config.data.context.index(0)
    output = output_of(config, task)
    size = config.data.image_size
    scaled = volume_scaled_fn(model, size, offsets, output)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=tf.function(lambda raw: scaled(raw, normalization_params(
            tf.gather(raw, [m * offsets + centre for m in range(modalities)], axis=-1),
            task))),
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32,
                                       name="image")])
    archive.add_endpoint(
        name="serving_scaled", fn=tf.function(scaled),
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32, name="image"),
                         tf.TensorSpec([4, modalities], tf.float32, name="params")])
    archive.add_endpoint(
        name="normalization",
        fn=tf.function(lambda volume: {"params": normalization_params(volume, task)}),
        input_signature=[tf.TensorSpec([None, None, None, modalities], tf.float32,
                                       name="volume")])
    _add_logits(archive, model, size, channels)
    metadata = {
        "format": "tf_saved_model",
        "signature": "serving_default",
        "signatures": ["serving_default", "serving_scaled", "normalization", "logits"],
        "classes": list(task.classes),
        "task": task.to_dict(),
        "context_offsets": list(config.data.context),
        "channels": list(task.channels),
        "input": {"name": "image", "dtype": "float32",
                  "shape": ["batch", "height", "width", channels],
                  "note": "raw slices of one volume, cut across slice_axis; channel "
                          "m * len(context_offsets) + k is modality m at offset k, "
                          "clamped at the volume's ends"},
        "output": {"name": "probabilities", "dtype": "float32",
                   "shape": ["batch", "height", "width", task.num_classes],
                   "activation": ("softmax over background and the classes (the "
                                  "background channel left out): a pixel is the class "
                                  "of the largest probability if it beats 1 - their sum"
                                  if output == "softmax" else
                                  "sigmoid, one independent channel per class")},
        "model_output": output,
        "normalization": {"methods": list(task.normalization),
                          "stats": list(task.stats)},
        "slice_axis": config.data.slice_axis,
        "spacing": list(config.data.spacing) if config.data.spacing else None,
        "label_values": list(task.label_values),
        "model_input_size": list(size),
        "model": config.model.name,
        "threshold": config.train.threshold,
        "config_digest": config.digest(),
        **(extra_metadata or {}),
    }
    _write(archive, metadata, out_dir)
    return out_dir


def read_metadata(model_dir: Path, label: str) -> dict:
    """``metadata.json`` of an export, after checking that ``model_dir`` is one (else a
    one-line MedsegError starting with ``label``, e.g. the command-line option)."""
    if not (model_dir / "saved_model.pb").is_file() or not (model_dir / "metadata.json"
                                                            ).is_file():
        raise MedsegError(f"{label}: not a tf_medseg SavedModel (expected saved_model.pb and "
                          f"metadata.json; train.py writes them to RUN_DIR/saved_model)")
    from tf_medseg.run_dir import read_json
    path = model_dir / "metadata.json"
    fix = "export the model again (train.py over its run folder resumes and exports)"
    metadata = read_json(path, "export metadata", fix)
    missing = [k for k in METADATA_KEYS if k not in metadata]
    if missing:
        raise MedsegError(f"{path}: damaged export metadata (no {missing[0]!r}); {fix}")
    offsets = metadata["context_offsets"]
    if (not isinstance(offsets, list) or not offsets or 0 not in offsets
            or not all(isinstance(o, int) and abs(o) <= MAX_OFFSET for o in offsets)):
        raise MedsegError(f"{path}: damaged export metadata (context_offsets {offsets!r}); "
                          f"{fix}")
    threshold = metadata.get("threshold", 0.5)
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
            or not 0 < threshold < 1):
        raise MedsegError(f"{path}: damaged export metadata (threshold {threshold!r}); {fix}")
    return metadata


def load_signatures(model_dir: Path, names, label: str):
    """The loaded SavedModel, after checking it has the signatures ``names`` (an export
    written by an older tf_medseg may lack some: a one-line MedsegError)."""
    loaded = tf.saved_model.load(str(model_dir))
    missing = sorted(set(names) - set(loaded.signatures))
    if missing:
        raise MedsegError(f"{label}: this export has no {missing[0]!r} signature (written by "
                          f"an older tf_medseg); export it again with train.py")
    return loaded
