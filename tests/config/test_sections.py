"""The export, predict and plan sections: defaults and checks as a config file sees them."""

import pytest

from tf_medseg.config import ExportConfig, PlanConfig, PredictConfig, load_config
from tf_medseg.errors import ConfigError


def test_defaults():
    assert ExportConfig().saved_model is True
    assert PredictConfig().overlap == 0.5
    assert (PlanConfig().device, PlanConfig().dims, PlanConfig().memory_gb) == ("gpu", 2, None)


def test_values_are_checked():
    assert load_config("tiny.yaml", ["plan.dims=3"]).plan.dims == 3
    for item, message in (("plan.dims=4", "plan.dims: expected one of 2, 3"),
                          ("predict.overlap=0.95", "predict.overlap: must be <= 0.9"),
                          ("plan.memory_gb=0", "plan.memory_gb: must be >= 0.05")):
        with pytest.raises(ConfigError) as error:
            load_config("tiny.yaml", [item])
        assert str(error.value).startswith(message), str(error.value)


def test_tta_flips_mirror_what_training_flips_or_what_is_named():
    from tf_medseg.config import load_config
    from tf_medseg.errors import ConfigError
    config = load_config("tiny.yaml", ["predict.tta=flips", "augment.flip_lr=0.5"])
    assert config.predict.mirrors(2, config.augment) == (1,)  # columns
    config = load_config("tiny.yaml", ["predict.tta=flips+zoom", "augment.flip_ud=0.5",
                                       "augment.flip_lr=0.5"])
    assert config.predict.mirrors(2, config.augment) == (0, 1)
    config = load_config("tiny.yaml", ["predict.tta=flips", "predict.mirror_axes=[1,0]"])
    assert config.predict.mirrors(2, config.augment) == (0, 1)
    assert load_config("tiny.yaml", ["predict.tta=zoom"]).predict.mirrors(2, config.augment) == ()
    with pytest.raises(ConfigError, match=r"predict\.tta: flips needs an axis to mirror"):
        load_config("tiny.yaml", ["predict.tta=flips"])  # training flips nothing
    with pytest.raises(ConfigError, match=r"predict\.mirror_axes: a 2D network has axes 0 to 1"):
        load_config("tiny.yaml", ["predict.tta=flips", "predict.mirror_axes=[2]"])
    with pytest.raises(ConfigError, match=r"predict\.mirror_axes: must be distinct axes"):
        load_config("tiny.yaml", ["predict.mirror_axes=[1,1]"])
