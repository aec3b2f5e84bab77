"""Pretrained ``keras.applications`` backbones as U-Net / Attention U-Net encoders.

``model.encoder`` names the backbone (``none`` keeps the plain U-Net encoder); the decoder is
the U-Net's (or the Attention U-Net's, gates on every skip), fed with the backbone's stage
outputs as skips and a full-resolution skip (two 3x3 convolutions on the input), so that the
output keeps the input's size.

* Skips: the last feature map at each stride 2, 4, ... 2**(depth - 1) of the backbone, and the
  bottleneck at stride 2**depth (``model.depth``, at most 5: the backbone is cut there, so that
  depth 4 leaves out the last stage). ConvNeXt starts at stride 4: its stride-2 level is
  up-sampled without a skip.
* Input normalisation, inside the model: the pipeline's intensities (about 0 to 1) are read as
  an image in [0, 1] and brought to what the backbone was trained on: ImageNet's mean and
  standard deviation (EfficientNetV2 B0-B3, ConvNeXt; the backbones' own preprocessing layers
  are left out), or 0-255 minus the BGR means (ResNet50, Caffe style). For C != 3 input
  channels each channel gets the mean of the three.
* Weights (``model.encoder_weights``): null (random), ``imagenet`` (as ``keras.applications``
  gets them: ``keras.utils.get_file`` into Keras's cache, ``$KERAS_HOME/models/``, checked
  against the hash Keras publishes; downloaded once when missing, read from the cache offline)
  or a path to a weights file of the backbone built with ``include_top=False`` (``.h5`` as
  Keras distributes them, or ``.weights.h5``).
* Any number of input channels (2.5D stacks, several modalities): with pretrained weights and
  C != 3 the first convolution's kernel is adapted as timm does: the RGB kernel averaged over
  its input channels, repeated C times and scaled by 3 / C, so that an input with the same
  value in every channel gives the pretrained stem's response to a grey image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from pathlib import Path

import keras
import numpy as np
from keras import layers

from tf_medseg.errors import MedsegError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MAX_DEPTH = 5  # the backbones reach stride 32


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One ``keras.applications`` backbone: its constructor, how its inputs are scaled and the
    name of the ImageNet weights file Keras caches."""

    constructor: str
    style: str  # "torch" (ImageNet mean / std) or "caffe" (0-255 minus BGR means)
    weights_file: str
    url: str
    preprocessing_arg: bool  # takes include_preprocessing (turned off: we normalise)
    file_hash: str  # of the include_top=False file, as keras.applications publishes it

    def build(self, input_shape) -> keras.Model:
        ctor = getattr(keras.applications, self.constructor)
        kwargs = {"include_preprocessing": False} if self.preprocessing_arg else {}
        with warnings.catch_warnings():  # "usually expects 1 or 3 input channels": we adapt
            warnings.simplefilter("ignore", UserWarning)
            return ctor(include_top=False, weights=None, input_shape=tuple(input_shape),
                        **kwargs)


_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"
# keras.applications' WEIGHTS_HASHES of the notop files (md5, or sha256 for ConvNeXt).
_EFFICIENTNETV2_HASHES = ("893217f2bb855e2983157299931e43ff", "0e80663031ca32d657f9caa404b6ec37",
                          "1dfe2e7a5d45b6632553a8961ea609eb", "f6abf7b5849ac99a89b50dd3fd532856")
BACKBONES = {
    "resnet50": Backbone("ResNet50", "caffe",
                         "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                         _GCS + "resnet/", False, "4d473c1dd8becc155b73f8504c6f6626"),
    **{f"efficientnetv2b{i}": Backbone(f"EfficientNetV2B{i}", "torch",
                                       f"efficientnetv2-b{i}_notop.h5",
                                       _GCS + "efficientnet_v2/", True, digest)
       for i, digest in enumerate(_EFFICIENTNETV2_HASHES)},
    "convnext_tiny": Backbone(
        "ConvNeXtTiny", "torch", "convnext_tiny_notop.h5", _GCS + "convnext/", True,
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
}
ENCODERS = ("none", *BACKBONES)


def keras_home() -> Path:
    """Keras's folder as ``keras.utils.get_file`` resolves it: ``$KERAS_HOME``, else
    ``~/.keras`` (``/tmp/.keras`` where the home folder is not writable)."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    base = os.path.expanduser("~")
    return Path(base if os.access(base, os.W_OK) else "/tmp") / ".keras"


def imagenet_file(encoder: str) -> Path:
    """Where Keras keeps (and looks for) the ImageNet weights of ``encoder``."""
    return keras_home() / "models" / BACKBONES[encoder].weights_file


def file_digest(path: Path, file_hash: str) -> str:
    """``path``'s hash in the algorithm of ``file_hash`` (sha256 for 64 hex digits, else md5:
    Keras's rule)."""
    hasher = hashlib.sha256() if len(file_hash) == 64 else hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def imagenet_weights(encoder: str) -> Path:
    """The ImageNet weights of ``encoder`` from Keras's cache, downloaded there first when
    missing (``keras.utils.get_file``, as keras.applications does), checked against the
    published hash. A cached file that fails the check is left alone and refused (it may be
    the user's); a failed or mismatched download leaves nothing behind.

    Raises:
        MedsegError: one line: the cached file is damaged, or it is missing and cannot be
            downloaded (no network), with where to put it by hand.
    """
    b = BACKBONES[encoder]
    path, url = imagenet_file(encoder), b.url + b.weights_file
    if path.is_file():
        if file_digest(path, b.file_hash) != b.file_hash:
            raise MedsegError(f"model.encoder_weights imagenet: {path} does not match the hash "
                              f"Keras publishes for {b.weights_file} (damaged or another file); "
                              f"move it away to download it again, or set "
                              f"model.encoder_weights to the path of the right file")
        return path
    made = [d for d in (path.parent.parent, path.parent) if not d.exists()]
    try:
        # get_file falls back to /tmp/.keras for a cache folder that does not exist yet
        path.parent.mkdir(parents=True, exist_ok=True)
        got = keras.utils.get_file(b.weights_file, url, file_hash=b.file_hash,
                                   cache_subdir="models", cache_dir=str(keras_home()))
    except Exception as exc:  # no network, HTTP errors, a mismatched download: many kinds
        if path.is_file():  # get_file keeps a download that fails its hash check
            path.unlink()
        for folder in reversed(made):  # and the cache folders it made for it, if empty
            try:
                folder.rmdir()
            except OSError:
                pass
        # get_file's "URL fetch failure on URL: CODE -- REASON": the reason is what matters
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = text.split(" -- ", 1)[-1][:160]
        raise MedsegError(f"model.encoder_weights imagenet: {path} is not cached and "
                          f"downloading {url} failed ({reason}); without a network, copy that "
                          f"file there, or set model.encoder_weights to its path") from None
    return Path(got)


def weights_path(encoder: str, weights: str | os.PathLike | None) -> Path | None:
    """The weights file ``model.encoder_weights`` names: ``imagenet`` from Keras's cache
    (:func:`imagenet_weights`), else a path checked to exist (one-line errors)."""
    if weights is None:
        return None
    if str(weights) == "imagenet":
        return imagenet_weights(encoder)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MedsegError(f"model.encoder_weights: {path} is not a file (a weights file of "
                          f"keras.applications' {BACKBONES[encoder].constructor} with "
                          f"include_top=False, 'imagenet' or null)")
    return path


def adapt_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """A (kh, kw, 3, out) RGB kernel for ``channels`` inputs: averaged over RGB, repeated and
    scaled by 3 / channels (timm's ``adapt_input_conv``)."""
    grey = kernel.mean(axis=2, keepdims=True)
    return np.repeat(grey, channels, axis=2) * (3.0 / channels)


def load_backbone_weights(base: keras.Model, encoder: str, path: Path) -> None:
    """``path`` loaded into ``base`` (built for any number of channels): read into an RGB
    twin, then copied, the first convolution's kernel adapted when the channels differ."""
    b = BACKBONES[encoder]
    shape = base.input_shape[1:]
    twin = b.build((*shape[:2], 3)) if shape[-1] != 3 else base
    try:
        twin.load_weights(str(path))
    except Exception as exc:  # a wrong or damaged file: Keras raises many kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedsegError(f"model.encoder_weights: {path} does not load into "
                          f"{b.constructor}(include_top=False) ({first[:160]}); give that "
                          f"backbone's weights file") from None
    if twin is base:
        return
    for target, source in zip(base.weights, twin.weights):
        value = keras.ops.convert_to_numpy(source)
        if tuple(target.shape) != value.shape:
            value = adapt_kernel(value, shape[-1])
        target.assign(value)


def _stage_outputs(base: keras.Model, height: int, width: int, depth: int) -> list:
    """The last layer output at each stride 2**k, k = 1 .. depth (None where the backbone has
    none, e.g. ConvNeXt at stride 2)."""
    last: dict[int, keras.KerasTensor] = {}
    for layer in base.layers:
        out = layer.output
        if isinstance(out, (list, tuple)) or len(out.shape) != 4:
            continue
        for k in range(1, depth + 1):
            if out.shape[1] == height // 2**k and out.shape[2] == width // 2**k:
                last[k] = out
    if depth not in last:
        raise MedsegError(f"model.encoder: the backbone has no stride-{2**depth} features")
    return [last.get(k) for k in range(1, depth + 1)]


def input_normalization(x, encoder: str, channels: int):
    """The pipeline's intensities (about [0, 1]) as the backbone's ImageNet inputs."""
    b = BACKBONES[encoder]
    if b.style == "caffe":
        mean = list(CAFFE_BGR_MEAN) if channels == 3 else [float(np.mean(CAFFE_BGR_MEAN))] * \
            channels
        x = layers.Rescaling(255.0, name="imagenet_scale")(x)
        return layers.Normalization(mean=mean, variance=[1.0] * channels,
                                    name="imagenet_normalization")(x)
    mean = list(IMAGENET_MEAN) if channels == 3 else [float(np.mean(IMAGENET_MEAN))] * channels
    std = list(IMAGENET_STD) if channels == 3 else [float(np.mean(IMAGENET_STD))] * channels
    return layers.Normalization(mean=mean, variance=[s * s for s in std],
                                name="imagenet_normalization")(x)


def backbone_encoder(inputs, encoder: str, *, depth: int, weights=None):
    """(bottleneck, skips for strides 2 .. 2**(depth - 1), the backbone sub-model named
    ``encoder``) for ``inputs`` of a static (H, W, C)."""
    if encoder not in BACKBONES:
        raise MedsegError(f"model.encoder: unknown {encoder!r} (allowed: "
                          f"{', '.join(ENCODERS)})")
    if not 1 <= depth <= MAX_DEPTH:
        raise MedsegError(f"model.depth: {depth} with model.encoder {encoder}; the backbone "
                          f"gives strides up to 32: depth 1 to {MAX_DEPTH}")
    height, width, channels = inputs.shape[1:]
    if height is None or width is None:
        raise MedsegError("model.encoder: needs a fixed input size (data.image_size)")
    path = weights_path(encoder, weights)
    base = BACKBONES[encoder].build((height, width, channels))
    if path is not None:
        load_backbone_weights(base, encoder, path)
    stages = _stage_outputs(base, height, width, depth)
    features = keras.Model(base.inputs, [s for s in stages if s is not None], name="encoder")
    outs = iter(features(input_normalization(inputs, encoder, channels)))
    values = [next(outs) if s is not None else None for s in stages]
    return values[-1], values[:-1], features


def encoder_layer(model: keras.Model) -> keras.Model | None:
    """The backbone sub-model of a model built with ``model.encoder`` (None for plain U-Nets)."""
    try:
        return model.get_layer("encoder")
    except ValueError:
        return None

