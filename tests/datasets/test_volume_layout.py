"""The volume builders' shared layout: a build stopped by a bad case leaves nothing, empty label
maps warn, records are keyed to the files and the patients."""

from __future__ import annotations

import numpy as np

from synthetic_volumes import _nifti, error_of, scene, write_nnunet


def test_bad_case_stops_the_build_and_leaves_nothing(tmp_path, nnunet):
    from tf_medseg.config import load_config
    from tf_medseg.data.records import build_records
    image, _ = scene(1)
    image[0, 0, 0] = np.nan
    _nifti(nnunet / "imagesTr" / "case_001_0000.nii.gz", image)
    config = load_config(None, ["data.source=nnunet", f"data.root={nnunet}",
                                f"data.data_dir={tmp_path / 'tfds'}"])
    message = error_of(build_records, config.data)
    assert "case_001_0000.nii.gz: the image holds NaN" in message
    left = [p for p in (tmp_path / "tfds").rglob("*") if p.is_file() and
            p.name != ".prepare.lock"]
    assert left == []


def test_all_empty_label_maps_warn(tmp_path, capsys):
    from tf_medseg.config import load_config
    from tf_medseg.data.records import build_records
    root = write_nnunet(tmp_path / "Dataset002_Empty", cases=2, channels=("MR",))
    for case in ("case_000", "case_001"):
        _nifti(root / "labelsTr" / f"{case}.nii.gz", np.zeros((32, 28, 6), np.uint8))
    config = load_config(None, ["data.source=nnunet", f"data.root={root}",
                                f"data.data_dir={tmp_path / 'tfds'}"])
    builder = build_records(config.data)
    out = capsys.readouterr().out
    assert "warning: every label map of" in out and "is empty" in out
    assert {name: facts["organ_slices"] for name, facts in
            builder.info.metadata["scans"].items()} == {"case_000": [0, 0, 0],
                                                        "case_001": [0, 0, 0]}


def test_records_are_keyed_to_files_and_patients(nnunet):
    """The records hold volumes at their stored resolution: data.slice_axis and data.spacing
    are the pipeline's (no rebuild); which cases share a patient is the records'."""
    import os

    from tf_medseg.resources import builders
    volume_config = builders("volume_layout").volume_config
    first = volume_config("nnunet", str(nnunet)).name
    assert volume_config("nnunet", str(nnunet)).name == first  # stable
    assert volume_config("nnunet", str(nnunet), group_pattern="^(case)_").name != first
    label = nnunet / "labelsTr" / "case_000.nii.gz"
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert volume_config("nnunet", str(nnunet)).name != first
