"""keras.applications backbones under the U-Net decoders (tf_medseg/models/encoders.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.config.schema import ENCODERS
from tf_medseg.errors import ConfigError, MedsegError
from tf_medseg.models import build_attention_unet, build_unet
from tf_medseg.models.encoders import (
    BACKBONES,
    adapt_kernel,
    encoder_layer,
    imagenet_file,
)

from conftest import compiled, kaggle_contract, kaggle_trainer, network

BACKBONE_NAMES = [e for e in ENCODERS if e != "none"]


def test_schema_names_every_backbone():
    assert sorted(BACKBONE_NAMES) == sorted(BACKBONES)


def _batch(channels, n=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, channels), dtype=np.float32)
    y = (rng.random((n, size, size, 3)) > 0.7).astype(np.float32)
    return x, y


@pytest.mark.slow  # every backbone, whole and cut, a step each
@pytest.mark.parametrize("encoder", BACKBONE_NAMES)
def test_every_encoder_builds_for_1_3_5_channels_and_trains_a_step(encoder):
    """The whole backbone (stride 32), then cut at depth 2 for 1, 3 and 5 channels; one eager
    optimiser step on the last."""
    whole = build_unet((64, 64, 2), 3, base_filters=4, depth=5, encoder=encoder)
    assert whole.output.shape == (None, 64, 64, 3)
    assert encoder_layer(whole).outputs[-1].shape[1:3] == (2, 2)
    for channels in (1, 3, 5):
        model = build_unet((64, 64, channels), 3, base_filters=4, depth=2, encoder=encoder)
        assert model.output.shape == (None, 64, 64, 3)
        assert encoder_layer(model).input_shape[-1] == channels
    x, y = _batch(5)
    optimizer = keras.optimizers.Adam(1e-3)
    encoder_weights = encoder_layer(model).trainable_weights
    before = [w.numpy().copy() for w in encoder_weights]
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.losses.BinaryCrossentropy(from_logits=True)(y, logits)
    assert logits.dtype == "float32" and np.isfinite(loss.numpy())
    optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
    moved = [not np.array_equal(a, w.numpy()) for a, w in zip(before, encoder_weights)]
    assert moved[0] and sum(moved) > len(moved) / 2  # the stem kernel, and most of the rest


def test_attention_unet_with_a_backbone_without_stride_2_features():
    """ConvNeXt starts at stride 4: that level is up-sampled without a skip (and no gate)."""
    model = build_attention_unet((64, 64, 3), 2, base_filters=4, depth=3,
                                 encoder="convnext_tiny")
    assert model(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 64, 64, 2)
    names = {layer.name for layer in model.layers}
    assert "att0_multiply" in names and "att2_multiply" in names  # full-res and stride 4
    assert "att1_multiply" not in names and "dec1_concat" not in names


def test_depth_cuts_the_backbone():
    deep = build_unet((64, 64, 1), 3, base_filters=4, depth=5, encoder="resnet50")
    shallow = build_unet((64, 64, 1), 3, base_filters=4, depth=2, encoder="resnet50")
    assert encoder_layer(shallow).count_params() < encoder_layer(deep).count_params() / 10
    assert encoder_layer(shallow).outputs[-1].shape[1] == 64 // 4


def test_adapted_kernel_answers_grey_images_as_the_rgb_kernel():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 3, 8)).astype(np.float32)
    grey = rng.random((1, 16, 16, 1)).astype(np.float32)
    rgb = tf.nn.conv2d(np.repeat(grey, 3, -1), kernel, 1, "SAME")
    for channels in (1, 2, 5):
        adapted = adapt_kernel(kernel, channels)
        assert adapted.shape == (3, 3, channels, 8)
        np.testing.assert_allclose(adapted[:, :, 0], kernel.mean(axis=2) * 3 / channels,
                                   rtol=1e-6)
        out = tf.nn.conv2d(np.repeat(grey, channels, -1), adapted, 1, "SAME")
        np.testing.assert_allclose(out, rgb, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def saved_backbone(tmp_path_factory):
    """An EfficientNetV2B0 weights file saved from a built backbone, with weights unlike a
    fresh build's: (the backbone, the file)."""
    keras.utils.set_random_seed(123)
    base = BACKBONES["efficientnetv2b0"].build((64, 64, 3))
    for w in base.weights:
        if w.dtype == "float32":
            w.assign(w.numpy() + np.float32(0.01))
    path = tmp_path_factory.mktemp("weights") / "efficientnetv2b0.weights.h5"
    base.save_weights(str(path))
    return base, path


def test_encoder_weights_path_loads_the_file(saved_backbone):
    base, path = saved_backbone
    saved = {w.path: w.numpy() for w in base.weights}
    keras.utils.set_random_seed(7)
    model = build_unet((64, 64, 3), 3, base_filters=4, depth=5, encoder="efficientnetv2b0",
                       encoder_weights=str(path))
    got = encoder_layer(model).weights
    assert len(got) == len(saved)
    for w, v in zip(got, saved.values()):
        np.testing.assert_array_equal(w.numpy(), v)


def test_encoder_weights_for_5_channels_adapt_the_first_kernel(saved_backbone):
    base, path = saved_backbone
    saved = [w.numpy() for w in base.weights]
    model = build_unet((64, 64, 5), 3, base_filters=4, depth=5, encoder="efficientnetv2b0",
                       encoder_weights=str(path))
    got = [w.numpy() for w in encoder_layer(model).weights]
    adapted = [i for i, (a, b) in enumerate(zip(got, saved)) if a.shape != b.shape]
    assert adapted == [0]  # the stem convolution only
    np.testing.assert_allclose(got[0], adapt_kernel(saved[0], 5), rtol=1e-6)
    for a, b in zip(got[1:], saved[1:]):
        np.testing.assert_array_equal(a, b)


def test_encoder_weights_of_another_backbone_is_one_line(saved_backbone):
    _, path = saved_backbone
    with pytest.raises(MedsegError, match=r"does not load into ResNet50") as info:
        build_unet((64, 64, 3), 3, base_filters=4, depth=5, encoder="resnet50",
                   encoder_weights=str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _server(monkeypatch, source=None):
    """keras.utils.get_file's network: with ``source`` a server that holds that file (the
    URLs asked for listed), else none (every fetch fails as urllib does offline)."""
    import shutil
    import urllib.error

    import keras.src.utils.file_utils as file_utils
    asked = []

    def urlretrieve(url, target, progress=None):
        asked.append(url)
        if source is None:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        shutil.copyfile(source, target)
    monkeypatch.setattr(file_utils, "urlretrieve", urlretrieve)
    return asked


def _published(monkeypatch, encoder, path):
    """Make ``path`` the file whose hash keras.applications publishes for ``encoder``."""
    import dataclasses

    from tf_medseg.models.encoders import file_digest
    b = BACKBONES[encoder]
    digest = file_digest(path, "0" * (64 if len(b.file_hash) == 64 else 32))
    monkeypatch.setitem(BACKBONES, encoder, dataclasses.replace(b, file_hash=digest))


def test_imagenet_without_network_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    asked = _server(monkeypatch)
    expected = tmp_path / "kh" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert imagenet_file("resnet50") == expected
    with pytest.raises(MedsegError) as info:
        build_unet((64, 64, 3), 3, base_filters=4, depth=2, encoder="resnet50",
                   encoder_weights="imagenet")
    message = str(info.value)
    url = ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
           "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert asked == [url]  # keras.utils.get_file asked for the published file
    assert str(expected) in message and url in message and "name resolution" in message
    assert "without a network, copy that file there" in message and "\n" not in message
    assert not (tmp_path / "kh").exists()  # no partial file, no empty cache folders


def test_imagenet_is_downloaded_once_checked_and_then_read_offline(
        tmp_path, monkeypatch, saved_backbone):
    base, _ = saved_backbone
    served = tmp_path / "served.h5"
    base.save(str(served))  # the published file: a legacy .h5 as Keras distributes them
    _published(monkeypatch, "efficientnetv2b0", served)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    asked = _server(monkeypatch, served)
    model = build_unet((64, 64, 1), 3, base_filters=4, depth=5, encoder="efficientnetv2b0",
                       encoder_weights="imagenet")
    assert len(asked) == 1 and imagenet_file("efficientnetv2b0").is_file()
    np.testing.assert_array_equal(encoder_layer(model).weights[1].numpy(),
                                  base.weights[1].numpy())
    _server(monkeypatch)  # offline now: the cache answers
    build_unet((64, 64, 1), 3, base_filters=4, depth=5, encoder="efficientnetv2b0",
               encoder_weights="imagenet")


def test_imagenet_download_or_cache_that_fails_the_hash_is_refused(
        tmp_path, monkeypatch, saved_backbone):
    base, path = saved_backbone
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not the published file")
    _server(monkeypatch, garbage)  # a server answering with the wrong bytes
    with pytest.raises(MedsegError, match=r"downloading .* failed \(Incomplete or corrupted"):
        build_unet((64, 64, 3), 3, base_filters=4, depth=5, encoder="efficientnetv2b0",
                   encoder_weights="imagenet")
    assert not (tmp_path / "kh").exists()  # the bad download is not left to be trusted
    cached = imagenet_file("efficientnetv2b0")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a damaged copy")  # the user's file: refused, never replaced
    with pytest.raises(MedsegError, match=r"does not match the hash Keras publishes") as info:
        build_unet((64, 64, 3), 3, base_filters=4, depth=5, encoder="efficientnetv2b0",
                   encoder_weights="imagenet")
    assert "move it away" in str(info.value) and cached.read_bytes() == b"a damaged copy"


def test_published_hashes_are_keras_applications_own():
    from keras.src.applications import convnext, efficientnet_v2, resnet
    assert BACKBONES["resnet50"].file_hash == resnet.WEIGHTS_HASHES["resnet50"][1]
    for i in range(4):
        assert BACKBONES[f"efficientnetv2b{i}"].file_hash == (
            efficientnet_v2.WEIGHTS_HASHES[f"b{i}"][1])
    assert BACKBONES["convnext_tiny"].file_hash == convnext.WEIGHTS_HASHES["convnext_tiny"][1]


def test_imagenet_normalisation_inside_the_model():
    model = build_unet((64, 64, 2), 3, base_filters=4, depth=2, encoder="resnet50")
    caffe = model.get_layer("imagenet_normalization")
    assert model.get_layer("imagenet_scale").scale == 255.0
    np.testing.assert_allclose(np.ravel(caffe.mean), [np.mean((103.939, 116.779, 123.68))] * 2,
                               rtol=1e-6)
    model = build_unet((64, 64, 3), 3, base_filters=4, depth=2, encoder="convnext_tiny")
    torch = model.get_layer("imagenet_normalization")
    np.testing.assert_allclose(np.ravel(torch.mean), [0.485, 0.456, 0.406], rtol=1e-6)


def test_config_keys(tmp_path):
    config = load_config("unet.yaml", ["model.encoder=efficientnetv2b1",
                                       "train.freeze_encoder_epochs=2",
                                       "data.image_size=[64,64]", "model.depth=5"])
    model = network(config)
    assert encoder_layer(model) is not None and model.output.shape[-1] == 3
    for bad, key in ((["model.encoder=vgg16"], "model.encoder"),
                     (["model.encoder_weights=imagenet"], "model.encoder_weights"),
                     (["train.freeze_encoder_epochs=1"], "train.freeze_encoder_epochs"),
                     (["model.encoder=resnet50", "model.depth=6",
                       "data.image_size=[128,128]"], "model.depth")):
        with pytest.raises(ConfigError, match=rf"^{key}"):
            load_config("unet.yaml", bad)


@pytest.mark.slow  # trains a backbone's steps
def test_freeze_encoder_epochs_trains_the_decoder_first():
    config = load_config("unet.yaml", ["data.image_size=[64,64]", "model.base_filters=4",
                                       "model.depth=2", "model.encoder=efficientnetv2b0",
                                       "train.freeze_encoder_epochs=1", "data.context=[0]"])
    model = compiled(config, "float32", False, 10)
    trainer = kaggle_trainer(model, config)
    encoder = encoder_layer(model)
    x, y = _batch(1, n=4)
    start = [w.numpy().copy() for w in encoder.weights]
    head = model.get_layer("logits").kernel.numpy().copy()
    trainer.start_epoch(0)
    assert np.isfinite(trainer.train_step((x, y))[0].numpy())
    # Frozen: no weight of the backbone moved, batch-norm statistics included.
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(start, encoder.weights))
    assert not np.array_equal(head, model.get_layer("logits").kernel.numpy())
    trainer.start_epoch(1)
    trainer.train_step((x, y))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(start, encoder.weights)
               if "moving" not in w.path)


@pytest.mark.slow  # compiles and trains a ResNet50 step with XLA
def test_mixed_float16_and_xla_compile_with_an_encoder():
    """The GPU path on CPU: a mixed_float16 policy (loss scaling) and jit_compile."""
    config = load_config("unet.yaml", ["data.image_size=[64,64]", "model.base_filters=4",
                                       "model.depth=1", "model.encoder=resnet50",
                                       "data.context=[-1,0,1]"])
    model = compiled(config, "mixed_float16", True, 10)
    assert model.jit_compile is True
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert encoder_layer(model).get_layer("conv1_conv").dtype_policy.name == "mixed_float16"
    assert model.get_layer("logits").dtype_policy.name == "float32"
    trainer = kaggle_trainer(model, config)
    x, y = _batch(3, n=4)
    loss_sum, n, *_ = trainer.train_step((x, y))
    assert np.isfinite(loss_sum.numpy()) and n.numpy() == 4
    assert model(x).dtype == "float32"


@pytest.mark.slow  # three exports
@pytest.mark.parametrize("encoder", ["resnet50", "efficientnetv2b0", "convnext_tiny"])
def test_export_with_every_encoder_family(encoder, tmp_path):
    """The SavedModel's logits signature gives the Keras model's logits (EfficientNetV2 B1 to
    B3 are B0's code with other widths)."""
    from tf_medseg.export.saved_model import export_saved_model
    config = load_config("unet.yaml", ["data.image_size=[64,64]", "model.base_filters=4",
                                       "model.depth=2", f"model.encoder={encoder}"])
    model = network(config)
    out = export_saved_model(model, kaggle_contract(config), tmp_path / "export")
    loaded = tf.saved_model.load(str(out))
    x, _ = _batch(3, n=2)
    np.testing.assert_allclose(loaded.signatures["logits"](image=x)["logits"].numpy(),
                               model(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
    raw = (x * 4000).astype(np.uint16)
    probs = loaded.signatures["serving_default"](image=raw)["probabilities"].numpy()
    assert probs.shape == (2, 64, 64, 3) and (0 <= probs).all() and (probs <= 1).all()
