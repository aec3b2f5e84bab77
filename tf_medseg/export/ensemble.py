"""``python -m tf_medseg export-ensemble RUN_DIR --out DIR``: one SavedModel whose signatures
call every fold's export (or any exports :func:`~tf_medseg.export.contract.resolve_models`
accepts) and average their probabilities inside the graph.

It has the signature names of a single export. ``normalization`` returns one ``params`` per
member, stacked (M members: (M, 4, modalities)), which ``serving_scaled`` takes, each member
normalising its input itself; ``logits`` returns the log-odds of the mean probability, or for
softmax models the log of the mean probabilities with the background first.
``metadata.json`` lists the members and the post-processing (copied in when the folder has
one).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tf_medseg.errors import MedsegError
from tf_medseg.export.contract import (
    POSTPROCESSING,
    SIGNATURES,
    check_members,
    read_contract,
    read_metadata,
    resolve_models,
)


def export_ensemble(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """One SavedModel averaging the exports of ``run_dir`` (a cross-validation folder, or a
    list of exports) inside the graph, and its ``metadata.json``."""
    import tensorflow as tf

    from tf_medseg.export.saved_model import load_signatures
    from tf_medseg.files import atomic_dir, check_output_path, check_outside
    values = [run_dir] if isinstance(run_dir, (str, os.PathLike)) else list(run_dir)
    exports, postprocessing = resolve_models(values)
    out = check_output_path(out, "--out", "folder")
    if out.exists() or out.is_symlink():
        raise MedsegError(f"--out {out}: exists; give a new folder (an export is never "
                          f"replaced)")
    check_outside(out, "--out", {f"--model {p}": p for p in exports})
    metas = [read_metadata(p, f"--model {p}") for p in exports]
    contracts = [read_contract(p, f"--model {p}") for p in exports]
    check_members(contracts, exports)
    if len({c.input_size for c in contracts}) > 1:
        raise MedsegError("export-ensemble: the members have different model_input_size; "
                          "the logits signature needs one")
    first = contracts[0]
    loaded = [load_signatures(p, SIGNATURES, f"--model {p}") for p in exports]
    n = len(loaded)
    module = tf.Module()
    module.members = loaded

    def sig(member, name):
        return member.signatures[name]

    def mean(values):
        return tf.add_n(values) / float(len(values))

    dtype = tf.as_dtype(first.image_dtype)
    image = tf.TensorSpec([None, None, None, first.channels], dtype, name="image")

    @tf.function(input_signature=[image], autograph=False)
    def serving_default(image):
        return {"probabilities": mean([sig(m, "serving_default")(image=image)["probabilities"]
                                       for m in loaded])}

    @tf.function(input_signature=[tf.TensorSpec([None, *first.input_size, first.channels],
                                                tf.float32, name="image")],
                 autograph=False)
    def logits(image):
        outs = [sig(m, "logits")(image=image)["logits"] for m in loaded]
        if first.head == "softmax":
            return {"logits": tf.math.log(mean([tf.nn.softmax(o, axis=-1) for o in outs])
                                          + 1e-12)}
        p = tf.clip_by_value(mean([tf.sigmoid(o) for o in outs]), 1e-7, 1 - 1e-7)
        return {"logits": tf.math.log(p) - tf.math.log1p(-p)}

    # Each member normalises with its own signature; the params come stacked, one per member.
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, first.modalities], dtype,
                                                name="volume")],
                 autograph=False)
    def normalization(volume):
        return {"params": tf.stack([sig(m, "normalization")(volume=volume)["params"]
                                    for m in loaded])}

    @tf.function(input_signature=[image, tf.TensorSpec([n, 4, first.modalities], tf.float32,
                                                       name="params")],
                 autograph=False)
    def serving_scaled(image, params):
        return {"probabilities": mean([
            sig(m, "serving_scaled")(image=image, params=params[i])["probabilities"]
            for i, m in enumerate(loaded)])}
    signatures = {"serving_default": serving_default, "serving_scaled": serving_scaled,
                  "normalization": normalization, "logits": logits}
    for name, fn in signatures.items():
        setattr(module, name, fn)
    metadata = {k: v for k, v in metas[0].items()
                if k not in ("validation", "config_digest", "ensemble")}
    metadata["ensemble"] = {
        "members": [{"path": str(p.resolve()), "config_digest": m.get("config_digest"),
                     "validation": m.get("validation")} for p, m in zip(exports, metas)],
        "combination": "mean of the members' probabilities, each member normalising its "
                       "input itself; the normalization signature returns one params per "
                       "member (stacked), which serving_scaled takes"}
    with atomic_dir(out) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        if postprocessing is not None:
            shutil.copyfile(postprocessing, tmp / POSTPROCESSING)
            metadata["postprocessing"] = POSTPROCESSING
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return out
