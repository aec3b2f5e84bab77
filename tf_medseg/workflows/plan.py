"""``tf-medseg plan``: the config planned from a data set's fingerprint, printed with the
reason for each choice and (``--out``) written as a config that trains as it is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tf_medseg.config import load_config, resolve_config_path
from tf_medseg.errors import MedsegError
from tf_medseg.files import atomic_write, check_output_path
from tf_medseg.planning.planner import Plan, make_plan

HEADER = "tf_medseg plan"  # the first line of a written plan: what --overwrite may replace


def _settings(config, overrides: Sequence[str]) -> dict:
    """{key: validated value} of the ``--set`` overrides, as the config resolved them."""
    raw = config.to_dict()
    keys = [item.split("=", 1)[0].strip() for item in overrides]
    return {k: raw[k.split(".", 1)[0]][k.split(".", 1)[1]] for k in keys}


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise MedsegError(f"--out {out}: not a regular file; give a new file name")
    if not out.exists():
        return
    if not overwrite:
        raise MedsegError(f"--out {out}: exists; give a new file name, or --overwrite to "
                          f"replace an earlier plan")
    with open(out, errors="replace") as f:
        if not f.readline().startswith(f"# {HEADER}"):
            raise MedsegError(f"--out {out}: exists; give a new file name (--overwrite "
                              f"replaces an earlier plan only)")


def plan(config_path: str | None, overrides: Sequence[str] = (), out: str | None = None,
         overwrite: bool = False) -> tuple[Plan, Path | None]:
    """Plan ``config_path`` (with ``overrides``) from its data set's fingerprint, building
    the records first if they are not there; write the plan to ``out`` if given."""
    from tf_medseg.data.dataset import DataSet  # noqa: PLC0415 (TensorFlow)
    target = check_output_path(out, "--out", "file") if out is not None else None
    if target is not None:
        _check_out(target, overwrite)
    config = load_config(config_path, overrides)
    dataset = DataSet.open(config.data)
    result = make_plan(dataset, config)
    if config.train.max_minutes:  # what the budget buys each network, measured here
        import dataclasses

        from tf_medseg.workflows.budget import report
        result = dataclasses.replace(result, budget=tuple(
            report(config, dataset, result.network_3d is not None)))
    if target is None:
        return result, None
    source = resolve_config_path(config_path) if config_path else None
    base = (os.path.relpath(source.resolve(), target.resolve().parent) if source
            else None)
    command = " ".join(["python -m tf_medseg plan", f"--config {config_path}",
                        *([f"--set {' '.join(overrides)}"] if overrides else []),
                        f"--out {out}"])
    text = result.to_yaml(base, _settings(config, overrides), header=[
        f"{HEADER}: {command}", *result.facts, *result.budget,
        f"train it: python train.py --config {out}"])
    _check_out(target, overwrite)  # again: the records took a while
    atomic_write(target, text)
    return result, target
