"""One record read from a source item, with its facts and foreground sample: what the builders'
worker processes compute."""

import numpy as np

from tf_medseg.data import examples
from tf_medseg.data.sources import kaggle, kaggle_inventory, volumes

from synthetic_volumes import write_nnunet


def test_a_kaggle_scan_becomes_a_record_of_uint16_slices(tiny_phantom):
    inv = kaggle_inventory.take_inventory(tiny_phantom)
    scan = inv.scans[0]
    rows = {scan.slice_id(s): inv.labels[scan.slice_id(s)] for s in scan.slices}
    (key, record), facts, sample = examples.scan_example(scan, rows)
    read = kaggle.read_scan(scan, rows)
    assert key == record["scan"] == scan.case_day and record["case"] == scan.case
    assert record["image"].shape == (*read.image.shape, 1)
    assert record["spacing"].tolist() == [3.0, read.spacing[1], read.spacing[0]]
    assert record["mask"].max() <= 7 and facts["shape"] == list(read.image.shape)
    assert facts["class_voxels"] == read.mask.reshape(-1, 3).sum(0).tolist()
    assert sample.shape[1] == 1 and len(sample) == min(10000, int(read.mask.any(-1).sum()))


def test_a_volume_case_keeps_the_files_voxel_order(tmp_path):
    root = write_nnunet(tmp_path / "Dataset001_T", cases=1)
    index = volumes.index_source("nnunet", root)
    (key, record), facts, _ = examples.case_example(index, index.cases[0], 0, "uint8")
    assert key == "case_000" and record["image"].shape == (32, 28, 6, 2)
    assert record["mask"].dtype == np.uint8 and facts["spacing"] == [1.5, 1.5, 4.0]
    assert facts["organ_slices"][2] == int((record["mask"] > 0).any(axis=(0, 1)).sum())
