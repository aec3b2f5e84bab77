"""Post-processing applied: thresholds and component rules on whole-scan masks, and the rules
read back from postprocessing.json (damaged files in one line)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tf_medseg.errors import MedsegError
from tf_medseg.inference import postprocess as pp
from tf_medseg.workflows import postprocessing

CLASSES = ["organ"]


def _volume(shape=(4, 8, 8)):
    return np.zeros((*shape, 1), np.float32), np.zeros((*shape, 1), bool)


def _cube(vol, value):
    """The true organ: slices 0-1, rows 2-3, columns 2-3 (8 voxels)."""
    vol[0:2, 2:4, 2:4, 0] = value
    return vol


def test_component_rules_on_3d_masks():
    mask = np.zeros((4, 8, 8), bool)
    mask[0:2, 0:2, 0:2] = True  # 8 voxels
    mask[3, 7, 7] = True  # 1 voxel
    mask[2, 4:6, 4:6] = True  # 4 voxels, diagonal to nothing
    assert pp.components(mask, pp.Rule(min_size=4)).sum() == 12
    assert pp.components(mask, pp.Rule(largest=True)).sum() == 8
    assert pp.components(mask, pp.Rule()) is mask


def test_threshold_override_and_round_trip(tmp_path):
    probs, truth = _volume()
    _cube(probs, 0.45)
    choice = {"objective": "competition score", "score_before": 0.0, "score_after": 1.0,
              "rules": {"organ": pp.Rule(threshold=0.4, min_size=2)},
              "candidates": {}}
    path = tmp_path / pp.FILE
    postprocessing.write(path, choice, CLASSES)
    rules = pp.read(path, CLASSES)
    assert rules == {"organ": pp.Rule(threshold=0.4, min_size=2)}
    assert pp.masks(probs, rules, CLASSES, "sigmoid").sum() == 8
    assert pp.masks(probs, rules, CLASSES, "sigmoid", threshold=0.5).sum() == 0  # --threshold wins


@pytest.mark.parametrize("text, fragment", [
    ("not json", "damaged post-processing"),
    (json.dumps({"classes": {"liver": {}}}), "class 'liver' is not one of the model's"),
    (json.dumps({"classes": {"organ": {"threshold": 2}}}), "threshold must be in (0, 1)"),
    (json.dumps({"classes": {"organ": "x"}}), "damaged post-processing for 'organ'"),
])
def test_a_damaged_file_is_one_line(tmp_path, text, fragment):
    path = tmp_path / pp.FILE
    path.write_text(text)
    with pytest.raises(MedsegError) as info:
        pp.read(path, CLASSES)
    assert fragment in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)
