"""The building blocks of config sections."""

import dataclasses

import pytest

from tf_medseg.config.fields import MAX_SEED, field, regex_ok


def test_a_field_carries_its_doc_and_checks():
    @dataclasses.dataclass(frozen=True)
    class Section:
        size: int = field(3, "how many", min=1, max=9)

    meta = dataclasses.fields(Section)[0].metadata
    assert Section().size == 3 and meta["doc"] == "how many"
    assert (meta["min"], meta["max"]) == (1, 9)


def test_sequence_defaults_must_be_tuples():
    with pytest.raises(TypeError, match="tuples"):
        field([1, 2], "a list")


def test_regex_ok():
    assert regex_ok(r"^(case\d+)_") == (True, "")
    ok, why = regex_ok("(unclosed")
    assert not ok and why.startswith("not a valid regular expression")
    assert MAX_SEED == 2**31 - 1
