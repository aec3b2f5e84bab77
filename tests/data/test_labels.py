"""The label schema: its head (sigmoid or softmax), its outputs and its round trip."""

import pytest

from tf_medseg.data.labels import LabelSchema
from tf_medseg.data.sources.kaggle import LABELS as KAGGLE
from tf_medseg.errors import ConfigError

ORGANS = LabelSchema(classes=("liver", "spleen"), exclusive=True, channels=("T2",),
                     metric="volume", encoding="labels", values=((1,), (2,)), paint=(1, 2))


def test_head_follows_the_classes():
    assert ORGANS.head("auto") == "softmax" and ORGANS.outputs("softmax") == 3
    assert ORGANS.head("sigmoid") == "sigmoid" and ORGANS.outputs("sigmoid") == 2
    assert KAGGLE.head("auto") == "sigmoid" and KAGGLE.outputs("sigmoid") == 3
    with pytest.raises(ConfigError, match="^model.output: softmax needs exclusive classes"):
        KAGGLE.head("softmax")


def test_round_trip_and_checks():
    assert LabelSchema.from_dict(ORGANS.to_dict()) == ORGANS
    assert KAGGLE.label_values == (1, 2, 3) and KAGGLE.metric == "competition"
    with pytest.raises(ValueError, match="1 to 16 classes"):
        LabelSchema(classes=(), exclusive=True, channels=("x",), metric="volume")
    with pytest.raises(ValueError, match="metric must be one of"):
        LabelSchema(classes=("a",), exclusive=True, channels=("x",), metric="dice")
    with pytest.raises(KeyError):
        LabelSchema.from_dict({"classes": ["a"], "exclusive": True})  # no channels, metric
    # a data set whose label maps are all empty: no foreground statistics (null)
    empty = {**ORGANS.to_dict(), "stats": None, "paint": None}
    assert LabelSchema.from_dict(empty).stats == ()
    assert LabelSchema.from_dict({**ORGANS.to_dict(), "stats": [None]}).stats == (None,)
