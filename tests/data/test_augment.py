import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import AugmentConfig
from tf_medseg.data import augment
from tf_medseg.data.features import pack_mask

# Every geometric and intensity op off: each test turns on the one it checks.
NONE = AugmentConfig(rotate_deg=0.0, scale=(1.0, 1.0), shift=0.0, contrast=(1.0, 1.0),
                     brightness=0.0, gamma=(1.0, 1.0))
MODES = ["eager", "tf.data"]


def _batch(size=32):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 0.2, (2, size, size, 3)).astype(np.float32)
    mask = np.zeros((2, size, size, 3), np.float32)
    image[:, 8:18, 12:26, :] += 1.0  # an off-centre, non-square bright organ
    mask[:, 8:18, 12:26, 1] = 1.0
    return image, mask


def _run(mode, params, seed=(3, 4), image=None, mask=None):
    if image is None:
        image, mask = _batch()
    image, mask, seed = tf.constant(image), tf.constant(mask), tf.constant(seed, tf.int64)
    if mode == "eager":
        out = augment.augment(image, mask, seed, params)
    else:
        ds = tf.data.Dataset.from_tensors((image, mask)).map(
            lambda i, m: augment.augment(i, m, seed, params))
        out = next(iter(ds))
    return out[0].numpy(), out[1].numpy()


@pytest.mark.parametrize("mode", MODES)
def test_all_off_is_the_identity(mode):
    image, mask = _batch()
    out_image, out_mask = _run(mode, NONE)
    np.testing.assert_allclose(out_image, image, atol=1e-5)
    np.testing.assert_array_equal(out_mask, mask)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flip, axis", [("flip_lr", 2), ("flip_ud", 1)])
def test_flips_mirror_image_and_mask(mode, flip, axis):
    image, mask = _batch()
    params = AugmentConfig(**{**NONE.__dict__, flip: 1.0})
    out_image, out_mask = _run(mode, params)
    np.testing.assert_allclose(out_image, np.flip(image, axis), atol=1e-5)
    np.testing.assert_array_equal(out_mask, np.flip(mask, axis))


@pytest.mark.parametrize("mode", MODES)
def test_scale_zooms_about_the_centre(mode):
    image, mask = np.zeros((1, 40, 40, 1), np.float32), np.zeros((1, 40, 40, 1), np.float32)
    image[:, 15:25, 15:25] = mask[:, 15:25, 15:25] = 1.0
    params = AugmentConfig(**{**NONE.__dict__, "scale": (2.0, 2.0)})
    out_image, out_mask = _run(mode, params, image=image, mask=mask)
    assert out_mask.sum() == pytest.approx(400, rel=0.1)  # 10x10 -> 20x20
    ys, xs = np.nonzero(out_mask[0, ..., 0])
    assert ys.mean() == pytest.approx(19.5, abs=0.6) and xs.mean() == pytest.approx(19.5, abs=0.6)
    assert abs(out_image.sum() - 400) < 25


@pytest.mark.parametrize("mode", MODES)
def test_rotation_keeps_area_and_centre(mode):
    image, mask = np.zeros((1, 40, 40, 1), np.float32), np.zeros((1, 40, 40, 1), np.float32)
    image[:, 12:28, 16:24] = mask[:, 12:28, 16:24] = 1.0  # a centred 16x8 bar
    params = AugmentConfig(**{**NONE.__dict__, "rotate_deg": 60.0})
    out_image, out_mask = _run(mode, params, seed=(5, 6), image=image, mask=mask)
    assert out_mask.sum() == pytest.approx(128, rel=0.15)
    assert not np.array_equal(out_mask, mask)  # the bar turned
    ys, xs = np.nonzero(out_mask[0, ..., 0])
    assert ys.mean() == pytest.approx(19.5, abs=1) and xs.mean() == pytest.approx(19.5, abs=1)


@pytest.mark.parametrize("mode", MODES)
def test_shift_moves_image_and_mask_together(mode):
    image, mask = _batch()
    params = AugmentConfig(**{**NONE.__dict__, "shift": 0.2})
    out_image, out_mask = _run(mode, params)
    assert not np.array_equal(out_mask, mask)
    for b in range(2):  # the organ moved as far as its mask, and kept its size
        ys, xs = np.nonzero(out_mask[b, ..., 1])
        assert len(ys) == 140
        bright_ys, bright_xs = np.nonzero(out_image[b, ..., 0] > 0.6)
        assert abs(ys.mean() - bright_ys.mean()) < 0.5 and abs(xs.mean() - bright_xs.mean()) < 0.5


@pytest.mark.parametrize("mode", MODES)
def test_elastic_deforms_smoothly_and_keeps_alignment(mode):
    image, mask = _batch(48)
    params = AugmentConfig(**{**NONE.__dict__, "elastic": 1.0, "elastic_strength": 0.08})
    out_image, out_mask = _run(mode, params, image=image, mask=mask)
    assert not np.array_equal(out_mask, mask)
    assert set(np.unique(out_mask)) <= {0.0, 1.0}
    inside = out_mask[..., 1] > 0
    assert out_image[..., 0][inside].mean() > 1.0 > out_image[..., 0][~inside].mean() + 0.5
    field = augment.elastic_field(tf.constant([1, 2], tf.int64), 2, 48, 48, params).numpy()
    assert np.abs(field).max() <= 0.08 * 48 + 1e-3
    assert np.abs(np.diff(field, axis=1)).max() < 1.0  # smooth: < 1 px change per pixel


@pytest.mark.parametrize("mode", MODES)
def test_intensity_contrast_brightness_gamma(mode):
    image, mask = _batch()
    only = lambda **kw: AugmentConfig(**{**NONE.__dict__, **kw})  # noqa: E731
    out, out_mask = _run(mode, only(contrast=(2.0, 2.0)))
    np.testing.assert_allclose(out, 2 * image, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out_mask, mask)  # masks are untouched by intensity
    out, _ = _run(mode, only(gamma=(2.0, 2.0)))
    np.testing.assert_allclose(out, image ** 2, rtol=1e-4, atol=1e-5)
    out, _ = _run(mode, only(brightness=0.3))
    offset = out - image
    for b in range(2):  # one offset per slice, within the range
        assert np.ptp(offset[b][image[b] > 0.5]) < 1e-4 and abs(offset[b].max()) <= 0.3


def test_sampler_matches_tensorflows_projective_transform():
    rng = np.random.default_rng(1)
    image = tf.constant(rng.uniform(size=(2, 24, 28, 3)).astype(np.float32))
    mask = tf.constant((rng.uniform(size=(2, 24, 28, 3)) > 0.5).astype(np.float32))
    m = augment.affine_matrices(tf.constant([7, 8], tf.int64), 2, 24, 28,
                                AugmentConfig(rotate_deg=30.0, shift=0.1))
    ys, xs = augment._source_coords(m, 24, 28)
    projective = tf.concat([m, tf.zeros([2, 2])], axis=1)

    def reference(x, interpolation):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=projective, output_shape=[24, 28], fill_value=0.0,
            interpolation=interpolation, fill_mode="CONSTANT").numpy()
    np.testing.assert_allclose(augment.sample_bilinear(image, ys, xs).numpy(),
                               reference(image, "BILINEAR"), atol=1e-5)
    nearest = augment.sample_nearest(mask, ys, xs).numpy()
    assert np.mean(nearest != reference(mask, "NEAREST")) < 1e-3  # ties at .5 may round apart


def test_packed_masks_follow_the_same_geometry():
    image, mask = _batch()
    params = AugmentConfig(rotate_deg=20.0, shift=0.1, elastic=1.0)
    _, out_float = _run("eager", params, image=image, mask=mask)
    _, out_packed = _run("eager", params, image=image, mask=pack_mask(mask))
    assert out_packed.dtype == np.uint8 and out_packed.shape == (2, 32, 32)
    np.testing.assert_array_equal(pack_mask(out_float), out_packed)


def test_deterministic_and_seed_dependent():
    params = AugmentConfig(elastic=0.5, flip_lr=0.5)
    a_img, a_mask = _run("eager", params, seed=(1, 2))
    b_img, b_mask = _run("tf.data", params, seed=(1, 2))
    np.testing.assert_allclose(a_img, b_img, atol=1e-5)
    np.testing.assert_array_equal(a_mask, b_mask)
    c_img, _ = _run("eager", params, seed=(1, 3))
    assert not np.allclose(a_img, c_img)


def test_3d_patches_take_one_draw_per_patch_on_every_slice():
    from tf_medseg.data.augment import augment_volumes
    image, mask = _batch()  # (2, 32, 32, C) slices and (2, 32, 32, K) masks
    params = AugmentConfig(rotate_deg=20.0, shift=0.1, elastic=1.0, blur=1.0, lowres=1.0)
    # two patches of 3 slices, each slice a copy of the patch's slice
    patches = np.repeat(np.transpose(image, (0, 3, 1, 2))[:, :, None], 3, axis=2)
    packed = np.repeat(pack_mask(mask)[:, None], 3, axis=1)
    out, out_masks = augment_volumes(tf.constant(patches), tf.constant(packed),
                                     tf.constant([4, 2]), params,
                                     unpack_masks=mask.shape[-1])
    assert out.shape == (2, 3, 32, 32, image.shape[-1])
    assert out_masks.shape == (2, 3, 32, 32, mask.shape[-1])
    out, out_masks = out.numpy(), out_masks.numpy()
    for k in (1, 2):  # the same map, blur, zoom and intensity on each slice of a patch
        np.testing.assert_allclose(out[:, k], out[:, 0], atol=1e-6)
        np.testing.assert_array_equal(out_masks[:, k], out_masks[:, 0])
    assert not np.allclose(out[0, 0], out[1, 0])  # but one draw per patch
    # and the draw moved the mask with the image
    moved = out_masks[:, 0].astype(bool)
    assert moved.any() and not np.array_equal(moved, mask.astype(bool))


def test_noise_and_blur_by_hand():
    # noise sd 0 and blur sigma 1 on a unit impulse: the separable 7-tap Gaussian, mirrored
    image = np.zeros((1, 16, 16, 1), np.float32)
    image[0, 8, 8, 0] = 1.0
    blurred = augment.degrade(tf.constant(image), tf.constant([[0.0, 1.0]]),
                              tf.constant([1, 2], tf.int64)).numpy()[0, :, :, 0]
    bell = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    bell /= bell.sum()
    np.testing.assert_allclose(blurred[5:12, 5:12], np.outer(bell, bell), atol=1e-6)
    assert np.isclose(blurred.sum(), 1.0, atol=1e-6)
    # sigma 0 is the identity; noise of sd 0.5 has about that sd
    same = augment.degrade(tf.constant(image), tf.constant([[0.0, 0.0]]),
                           tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(same, image)
    flat = np.zeros((1, 64, 64, 1), np.float32)
    noisy = augment.degrade(tf.constant(flat), tf.constant([[0.5, 0.0]]),
                            tf.constant([1, 2], tf.int64)).numpy()
    assert 0.45 < noisy.std() < 0.55


def test_noise_and_blur_off_draw_nothing():
    """With noise and blur off the other draws are those of a config without them (the
    default run's figures do not move); on, they change the image only."""
    base = AugmentConfig(rotate_deg=20.0, elastic=0.5)
    img, mask = _run("eager", base)
    on = AugmentConfig(rotate_deg=20.0, elastic=0.5, noise=1.0, blur=1.0)
    img_on, mask_on = _run("tf.data", on)
    np.testing.assert_array_equal(mask, mask_on)
    assert not np.allclose(img, img_on)
    params, _ = augment.degrade_params(tf.constant([3, 4], tf.int64), 1000, AugmentConfig(
        noise=0.1, blur=0.2, blur_sigma=(0.5, 1.0)))
    params = params.numpy()
    assert 0.07 < (params[:, 0] > 0).mean() < 0.13 and params[:, 0].max() <= 0.1
    blurred = params[params[:, 1] > 0, 1]
    assert 0.16 < len(blurred) / 1000 < 0.24 and blurred.min() >= 0.5 and blurred.max() <= 1


def test_low_resolution_by_hand():
    # 4 pixels at zoom 0.5: coarse pixels read inputs 1 and 3 (nearest, centres aligned), then
    # back up bilinearly: [1, 0.75 * 1 + 0.25 * 3, 0.25 * 1 + 0.75 * 3, 3]
    ramp = np.tile(np.arange(4, dtype=np.float32), (1, 2, 1))[..., None]
    out = augment.simulate_low_resolution(tf.constant(ramp), tf.constant([0.5])).numpy()
    np.testing.assert_allclose(out[0, 0, :, 0], [1.0, 1.5, 2.5, 3.0])
    # Any zoom equals TensorFlow's own resize down (nearest) and up (bilinear); zoom 1 is the
    # identity.
    rng = np.random.default_rng(0)
    image = rng.random((3, 20, 17, 2)).astype(np.float32)
    zoom = np.array([1.0, 0.5, 0.63], np.float32)
    out = augment.simulate_low_resolution(tf.constant(image), tf.constant(zoom)).numpy()
    np.testing.assert_array_equal(out[0], image[0])
    for b, coarse in ((1, [10, 8]), (2, [13, 11])):  # round(20 z), round(17 z)
        down = tf.image.resize(image[b:b + 1], coarse, method="nearest")
        up = tf.image.resize(down, [20, 17], method="bilinear").numpy()[0]
        np.testing.assert_allclose(out[b], up, atol=1e-6)


def test_low_resolution_draws_and_runs_in_the_augmentation():
    """On, it degrades the image only (the mask keeps its geometry); its zoom comes from its
    own stream, so noise and blur draw the same values with it or without it."""
    base = AugmentConfig(rotate_deg=20.0, noise=0.1, blur=0.2)
    img, mask = _run("eager", base)
    img_on, mask_on = _run("tf.data", AugmentConfig(rotate_deg=20.0, noise=0.1, blur=0.2,
                                                    lowres=1.0, lowres_zoom=(0.5, 0.5)))
    np.testing.assert_array_equal(mask, mask_on)
    assert not np.allclose(img, img_on)
    seed = tf.constant([3, 4], tf.int64)
    without, _ = augment.degrade_params(seed, 1000, AugmentConfig(noise=0.1, blur=0.2))
    with_it, _ = augment.degrade_params(seed, 1000, AugmentConfig(
        noise=0.1, blur=0.2, lowres=0.25, lowres_zoom=(0.5, 1.0)))
    np.testing.assert_array_equal(without.numpy()[:, :2], with_it.numpy()[:, :2])
    assert (without.numpy()[:, 2] == 1).all()
    zoom = with_it.numpy()[:, 2]
    zoomed = zoom[zoom < 1]
    assert 0.2 < len(zoomed) / 1000 < 0.3 and zoomed.min() >= 0.5
