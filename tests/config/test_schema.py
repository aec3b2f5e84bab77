"""The config's schema: frozen sections that round-trip through YAML, every key typed,
defaulted and documented (in docs/configuration.md)."""

from pathlib import Path

import pytest
import yaml

from tf_medseg.config import describe_keys, dump_config, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_config_is_frozen_and_round_trips(tmp_path):
    config = load_config("unet.yaml", ["train.epochs=3"])
    with pytest.raises(Exception):
        config.train.epochs = 4
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["epochs"] == 3
    assert config.digest() == load_config(tmp_path / "config.yaml").digest()


def test_every_key_is_in_the_configuration_reference():
    reference = (ROOT / "docs" / "configuration.md").read_text()
    missing = [key for key, *_ in describe_keys() if f"`{key}`" not in reference]
    assert not missing, f"config keys missing from docs/configuration.md: {missing}"


def test_every_key_has_a_type_a_default_and_a_doc():
    keys = describe_keys()
    assert len(keys) > 60 and len({k for k, *_ in keys}) == len(keys)
    for key, *rest in keys:
        assert key.split(".")[0] in ("data", "augment", "model", "train", "tune", "export",
                                     "predict", "eval", "plan"), key
        assert all(str(part).strip() for part in rest), key
