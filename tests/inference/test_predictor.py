"""The one predictor: a model in memory answers as its export does; members are averaged,
test-time zooms too; volumes are cut across the slice axis and put back in their stored order."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.export.saved_model import export_saved_model
from tf_medseg.inference.postprocess import Rule
from tf_medseg.inference.predictor import TTA_ZOOMS, ExportMember, ModelMember, Predictor

from conftest import kaggle_contract, network


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two untrained tiny 2.5D models of the Kaggle layout, the first exported."""
    tmp = tmp_path_factory.mktemp("predictor")
    config = load_config("tiny.yaml", ["data.context=[-1,0,1]"])
    contract = kaggle_contract(config)
    import keras
    keras.utils.set_random_seed(0)
    a, b = network(config), network(config)
    return contract, a, b, export_saved_model(a, contract, tmp / "a")


def _scan(seed=0, depth=6, h=40, w=36):
    return (np.random.default_rng(seed).random((depth, h, w, 1)) * 3000).astype(np.uint16)


def test_a_model_in_memory_answers_as_its_export(two_models):
    contract, a, _, export = two_models
    scan = _scan()
    memory = Predictor.of_model(a, contract, batch_size=4).probabilities(scan, (3, 1.5, 1.5))
    exported = Predictor.load(export, batch_size=4).probabilities(scan, (3, 1.5, 1.5))
    assert memory.shape == (6, 40, 36, 3) and memory.dtype == np.float32
    np.testing.assert_allclose(memory, exported, atol=1e-6)
    # batches of any size: the volume is normalised as one
    np.testing.assert_allclose(Predictor.of_model(a, contract, batch_size=1).probabilities(
        scan, (3, 1.5, 1.5)), memory, atol=1e-6)


def test_members_and_zooms_are_averaged(two_models):
    contract, a, b, _ = two_models
    scan, spacing = _scan(1), (3, 1.5, 1.5)
    pa = Predictor.of_model(a, contract).probabilities(scan, spacing)
    pb = Predictor.of_model(b, contract).probabilities(scan, spacing)
    both = Predictor([ModelMember(a, contract), ModelMember(b, contract)], contract)
    np.testing.assert_allclose(both.probabilities(scan, spacing), (pa + pb) / 2, atol=1e-6)
    # test-time augmentation: the mean over the scan as it is and zoomed, resized back
    member = ModelMember(a, contract)
    stacks = tf.constant(np.stack([scan[[0, 0, 1], ..., 0].transpose(1, 2, 0)]))
    params = member.normalization(scan)
    by_hand = [member.probabilities(stacks, params).numpy()]
    for zoom in TTA_ZOOMS:
        size = (round(40 * zoom), round(36 * zoom))
        zoomed = tf.cast(tf.round(tf.image.resize(tf.cast(stacks, tf.float32), size)),
                         tf.uint16)
        by_hand.append(tf.image.resize(member.probabilities(zoomed, params),
                                       (40, 36)).numpy())
    tta = Predictor([member], contract, tta=True).probabilities(scan, spacing)
    np.testing.assert_allclose(tta[:1], np.mean(by_hand, axis=0), atol=1e-5)


def test_volumes_cut_across_the_coarsest_axis_come_back_in_their_order(two_models):
    contract, a, _, _ = two_models
    scan = _scan(2)  # (6, 40, 36, 1)
    stored = np.ascontiguousarray(np.moveaxis(scan, 0, 2))  # (40, 36, 6, 1): slices last
    along_z = Predictor.of_model(a, contract).probabilities(stored, (1.5, 1.5, 3.0))
    along_x = Predictor.of_model(a, contract).probabilities(scan, (3.0, 1.5, 1.5))
    assert along_z.shape == (40, 36, 6, 3)
    np.testing.assert_allclose(np.moveaxis(along_z, 2, 0), along_x, atol=1e-6)


def test_masks_take_the_rules_or_the_threshold(two_models):
    contract, a, _, export = two_models
    probs = np.zeros((2, 4, 4, 3), np.float32)
    probs[0, 0, 0] = [0.55, 0.45, 0.9]
    plain = Predictor([ExportMember(export)], contract)
    assert plain.masks(probs)[0, 0, 0].tolist() == [True, False, True]
    assert plain.masks(probs, threshold=0.6)[0, 0, 0].tolist() == [False, False, True]
    ruled = Predictor([ExportMember(export)], contract,
                      rules={"large_bowel": Rule(threshold=0.6), "stomach": Rule(min_size=2)})
    assert ruled.masks(probs)[0, 0, 0].tolist() == [False, False, False]
    stricter = dataclasses.replace(contract, threshold=0.4)
    assert Predictor([], stricter).masks(probs)[0, 0, 0].tolist() == [True, True, True]


def test_a_header_spacing_that_would_blow_slices_up_is_one_line_naming_the_file(two_models):
    from tf_medseg.errors import DataError
    contract, a, _, _ = two_models
    at_spacing = dataclasses.replace(contract, spacing=(1.5, 1.5))
    with pytest.raises(DataError, match=r"^scan.nii.gz: \(40 x 36 pixels of 400 x 400 mm\) would "
                       r"become 10667 x 9600 pixels a slice, over 4096 at the model's spacing "
                       r"\[1.5, 1.5\] mm; check the voxel spacing in its header$"):
        Predictor.of_model(a, at_spacing).probabilities(_scan(), (500, 400, 400),
                                                        name="scan.nii.gz")
