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
