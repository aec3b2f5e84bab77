"""The writer interface: every registered writer implements it."""

import pytest

from tf_medseg.inference.writers import WRITERS, Writer


def test_every_writer_implements_the_interface(tmp_path):
    for form, formats in WRITERS.items():
        for name, kind in formats.items():
            assert issubclass(kind, Writer), (form, name)
            assert kind.write is not Writer.write and kind.close is not Writer.close, form
    base = Writer(tmp_path / "out", contract=None)
    with pytest.raises(NotImplementedError):
        base.write(None, None, None, None)
    assert base.close() == {} and base.abort() is None and base.target == "folder"
