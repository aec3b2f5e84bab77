"""Config values: every key of a plain dict coerced to its declared type and checked (ranges,
finite numbers, choices, cross-key rules), with errors that name the key.

:func:`build_config` is the whole check but for ``tune.space``, whose entries are checked by
:mod:`tf_medseg.config.search_space` (:func:`tf_medseg.config.from_dict` does both).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Literal

import yaml

from tf_medseg.config.schema import Config, _plain, improves
from tf_medseg.errors import ConfigError


def _check_finite(value: Any, path: str) -> None:
    """NaN and infinities (YAML's .nan, .inf) are refused wherever a number may stand."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{path}[{i}]")


def build_config(raw: dict) -> Config:
    """A validated :class:`Config` from a plain nested dict (the entries of ``tune.space``
    are checked by :func:`tf_medseg.config.from_dict`)."""
    _check_finite(raw, "")
    sections = {f.name: f.default_factory for f in dataclasses.fields(Config)}
    _check_unknown(raw.keys(), sections, prefix="")
    built = {}
    for name, cls in sections.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: must be a mapping of keys, got {values!r}")
        built[name] = _build_section(cls, values, name)
    config = Config(**built)
    _check_cross(config)
    return config


def _check_unknown(keys: typing.Iterable[str], allowed: typing.Iterable[str], prefix: str) -> None:
    allowed = list(allowed)
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(f"{prefix}{key}: unknown key{hint} "
                              f"(allowed: {', '.join(allowed)})")


def _build_section(cls: type, values: dict, section: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_unknown(values.keys(), fields, prefix=f"{section}.")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        path = f"{section}.{name}"
        value = _coerce(value, hints[name], path)
        _check_value(value, fields[name].metadata, path)
        kwargs[name] = value
    return cls(**kwargs)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        names = [str(a).lower() if isinstance(a, bool) else str(a) for a in typing.get_args(tp)]
        return names[0] if len(names) == 1 else "one of " + ", ".join(names)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a)
                           for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _describe(args[0])
            if item.startswith("one of "):
                return "a list, each " + item
            return ("a list of lists of " + item.removeprefix("a list of ")
                    if item.startswith("a list of ") else f"a list of {item}s")
        return f"a list of {len(args)} {_describe(args[0])}s"
    return {int: "integer", float: "number", str: "string", bool: "true/false",
            dict: "mapping"}.get(tp, str(tp))


MAX_INT = 2**31 - 1
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in canonical form."""
    origin = typing.get_origin(tp)
    wrong = ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        for option in allowed:
            if value == option and type(value) is type(option):
                return value
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}{hint}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError:
                pass
        raise wrong
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(value)
        elif len(value) != len(args):
            raise wrong
        else:
            item_types = list(args)
        return tuple(_coerce(v, t, f"{path}[{i}]") for i, (v, t) in
                     enumerate(zip(value, item_types)))
    if tp is float:
        if isinstance(value, str) and _EXPONENT.match(value.strip()):
            # YAML 1.1 reads 1e-4 (no dot) as a string; everyone writes it so.
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        if not math.isfinite(float(value)):
            raise ConfigError(f"{path}: must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        if abs(value) > MAX_INT:  # TensorFlow holds counts and sizes in 32-bit integers
            raise ConfigError(f"{path}: must be at most {MAX_INT:,}, got {value!r}")
        return value
    if tp in (str, bool, dict):
        if not isinstance(value, tp):
            raise wrong
        return value
    raise TypeError(f"unsupported annotation {tp} for {path}")


def _check_value(value: Any, meta: typing.Mapping, path: str) -> None:
    if value is None:
        return
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if "min" in meta and item < meta["min"]:
                raise ConfigError(f"{path}: must be >= {meta['min']}, got {value!r}")
            if "max" in meta and item > meta["max"]:
                raise ConfigError(f"{path}: must be <= {meta['max']}, got {value!r}")
    if "check" in meta:
        ok, message = meta["check"](value)
        if not ok:
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(f"{path}: {message}, got {shown!r}")


def _check_cross(config: Config) -> None:
    data = config.data
    if data.fold != "all" and data.fold >= data.num_folds:
        raise ConfigError(f"data.fold: must be < data.num_folds ({data.num_folds}) or all, "
                          f"got {data.fold}")
    if data.fold == "all":
        t = config.train
        if t.schedule == "plateau" or t.early_stopping:
            key = "train.schedule" if t.schedule == "plateau" else "train.early_stopping"
            raise ConfigError(f"{key}: needs validation cases, and data.fold all has none; "
                              f"use a fixed schedule (cosine, step, constant) and no early "
                              f"stopping")
    if data.source != "phantom" and not data.root:
        what = {"uwmgi": "the Kaggle folder holding train.csv and train/",
                "folder": "the folder holding images/, masks/ and labels.json",
                "dicom": "the folder of DICOM studies (image series and structure sets)"}.get(
                    data.source, "the folder holding dataset.json")
        raise ConfigError(f"data.root: required when data.source is {data.source}; set it to "
                          f"{what}")
    if (data.source == "dicom") != (data.roi_map is not None):
        raise ConfigError("data.roi_map: " + (
            "data.source dicom needs it: each class's ROI names, e.g. {stomach: [Stomach, "
            "STOMACH_1]}" if data.source == "dicom" else
            f"only for data.source dicom (the source is {data.source}); remove it"))
    if data.modality is not None and data.source != "dicom":
        raise ConfigError(f"data.modality: only for data.source dicom (the source is "
                          f"{data.source}); remove it")
    if data.organ_fraction is not None and data.class_fraction is not None:
        raise ConfigError("data.class_fraction: set it or data.organ_fraction, not both (the "
                          "slices a scan shows its classes in are drawn class first)")
    norms = (data.normalization,) if isinstance(data.normalization, str) else data.normalization
    if ("window" in norms) != (data.window is not None):
        raise ConfigError("data.window: " + (
            "data.normalization window needs it: [low, high] in the stored units (CT in HU: "
            "[-160, 240] is a soft-tissue window)" if data.window is None else
            "only for data.normalization: window (a channel clipped to it); remove it"))
    if data.source == "phantom" and data.phantom_cases < data.num_folds:
        raise ConfigError(f"data.phantom_cases: must be >= data.num_folds ({data.num_folds}) "
                          f"so that every fold has a case, got {data.phantom_cases}")
    model = config.model
    _check_network(config)
    predict = config.predict
    if "flips" in predict.tta:
        axes = predict.mirrors(model.dims, config.augment)
        if not axes:
            raise ConfigError("predict.tta: flips needs an axis to mirror; set "
                              "predict.mirror_axes, or train with augment.flip_lr / flip_ud "
                              "(a left-right mirror swaps left and right labels)")
        if max(axes) >= model.dims:
            raise ConfigError(f"predict.mirror_axes: a {model.dims}D network has axes 0 to "
                              f"{model.dims - 1}, got {list(axes)}")
    if model.encoder != "none" and model.depth > 5:
        raise ConfigError(f"model.depth: at most 5 with model.encoder {model.encoder} (the "
                          f"backbone's strides reach 32), got {model.depth}")
    if model.encoder == "none" and model.encoder_weights is not None:
        raise ConfigError("model.encoder_weights: needs model.encoder (a backbone); set "
                          "model.encoder or leave the weights null")
    if model.encoder == "none" and config.train.freeze_encoder_epochs:
        raise ConfigError("train.freeze_encoder_epochs: needs model.encoder (a backbone); set "
                          "model.encoder or leave it 0")
    tune = config.tune
    if tune.direction != "auto":
        natural = improves(tune.objective)
        if tune.direction != natural:
            raise ConfigError(f"tune.direction: {tune.objective} is better when "
                              f"{'lower' if natural == 'min' else 'higher'}; use {natural} "
                              f"(or auto), got {tune.direction}")


def _check_network(config: Config) -> None:
    """model.batch_norm against model.norm; model.dims against data.image_size and the 3D
    restrictions; model.strides and model.kernels against model.depth; data.image_size
    divisible by the pooling (auto: sized so, from the data, by the planner)."""
    data, model = config.data, config.model
    size, dims = data.image_size, model.dims
    if model.deep_supervision and model.depth < 3:
        raise ConfigError(f"model.deep_supervision: needs model.depth >= 3 (heads on the "
                          f"decoder levels between the lowest and the top), got {model.depth}")
    if not model.batch_norm and model.norm not in ("batch", "none"):
        raise ConfigError(f"model.batch_norm: false turns normalisation off, but model.norm is "
                          f"{model.norm}; leave model.batch_norm out and set model.norm")
    if size == "auto" and data.plan != "auto" and (dims != 2 or data.sampling != "resize"):
        raise ConfigError(f"data.image_size: auto sizes the slices of data.sampling resize for "
                          f"a 2D network; give the {'patch' if dims == 2 else '3D patch'} "
                          f"size, or let data.plan: auto plan it")
    if size != "auto" and len(size) != dims:
        shape = "[height, width]" if dims == 2 else "[slices, height, width]"
        raise ConfigError(f"data.image_size: model.dims {dims} needs {shape}, got {list(size)}")
    if data.spacing is not None and len(data.spacing) == 3 and dims == 2:
        raise ConfigError(f"data.spacing: three values (across the slices too) need model.dims "
                          f"3; a 2D network takes [row, column], got {list(data.spacing)}")
    if dims == 3:
        for key, ok, fix in (
                ("data.organ_fraction", data.organ_fraction is None,
                 "null (3D patches are centred on foreground by data.foreground_share)"),
                ("data.class_fraction", data.class_fraction is None,
                 "null (3D patches are centred on foreground by data.foreground_share)"),
                ("data.sampling", data.sampling == "patch", "patch (3D patches)"),
                ("data.context", data.context == (0,), "[0] (a 3D network sees the "
                                                       "neighbouring slices itself)"),
                ("model.encoder", model.encoder == "none", "none (the backbones are 2D)"),
                ("model.upsampling", model.upsampling == "transpose", "transpose")):
            if not ok:
                raise ConfigError(f"{key}: model.dims 3 needs {fix}")
    for key, value, count in (("model.strides", model.strides, model.depth),
                              ("model.kernels", model.kernels, model.depth + 1)):
        if value is not None and (len(value) != count or any(len(v) != dims for v in value)):
            raise ConfigError(f"{key}: needs {count} entries of {dims} values (model.depth "
                              f"{model.depth}, model.dims {dims}), got "
                              f"{[list(v) for v in value]}")
    divisor = pooling(model, dims)
    if size != "auto" and any(n % d for n, d in zip(size, divisor)):
        shown = str(divisor[0]) if len(set(divisor)) == 1 else "x".join(map(str, divisor))
        what = ("2**model.depth" if model.strides is None else "the product of model.strides")
        raise ConfigError(f"data.image_size: {'x'.join(map(str, size))} must be divisible by "
                          f"{what} = {shown}")


def pooling(model, dims: int) -> list[int]:
    """Per axis, how many times ``model`` (a :class:`ModelConfig`) pools a ``dims``-D input
    (the product of ``model.strides``, else 2**``model.depth``): each side of the input must
    be a multiple of it."""
    strides = model.strides or ((2,) * dims,) * model.depth
    return [math.prod(level[a] for level in strides) for a in range(dims)]


def describe_keys() -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) for every config key, for the README and ``--help``."""
    rows = []
    for section in dataclasses.fields(Config):
        cls = section.default_factory
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{section.name}.{f.name}", _describe(hints[f.name]),
                         yaml.safe_dump(_plain(default), default_flow_style=True).strip()
                         .removesuffix("...").strip(), f.metadata.get("doc", "")))
    return rows
