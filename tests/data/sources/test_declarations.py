"""What dataset.json declares: classes, label values, regions and channel names."""

from pathlib import Path

import pytest

from tf_medseg.data.sources.declarations import channel_names, classes_from_labels
from tf_medseg.errors import DataError

WHERE = Path("dataset.json")


def test_exclusive_labels_and_regions():
    schema, declared = classes_from_labels({"background": 0, "liver": 1, "spleen": 3}, WHERE,
                                           nnunet=True)
    assert schema.classes == ("liver", "spleen") and schema.exclusive
    assert schema.values == ((1,), (3,)) and schema.paint == (1, 3)
    assert declared == frozenset({0, 1, 3})
    regions, _ = classes_from_labels({"background": 0, "whole": [1, 2], "core": 2}, WHERE,
                                     nnunet=True, regions_order=[1, 2])
    assert not regions.exclusive and regions.paint == (1, 2)
    with pytest.raises(DataError, match="regions_class_order must be a list of label values"):
        classes_from_labels({"background": 0, "whole": [1, 2]}, WHERE, nnunet=True,
                            regions_order=[1.5])


def test_channel_names_are_numbered_without_gaps():
    assert channel_names({"1": "T2", "0": "T1"}, WHERE, "channel_names") == ("T1", "T2")
    with pytest.raises(DataError, match="without gaps"):
        channel_names({"0": "T1", "2": "T2"}, WHERE, "channel_names")
