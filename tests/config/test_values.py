"""Checking a config's values: an unknown key, a wrong type or a bad value is one ConfigError
naming the key, with a suggestion for a likely typo."""

import pytest

from tf_medseg.config import load_config
from tf_medseg.errors import ConfigError


@pytest.mark.parametrize("override, message", [
    ("train.epocs=3", r"train\.epocs: unknown key; did you mean train\.epochs\?"),
    ("trian.epochs=3", r"trian: unknown key; did you mean train\?"),
    ("train.epochs=three", r"train\.epochs: expected integer, got 'three'"),
    ("train.epochs=0", r"train\.epochs: must be >= 1, got 0"),
    ("train.epochs=true", r"train\.epochs: expected integer"),
    ("model.name=unnet", r"model\.name: expected one of unet, attention_unet, got 'unnet'; "
                         r"did you mean unet\?"),
    ("data.image_size=[64]", r"data\.image_size: expected auto or a list of 2 integers or a "
                             r"list of 3 integers, got \[64\]$"),
    ("data.context=[-1,1]", r"data\.context: must contain 0"),
    ("data.fold=5", r"data\.fold: must be < data\.num_folds \(5\) or all"),
    ("data.fold=every", r"data\.fold: expected integer or all, got 'every'"),
    ("train.epochs=1000000000000000000000", r"train\.epochs: must be at most 2,147,483,647"),
    ("data.shuffle_buffer=100000000000000000000", r"data\.shuffle_buffer: must be at most"),
    ("train.warmup_epochs=1e308", r"train\.warmup_epochs: must be <= 100000"),
    ("data.phantom_cases=1000000", r"data\.phantom_cases: must be <= 10000"),
    ("train.steps_per_epoch=10000000", r"train\.steps_per_epoch: must be <= 1000000"),
    ("data.spacing=[1000000.0,1000000.0]", r"data\.spacing: must be <= 100\.0"),
    ("data.source=uwmgi", r"data\.root: required when data\.source is uwmgi"),
    ("data.image_size=[100,100]", r"data\.image_size: 100x100 must be divisible by"),
    ("train.learning_rate=[1]", r"train\.learning_rate: expected number"),
    ("epochs=3", r"expected SECTION\.KEY=VALUE"),
    ("model.norm=layer", r"model\.norm: expected one of batch, instance, group, none"),
    ("train.momentum=1.0", r"train\.momentum: must be <= 0\.999"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_batch_norm_off_conflicts_with_another_norm():
    with pytest.raises(ConfigError, match=r"model\.batch_norm: false turns normalisation off, "
                                          r"but model\.norm is instance"):
        load_config(None, ["model.batch_norm=false", "model.norm=instance"])
    # alone it still means no normalisation (the factory builds model.norm none)
    assert load_config(None, ["model.batch_norm=false"]).model.norm == "batch"


def test_fold_all_needs_a_fixed_schedule():
    assert load_config(None, ["data.fold=all"]).data.fold == "all"
    for extra, key in (("train.schedule=plateau", "train.schedule"),
                       ("train.early_stopping=3", "train.early_stopping")):
        with pytest.raises(ConfigError, match=rf"{key}: needs validation cases, and "
                                              rf"data\.fold all has none"):
            load_config(None, ["data.fold=all", extra])
