"""What the two Kaggle-layout builders share: the whole folder checked up front and recorded in
the metadata (with what was dropped and why), records of uint16 slices and bit-packed masks."""

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.resources import builders


def test_inventory_records_the_folder_and_what_was_dropped(tiny_phantom):
    layout = builders("kaggle_layout")
    info = tfds.core.DatasetInfo(builder=builders("gi_phantom").GiPhantom(data_dir="/tmp/x"),
                                 metadata=tfds.core.MetadataDict())
    inv = layout.inventory(info, tiny_phantom, drop_case_days=("case1_day0",))
    meta = info.metadata
    assert meta["source"] == str(tiny_phantom) and "case1_day0" not in meta["case_days"]
    assert len(meta["case_days"]) == 7 and meta["cases"] == [1, 2, 3, 4]
    assert meta["dropped"] == {"case1_day0": "listed in data.drop_case_days"}
    assert len(inv.scans) == 7


def test_features_are_uint16_slices_and_uint8_bits():
    spec = builders("kaggle_layout").features()
    assert spec["image"].np_dtype == np.uint16 and spec["mask"].np_dtype == np.uint8
