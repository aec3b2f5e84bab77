"""tune.space: parsing, the errors that name the entry, and mapping values onto a config."""

from __future__ import annotations

import pytest

from tf_medseg.config import from_dict, load_config
from tf_medseg.config.search_space import apply_values, parse_space, tunable_keys
from tf_medseg.errors import ConfigError


def _config(space: dict, **tune):
    raw = load_config("unet.yaml").to_dict()
    raw["tune"] = {**raw["tune"], **tune, "space": space}
    return from_dict(raw)


SPACE = {
    "model.name": ["unet", "attention_unet"],
    "model.base_filters": {"type": "choice", "values": [16, 32]},
    "model.depth": {"type": "int", "min": 3, "max": 4},
    "train.learning_rate": {"type": "float", "min": "1e-4", "max": 3e-3, "sampling": "log"},
    "train.loss.dice": {"type": "float", "min": 0.5, "max": 2.0},
    "data.context": {"type": "choice", "values": [[0], [-1, 0, 1], [-2, 0, 2]]},
    "model.dropout": {"type": "fixed", "value": 0.1},
}


def test_a_realistic_space_parses_in_order_and_round_trips_its_values():
    entries = parse_space(_config(SPACE))
    assert [e.key for e in entries] == list(SPACE)
    by_key = {e.key: e for e in entries}
    assert by_key["model.depth"].min == 3 and by_key["model.depth"].max == 4
    lr = by_key["train.learning_rate"]
    assert (lr.min, lr.max, lr.sampling) == (1e-4, 3e-3, "log")
    # KerasTuner holds list choices as YAML text; the config gets the list back.
    context = by_key["data.context"]
    assert context.hp_values() == ["[0]", "[-1, 0, 1]", "[-2, 0, 2]"]
    assert [context.config_value(v) for v in context.hp_values()] == [
        [0], [-1, 0, 1], [-2, 0, 2]]
    assert by_key["model.base_filters"].hp_values() == [16, 32]  # scalars stay as they are


def test_the_shipped_tune_config_parses():
    config = load_config("tune_unet.yaml")
    keys = [e.key for e in parse_space(config)]
    assert {"model.name", "model.base_filters", "train.learning_rate",
            "data.context"} <= set(keys)


def test_apply_values_sets_keys_and_loss_weights():
    base = load_config("unet.yaml")  # train.loss bce_dice = {bce: 1, dice: 1}
    trial = apply_values(base, {"model.base_filters": 8, "data.context": [0],
                                "train.loss.dice": 2.0, "train.loss.tversky": 0.5})
    assert trial.model.base_filters == 8 and trial.data.context == (0,)
    assert trial.train.loss == {"bce": 1.0, "dice": 2.0, "tversky": 0.5}
    assert base.model.base_filters == 16  # the base config is not changed


def test_a_choice_of_loss_mappings_and_names():
    entries = parse_space(_config({"train.loss": ["bce_dice", {"bce": 0.3, "tversky": 0.7}]}))
    entry = entries[0]
    assert entry.hp_values() == ["bce_dice", "{bce: 0.3, tversky: 0.7}"]
    assert entry.config_value(entry.hp_values()[1]) == {"bce": 0.3, "tversky": 0.7}


@pytest.mark.parametrize("space, message", [
    ({"model.base_filter": [8]},
     "tune.space.model.base_filter: unknown config key; did you mean model.base_filters?"),
    ({"train.loss.dicee": {"type": "float", "min": 0, "max": 1}},
     "tune.space.train.loss.dicee: unknown config key; did you mean train.loss.dice?"),
    ({"train.run_dir": ["a", "b"]}, "tune.space.train.run_dir: train.run_dir cannot be "
                                    "searched"),
    ({"data.fold": [0, 1]}, "tune.space.data.fold: data.fold cannot be searched"),
    ({"model.depth": []}, "tune.space.model.depth: the choice is empty"),
    ({"model.depth": {"type": "choice", "values": []}},
     "tune.space.model.depth: the choice is empty"),
    ({"model.depth": {"type": "int", "min": 5, "max": 3}},
     "tune.space.model.depth: min (5) is greater than max (3)"),
    ({"train.learning_rate": {"type": "float", "min": 1e-2, "max": 1e-3}},
     "tune.space.train.learning_rate: min (0.01) is greater than max (0.001)"),
    ({"model.depth": {"type": "int", "min": 3, "max": 9}},
     "tune.space.model.depth: max 9 is not valid here (model.depth: must be <= 8, got 9)"),
    ({"model.name": ["unet", "attention"]},
     "tune.space.model.name: value attention is not valid here (model.name: expected one of"),
    ({"data.context": [[0], [-1, 1]]},
     "tune.space.data.context: value [-1, 1] is not valid here (data.context: must contain 0"),
    ({"model.name": ["unet", "unet"]}, "tune.space.model.name: the choice lists unet twice"),
    ({"model.depth": {"type": "float", "min": 3, "max": 4}},
     "tune.space.model.depth: model.depth takes integers; use type int"),
    ({"model.name": {"type": "int", "min": 1, "max": 2}},
     "tune.space.model.name: model.name is not a number; use type choice"),
    ({"model.depth": {"type": "int", "min": 3}}, "tune.space.model.depth: type int needs min "
                                                 "and max"),
    ({"model.depth": {"type": "int", "min": 3, "max": 4, "maxx": 5}},
     "tune.space.model.depth: unknown field 'maxx' for type int"),
    ({"train.learning_rate": {"type": "float", "min": 0, "max": 1, "sampling": "log"}},
     "tune.space.train.learning_rate: log sampling needs min > 0"),
    ({"model.depth": 3}, "tune.space.model.depth: expected a list of choices or a mapping"),
    ({"model.depth": {"type": "range", "min": 3, "max": 4}},
     "tune.space.model.depth: expected a list of choices or a mapping"),
])
def test_a_bad_space_is_an_error_naming_the_entry(space, message):
    with pytest.raises(ConfigError) as info:
        _config(space)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_space_is_refused_when_the_config_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tune:\n  space:\n    model.depth: {type: int, min: 5, max: 3}\n")
    with pytest.raises(ConfigError, match=r"^tune.space.model.depth: min \(5\)"):
        load_config(path)


def test_direction_must_agree_with_the_objective():
    _config({}, objective="val_loss", direction="min")
    with pytest.raises(ConfigError, match="^tune.direction: val_loss is better when lower; "
                                          "use min"):
        _config({}, objective="val_loss", direction="max")


def test_tunable_keys_leave_out_places_and_the_fold():
    keys = tunable_keys()
    assert "model.base_filters" in keys and "train.loss.lovasz" in keys
    assert not {"data.root", "train.run_dir", "data.fold", "train.strategy"} & set(keys)
    assert not any(k.startswith(("tune.", "export.")) for k in keys)
