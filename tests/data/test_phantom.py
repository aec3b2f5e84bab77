"""The phantom in the Kaggle layout: a function of its seed, intensities and organs like the
real data's, not separable by intensity alone."""

import numpy as np
import pytest

from tf_medseg.data.sources import kaggle_inventory
from tf_medseg.data.sources.kaggle import CLASSES


def test_written_phantom_depends_on_its_seed_alone(tmp_path):
    """The same files for any number of workers, whatever the global generators hold."""
    import random

    from tf_medseg.data.phantom import write_phantom
    trees = []
    for name, workers, global_seed in (("a", 0, 1), ("b", 2, 2)):
        random.seed(global_seed)
        np.random.seed(global_seed)
        out = write_phantom(tmp_path / name, cases=2, days=1, slices=3, seed=4,
                            workers=workers)
        trees.append({p.relative_to(out): p.read_bytes()
                      for p in sorted(out.rglob("*")) if p.is_file()})
    assert len(trees[0]) == 2 * 3 + 1 and trees[0] == trees[1]


def test_layout_intensities_and_empty_slices(tiny_phantom):
    scans = list(kaggle_inventory.iter_scans(tiny_phantom))
    maxima = [int(s.image.max()) for s in scans]
    assert all(s.image.dtype == np.uint16 for s in scans)
    assert 400 < min(maxima) and max(maxima) < 16000 and max(maxima) / min(maxima) > 3
    empty = np.mean([not s.mask[i].any() for s in scans for i in range(len(s.mask))])
    assert 0.35 <= empty <= 0.65, empty
    for c in range(len(CLASSES)):  # every organ appears
        assert any(s.mask[..., c].any() for s in scans)
    # Organs shift between days of one case, but stay near each other.
    day0, day1 = scans[0].mask, scans[1].mask
    overlap = (day0 & day1).sum() / max(day0.sum(), 1)
    assert 0.2 < overlap < 0.98


@pytest.mark.slow
def test_not_separable_by_intensity(tiny_phantom):
    """The best single intensity threshold per class reaches Dice < 0.5."""
    scans = list(kaggle_inventory.iter_scans(tiny_phantom))
    image = np.concatenate([(s.image / np.percentile(s.image, 99.5)).ravel() for s in scans])
    masks = np.concatenate([s.mask.reshape(-1, 3) for s in scans]).astype(bool)
    ordered, thresholds = np.sort(image), np.linspace(0, 1.5, 76)
    # Voxels above / below each threshold counted on sorted values (exactly the counts of
    # image > t and image < t).
    above = image.size - np.searchsorted(ordered, thresholds, "right")
    below = np.searchsorted(ordered, thresholds, "left")
    for c, name in enumerate(CLASSES):
        inside = np.sort(image[masks[:, c]])
        hits_above = inside.size - np.searchsorted(inside, thresholds, "right")
        hits_below = np.searchsorted(inside, thresholds, "left")
        best = max((2 * hits_above / (above + inside.size)).max(),
                   (2 * hits_below / (below + inside.size)).max())
        assert best < 0.5, (name, best)


def test_kaggle_scale_plan_matches_the_real_training_set():
    from collections import Counter

    from tf_medseg.data.phantom import kaggle_scale_plan
    scans = kaggle_scale_plan(0)
    assert len(scans) == 274 and sum(s.slices for s in scans) == 38496
    assert len({s.case for s in scans}) == 85
    kinds = Counter((s.width, s.height, s.slices, s.spacing) for s in scans)
    assert kinds == {(266, 266, 144, 1.5): 180, (360, 310, 144, 1.5): 78,
                     (276, 276, 80, 1.63): 15, (234, 234, 144, 1.5): 1}
    assert len({(s.case, s.day) for s in scans}) == 274
