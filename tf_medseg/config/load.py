"""Loading a config: YAML files, ``base:`` inheritance and ``--set`` overrides.

A config is loaded and validated once (:func:`load_config`; a file may start from another
with ``base: unet.yaml`` and hold only what differs), never mutated, and written into the run
directory complete (:func:`dump_config`). The sections are defined in
:mod:`tf_medseg.config.schema`. Every key is typed; an unknown key, a
wrong type or a bad value raises :class:`~tf_medseg.errors.ConfigError` naming the key's path
(``train.epochs``) and what is allowed, with a suggestion for a likely typo.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path

import yaml

from tf_medseg.config.schema import MAX_CONFIG_BYTES, MAX_YAML_NODES, Config
from tf_medseg.config.search_space import parse_space
from tf_medseg.config.values import build_config
from tf_medseg.errors import ConfigError
from tf_medseg.resources import configs_dir

MAX_BASES = 8  # configs in a base: chain


def resolve_config_path(path: str | os.PathLike, beside: Path | None = None) -> Path:
    """Find a config file as given (relative to ``beside``, the folder of the config naming
    it as its base, if any), or by name among the shipped configs (``configs/``)."""
    candidate = Path(path).expanduser()
    places = [beside / candidate] if beside is not None and not candidate.is_absolute() else []
    for place in [*places, candidate]:
        if place.is_file():
            return place
        if place.is_dir():
            raise ConfigError(f"config file {path}: {place} is a folder; name a YAML file")
    shipped = configs_dir()
    for name in (candidate.name, candidate.name + ".yaml"):
        if (shipped / name).is_file():
            return shipped / name
    available = ", ".join(sorted(p.name for p in shipped.glob("*.yaml")))
    raise ConfigError(f"config file {path} not found (configs/ has: {available or 'nothing'})")


def read_config_file(file: Path) -> dict:
    """One YAML config file as a plain dict (size, encoding and YAML checked)."""
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: {file.stat().st_size:,} bytes; a config is a few "
                          f"kilobytes of YAML")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}); save the config "
                          f"as UTF-8") from None
    try:
        raw = safe_yaml(text, str(file)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}{where}: not valid YAML ({getattr(exc, 'problem', exc)})")
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections "
                          f"(base, data, augment, model, train, tune, export, predict, "
                          f"plan)")
    return raw


def inherit(base: dict, child: dict) -> dict:
    """``child`` over ``base``: a section the child leaves out (or leaves empty) is the
    base's; within a
    section, every key the child sets replaces the base's value whole (lists and mappings
    such as ``train.loss`` or ``tune.space`` included)."""
    merged = {name: dict(section) if isinstance(section, dict) else section
              for name, section in base.items()}
    for name, section in child.items():
        if section is None and isinstance(merged.get(name), dict):
            continue  # a section header with every key commented out: nothing changes
        if isinstance(section, dict) and isinstance(merged.get(name), dict):
            merged[name].update(section)
        else:
            merged[name] = section
    return merged


def read_with_bases(file: Path) -> dict:
    """A config file with its ``base:`` chain resolved (``base: unet.yaml`` names a file
    beside it, or a shipped config): the plain dict of the whole experiment."""
    chain: list[Path] = []
    raws: list[dict] = []
    while True:
        if file.resolve() in chain:
            loop = " -> ".join(p.name for p in [*chain, file.resolve()])
            raise ConfigError(f"{file}: base: the configs name each other in a circle "
                              f"({loop}); remove one of the base: lines")
        if len(chain) >= MAX_BASES:
            raise ConfigError(f"{file}: base: more than {MAX_BASES} configs deep; a config "
                              f"holds what differs from one base")
        chain.append(file.resolve())
        raw = read_config_file(file)
        base = raw.pop("base", None)
        raws.append(raw)
        if base is None:
            break
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{file}: base: must name a config file, e.g. base: unet.yaml, "
                              f"got {base!r}")
        file = resolve_config_path(base, beside=file.parent)
    merged: dict = {}
    for raw in reversed(raws):
        merged = inherit(merged, raw)
    return merged


def load_config(path: str | os.PathLike | None = None, overrides: typing.Sequence[str] = ()
                ) -> Config:
    """Load a YAML config (and its ``base:`` chain), apply ``KEY=VALUE`` overrides and
    validate everything once.

    Args:
        path: YAML file, or the name of a file in ``configs/``; None for the defaults.
        overrides: ``section.key=value`` strings; values are parsed as YAML.

    Returns:
        The validated, frozen :class:`Config`.

    Raises:
        ConfigError: naming the key for an unknown key, a wrong type or a bad value.
    """
    raw = read_with_bases(resolve_config_path(path)) if path is not None else {}
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(raw)


def safe_yaml(text: str, where: str):
    """``yaml.safe_load``, refusing (before building anything) a document whose aliases
    would expand it beyond :data:`MAX_YAML_NODES` nodes (a "billion laughs")."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        return None
    sizes: dict[int, int] = {}

    def size(n) -> int:  # nodes after expanding every alias (shared nodes counted each time)
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = MAX_YAML_NODES + 1  # a cycle (recursive alias) is too big too
        if isinstance(n, yaml.MappingNode):
            seen: dict = {}
            for k, _ in n.value:
                if isinstance(k, yaml.ScalarNode) and k.value in seen:
                    raise ConfigError(f"{where} line {k.start_mark.line + 1}: {k.value!r} "
                                      f"is given twice (also on line {seen[k.value]}); keep "
                                      f"one")
                if isinstance(k, yaml.ScalarNode):
                    seen[k.value] = k.start_mark.line + 1
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in n.value)
        else:
            total = 1
        sizes[id(n)] = min(total, MAX_YAML_NODES + 1)
        return sizes[id(n)]

    if size(node) > MAX_YAML_NODES:
        raise ConfigError(f"{where}: its aliases expand to more than {MAX_YAML_NODES:,} "
                          f"values; write the config without nested aliases")
    return yaml.safe_load(text)


def _apply_override(raw: dict, item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.epochs=1")
    try:
        value = safe_yaml(text, f"--set {key}") if text != "" else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML")
    section, _, name = key.partition(".")
    node = raw.setdefault(section, {})
    if not isinstance(node, dict):
        raise ConfigError(f"{section}: must be a mapping of keys, got {type(node).__name__}")
    node[name] = value


def from_dict(raw: dict) -> Config:
    """A validated :class:`Config` from a plain nested dict, ``tune.space`` included."""
    config = build_config(raw)
    if config.tune.space:
        parse_space(config)  # a bad entry is an error naming it
    return config


#: data keys that only one kind of source reads; config.yaml leaves them out for the other
#: sources while they hold their defaults (they do nothing there, and loading the file
#: back gives the same config).
SOURCE_ONLY = {"drop_case_days": ("uwmgi",), "unmatched": ("uwmgi",),
               "group_pattern": ("nnunet", "decathlon", "folder"), "modality": ("dicom",),
               "phantom_cases": ("phantom",), "phantom_days": ("phantom",),
               "phantom_slices": ("phantom",), "phantom_seed": ("phantom",)}


def relevant_dict(config: Config) -> dict:
    """``config.to_dict()`` without the data keys that do nothing for its source
    (:data:`SOURCE_ONLY`, at their defaults), nor, for ``data.sampling: resize``, the patch
    keys (``data.foreground_share``, ``predict:``) at their defaults."""
    values, defaults = config.to_dict(), Config().to_dict()
    default = defaults["data"]
    values["data"] = {k: v for k, v in values["data"].items()
                      if not (k in SOURCE_ONLY and config.data.source not in SOURCE_ONLY[k]
                              and v == default[k])}
    if config.data.sampling == "resize" and values["predict"] == defaults["predict"]:
        del values["predict"]  # windows are for models trained on patches
        if values["data"]["foreground_share"] == default["foreground_share"]:
            del values["data"]["foreground_share"]
    return values


def dump_config(config: Config, path: str | os.PathLike, header: str = "") -> None:
    """Write the resolved config as YAML (atomically), after optional ``#`` comment lines;
    keys that do nothing for the run's source are left out (:func:`relevant_dict`)."""
    from tf_medseg.files import atomic_write
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    atomic_write(path, comment + yaml.safe_dump(relevant_dict(config), sort_keys=False))
