"""Atomic outputs and output-path rules: a file that exists is complete, a symlink at the target
is replaced and never written through, outputs never land on inputs."""

import os

import numpy as np
import pytest

from tf_medseg.errors import MedsegError
from tf_medseg.files import (
    PARTIAL,
    atomic_dir,
    atomic_open,
    atomic_png,
    atomic_write,
    check_output_path,
    check_outside,
    is_within,
    regular_file,
)


def test_an_error_while_writing_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and not list(tmp_path.glob(PARTIAL + "*"))


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "link.txt").symlink_to(victim)
    atomic_write(tmp_path / "link.txt", "new")
    assert victim.read_text() == "precious" and not (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "link.txt").read_text() == "new"


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "old").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(folder) as tmp:
            (tmp / "new").write_text("2")
            raise RuntimeError
    assert [p.name for p in folder.iterdir()] == ["old"]
    with atomic_dir(folder) as tmp:
        (tmp / "new").write_text("2")
    assert [p.name for p in folder.iterdir()] == ["new"]
    atomic_png(tmp_path / "a.png", np.zeros((4, 5), np.uint8))
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_output_path_rules(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MedsegError, match="^--output: empty"):
        check_output_path(" ", "--output", "file")
    with pytest.raises(MedsegError, match="the file-system root"):
        check_output_path("/", "--output", "folder")
    with pytest.raises(MedsegError, match="is a folder; give a file name"):
        check_output_path(tmp_path, "--output", "file")
    with pytest.raises(MedsegError, match="is a file; give a folder"):
        check_output_path(tmp_path / "file", "--output", "folder")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    with pytest.raises(MedsegError, match="inside --input"):
        check_outside(inputs / "out.csv", "--output", {"--input": inputs})
    with pytest.raises(MedsegError, match="holds --input"):
        check_outside(tmp_path, "--output", {"--input": inputs})
    check_outside(tmp_path / "elsewhere", "--output", {"--input": inputs, "--model": None})
    assert is_within(inputs / "a" / "..", inputs) and not is_within(tmp_path, inputs)


def test_only_regular_files_are_inputs(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "f").write_text("x")
    assert regular_file(tmp_path / "f") and not regular_file(tmp_path / "fifo")
    assert not regular_file(tmp_path) and not regular_file(tmp_path / "missing")


def test_names_from_data_are_plain_children_and_uids_are_uids():
    from tf_medseg.files import name_problem, plain_name, uid_problem
    for uid in ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.0045", "0"):
        assert uid_problem(uid) is None
    for bad in ("", None, "1..2", ".1", "1.", "../1", "1.2/3", "/1.2", "1.2\0", "1 2",
                "1" * 65, "1.2.3\n"):
        assert uid_problem(bad), bad
    for name in ("case_001.nii.gz", "RS_1.2.3.dcm", "Patient^Name 2", "é"):
        assert name_problem(name) is None and plain_name(name, "x") == name
    for bad in ("", ".", "..", ".hidden", "a/b", "/etc", "..\\x", "a\0b", "a\tb",
                "x" * 256, "é" * 128):
        assert name_problem(bad), bad
    with pytest.raises(MedsegError, match=r"^series 1\.2: the name '\.\./x' holds a path "
                                          r"separator or NUL; it would name a file: refused$"):
        plain_name("../x", "series 1.2")
