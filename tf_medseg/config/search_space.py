"""``tune.space``: the search space of ``train.py --tune``, one entry per config key.

::

    tune:
      space:
        model.name: [unet, attention_unet]                  # a plain list is a choice
        model.base_filters: {type: choice, values: [16, 32, 48]}
        model.depth: {type: int, min: 3, max: 5}
        train.learning_rate: {type: float, min: 3.0e-4, max: 3.0e-3, sampling: log}
        train.loss.dice: {type: float, min: 0.5, max: 2.0}  # the weight of one loss term
        data.context: {type: choice, values: [[0], [-1, 0, 1], [-2, 0, 2]]}
        model.dropout: {type: fixed, value: 0.1}

Entries are checked when the config loads: the key must be a config key that changes the model
or its training (not where data or outputs live, nor the validation fold the trials are compared
on), a choice must not be empty, a range needs min <= max, and every choice and both ends of a
range must be valid values of the key. Each error names the entry.

KerasTuner takes only scalars of one type in a choice; other choices (lists such as
``data.context``, loss mappings, mixed types) are passed to it as their YAML text and read back
with :func:`SpaceEntry.config_value`. The hyperparameter of an entry is named by its key, so
that is what the trial table and TensorBoard's HParams dashboard show.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

import yaml

from tf_medseg.config.schema import LOSS_TERMS, Config, loss_weights
from tf_medseg.config.values import _EXPONENT, build_config
from tf_medseg.errors import ConfigError

#: Keys a search may not vary: where data and outputs live, how the run is executed, and the
#: validation fold (trials are only comparable on the same fold).
NOT_TUNABLE = frozenset({
    "data.source", "data.root", "data.data_dir", "data.fold", "data.num_folds",
    "data.drop_case_days", "data.unmatched", "data.phantom_cases", "data.phantom_days",
    "data.phantom_slices", "data.phantom_seed", "train.run_dir", "train.strategy",
    "train.precision", "train.jit_compile", "train.monitor", "train.max_minutes",
    "train.overlay_slices", "train.deterministic", "train.val_steps"})
_LOSS_PREFIX = "train.loss."
_FIELDS = {"choice": {"values"}, "int": {"min", "max", "step", "sampling"},
           "float": {"min", "max", "step", "sampling"}, "fixed": {"value"}}


def tunable_keys() -> list[str]:
    """Every key an entry may name (``train.loss.NAME`` for the loss weights)."""
    keys = [f"{section.name}.{f.name}" for section in dataclasses.fields(Config)
            if section.name not in ("tune", "export", "plan")
            for f in dataclasses.fields(section.default_factory)]
    return [k for k in keys if k not in NOT_TUNABLE] + [_LOSS_PREFIX + t for t in LOSS_TERMS]


def _key_type(key: str) -> Any:
    if key.startswith(_LOSS_PREFIX):
        return float
    section, name = key.split(".", 1)
    cls = {f.name: f.default_factory for f in dataclasses.fields(Config)}[section]
    tp = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union,) and len(args) == 1:
        tp = args[0]  # Optional[int] -> int
    return tp


@dataclasses.dataclass(frozen=True)
class SpaceEntry:
    """One entry of ``tune.space``: a config key and the values a search gives it."""

    key: str
    type: str  # choice | int | float | fixed
    values: tuple = ()  # choice: the config values; fixed: the one value
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    sampling: str = "linear"

    @property
    def _as_text(self) -> bool:
        """True when KerasTuner gets this choice's values as YAML text."""
        kinds = {type(v) for v in self.values}
        return not (len(kinds) == 1 and kinds <= {bool, int, float, str}
                    or kinds == {int, float})

    def hp_values(self) -> list:
        """The choice's values as KerasTuner holds them."""
        if self._as_text:
            return [_text(v) for v in self.values]
        if {type(v) for v in self.values} == {int, float}:
            return [float(v) for v in self.values]
        return list(self.values)

    def declare(self, hp) -> Any:
        """Declare the entry on a ``keras_tuner.HyperParameters``; its current value."""
        if self.type == "choice":
            return hp.Choice(self.key, self.hp_values())
        if self.type == "fixed":
            value = self.values[0]
            return hp.Fixed(self.key, _text(value) if isinstance(value, (list, dict))
                            else value)
        cls = hp.Int if self.type == "int" else hp.Float
        return cls(self.key, self.min, self.max, step=self.step, sampling=self.sampling)

    def config_value(self, hp_value: Any) -> Any:
        """The config value of a KerasTuner value of this entry."""
        if self.type == "fixed":
            return self.values[0]
        if self.type == "choice" and self._as_text:
            return yaml.safe_load(hp_value)
        if self.type == "float" or _key_type(self.key) is float:
            return float(hp_value)
        return hp_value

    def describe(self) -> str:
        if self.type == "choice":
            return "one of " + ", ".join(_text(v) for v in self.values)
        if self.type == "fixed":
            return f"fixed at {_text(self.values[0])}"
        extra = f", step {self.step}" if self.step else ""
        return f"{self.type} in [{self.min}, {self.max}]{extra}, {self.sampling}"


def _text(value: Any) -> str:
    """Compact one-line YAML of a value: [-2, 0, 2], {bce: 0.5, dice: 0.5}, unet."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix(
        "...").strip()


def _number(value: Any, what: str, integer: bool, where: str) -> float | int:
    if isinstance(value, str) and _EXPONENT.match(value.strip()) and not integer:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"{where}: {what} must be {'an integer' if integer else 'a number'}"
                          f", got {value!r}")
    return value if integer else float(value)


def _parse_entry(key: Any, spec: Any) -> SpaceEntry:
    where = f"tune.space.{key}"
    allowed = tunable_keys()
    if not isinstance(key, str) or key not in allowed:
        if key in NOT_TUNABLE:
            raise ConfigError(f"{where}: {key} cannot be searched (it sets where data or "
                              f"outputs live, how the run executes, or the validation fold "
                              f"the trials are compared on); set it outside tune.space")
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{where}: unknown config key{hint} (a search entry names a key "
                          f"such as model.base_filters, train.learning_rate or "
                          f"train.loss.dice)")
    if isinstance(spec, list):
        spec = {"type": "choice", "values": spec}
    if not isinstance(spec, dict) or spec.get("type") not in _FIELDS:
        raise ConfigError(f"{where}: expected a list of choices or a mapping with type "
                          f"choice, int, float or fixed, got {spec!r}")
    kind = spec["type"]
    extra = set(spec) - _FIELDS[kind] - {"type"}
    if extra:
        raise ConfigError(f"{where}: unknown field {sorted(extra)[0]!r} for type {kind} "
                          f"(allowed: {', '.join(sorted(_FIELDS[kind]))})")
    key_type = _key_type(key)
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: the choice is empty; list at least one value, e.g. "
                              f"{{type: choice, values: [a, b]}}")
        texts = [_text(v) for v in values]
        repeated = next((t for t in texts if texts.count(t) > 1), None)
        if repeated is not None:
            raise ConfigError(f"{where}: the choice lists {repeated} twice")
        return SpaceEntry(key, kind, tuple(values))
    if kind == "fixed":
        if "value" not in spec:
            raise ConfigError(f"{where}: type fixed needs a value")
        return SpaceEntry(key, kind, (spec["value"],))
    integer = kind == "int"
    if key_type not in (int, float):
        raise ConfigError(f"{where}: {key} is not a number; use type choice")
    if key_type is int and not integer:
        raise ConfigError(f"{where}: {key} takes integers; use type int (or choice)")
    for field in ("min", "max"):
        if field not in spec:
            raise ConfigError(f"{where}: type {kind} needs min and max")
    low = _number(spec["min"], "min", integer, where)
    high = _number(spec["max"], "max", integer, where)
    if low > high:
        raise ConfigError(f"{where}: min ({low:g}) is greater than max ({high:g})")
    step = spec.get("step")
    if step is not None:
        step = _number(step, "step", integer, where)
        if step <= 0:
            raise ConfigError(f"{where}: step must be > 0, got {step:g}")
    sampling = spec.get("sampling", "linear")
    if sampling not in ("linear", "log", "reverse_log"):
        raise ConfigError(f"{where}: sampling must be linear, log or reverse_log, got "
                          f"{sampling!r}")
    if sampling != "linear" and low <= 0:
        raise ConfigError(f"{where}: {sampling} sampling needs min > 0, got {low:g}")
    if sampling != "linear" and step is not None:
        raise ConfigError(f"{where}: give step or {sampling} sampling, not both")
    return SpaceEntry(key, kind, (), low, high, step, sampling)


def _probe_values(entry: SpaceEntry) -> list[tuple[str, Any]]:
    """(label, config value) pairs to check: every choice, or both ends of a range."""
    if entry.type == "choice":
        return [("value", entry.config_value(v)) for v in entry.hp_values()]
    if entry.type == "fixed":
        return [("value", entry.values[0])]
    return [("min", entry.config_value(entry.min)), ("max", entry.config_value(entry.max))]


def parse_space(config: Config) -> list[SpaceEntry]:
    """The checked entries of ``config.tune.space``, in the order written.

    Raises:
        ConfigError: naming the entry (``tune.space.KEY``) and what is wrong.
    """
    entries = [_parse_entry(key, spec) for key, spec in config.tune.space.items()]
    for entry in entries:
        for label, value in _probe_values(entry):
            try:
                apply_values(config, {entry.key: value}, check_space=False)
            except ConfigError as exc:
                raise ConfigError(f"tune.space.{entry.key}: {label} {_text(value)} is not "
                                  f"valid here ({exc})") from None
    return entries


def apply_values(config: Config, values: dict[str, Any], *, check_space: bool = True
                 ) -> Config:
    """``config`` with the given {key: config value} set: the config of one trial.

    ``train.loss.NAME`` sets the weight of one loss term in ``train.loss`` (a loss name counts
    as weight 1; ``bce_dice`` as bce 1 and dice 1).
    """
    raw = config.to_dict()
    if not check_space:
        raw["tune"] = {k: v for k, v in raw["tune"].items() if k != "space"}
    for key, value in values.items():
        if key.startswith(_LOSS_PREFIX):
            weights = loss_weights(raw["train"]["loss"])
            weights[key[len(_LOSS_PREFIX):]] = value
            raw["train"]["loss"] = weights
        else:
            section, name = key.split(".", 1)
            raw[section][name] = value
    trial = build_config(raw)
    if check_space and trial.tune.space:
        parse_space(trial)  # the space stays valid with the trial's values
    return trial
