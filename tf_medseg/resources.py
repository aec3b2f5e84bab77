"""What ships beside the package: the YAML configs (``configs/``) and the TFDS dataset
builders (``datasets/``), found the same way from a source checkout and from an installation.

In a checkout both folders sit beside ``tf_medseg/``. ``pip install`` puts the configs inside
the package (``tf_medseg/configs``) and the builders in a package of their own,
``tf_medseg_datasets`` (not ``datasets``: that name belongs to Hugging Face's library). The
builders are always imported under that name: from a checkout their folder is loaded by its
location, so nothing edits the import path and an installed Hugging Face ``datasets`` is never
shadowed (nor shadows them).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tf_medseg.errors import MedsegError

BUILDERS = "tf_medseg_datasets"
_PACKAGE = Path(__file__).resolve().parent


def checkout() -> Path | None:
    """The source checkout ``tf_medseg`` is imported from, or None for an installation."""
    root = _PACKAGE.parent
    marker = root / "datasets" / "gi_phantom" / "gi_phantom_dataset_builder.py"
    return root if marker.is_file() and (root / "configs").is_dir() else None


def configs_dir() -> Path:
    """The folder of the shipped configs (``unet.yaml``, ...)."""
    packaged = _PACKAGE / "configs"
    if packaged.is_dir():
        return packaged
    root = checkout()
    return root / "configs" if root is not None else packaged


def builders(module: str = "") -> ModuleType:
    """The TFDS builders' package (or one of its modules, e.g. ``"gi_phantom"``), imported as
    ``tf_medseg_datasets``."""
    if BUILDERS not in sys.modules:
        root = checkout()
        if root is not None:
            init = root / "datasets" / "__init__.py"
            spec = importlib.util.spec_from_file_location(
                BUILDERS, init, submodule_search_locations=[str(init.parent)])
            package = importlib.util.module_from_spec(spec)
            sys.modules[BUILDERS] = package
            try:
                spec.loader.exec_module(package)
            except BaseException:
                del sys.modules[BUILDERS]
                raise
        elif importlib.util.find_spec(BUILDERS) is None:
            raise MedsegError(f"the TFDS builders ({BUILDERS}) are not installed beside "
                              f"tf_medseg; reinstall it: pip install /path/to/tf_medseg")
    return importlib.import_module(f"{BUILDERS}.{module}" if module else BUILDERS)
