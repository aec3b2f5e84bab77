"""What every config section is made of: :func:`field` (a key's default, documentation and
checks) and the limits that several sections share."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

MAX_OFFSET = 64  # the largest data.context offset (scans have 80 to 144 slices)
MAX_SEED = 2**31 - 1  # NumPy's and TensorFlow's seeds (and train.seed + executions) fit
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # a config expanded through its aliases: far beyond any real one


def regex_ok(pattern: str) -> tuple[bool, str]:
    try:
        re.compile(pattern)
    except re.error as exc:
        return False, f"not a valid regular expression ({exc})"
    return True, ""


def field(default: Any, doc: str, **checks: Any) -> Any:
    """A dataclass field with a docstring and optional checks (min, max, check)."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return dataclasses.field(default=default, metadata={"doc": doc, **checks})
