from pathlib import Path

import pytest
import yaml

from tf_medseg.config import Config, dump_config, load_config
from tf_medseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


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


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml line"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_a_config_inherits_its_base_and_holds_only_what_differs():
    attention = load_config("attention_unet.yaml")
    unet = load_config("unet.yaml")
    assert attention.model.name == "attention_unet"
    assert attention.train.run_dir == "runs/attention_unet"
    # everything else is unet.yaml's
    assert attention.data == unet.data and attention.augment == unet.augment
    assert attention.train.epochs == unet.train.epochs == 12
    assert attention.train.max_minutes == 8
    assert load_config("tune_unet.yaml").train.max_minutes is None  # set back to null
    text = (ROOT / "configs" / "attention_unet.yaml").read_text()
    assert "base: unet.yaml" in text and "image_size" not in text


def test_base_chain_replaces_values_whole_and_resolves_beside_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("train: {loss: {bce: 1, dice: 2}, epochs: 3}\n"
                                     "data: {context: [-1, 0, 1]}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntrain: {loss: {dice: 1}}\n")
    (tmp_path / "c.yaml").write_text("base: b.yaml\ndata: {context: [0]}\n")
    config = load_config(tmp_path / "c.yaml", ["train.epochs=5"])
    assert config.train.loss == {"dice": 1.0}  # a mapping is replaced, not merged
    assert config.data.context == (0,) and config.train.epochs == 5
    shipped = tmp_path / "mine.yaml"
    shipped.write_text("base: unet.yaml\nmodel: {base_filters: 8}\n")  # a shipped config
    assert load_config(shipped).model.depth == 4


def test_the_resolved_config_written_to_a_run_is_complete(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: attention_unet.yaml\ntrain: {epochs: 2}\n")
    config = load_config(child)
    dump_config(config, tmp_path / "resolved.yaml")
    written = yaml.safe_load((tmp_path / "resolved.yaml").read_text())
    assert "base" not in written
    assert written["model"]["name"] == "attention_unet" and written["train"]["epochs"] == 2
    assert written["data"]["image_size"] == [128, 128]  # from unet.yaml, two levels up
    assert load_config(tmp_path / "resolved.yaml") == config


@pytest.mark.parametrize("text, message", [
    ("base: self.yaml\n", "name each other in a circle (self.yaml -> self.yaml)"),
    ("base: 3\n", "base: must name a config file, e.g. base: unet.yaml, got 3"),
    ("base: nowhere.yaml\n", "config file nowhere.yaml not found"),
])
def test_bad_base_lines_name_the_file(tmp_path, text, message):
    path = tmp_path / "self.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)


def test_the_resolved_config_of_an_nnunet_run_holds_only_its_sources_keys(tmp_path):
    config = load_config("chaos_t2.yaml", ["data.group_pattern=^(p\\d+)"])
    dump_config(config, tmp_path / "resolved.yaml")
    data = yaml.safe_load((tmp_path / "resolved.yaml").read_text())["data"]
    assert not [k for k in data if k.startswith("phantom_")]
    assert "drop_case_days" not in data and "unmatched" not in data
    assert data["group_pattern"] == "^(p\\d+)"
    assert load_config(tmp_path / "resolved.yaml") == config
    phantom = load_config("unet.yaml")
    dump_config(phantom, tmp_path / "phantom.yaml")
    data = yaml.safe_load((tmp_path / "phantom.yaml").read_text())["data"]
    assert "phantom_cases" in data and "group_pattern" not in data
    # the patch keys only where slices are sampled in patches
    assert "foreground_share" not in data
    assert "predict" not in yaml.safe_load((tmp_path / "phantom.yaml").read_text())
    patches = load_config("unet.yaml", ["data.sampling=patch"])
    dump_config(patches, tmp_path / "patches.yaml")
    raw = yaml.safe_load((tmp_path / "patches.yaml").read_text())
    assert raw["predict"] == {"overlap": 0.5, "tta": "none", "mirror_axes": None}
    assert "foreground_share" in raw["data"]
    assert load_config(tmp_path / "patches.yaml") == patches


def test_an_empty_section_keeps_the_base_and_a_key_given_twice_is_refused(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: unet.yaml\ndata:\n  # image_size: [64, 64]\ntrain: {epochs: 2}\n")
    assert load_config(child).data == load_config("unet.yaml").data
    child.write_text("base: unet.yaml\ntrain: {epochs: 2}\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"line 3: 'train' is given twice \(also on line 2\)"):
        load_config(child)
