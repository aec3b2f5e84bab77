"""``python -m tf_medseg benchmark``: input pipeline, training and inference throughput.

Builds the TFDS records of a data set folder in a temporary folder (removed afterwards),
then measures, each for about ``--seconds``:

* ``pipeline_slices_per_s``: batches of the training pipeline (shuffled, 2.5D context,
  default augmentation) once its cache is warm, as every epoch after the first sees it; the
  first, cold epoch (records read and decoded) is ``pipeline_first_epoch_slices_per_s``;
* ``train_images_per_s``: steps of the training loop (``tf_medseg.training.loop``) with the
  configured model, optimiser, precision and XLA choice, on one batch from the pipeline held in
  memory (so the model alone is timed);
* ``infer_images_per_s``: forward passes in inference mode, same model and batch;
* ``infer_seconds_per_volume``: the predictor on the data set's first scan, whole: slices
  resized to the model's size, or (``data.sampling: patch``) predicted in sliding windows;
* ``pipeline_over_training``: ``pipeline_slices_per_s / train_images_per_s``, how much faster
  the input pipeline runs than training takes (keep it at 2 or more);
* with ``model.dims: 3`` the samples are 3D patches, not slices (``samples`` says which):
  ``pipeline_slices_per_s`` and ``train_images_per_s`` count patches;
* ``peak_rss_mb``: the peak resident memory of this process.

The last line printed is one JSON object with those keys (``null`` for what ``--only`` left
out).

``--data-root`` may be any source; ``--source`` says which, or it is recognised from the folder:
``train.csv`` (uwmgi), ``dataset.json`` with ``training`` (decathlon) or ``channel_names``
(nnunet), ``labels.json`` with ``images/`` (folder).
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import tempfile
import time
from pathlib import Path

from tf_medseg.errors import MedsegError

PARTS = ("pipeline", "train", "infer")
SOURCES = ("uwmgi", "nnunet", "decathlon", "folder")


def detect_source(root: str) -> str:
    """The format of a data set folder, from the files that mark it."""
    folder = Path(root).expanduser()
    if (folder / "train.csv").is_file():
        return "uwmgi"
    if (folder / "dataset.json").is_file():
        from tf_medseg.data.sources.volumes import read_json
        meta = read_json(folder / "dataset.json", "")
        return "decathlon" if isinstance(meta, dict) and "training" in meta else "nnunet"
    if (folder / "labels.json").is_file() and (folder / "images").is_dir():
        return "folder"
    raise MedsegError(f"--data-root {folder}: not a recognised data set folder (train.csv, "
                      f"dataset.json or labels.json with images/); pass --source")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run(args) -> dict:
    """Run the benchmark described by parsed ``args``; print and return the results."""
    from tf_medseg.config import load_config
    if not (math.isfinite(args.seconds) and 0 < args.seconds <= 3600):
        raise MedsegError(f"--seconds: must be a number of seconds in (0, 3600], got "
                          f"{args.seconds}")
    if not 0 <= args.compare_runtimes <= 100:
        raise MedsegError(f"--compare-runtimes: must be a number of rounds from 0 to 100, "
                          f"got {args.compare_runtimes}")
    if args.image_size and not all(16 <= n <= 8192 for n in args.image_size):
        raise MedsegError(f"--image-size: each side must be from 16 to 8192 pixels, got "
                          f"{args.image_size[0]} {args.image_size[1]}")
    if not Path(args.data_root).expanduser().is_dir():
        raise MedsegError(f"--data-root {args.data_root}: not a folder")
    tmp = tempfile.mkdtemp(prefix="tf_medseg_benchmark_")
    try:
        source = args.source or detect_source(args.data_root)
        overrides = [*args.set, f"data.source={source}", f"data.root={args.data_root}",
                     f"data.data_dir={tmp}"]
        if args.image_size:
            overrides.append(f"data.image_size=[{args.image_size[0]},{args.image_size[1]}]")
        from tf_medseg.planning.planner import planned_config
        return _measure(planned_config(load_config(args.config, overrides)), args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(config, args) -> dict:
    import tensorflow as tf

    from tf_medseg.training.experiment import Experiment
    from tf_medseg.training.runtime import runtime_for

    parts = [args.only] if args.only else list(PARTS)
    start = time.perf_counter()
    experiment = Experiment(config)
    prepared = time.perf_counter() - start
    slices, _ = experiment.dataset.slices("all")
    # What the pipeline yields and a step trains on: slices, or 3D patches (model.dims 3).
    unit = "3D patches" if config.model.dims == 3 else "slices"
    policy, jit = runtime_for(config)
    result = {"pipeline_slices_per_s": None, "pipeline_first_epoch_slices_per_s": None,
              "train_images_per_s": None, "infer_images_per_s": None,
              "infer_seconds_per_volume": None, "pipeline_over_training": None,
              "sampling": config.data.sampling,
              "image_size": list(config.data.image_size), "context": list(config.data.context),
              "batch_size": config.data.batch_size, "slices": slices, "samples": unit,
              "source": config.data.source,
              "precision": policy, "jit_compile": jit, "prepare_seconds": round(prepared, 1)}
    print(f"Prepared {slices} slices in {prepared:.1f} s; image size "
          f"{config.data.image_size}, context {list(config.data.context)}, batch "
          f"{config.data.batch_size}", flush=True)
    ds = experiment.make_dataset("all", shuffle=True, augment_batches=config.data.augment)
    if "pipeline" in parts:
        cold, warm = _time_pipeline(ds, args.seconds)
        result["pipeline_first_epoch_slices_per_s"] = round(cold, 1)
        result["pipeline_slices_per_s"] = round(warm, 1)
        print(f"Pipeline: {warm:.1f} {unit}/s with a warm cache, {cold:.1f} {unit}/s in the "
              f"first epoch", flush=True)
    if "train" in parts or "infer" in parts or args.compare_runtimes:
        images, masks = next(iter(ds))
        strategy = tf.distribute.get_strategy()
        model = experiment.model(policy, jit, steps_per_epoch=10**5)
        if "train" in parts:
            trainer = experiment.trainer(model, strategy)
            result["train_images_per_s"] = round(
                _time_training(trainer, (images, masks), args.seconds), 1)
            print(f"Training: {result['train_images_per_s']:.1f} {unit}/s ({policy}, "
                  f"jit_compile {jit})", flush=True)
        if "infer" in parts:
            result["infer_images_per_s"] = round(
                _time_inference(model, images, jit, args.seconds), 1)
            seconds, shape = _time_volume(experiment, model)
            result["infer_seconds_per_volume"] = round(seconds, 3)
            print(f"Inference: {result['infer_images_per_s']:.1f} {unit}/s; a whole "
                  f"{' x '.join(map(str, shape))} volume in {seconds:.2f} s ("
                  + ("3D sliding windows" if config.model.dims == 3 else "sliding windows"
                     if config.data.sampling == "patch" else "resized slices")
                  + ")", flush=True)
    if result["pipeline_slices_per_s"] and result["train_images_per_s"]:
        result["pipeline_over_training"] = round(
            result["pipeline_slices_per_s"] / result["train_images_per_s"], 2)
        print(f"The pipeline delivers {result['pipeline_over_training']:.1f}x what training "
              f"takes (keep it >= 2)", flush=True)
    if args.compare_runtimes:
        result["runtimes"] = _compare_runtimes(experiment, (images, masks),
                                               args.compare_runtimes, args.seconds)
    result["peak_rss_mb"] = round(_peak_rss_mb())
    print(json.dumps(result), flush=True)
    return result


def _time_volume(experiment, model) -> tuple[float, tuple[int, ...]]:
    """(seconds, shape) of the predictor on the data set's first scan, as predict and the
    validation score run it (normalisation, slices, windows or resizing, and back); the
    second of two runs, so that tracing is not counted."""
    example = next(iter(experiment.dataset.records("all")))
    image, spacing = example["image"].numpy(), example["spacing"].numpy()
    predictor = experiment.predictor(model)
    predictor.probabilities(image, spacing)
    start = time.perf_counter()
    predictor.probabilities(image, spacing)
    return time.perf_counter() - start, tuple(int(n) for n in image.shape[:3])


def _time_pipeline(ds, seconds: float) -> tuple[float, float]:
    """(slices/s of the first epoch, slices/s of the following epochs, for ``seconds``)."""
    start, count = time.perf_counter(), 0
    for images, _ in ds:
        count += int(images.shape[0])
    cold = count / (time.perf_counter() - start)
    # Later epochs back to back, as training with train.steps_per_epoch iterates them (the
    # next epoch is prepared while this one is consumed).
    batches = iter(ds.repeat())
    for _ in range(3):
        next(batches)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        count += int(next(batches)[0].shape[0])
    return cold, count / (time.perf_counter() - start)


def _time_training(trainer, batch, seconds: float) -> float:
    """Images per second of the training step on one batch held in memory."""
    for _ in range(3):  # trace and compile
        trainer.train_step(batch)[0].numpy()
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or count < 5 * int(batch[0].shape[0]):
        trainer.train_step(batch)[0].numpy()
        count += int(batch[0].shape[0])
    return count / (time.perf_counter() - start)


RUNTIMES = (("mixed_bfloat16", False), ("mixed_bfloat16", True), ("float32", False),
            ("float32", True))
GPU_RUNTIMES = (("mixed_float16", True), ("mixed_float16", False), ("float32", False),
                ("float32", True))  # a GPU's half precision is float16 (tensor cores)


def runtimes_to_compare() -> tuple[tuple[str, bool], ...]:
    """The (policy, XLA) pairs ``--compare-runtimes`` times: float16 ones on a GPU, bfloat16
    ones on a CPU."""
    import tensorflow as tf
    return GPU_RUNTIMES if tf.config.list_logical_devices("GPU") else RUNTIMES


def _compare_runtimes(experiment, batch, rounds: int, seconds: float) -> dict:
    """Training images/s per (policy, XLA), measured in alternating rounds (so that machine
    load drifts alike for all), median over rounds; ``auto`` names what training picks."""
    import statistics

    import tensorflow as tf

    from tf_medseg.training.runtime import resolve_runtime
    trainers = {}
    for policy, jit in runtimes_to_compare():
        model = experiment.model(policy, jit, steps_per_epoch=10**5)
        trainers[_runtime_label(policy, jit)] = experiment.trainer(
            model, tf.distribute.get_strategy())
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for r in range(rounds):
        for name, trainer in trainers.items():
            times[name].append(_time_training(trainer, batch, seconds))
        print(f"Runtimes, round {r + 1}/{rounds}: " + ", ".join(
            f"{name} {v[-1]:.1f}" for name, v in times.items()) + " images/s", flush=True)
    out = {name: round(statistics.median(v), 1) for name, v in times.items()}
    out["auto"] = _runtime_label(*resolve_runtime())
    return out


def _runtime_label(policy: str, jit: bool) -> str:
    return f"{policy}{'+xla' if jit else ''}"


def _time_inference(model, images, jit: bool, seconds: float) -> float:
    import tensorflow as tf

    from tf_medseg.models import main_output
    model = main_output(model)  # what inference runs (no deep-supervision heads)
    forward = tf.function(lambda x: model(x, training=False), jit_compile=jit,
                          autograph=False)
    forward(images).numpy()  # compile
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        forward(images).numpy()
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)
