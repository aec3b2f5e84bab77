"""Reading in worker processes: results in the items' order whatever order workers finish in,
the fingerprint written into the metadata once every record is read, and a reader that dies
named in one line."""

import numpy as np
import pytest

from tf_medseg.data.labels import LabelSchema
from tf_medseg.errors import DataError
from tf_medseg.resources import builders

LABELS = LabelSchema(classes=("a",), exclusive=True, channels=("MR",), metric="volume",
                     encoding="labels", values=((1,),))


def _square(n):  # module level: spawned workers import it
    return n * n


def _die(n):  # a reader killed (out of memory, or a script re-run without a main guard)
    import os
    os._exit(3)


def _record(name, n):
    from tf_medseg.data import fingerprint
    image = np.full((1, 1, n, 1), float(n), np.float32)
    mask = np.ones((1, 1, n), np.uint8)
    facts, foreground = fingerprint.scan_facts(0, (1, 1, 1), mask, LABELS)
    return (name, {"n": n}), facts, fingerprint.foreground_sample(name, image, foreground)


def test_in_order_keeps_the_order():
    reading = builders("reading")
    for workers in (2, 0):  # spawned processes, then this one (TF_MEDSEG_WORKERS=0)
        out = list(reading.in_order(_square, [(n,) for n in range(9)], [1] * 9, desc="t",
                                    unit="item", workers=workers))
        assert out == [n * n for n in range(9)]


def test_a_reader_that_dies_is_one_line():
    reading = builders("reading")
    with pytest.raises(DataError, match="^Reading 2 cases: a reader process ended abruptly"):
        list(reading.in_order(_die, [(1,), (2,)], [1, 1], desc="Reading 2 cases", unit="case",
                              workers=1))


def test_records_fill_the_fingerprint():
    reading = builders("reading")
    meta = {}
    keys = [key for key, _ in reading.records(_record, [("x", 2), ("y", 3)], [1, 1], meta,
                                              LABELS, desc="t", unit="case", workers=1)]
    assert keys == ["x", "y"] and meta["labels"]["classes"] == ["a"]
    assert meta["scans"]["y"]["shape"] == [1, 1, 3]
    assert meta["intensity_stats"][0]["voxels"] == 5
    assert meta["intensity_stats"][0]["mean"] == (2 * 2 + 3 * 3) / 5
