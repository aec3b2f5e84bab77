from pathlib import Path

import pytest
import yaml

from tf_medseg.config import Config, describe_keys, dump_config, load_config
from tf_medseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_overrides_are_parsed_as_yaml():
    config = load_config(None, ["data.image_size=[64, 48]", "train.epochs=1",
                                "data.context=[-2,0,2]", "train.steps_per_epoch=null"])
    assert config.data.image_size == (64, 48)
    assert config.data.context == (-2, 0, 2)
    assert config.train.epochs == 1 and config.train.steps_per_epoch is None
    assert isinstance(config.train.learning_rate, float)


def test_every_config_file_loads():
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert files
    for f in files:
        assert isinstance(load_config(f), Config)


def test_name_is_found_in_configs_folder():
    assert load_config("unet.yaml") == load_config(ROOT / "configs" / "unet.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.yaml")


@pytest.mark.parametrize("override, message", [
    ("train.epocs=3", r"train\.epocs: unknown key; did you mean train\.epochs\?"),
    ("trian.epochs=3", r"trian: unknown key; did you mean train\?"),
    ("train.epochs=three", r"train\.epochs: expected integer, got 'three'"),
    ("train.epochs=0", r"train\.epochs: must be >= 1, got 0"),
    ("train.epochs=true", r"train\.epochs: expected integer"),
    ("model.name=unnet", r"model\.name: expected one of unet, attention_unet, got 'unnet'; "
                         r"did you mean unet\?"),
    ("data.image_size=[64]", r"data\.image_size: expected a list of 2 integers"),
    ("data.context=[-1,1]", r"data\.context: must contain 0"),
    ("data.fold=5", r"data\.fold: must be < data\.num_folds"),
    ("data.source=uwmgi", r"data\.root: required when data\.source is uwmgi"),
    ("data.image_size=[100,100]", r"data\.image_size: 100x100 must be divisible by"),
    ("train.learning_rate=[1]", r"train\.learning_rate: expected number"),
    ("epochs=3", r"expected SECTION\.KEY=VALUE"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml line"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_config_is_frozen_and_round_trips(tmp_path):
    config = load_config("unet.yaml", ["train.epochs=3"])
    with pytest.raises(Exception):
        config.train.epochs = 4
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["epochs"] == 3
    assert config.digest() == load_config(tmp_path / "config.yaml").digest()


def test_every_key_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [key for key, *_ in describe_keys() if f"`{key}`" not in readme]
    assert not missing, f"config keys missing from README.md: {missing}"
