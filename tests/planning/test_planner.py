import numpy as np
import pytest

from tf_medseg.errors import ConfigError
from tf_medseg.planning.planner import plan_network, target_spacing


def test_target_spacing_is_the_median():
    spacings = np.array([[1.0, 1.0, 2.0], [1.2, 1.2, 2.0], [0.8, 0.8, 3.0]])
    shapes = np.array([[100, 100, 50]] * 3)
    target, why = target_spacing(spacings, shapes)
    assert np.allclose(target, [1.0, 1.0, 2.0]) and "median" in why


def test_a_coarse_axis_takes_its_tenth_percentile():
    spacings = np.array([[0.8, 0.8, z] for z in (3.0, 4.0, 5.0, 6.0)])
    shapes = np.array([[48, 40, 8]] * 4)
    target, why = target_spacing(spacings, shapes)
    assert np.allclose(target, [0.8, 0.8, 3.3]) and "10th percentile" in why


def test_the_coarse_axis_never_finer_than_the_others():
    # median 4 mm, 10th percentile 0.6 mm: finer than the other axes' 1 mm
    spacings = np.array([[1.0, 1.0, 0.6]] * 2 + [[1.0, 1.0, 4.0]] * 8)
    target, _ = target_spacing(spacings, np.array([[200, 200, 20]] * 10))
    assert target[2] == 1.0


def test_memory_shrinks_the_patch_along_its_largest_axis():
    roomy = plan_network((1.0, 1.0), (256, 192), budget_gb=8, base_filters=32, channels=1,
                         classes=2, dataset_voxels=1e9, uniform=True, max_depth=4)
    assert roomy.patch == (256, 192) and roomy.depth == 4 and roomy.batch > 2
    tight = plan_network((1.0, 1.0), (256, 192), budget_gb=0.2, base_filters=32,
                         channels=1, classes=2, dataset_voxels=1e9, uniform=True,
                         max_depth=4)
    assert tight.patch[0] < 256 and tight.batch >= 2
    assert tight.sample_gb * tight.batch <= 0.2 or tight.batch == 2
    assert 2 * tight.sample_gb <= 0.2


def test_the_batch_covers_at_most_five_percent_of_the_data():
    net = plan_network((1.0, 1.0), (64, 64), budget_gb=8, base_filters=4, channels=1,
                       classes=2, dataset_voxels=64 * 64 * 100, uniform=True)
    assert net.batch == 5


def test_a_budget_too_small_is_one_line():
    with pytest.raises(ConfigError, match="plan.memory_gb"):
        plan_network((1.0, 1.0), (64, 64), budget_gb=1e-6, base_filters=32, channels=1,
                     classes=2, dataset_voxels=1e9, uniform=True)
