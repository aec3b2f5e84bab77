import math

import pytest

from tf_medseg.planning.topology import activation_elements, topology, training_bytes


def test_isotropic_2d_pools_to_four_pixels():
    topo = topology((1.0, 1.0), (256, 256))
    assert topo.depth == 6 and topo.pools == (6, 6) and topo.patch == (256, 256)
    assert all(k == (3, 3) for k in topo.kernels) and len(topo.kernels) == 7


def test_anisotropic_3d_by_hand():
    # spacing 1 x 1 x 5 mm: the coarse axis is kept while the others are over 2x finer,
    # its kernel 1 until its spacing is within 2x; an axis stops at 4 voxels (8 to pool).
    topo = topology((1.0, 1.0, 5.0), (160, 160, 20))
    assert topo.strides == ((2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1))
    assert topo.kernels == ((3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    assert topo.pools == (5, 5, 2) and topo.divisor == (32, 32, 4)
    assert topo.patch == (160, 160, 20)


def test_patch_rounded_up_to_the_pooling():
    topo = topology((1.0, 1.0), (50, 37))
    assert topo.pools == (3, 3)  # 50 -> 25 -> 13 -> 7; 37 -> 19 -> 10 -> 5
    assert topo.patch == (56, 40)


def test_max_depth():
    assert topology((1.0, 1.0), (256, 256), max_depth=4).depth == 4


@pytest.mark.parametrize("depth", [2, 3])
def test_activation_count_is_the_keras_unets(depth):
    from tf_medseg.models import build_unet
    model = build_unet((64, 48, 3), 2, base_filters=4, depth=depth)
    counted = sum(math.prod(layer.output.shape[1:]) for layer in model.layers)
    assert activation_elements((64, 48), ((2, 2),) * depth, base_filters=4, channels=3,
                               classes=2) == counted


def test_training_bytes():
    elements = activation_elements((32, 32), ((2, 2),), base_filters=4, channels=1, classes=1)
    assert training_bytes((32, 32), ((2, 2),), base_filters=4, channels=1, classes=1) == \
        elements * 2 * 2
