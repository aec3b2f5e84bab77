"""Ensembles of exports: several ``--model`` values, or a cross-validation run folder.

``predict`` and ``evaluate`` average the members' class probabilities, each member with its
own normalisation (its own ``intensity_scale`` / ``normalization`` signature); post-processing
(``RUN_DIR/cv/postprocessing.json``, or ``postprocessing.json`` inside an ensemble export) is
applied to the mean.

``python -m tf_medseg export-ensemble RUN_DIR --out DIR`` writes one SavedModel whose
signatures call every fold's export and average their probabilities inside the graph, with
the same signature names as a single export (the normalisation signatures return one value
per member, stacked; ``logits`` returns the log-odds of the mean probability, or for softmax
models the log of the mean probabilities with the background first), a ``metadata.json``
listing the members and the post-processing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from tf_medseg.errors import MedsegError

POSTPROCESSING = "postprocessing.json"


def resolve_models(values) -> tuple[list[Path], Path | None]:
    """The exports that ``--model`` names and the post-processing file that goes with them.

    Each value is an export (``RUN_DIR/saved_model``), a run folder holding one, or a
    cross-validation run folder (its folds' exports, and ``cv/postprocessing.json``). Only a
    single value brings post-processing: a CV folder's, or an ensemble export's own.
    """
    from tf_medseg.run_dir import cv_exports, is_cv_run
    values = [values] if isinstance(values, (str, os.PathLike)) else list(values)
    exports: list[Path] = []
    postprocessing = None
    for value in values:
        path = Path(value).expanduser()
        if (path / "saved_model.pb").is_file():
            exports.append(path)
            if (path / POSTPROCESSING).is_file():
                postprocessing = path / POSTPROCESSING
        elif is_cv_run(path):
            exports.extend(cv_exports(path))
            if (path / "cv" / POSTPROCESSING).is_file():
                postprocessing = path / "cv" / POSTPROCESSING
        elif (path / "saved_model" / "saved_model.pb").is_file():
            exports.append(path / "saved_model")
        else:
            exports.append(path)  # read_metadata names what is missing
    seen = set()
    for path in exports:
        key = os.path.realpath(path)
        if key in seen:
            raise MedsegError(f"--model {path}: named twice; give each export once")
        seen.add(key)
    return exports, (postprocessing if len(values) == 1 else None)


COMPATIBLE = ("classes", "context_offsets")
VOLUME_KEYS = ("slice_axis", "spacing", "label_values", "model_output", "channels")


def check_members(metadata: list[dict], dirs: list[Path]) -> None:
    """Members of one ensemble take the same input and answer with the same classes."""
    first = metadata[0]
    kind = first.get("task", {}).get("kind", "scans")
    for meta, path in zip(metadata[1:], dirs[1:]):
        if meta.get("task", {}).get("kind", "scans") != kind:
            raise MedsegError(f"--model {path}: trained on another kind of data than "
                              f"{dirs[0]}; an ensemble's members share their input")
        for key in COMPATIBLE + (VOLUME_KEYS if kind == "volumes" else ()):
            if meta.get(key) != first.get(key):
                raise MedsegError(f"--model {path}: {key} {meta.get(key)!r}, but {dirs[0]} "
                                  f"has {first.get(key)!r}; an ensemble's members must agree")
        if float(meta.get("threshold", 0.5)) != float(first.get("threshold", 0.5)):
            raise MedsegError(f"--model {path}: threshold {meta.get('threshold')}, but "
                              f"{dirs[0]} has {first.get('threshold')}; an ensemble's "
                              f"members must agree")


class Ensemble:
    """Several :class:`~tf_medseg.predict.ExportedModel` answering as one: the interface of
    one export, each call made on every member and the probabilities averaged."""

    def __init__(self, members):
        self.members = list(members)
        check_members([m.metadata for m in self.members], [m.dir for m in self.members])
        first = self.members[0]
        self.metadata, self.dir = first.metadata, first.dir
        self.volumes, self.context, self.threshold = first.volumes, first.context, \
            first.threshold

    def scale(self, volume):
        return [m.scale(volume) for m in self.members]

    def normalization(self, volume):
        return [m.normalization(volume) for m in self.members]

    def probabilities(self, images, scales, tta: bool = False) -> np.ndarray:
        return np.mean([m.probabilities(images, s, tta)
                        for m, s in zip(self.members, scales)], axis=0)

    def volume_probabilities(self, stacks, params, tta: bool = False) -> np.ndarray:
        return np.mean([m.volume_probabilities(stacks, p, tta)
                        for m, p in zip(self.members, params)], axis=0)


# ------------------------------------------------------------------------ export-ensemble

def export_ensemble(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """One SavedModel averaging the fold exports of a cross-validation folder (or any
    exports :func:`resolve_models` accepts) inside the graph, and its ``metadata.json``."""
    import tensorflow as tf

    from tf_medseg.export import load_signatures, read_metadata
    from tf_medseg.files import atomic_dir, check_output_path, check_outside
    values = [run_dir] if isinstance(run_dir, (str, os.PathLike)) else list(run_dir)
    exports, postprocessing = resolve_models(values)
    out = check_output_path(out, "--out", "folder")
    if out.exists() or out.is_symlink():
        raise MedsegError(f"--out {out}: exists; give a new folder (an export is never "
                          f"replaced)")
    check_outside(out, "--out", {f"--model {p}": p for p in exports})
    metas = [read_metadata(p, f"--model {p}") for p in exports]
    check_members(metas, exports)
    if len({tuple(m["model_input_size"]) for m in metas}) > 1:
        raise MedsegError("export-ensemble: the members have different model_input_size; "
                          "the logits signature needs one")
    first = metas[0]
    volumes = first.get("task", {}).get("kind") == "volumes"
    softmax = first.get("model_output") == "softmax"
    names = (["serving_default", "serving_scaled", "normalization", "logits"] if volumes else
             ["serving_default", "serving_scaled", "intensity_scale", "logits"])
    loaded = [load_signatures(p, names, f"--model {p}") for p in exports]
    channels = len(first["context_offsets"]) * (len(first.get("channels", [])) or 1)
    n = len(loaded)
    module = tf.Module()
    module.members = loaded

    def sig(member, name):
        return member.signatures[name]

    def mean(values):
        return tf.add_n(values) / float(len(values))

    in_dtype = tf.float32 if volumes else tf.uint16
    image = tf.TensorSpec([None, None, None, channels], in_dtype, name="image")

    @tf.function(input_signature=[image])
    def serving_default(image):
        return {"probabilities": mean([sig(m, "serving_default")(image=image)["probabilities"]
                                       for m in loaded])}

    size = first["model_input_size"]

    @tf.function(input_signature=[tf.TensorSpec([None, *size, channels], tf.float32,
                                                name="image")])
    def logits(image):
        outs = [sig(m, "logits")(image=image)["logits"] for m in loaded]
        if softmax:
            return {"logits": tf.math.log(mean([tf.nn.softmax(o, axis=-1) for o in outs])
                                          + 1e-12)}
        p = tf.clip_by_value(mean([tf.sigmoid(o) for o in outs]), 1e-7, 1 - 1e-7)
        return {"logits": tf.math.log(p) - tf.math.log1p(-p)}

    # Each member normalises with its own signature; the values come stacked, one per member.
    if volumes:
        modalities = len(first.get("channels", [])) or 1
        norm_name, norm_key, value_key = "normalization", "params", "params"
        volume_spec = tf.TensorSpec([None, None, None, modalities], tf.float32, name="volume")
        value_spec = tf.TensorSpec([n, 4, modalities], tf.float32, name="params")
    else:
        norm_name, norm_key, value_key = "intensity_scale", "scale", "scale"
        volume_spec = tf.TensorSpec([None, None, None], tf.uint16, name="volume")
        value_spec = tf.TensorSpec([n], tf.float32, name="scale")

    @tf.function(input_signature=[volume_spec])
    def normalise(volume):
        return {norm_key: tf.stack([sig(m, norm_name)(volume=volume)[norm_key]
                                    for m in loaded])}

    @tf.function(input_signature=[image, value_spec])
    def serving_scaled(image, values):
        return {"probabilities": mean([
            sig(m, "serving_scaled")(image=image, **{value_key: values[i]})["probabilities"]
            for i, m in enumerate(loaded)])}
    signatures = {"serving_default": serving_default, "serving_scaled": serving_scaled,
                  norm_name: normalise, "logits": logits}
    for name, fn in signatures.items():
        setattr(module, name, fn)
    metadata = {k: v for k, v in first.items()
                if k not in ("validation", "config_digest", "ensemble")}
    metadata["signatures"] = list(signatures)
    metadata["ensemble"] = {
        "members": [{"path": str(p.resolve()), "config_digest": m.get("config_digest"),
                     "validation": m.get("validation")} for p, m in zip(exports, metas)],
        "combination": "mean of the members' probabilities, each member normalising its "
                       "input itself; the normalisation signatures return one value per "
                       "member (stacked), which serving_scaled takes"}
    with atomic_dir(out) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        if postprocessing is not None:
            shutil.copyfile(postprocessing, tmp / POSTPROCESSING)
            metadata["postprocessing"] = POSTPROCESSING
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return out
