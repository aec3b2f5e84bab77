"""Experiment configuration: frozen dataclasses mirrored one-to-one by YAML sections.

* :mod:`~tf_medseg.config.schema`: the sections, every key with its type, default and checks;
* :mod:`~tf_medseg.config.values`: a plain dict checked and turned into a :class:`Config`;
* :mod:`~tf_medseg.config.load`: YAML files, ``base:`` inheritance and ``--set`` overrides;
* :mod:`~tf_medseg.config.search_space`: the ``tune.space`` of a KerasTuner search.

Import what you need from here: ``from tf_medseg.config import load_config, Config``.
"""

from tf_medseg.config.load import (
    MAX_BASES,
    dump_config,
    from_dict,
    inherit,
    load_config,
    read_config_file,
    read_with_bases,
    resolve_config_path,
    safe_yaml,
)
from tf_medseg.config.schema import (
    LOSS_NAMES,
    LOSS_SHORTHANDS,
    LOSS_TERMS,
    MAX_CONFIG_BYTES,
    MAX_OFFSET,
    MAX_SEED,
    MAX_YAML_NODES,
    NORMALIZATIONS,
    AugmentConfig,
    Config,
    DataConfig,
    EvalConfig,
    ExportConfig,
    ModelConfig,
    PlanConfig,
    PredictConfig,
    TrainConfig,
    TuneConfig,
    improves,
    loss_weights,
)
from tf_medseg.config.values import build_config, describe_keys

__all__ = [
    "LOSS_NAMES", "LOSS_SHORTHANDS", "LOSS_TERMS", "MAX_BASES", "MAX_CONFIG_BYTES",
    "MAX_OFFSET", "MAX_SEED", "MAX_YAML_NODES", "NORMALIZATIONS", "AugmentConfig", "Config",
    "DataConfig", "EvalConfig", "ExportConfig", "ModelConfig", "PlanConfig", "PredictConfig",
    "TrainConfig",
    "TuneConfig",
    "build_config",
    "describe_keys", "dump_config", "from_dict", "improves", "inherit", "load_config",
    "loss_weights", "read_config_file", "read_with_bases", "resolve_config_path", "safe_yaml",
]
