"""Every loss on hand-computed cases, in float32 under mixed precision."""


import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.training import losses


def _logit(p):
    p = np.asarray(p, "float64")
    return np.log(p / (1 - p)).astype("float32")


# One image of 2x2 pixels, one class: truth [1, 1, 0, 0], probabilities [.8, .6, .3, .1].
Y = np.array([1, 1, 0, 0], "float32").reshape(1, 2, 2, 1)
P = np.array([0.8, 0.6, 0.3, 0.1])
LOGITS = _logit(P).reshape(1, 2, 2, 1)
TP, FN, FP = 0.8 + 0.6, 0.2 + 0.4, 0.3 + 0.1


def test_bce():
    expected = -np.mean(np.log([0.8, 0.6, 0.7, 0.9]))
    assert float(losses.bce(Y, LOGITS)) == pytest.approx(expected, rel=1e-5)


def test_soft_dice():
    dice = (2 * TP + 1) / (2 * TP + FN + FP + 1)  # smoothing 1 in numerator and denominator
    assert float(losses.soft_dice(Y, LOGITS)) == pytest.approx(1 - dice, rel=1e-5)


def test_tversky_weights_false_negatives():
    ti = (TP + 1) / (TP + 0.7 * FN + 0.3 * FP + 1)
    assert float(losses.tversky(0.7, 0.3)(Y, LOGITS)) == pytest.approx(1 - ti, rel=1e-5)
    # 0.5 / 0.5 is soft Dice with the smoothing doubled: (2 TP + 2) / (2 TP + FN + FP + 2).
    dice = (2 * TP + 2) / (2 * TP + FN + FP + 2)
    assert float(losses.tversky(0.5, 0.5)(Y, LOGITS)) == pytest.approx(1 - dice, rel=1e-5)


def test_focal_tversky():
    ti = (TP + 1) / (TP + 0.7 * FN + 0.3 * FP + 1)
    loss = losses.focal_tversky(0.7, 0.3, gamma=4 / 3)(Y, LOGITS)
    assert float(loss) == pytest.approx((1 - ti) ** 0.75, rel=1e-5)


def test_lovasz_hinge_by_hand():
    # 3 pixels: truth [1, 0, 1], logits [2, 0.5, -1]; hinge errors 1 - logit * sign =
    # [-1, 1.5, 2]; sorted [2 (fg), 1.5 (bg), -1 (fg)]; Jaccard after each = [1/2, 2/3, 1],
    # its increments [1/2, 1/6, 1/3]; loss = 2 * 1/2 + 1.5 * 1/6 + 0 = 1.25.
    y = np.array([1, 0, 1], "float32").reshape(1, 1, 3, 1)
    logits = np.array([2, 0.5, -1], "float32").reshape(1, 1, 3, 1)
    assert float(losses.lovasz_hinge(y, logits)) == pytest.approx(1.25, rel=1e-6)
    # A perfect margin everywhere gives zero; an empty class costs its largest hinge error.
    assert float(losses.lovasz_hinge(y, (y * 2 - 1) * 3)) == pytest.approx(0.0)
    empty = np.zeros((1, 1, 3, 1), "float32")
    assert float(losses.lovasz_hinge(empty, logits)) == pytest.approx(3.0)


def test_lovasz_is_per_image_and_class():
    y = np.zeros((2, 1, 3, 2), "float32")
    y[0, 0, [0, 2], 0] = 1
    logits = np.full((2, 1, 3, 2), -3.0, "float32")
    logits[0, 0, :, 0] = [2, 0.5, -1]
    # Rows: the hand case (1.25) and three rows with every logit at -3 (margin met: 0).
    assert float(losses.lovasz_hinge(y, logits)) == pytest.approx(1.25 / 4, rel=1e-6)


@pytest.mark.parametrize("name", losses.NAMES)
def test_float32_and_finite_gradients_from_bfloat16_logits(name):
    fn = losses.combined({name: 1.0})
    y = tf.constant((np.random.default_rng(0).random((2, 8, 8, 3)) > 0.7).astype("float32"))
    logits = tf.Variable(tf.cast(tf.random.normal((2, 8, 8, 3), seed=1), tf.bfloat16))
    with tf.GradientTape() as tape:
        loss = fn(y, logits)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    grad = tape.gradient(loss, logits)
    assert grad is not None and np.isfinite(tf.cast(grad, tf.float32).numpy()).all()


def test_weighted_combination_from_the_config():
    config = load_config(None, ["train.loss={bce: 0.25, tversky: 2}",
                                "train.tversky_fn_weight=0.6", "train.tversky_fp_weight=0.4"])
    expected = 0.25 * losses.bce(Y, LOGITS) + 2 * losses.tversky(0.6, 0.4)(Y, LOGITS)
    assert float(losses.get_loss(config.train, metric="volume")(Y, LOGITS)) == pytest.approx(
        float(expected))
    default = losses.get_loss(load_config(None).train, metric="volume")  # BCE + Dice
    assert float(default(Y, LOGITS)) == pytest.approx(
        float(losses.bce(Y, LOGITS) + losses.soft_dice(Y, LOGITS)))


def test_deep_supervision_weights_and_target_resolutions():
    rng = np.random.default_rng(3)
    y = (rng.random((2, 8, 8, 3)) > 0.6).astype("float32")
    main, aux1, aux2 = (rng.normal(0, 1, (2, n, n, 3)).astype("float32") for n in (8, 4, 2))
    loss = losses.deep_supervision(losses.bce, [(1, 1), (2, 2), (4, 4)])
    # weights 1, 1/2, 1/4 normalised; each head against every f-th pixel from f // 2
    expected = (4 * losses.bce(y, main) + 2 * losses.bce(y[:, 1::2, 1::2], aux1)
                + losses.bce(y[:, 2::4, 2::4], aux2)) / 7
    assert float(loss(y, [main, aux1, aux2])) == pytest.approx(float(expected), rel=1e-6)
    # 3D, pooled in-plane only: the slices stay
    y3 = (rng.random((1, 4, 8, 8, 2)) > 0.5).astype("float32")
    main3, aux3 = rng.normal(0, 1, (1, 4, 8, 8, 2)), rng.normal(0, 1, (1, 4, 4, 4, 2))
    loss3 = losses.deep_supervision(losses.bce, [(1, 1, 1), (1, 2, 2)])
    expected3 = (2 * losses.bce(y3, main3) + losses.bce(y3[:, :, 1::2, 1::2], aux3)) / 3
    assert float(loss3(y3, [main3, aux3])) == pytest.approx(float(expected3), rel=1e-6)


def test_head_factors_from_the_model():
    from tf_medseg.models import build_unet
    model = build_unet((4, 16, 16, 1), 2, base_filters=4, depth=4, deep_supervision=True,
                       strides=[(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)])
    assert losses.head_factors(model) == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]


def test_overlap_losses_skip_classes_absent_from_the_batch():
    """A class with no pixel in the batch adds nothing (nnU-Net: no gradient); counted, its
    1 / (1 + FP) punishes the few pixels predicted for it hardest."""
    y = np.concatenate([Y, np.zeros_like(Y)], axis=-1)  # class 2 absent
    logits = np.concatenate([LOGITS, LOGITS], axis=-1)  # ... yet predicted on 1.8 pixels
    dice = (2 * TP + 1) / (2 * TP + FN + FP + 1)
    assert float(losses.soft_dice(y, logits)) == pytest.approx(1 - dice, rel=1e-5)
    absent = 1 / (1 + P.sum())
    assert float(losses.soft_dice(y, logits, skip_absent=False)) == pytest.approx(
        1 - (dice + absent) / 2, rel=1e-5)
    ti = (TP + 1) / (TP + 0.7 * FN + 0.3 * FP + 1)
    assert float(losses.tversky(0.7, 0.3)(y, logits)) == pytest.approx(1 - ti, rel=1e-5)
    assert float(losses.focal_tversky(0.7, 0.3, 4 / 3)(y, logits)) == pytest.approx(
        (1 - ti) ** 0.75, rel=1e-5)
    # No class in the batch at all: no overlap term
    assert float(losses.soft_dice(np.zeros_like(y), logits)) == 0.0
    # The gradient on the absent class's logits: none when skipped
    x = tf.constant(logits)
    for skip, has_gradient in ((True, False), (False, True)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = losses.soft_dice(y, x, skip_absent=skip)
        grad = tape.gradient(value, x).numpy()[..., 1]
        assert bool(np.abs(grad).max() > 0) == has_gradient


def test_auto_counts_absent_classes_for_the_competition_metric_only():
    def mode(value):
        return load_config(None, [f"train.overlap_absent={value}"]).train
    assert losses.skips_absent(load_config(None).train, "volume")  # auto: nnU-Net's way
    assert not losses.skips_absent(load_config(None).train, "competition")
    assert losses.skips_absent(mode("skip"), "competition")
    assert not losses.skips_absent(mode("count"), "volume")
    y = np.concatenate([Y, np.zeros_like(Y)], axis=-1)
    logits = np.concatenate([LOGITS, LOGITS], axis=-1)
    volume = losses.get_loss(load_config(None, ["train.loss=dice"]).train, metric="volume")
    kaggle = losses.get_loss(load_config(None, ["train.loss=dice"]).train,
                             metric="competition")
    assert float(volume(y, logits)) == pytest.approx(float(losses.soft_dice(y, logits)))
    assert float(kaggle(y, logits)) == pytest.approx(
        float(losses.soft_dice(y, logits, skip_absent=False)))
