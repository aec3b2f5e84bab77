import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.data.features import pack_mask, unpack_mask


@pytest.mark.parametrize("mode", ["eager", "tf.data"])
def test_bit_packed_masks_round_trip_with_overlaps(mode):
    mask = (np.random.default_rng(0).uniform(size=(4, 9, 7, 3)) > 0.5).astype(np.uint8)
    packed = pack_mask(mask)
    assert packed.shape == (4, 9, 7) and packed.dtype == np.uint8 and packed.max() == 7
    if mode == "eager":
        out = unpack_mask(tf.constant(packed))
    else:
        out = next(iter(tf.data.Dataset.from_tensors(packed).map(unpack_mask)))
    np.testing.assert_array_equal(out.numpy(), mask)
