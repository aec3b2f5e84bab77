"""The one record format: its features, bit-packed masks (eagerly and inside tf.data)."""

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.data import features
from tf_medseg.data.features import pack_mask, unpack_mask


@pytest.mark.parametrize("mode", ["eager", "tf.data"])
def test_bit_packed_masks_round_trip_with_overlaps(mode):
    mask = (np.random.default_rng(0).uniform(size=(4, 9, 7, 3)) > 0.5).astype(np.uint8)
    packed = pack_mask(mask)
    assert packed.shape == (4, 9, 7) and packed.dtype == np.uint8 and packed.max() == 7
    if mode == "eager":
        out = unpack_mask(tf.constant(packed), 3)
    else:
        out = next(iter(tf.data.Dataset.from_tensors(packed).map(lambda p: unpack_mask(p, 3))))
    np.testing.assert_array_equal(out.numpy(), mask)


def test_more_than_eight_classes_pack_into_uint16():
    mask = np.zeros((2, 3, 11), np.uint8)
    mask[0, 0, 10] = mask[1, 2, 0] = 1
    packed = pack_mask(mask)
    assert packed.dtype == np.uint16 and packed[0, 0] == 1 << 10 and packed[1, 2] == 1
    np.testing.assert_array_equal(unpack_mask(tf.constant(packed), 11).numpy(), mask)
    with pytest.raises(ValueError, match="at most 16 classes"):
        features.bits_dtype(17)


def test_a_record_holds_the_volume_its_spacing_and_its_patient():
    image = np.arange(24, dtype=np.uint16).reshape(2, 3, 4, 1)
    mask = np.zeros((2, 3, 4), np.uint8)
    key, example = features.record("case3_day1", 3, (3.0, 1.5, 1.5), image, mask)
    assert key == "case3_day1" and example["case"] == 3 and example["scan"] == key
    assert example["spacing"].dtype == np.float32 and example["spacing"].tolist() == [3, 1.5, 1.5]
    spec = features.record_features(np.uint16, np.uint8)
    assert spec["image"].shape == (None, None, None, None)
    assert spec["image"].np_dtype == np.uint16 and spec["mask"].np_dtype == np.uint8
    decoded = spec.deserialize_example(spec.serialize_example(example))
    np.testing.assert_array_equal(np.asarray(decoded["image"]), image)
    np.testing.assert_array_equal(np.asarray(decoded["mask"]), mask)
