"""The SavedModel export, whose serving signatures take raw slices (the contract,
:mod:`tf_medseg.export.contract`). One exporter and one set of signatures for every source:

* ``serving_default`` (raw slices in, probabilities at the input size out: the network on
  slices resized to its size, or for a model trained on patches (``data.sampling: patch``) in
  overlapping Gaussian-weighted windows, :mod:`tf_medseg.models.sliding_window`; a 3D network
  in 3D windows over all the slices sent, which must be one whole volume), what TensorFlow
  Serving calls; the batch is normalised as one volume (its centre channels): send the slices of
  one volume together;
* ``normalization`` (a raw volume (D, H, W, M) in, its ``params`` (4, M) [centre, scale, low,
  high] out; the data set's CT statistics are constants in the graph) and ``serving_scaled``
  (raw slices and those params in, probabilities out): the same computation split, so that a
  long volume can be sent in batches and still be normalised as one; what the predictor calls;
* ``logits`` (the network on normalised, model-size 2.5D stacks as the training pipeline
  prepares them; float32 logits out).

Normalisation, resizing and (``predict.tta`` flips, in the contract) test-time mirroring of
every window are inside the graph, so they cannot drift from training.
:func:`serving_functions` are the same functions in memory: the predictor runs a model under
training through them, so that validation scores exactly what an export serves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from tf_medseg.data import normalization
from tf_medseg.export.contract import Contract
from tf_medseg.models.outputs import probabilities
from tf_medseg.models.sliding_window import sliding_window


def mirrored(model: keras.Model, axes) -> Callable:
    """The network as a function of a batch of patches, float32 logits out; with ``axes``
    (the network's spatial axes), the logits averaged over every combination of mirrors along
    them, each mirrored back (nnU-Net's test-time mirroring: 2**len(axes) passes)."""
    import itertools
    axes = tuple(axes)

    def net(p):
        return tf.cast(model(p, training=False), tf.float32)

    def forward(p):
        total = net(p)
        flips = [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]
        for combo in flips:
            batch_axes = [a + 1 for a in combo]  # after the batch axis
            total += tf.reverse(net(tf.reverse(p, batch_axes)), batch_axes)
        return total / float(1 + len(flips))
    return forward if axes else net


def _functions(model: keras.Model, contract: Contract) -> dict:
    """{name: (python function, input signature)} of the serving signatures."""
    size, offsets = list(contract.input_size), len(contract.context)
    dtype = tf.as_dtype(contract.image_dtype)
    centres = [m * offsets + contract.centre for m in range(contract.modalities)]
    num_classes = len(contract.classes)

    forward = mirrored(model, contract.mirror_axes if "flips" in contract.tta else ())

    def scaled(image, params):
        height, width = tf.shape(image)[1], tf.shape(image)[2]
        x = normalization.apply(image, tf.repeat(tf.cast(params, tf.float32), offsets, axis=1))
        if contract.dims == 3:  # a 3D network: windows over the whole volume's slices
            logits = sliding_window(forward, x[None], size, contract.overlap)[0]
        elif contract.sampling == "patch":  # trained on patches: overlapping windows of them
            logits = sliding_window(forward, x, size, contract.overlap)
        else:
            x = tf.image.resize(x, size, method="bilinear")
            logits = forward(x)
            logits = tf.image.resize(logits, tf.stack([height, width]), method="bilinear")
        return {"probabilities": probabilities(logits, contract.head, num_classes)}

    def params(volume):
        return {"params": normalization.params(volume, contract.labels)}

    def default(image):
        return scaled(image, params(tf.gather(image, centres, axis=-1))["params"])

    def logits(image):
        return {"logits": tf.cast(model(image, training=False), tf.float32)}

    image = tf.TensorSpec([None, None, None, contract.channels], dtype, name="image")
    return {
        "serving_default": (default, [image]),
        "serving_scaled": (scaled, [image, tf.TensorSpec([4, contract.modalities], tf.float32,
                                                         name="params")]),
        "normalization": (params, [tf.TensorSpec([None, None, None, contract.modalities],
                                                 dtype, name="volume")]),
        "logits": (logits, [tf.TensorSpec([None, *size, contract.channels], tf.float32,
                                          name="image")]),
    }


def serving_functions(model: keras.Model, contract: Contract) -> dict:
    """The export's signatures as ``tf.function``s over the in-memory ``model``."""
    return {name: tf.function(fn, input_signature=signature, autograph=False)
            for name, (fn, signature) in _functions(model, contract).items()}


def export_saved_model(model: keras.Model, contract: Contract, out_dir: str | os.PathLike,
                       extra_metadata: dict | None = None) -> Path:
    """Write ``out_dir`` (SavedModel) and ``out_dir/metadata.json``, atomically: an export
    that exists is complete."""
    from tf_medseg.files import atomic_dir
    out_dir = Path(out_dir)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, signature) in _functions(model, contract).items():
        archive.add_endpoint(name=name, fn=tf.function(fn, autograph=False),
                             input_signature=signature)
    metadata = {**contract.to_metadata(), **(extra_metadata or {})}
    with atomic_dir(out_dir) as tmp:  # with the permissions of the other outputs
        archive.write_out(str(tmp), verbose=False)
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return out_dir


def load_signatures(model_dir: Path, names, label: str):
    """The loaded SavedModel, after checking it has the signatures ``names`` (one-line
    MedsegError if not)."""
    from tf_medseg.errors import MedsegError
    if not (model_dir / "variables" / "variables.index").is_file():
        raise MedsegError(f"{label}: the export's variables/ are missing (expected "
                          f"{model_dir / 'variables' / 'variables.index'}); export the model "
                          f"again (train.py over its run folder)")
    try:
        loaded = tf.saved_model.load(str(model_dir))
    except Exception as exc:  # noqa: BLE001 (TensorFlow raises many types for damaged files)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise MedsegError(f"{label}: the SavedModel cannot be loaded, its saved_model.pb or "
                          f"variables/ are damaged ({first}); export the model again "
                          f"(train.py over its run folder)") from None
    missing = sorted(set(names) - set(loaded.signatures))
    if missing:
        raise MedsegError(f"{label}: this export has no {missing[0]!r} signature; export it "
                          f"again with train.py")
    return loaded
