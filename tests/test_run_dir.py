"""The run folder's rules: only tf_medseg's files, one process at a time, a finished run never
replaced without --overwrite, an unfinished one resumed only with the config it started with."""

import json

import pytest

from tf_medseg.config import load_config
from tf_medseg.errors import ConfigError, MedsegError
from tf_medseg.run_dir import (
    RunDir,
    RunLock,
    check_identity,
    check_run_dir,
    cv_exports,
    flat,
    fold_dir,
    identity,
    is_cv_run,
    read_json,
)


def test_identity_leaves_out_the_resumable_keys():
    config = load_config("tiny.yaml", ["train.epochs=7"])
    keys = identity(config, "mixed_bfloat16")
    assert keys["train.precision"] == "mixed_bfloat16" and "train.epochs" not in keys
    assert "model.base_filters" in keys and not any(k.startswith("tune.") for k in keys)
    assert flat({"a": {"b": 1}, "base": "x"}) == {"a.b": 1}


def test_check_identity_names_the_first_key_that_differs(tmp_path):
    ours = identity(load_config("tiny.yaml"), "float32")
    saved = tmp_path / "identity.json"
    saved.write_text(json.dumps({**ours, "model.depth": 5}))
    with pytest.raises(ConfigError, match=r"^model.depth: .* holds an unfinished run with "
                                          r"model.depth 5, this config has 2"):
        check_identity(saved, ours, tmp_path)
    saved.write_text("{broken")
    with pytest.raises(MedsegError, match="damaged backup identity"):
        check_identity(saved, ours, tmp_path)
    with pytest.raises(MedsegError, match=r"damaged x \(not a JSON object\); fix it"):
        saved.write_text("[1]")
        read_json(saved, "x", "fix it")


def test_foreign_files_and_finished_runs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds files tf_medseg did not write \(notes.txt\)"):
        check_run_dir(str(run))
    (run / "notes.txt").unlink()
    (run / "metrics.json").write_text("{}")
    folder = RunDir(check_run_dir(str(run)))
    assert folder.finished() and not folder.has_backup()
    with pytest.raises(MedsegError, match="holds a finished run"):
        folder.precheck(overwrite=False)
    assert folder.claim({}, overwrite=True) == "replace"
    folder.begin()
    assert (run / "previous" / "metrics.json").is_file() and not (run / "metrics.json").exists()
    folder.completed()
    folder.release()
    assert not (run / "previous").exists()


def test_one_process_at_a_time(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(MedsegError, match="in use by"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire()  # released: taken again


def test_cross_validation_folders(tmp_path):
    root = tmp_path / "cv"
    assert fold_dir(root, 2) == root / "fold_2"
    (root / "fold_0" / "saved_model").mkdir(parents=True)
    (root / "fold_0" / "saved_model" / "saved_model.pb").write_bytes(b"")
    assert is_cv_run(root) and cv_exports(root) == [root / "fold_0" / "saved_model"]
    assert not is_cv_run(tmp_path)


def test_temporaries_a_killed_run_left_are_removed_when_a_run_begins(tmp_path):
    run = tmp_path / "run"
    (run / ".partial-saved_model-abc").mkdir(parents=True)
    (run / ".partial-saved_model-abc" / "saved_model.pb").write_bytes(b"x" * 1000)
    (run / "metrics.json").write_text("{}")
    folder = RunDir(check_run_dir(str(run)))
    folder.claim({}, overwrite=True)
    folder.begin()
    assert not list(run.glob(".partial-*"))
    folder.completed()
    folder.release()


def test_records_inside_a_run_folder_are_refused(tmp_path):
    from tf_medseg.run_dir import check_records_outside_runs
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="inside train.run_dir"):
        check_records_outside_runs(str(run / "tfds"), run)
    other = tmp_path / "other_run"
    other.mkdir()
    (other / "config.yaml").write_text("{}")
    (other / "runtime.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"inside the run folder {other}"):
        check_records_outside_runs(str(other / "records"), run)
    check_records_outside_runs(str(tmp_path / "tfds"), run)


def test_a_lock_planted_as_a_symlink_is_one_line_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious"
    target.write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    with pytest.raises(MedsegError, match=r"\.lock: a symlink where the run's lock belongs"):
        RunLock(run).acquire()
    assert target.read_text() == "mine"
