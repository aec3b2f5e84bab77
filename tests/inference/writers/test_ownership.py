"""predict writes over nothing but its own earlier output, and that only with --overwrite."""

import json
import os

import pytest

from tf_medseg.errors import MedsegError
from tf_medseg.inference.writers.ownership import MARK, check_replaceable, publish


def _refused(path, target, overwrite=False):
    with pytest.raises(MedsegError) as info:
        check_replaceable(path, "--output", target, overwrite)
    return str(info.value)


def test_a_new_path_or_an_empty_folder_is_taken(tmp_path):
    check_replaceable(tmp_path / "new.csv", "--output", "file", False)
    check_replaceable(tmp_path / "new", "--output", "folder", False)
    check_replaceable(tmp_path, "--output", "folder", False)


def test_ground_truth_and_other_files_are_never_replaced(tmp_path):
    labels = tmp_path / "labelsTr"
    labels.mkdir()
    (labels / "case_000.nii.gz").write_bytes(b"truth")
    for overwrite in (False, True):
        assert "holds files predict did not write (case_000.nii.gz)" in _refused(
            labels, "folder", overwrite)
    train = tmp_path / "train.csv"
    train.write_text("id,class,segmentation\ncase1_day0_slice_0001,stomach,1 2\n")
    assert "is not a submission" in _refused(train, "file", True)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused(fifo, "file", True)
    assert "not a regular file" in _refused("/dev/null", "file", True)
    link = tmp_path / "link.csv"
    link.symlink_to(train)
    assert "is a symlink" in _refused(link, "file", True)
    assert (labels / "case_000.nii.gz").read_bytes() == b"truth"


def test_an_earlier_submission_needs_overwrite(tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("id,class,predicted\n")
    assert "pass --overwrite" in _refused(out, "file")
    check_replaceable(out, "--output", "file", True)


def test_an_earlier_prediction_folder_needs_overwrite_and_is_replaced_whole(tmp_path):
    out = tmp_path / "pred"
    out.mkdir()
    for name in ("a.nii.gz", "b.nii.gz"):
        (out / name).write_bytes(b"old")
    publish(out, ["a.nii.gz", "b.nii.gz"], {"input": "x"})
    meta = json.loads((out / MARK).read_text())
    assert meta["entries"] == ["a.nii.gz", "b.nii.gz"] and meta["written_by"] == "tf_medseg predict"
    assert "holds an earlier prediction" in _refused(out, "folder")
    check_replaceable(out, "--output", "folder", True)
    (out / "mine.txt").write_text("a user's note")
    assert "did not write (mine.txt)" in _refused(out, "folder", True)
    (out / "mine.txt").unlink()
    (out / "c.nii.gz").write_bytes(b"new")  # the next prediction: c only
    publish(out, ["c.nii.gz"], {"input": "y"})
    assert sorted(p.name for p in out.iterdir()) == ["c.nii.gz", MARK]


def test_class_folders_are_one_entry(tmp_path):
    out = tmp_path / "pred"
    (out / "ball").mkdir(parents=True)
    (out / "ball" / "x.png").write_bytes(b"png")
    publish(out, ["ball/x.png"], {})
    assert json.loads((out / MARK).read_text())["entries"] == ["ball"]


def test_a_manifest_naming_anything_but_plain_children_is_not_predicts(tmp_path):
    """A manifest listing "..", "/" or "a/b" (planted, or written by an older predict from a
    hostile series UID) makes the folder a stranger's: refused, and nothing above it removed."""
    above = tmp_path / "keep"
    above.mkdir()
    (above / "scan.dcm").write_bytes(b"scanner")
    out = tmp_path / "pred"
    out.mkdir()
    (out / "a.dcm").write_bytes(b"old")
    for bad in ("..", "../keep", "/", "/etc", "a/b", ".hidden", ""):
        (out / MARK).write_text(json.dumps({"written_by": "tf_medseg predict",
                                            "entries": ["a.dcm", bad]}))
        assert "holds files predict did not write" in _refused(out, "folder", True)
    # a prediction that names an entry outside the folder is refused before any removal
    with pytest.raises(MedsegError, match=r"output .*: the name '\.\.' starts with a dot"):
        publish(out, ["../keep/x.dcm"], {})
    assert (above / "scan.dcm").read_bytes() == b"scanner" and (out / "a.dcm").is_file()
