"""Careless and hostile use: every case stops in one line (no traceback), and nothing a user
made is lost: an earlier run's outputs, the input slices, the file behind a planted symlink."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tf_medseg.cli import evaluate_main, main, predict_main, train_main
from tf_medseg.config import load_config
from tf_medseg.errors import ConfigError, MedsegError
from tf_medseg.training import train

from conftest import ROOT, TINY_RUN, tiny_overrides


def digest(path: Path) -> dict:
    """{relative path: sha256} of a file or of every file under a folder."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path) if p != path else p.name):
            hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def one_line_error(capsys, code: int, starts: str = "error: ") -> str:
    """The command's exit code was 2 and its stderr one line starting with ``starts``."""
    text = capsys.readouterr().err.strip()
    assert code == 2, text
    # Progress bars of the data preparation may come first, on their own lines.
    lines = [line for line in text.splitlines() if line.strip() and "%|" not in line]
    assert "Traceback" not in text and len(lines) == 1, text
    err = lines[0]
    assert err.startswith(starts), err
    return err


@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory):
    """A finished tiny run (a copy of the shared one, the same config): (its overrides, its
    folder, digests of metrics.json and saved_model/)."""
    tmp = tmp_path_factory.mktemp("finished")
    overrides = [*tiny_overrides(tmp), *TINY_RUN]
    shutil.copytree(tiny_run[1], tmp / "run", ignore=shutil.ignore_patterns(".lock"))
    run = tmp / "run"
    return overrides, run, {"metrics": digest(run / "metrics.json"),
                            "saved_model": digest(run / "saved_model")}


def assert_intact(run: Path, before: dict) -> None:
    assert digest(run / "metrics.json") == before["metrics"]
    assert digest(run / "saved_model") == before["saved_model"]


# ------------------------------------------------------------------------------ run folders

def test_rerun_over_a_finished_run_refuses_and_keeps_it(finished, capsys):
    overrides, run, before = finished
    err = one_line_error(capsys, train_main(["--config", "tiny.yaml", "--set", *overrides]))
    assert f"{run} holds a finished run" in err and "--overwrite" in err
    assert_intact(run, before)
    assert not (run / ".lock").exists()


def test_the_refusal_comes_before_tensorflow_is_imported(finished):
    overrides, run, before = finished
    code = ("import sys; from tf_medseg.cli import train_main; "
            f"rc = train_main({['--config', 'tiny.yaml', '--set', *overrides]!r}); "
            "print(rc, 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.split() == ["2", "False"], proc.stderr
    assert "holds a finished run" in proc.stderr
    assert_intact(run, before)


def test_a_config_that_fails_validation_touches_nothing(finished, capsys):
    overrides, run, before = finished
    err = one_line_error(capsys, train_main(
        ["--config", "tiny.yaml", "--set", *overrides, "train.threshold=1.0"]))
    assert err.startswith("error: train.threshold: must be between 0 and 1")
    assert_intact(run, before)


def test_a_folder_with_files_tf_medseg_did_not_write_is_refused(tmp_path, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("mine")
    (project / "metrics.json").write_text('{"mine": 1}')
    before = digest(project)
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("train.run_dir")]
    err = one_line_error(capsys, train_main(
        ["--config", "tiny.yaml", "--set", *overrides, f"train.run_dir={project}"]))
    assert "holds files tf_medseg did not write (README.md)" in err
    assert digest(project) == before


@pytest.mark.parametrize("value,message", [("''", "train.run_dir: empty"),
                                           ("/", "the file-system root"),
                                           ("FILE", "is a file")])
def test_run_dir_path_mistakes(tmp_path, capsys, value, message):
    (tmp_path / "FILE").write_text("mine")
    value = str(tmp_path / "FILE") if value == "FILE" else value
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("train.run_dir")]
    err = one_line_error(capsys, train_main(
        ["--config", "tiny.yaml", "--set", *overrides, f"train.run_dir={value}"]))
    assert message in err
    assert (tmp_path / "FILE").read_text() == "mine"


def test_a_second_training_stops_naming_the_lock_holder(finished, capsys):
    from tf_medseg.run_dir import RunLock
    overrides, run, before = finished
    with RunLock(run):  # as another process holding it would (flock is per open file)
        err = one_line_error(capsys, train_main(
            ["--config", "tiny.yaml", "--set", *overrides, "--overwrite"]))
        assert f"{run}: in use by process {os.getpid()} on " in err
    assert_intact(run, before)


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    from tf_medseg.run_dir import RunLock
    (tmp_path / ".lock").write_text("process 999999 on elsewhere (killed)\n")
    with RunLock(tmp_path) as lock:
        assert f"process {os.getpid()}" in lock.path.read_text()
    assert not (tmp_path / ".lock").exists()


def _fake_backup(run: Path, config, policy="float32") -> None:
    """A backup folder as a killed run leaves it (its checkpoint data is not read here)."""
    from tf_medseg.run_dir import identity
    backup = run / "checkpoints" / "backup"
    backup.mkdir(parents=True)
    (backup / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    (backup / "ckpt-2.index").write_bytes(b"not a checkpoint")
    (backup / "identity.json").write_text(json.dumps(identity(config, policy)))


@pytest.mark.parametrize("change,key", [
    ("train.loss=dice", "train.loss"), ("data.fold=1", "data.fold"),
    ("data.context=[-1,0,1]", "data.context"), ("model.name=attention_unet", "model.name"),
    ("train.optimizer=adam", "train.optimizer"), ("data.root=/elsewhere", "data.root"),
    ("train.precision=float32", "train.precision")])
def test_resuming_checks_every_key_that_changes_the_weights(tmp_path, capsys, change, key):
    from tf_medseg.training.runtime import runtime_for
    overrides = tiny_overrides(tmp_path)
    config = load_config("tiny.yaml", overrides)
    policy = runtime_for(config)[0]
    if key == "train.precision":
        policy = "mixed_float16"
    _fake_backup(tmp_path / "run", config, policy)
    extra = ["data.source=phantom"] if key == "data.root" else []
    err = one_line_error(capsys, train_main(
        ["--config", "tiny.yaml", "--set", *overrides, *extra, change]))
    assert err.startswith(f"error: {key}: {tmp_path / 'run'} holds an unfinished run with "
                          f"{key} "), err
    assert "--overwrite" in err


def test_a_damaged_backup_is_one_line_and_epochs_may_change(tmp_path, capsys):
    overrides = tiny_overrides(tmp_path)
    _fake_backup(tmp_path / "run", load_config("tiny.yaml", overrides),
                 __import__("tf_medseg.training.runtime").training.runtime.runtime_for(
                     load_config("tiny.yaml", overrides))[0])
    # train.epochs may change on resume: the claim passes and the damaged backup is reported.
    err = one_line_error(capsys, train_main(
        ["--config", "tiny.yaml", "--set", *overrides, "train.epochs=3"]))
    assert "the backup does not fit this model or is damaged" in err and "--overwrite" in err
    (tmp_path / "run" / "checkpoints" / "backup" / "identity.json").write_text("{garbage")
    err = one_line_error(capsys, train_main(["--config", "tiny.yaml", "--set", *overrides]))
    assert err.startswith(f"error: {tmp_path / 'run' / 'checkpoints' / 'backup'}"
                          f"/identity.json: damaged backup identity")


@pytest.mark.slow
def test_overwrite_killed_in_its_first_epoch_keeps_the_old_run_whole(finished, tmp_path):
    overrides, old, before = finished
    run = tmp_path / "run"
    shutil.copytree(old, run)
    overrides = [o for o in overrides if not o.startswith("train.run_dir")] + [
        f"train.run_dir={run}"]
    # The new run takes 50 epochs at 64x64; it is killed in its first epoch.
    proc = subprocess.Popen([sys.executable, "train.py", "--config", "tiny.yaml", "--set",
                             *overrides, "train.epochs=50", "data.image_size=[64,64]",
                             "--overwrite"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            (run / "previous" / "metrics.json").exists() and (run / "runtime.json").exists()):
        time.sleep(0.1)
    assert proc.poll() is None and (run / "previous" / "metrics.json").exists()
    time.sleep(1.0)  # into the first epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "checkpoints" / "backup" / "checkpoint").exists()  # killed in epoch 1
    assert not (run / "metrics.json").exists()
    assert_intact(run / "previous", before)
    # The next run (here without --overwrite: the killed one left nothing to resume) removes
    # the replaced run only once its own outputs are complete.
    result = train(load_config("tiny.yaml", overrides), verbose=0)
    assert not (run / "previous").exists()
    assert json.loads((run / "metrics.json").read_text())["score"] == result["score"]
    assert (run / "saved_model" / "saved_model.pb").is_file()


# ------------------------------------------------------------------ outputs never on inputs

@pytest.fixture()
def slices(tiny_phantom, tmp_path):
    """A folder of one scan's slice PNGs (a copy) and its digest."""
    scans = next(tiny_phantom.glob("train/case*/case*_day*/scans"))
    folder = tmp_path / "slices"
    shutil.copytree(scans, folder)
    return folder, digest(folder)


@pytest.mark.parametrize("where", ["overlays=input", "overlays=inside", "output=inside",
                                   "output=model", "overlays=output"])
def test_predict_never_writes_on_its_inputs(finished, slices, capsys, where):
    _, run, before = finished
    folder, inputs = slices
    model = run / "saved_model"
    output, overlays = str(folder.parent / "submission.csv"), None
    option, place = where.split("=")
    target = {"input": folder, "inside": folder / "out", "model": model / "x.csv",
              "output": folder.parent / "submission.csv"}[place]
    if option == "overlays":
        overlays = str(target)
    else:
        output = str(target)
    args = ["--model", str(model), "--input", str(folder), "--output", output]
    err = one_line_error(capsys, predict_main(args + (["--overlays", overlays] if overlays
                                                      else [])))
    assert f"--{option} " in err
    assert digest(folder) == inputs
    assert_intact(run, before)


def test_predict_refuses_a_planted_symlink_and_never_writes_through_it(finished, slices,
                                                                       tmp_path, capsys):
    _, run, _ = finished
    folder, _ = slices
    victim = tmp_path / "victim.txt"
    victim.write_text("id,class,predicted\nprecious")
    output = tmp_path / "out" / "submission.csv"
    output.parent.mkdir()
    output.symlink_to(victim)
    for extra in ([], ["--overwrite"]):
        code = predict_main(["--model", str(run / "saved_model"), "--input", str(folder),
                             "--output", str(output), *extra])
        assert code == 2 and "is a symlink" in capsys.readouterr().err
    assert victim.read_text() == "id,class,predicted\nprecious" and output.is_symlink()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".partial-")]


def test_atomic_files_are_new_files_with_ordinary_permissions(tmp_path):
    from tf_medseg.files import atomic_write, default_mode
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    atomic_write(link, "{}")
    assert victim.read_text() == "precious" and link.read_text() == "{}"
    assert (link.stat().st_mode & 0o777) == default_mode()


def test_saved_model_has_the_permissions_of_the_other_outputs(finished):
    _, run, _ = finished
    from tf_medseg.files import default_mode
    assert (run / "saved_model").stat().st_mode & 0o777 == default_mode(directory=True)
    assert (run / "saved_model" / "metadata.json").stat().st_mode & 0o777 == default_mode()
    assert (run / "metrics.json").stat().st_mode & 0o777 == default_mode()


@pytest.mark.parametrize("target", ["file", "run"])
def test_evaluate_output_over_a_file_or_a_run_is_refused(finished, tmp_path, capsys, target):
    overrides, run, before = finished
    existing = tmp_path / "report.txt"
    existing.write_text("mine")
    out = existing if target == "file" else run
    err = one_line_error(capsys, evaluate_main(
        ["--model", str(run / "saved_model"), "--config", str(run / "config.yaml"),
         "--output", str(out)]))
    assert err.startswith(f"error: --output {out}: ")
    assert existing.read_text() == "mine"
    assert_intact(run, before)


# -------------------------------------------------------------------------- config values

@pytest.mark.parametrize("override,message", [
    ("train.learning_rate=.nan", "train.learning_rate: must be a finite number"),
    ("train.learning_rate=1e999", "train.learning_rate: must be a finite number"),
    ("augment.rotate_deg=.inf", "augment.rotate_deg: must be a finite number"),
    ("train.loss={bce: .nan, dice: 1}", "train.loss.bce: must be a finite number"),
    ("train.threshold=0", "train.threshold: must be between 0 and 1"),
    ("train.threshold=1.0", "train.threshold: must be between 0 and 1"),
    ("train.seed=-1", "train.seed: must be >= 0"),
    ("train.seed=18446744073709551616", "train.seed: must be at most 2,147,483,647"),
    ("data.phantom_seed=-3", "data.phantom_seed: must be >= 0"),
    ("data.context=[0,1000000]", "data.context: must contain 0, no repeats, offsets within"),
    ("train.max_minutes=0", "train.max_minutes: must be > 0"),
    ("train.max_minutes=-5", "train.max_minutes: must be > 0"),
    ("data.organ_fraction=0", "data.organ_fraction: must be > 0"),
    ("data.organ_fraction=1.5", "data.organ_fraction: must be <= 1.0"),
])
def test_config_values_that_pass_validation_can_run(tmp_path, capsys, override, message):
    with pytest.raises(ConfigError) as info:
        load_config("tiny.yaml", [override])
    assert str(info.value).startswith(message), str(info.value)
    err = one_line_error(capsys, train_main(["--config", "tiny.yaml", "--set",
                                             *tiny_overrides(tmp_path), override]))
    assert err.startswith(f"error: {message}")
    assert not (tmp_path / "run").exists()


def test_an_image_size_beyond_memory_is_refused_with_the_estimate(tmp_path, capsys):
    err = one_line_error(capsys, train_main(
        ["--config", "tiny.yaml", "--set", *tiny_overrides(tmp_path),
         "data.image_size=[65536,65536]"]))
    assert err.startswith("error: data.image_size: a batch of 8 at 65536x65536") and "GiB" in err
    assert not (tmp_path / "run").exists()


def test_yaml_alias_bomb_and_non_utf8_configs_are_refused(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    bomb.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    err = one_line_error(capsys, train_main(["--config", str(bomb)]))
    assert "aliases expand to more than 100,000 values" in err
    assert time.monotonic() - started < 5
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("train:\n  run_dir: runs/gr\xfcn\n".encode("latin-1"))
    err = one_line_error(capsys, train_main(["--config", str(latin)]))
    assert err == f"error: {latin}: not UTF-8 text (byte 25); save the config as UTF-8"


# ------------------------------------------------------------------------------- inputs

@pytest.fixture()
def kaggle_copy(tiny_phantom, tmp_path):
    root = tmp_path / "kaggle"
    shutil.copytree(tiny_phantom, root)
    return root


def _train_on(root: Path, tmp_path: Path) -> int:
    return train_main(["--config", "tiny.yaml", "--set", "data.source=uwmgi",
                       f"data.root={root}", *tiny_overrides(tmp_path)])


def _a_slice(root: Path) -> Path:
    return sorted(root.glob("train/case*/case*_day*/scans/*.png"))[0]


def test_a_decompression_bomb_is_refused_from_its_header(kaggle_copy, tmp_path, capsys):
    import zlib
    path = _a_slice(kaggle_copy)  # its name says 266x266; its header 100000x100000
    ihdr = (100000).to_bytes(4, "big") * 2 + bytes([16, 0, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk +
                     zlib.crc32(chunk).to_bytes(4, "big"))
    err = one_line_error(capsys, _train_on(kaggle_copy, tmp_path))
    assert err == (f"error: {path}: 100000x100000 pixels, more than the 67,108,864 a slice "
                   f"may have; not decoded")


def test_a_colour_png_with_a_kaggle_name_is_refused(kaggle_copy, tmp_path, capsys):
    import cv2
    path = _a_slice(kaggle_copy)
    grey = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    colour = np.stack([grey, grey // 2, grey // 3], axis=-1)
    assert cv2.imwrite(str(path), colour)
    err = one_line_error(capsys, _train_on(kaggle_copy, tmp_path))
    assert err == f"error: {path}: a colour image; expected a grayscale MRI slice (8- or 16-bit)"


@pytest.mark.slow
def test_a_fifo_named_like_a_slice_does_not_block_the_build(kaggle_copy, tmp_path):
    fifo = _a_slice(kaggle_copy).parent / "slice_0099_266_266_1.50_1.50.png"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "train.py", "--config", "tiny.yaml", "--set",
                           "data.source=uwmgi", f"data.root={kaggle_copy}",
                           *tiny_overrides(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {fifo}: not a regular file (a FIFO, device or socket); inputs must be "
        f"ordinary files")


@pytest.mark.parametrize("value", ["1 99999999999999999999999999", "9223372036854775807 5",
                                   "18446744073709551615 18446744073709551615"])
def test_rle_numbers_beyond_the_image_are_refused_whatever_their_size(kaggle_copy, tmp_path,
                                                                    capsys, value):
    from tf_medseg.data import rle
    with pytest.raises(MedsegError, match="past the end of the 10x10 image"):
        rle.decode(value, 10, 10)
    csv_path = kaggle_copy / "train.csv"
    lines = csv_path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if i and line.endswith(","))
    lines[row] += value
    csv_path.write_text("\n".join(lines) + "\n")
    err = one_line_error(capsys, _train_on(kaggle_copy, tmp_path))
    assert "past the end of the" in err and err.startswith(f"error: {csv_path}")


def test_two_folders_of_one_case_day_are_refused(kaggle_copy, tmp_path, capsys):
    day = next((kaggle_copy / "train").glob("case*/case*_day*"))
    case = day.name.split("_")[0]
    twin = day.parent / day.name.replace(case, case.replace("case", "case0"))
    shutil.copytree(day, twin)
    err = one_line_error(capsys, _train_on(kaggle_copy, tmp_path))
    assert "the same case-day as" in err and "keep one of the two folders" in err


@pytest.mark.parametrize("content,message", [("", "empty; expected the header"),
                                             ("id,class,segmentation\n", "no rows")])
def test_an_empty_train_csv_is_refused(kaggle_copy, tmp_path, capsys, content, message):
    (kaggle_copy / "train.csv").write_text(content)
    err = one_line_error(capsys, _train_on(kaggle_copy, tmp_path))
    assert err.startswith(f"error: {kaggle_copy / 'train.csv'}: {message}")


# ----------------------------------------------------------------------- damaged state

@pytest.mark.parametrize("damage,message", [
    ("variables", "the export's variables/ are missing"),
    ("data", "the SavedModel cannot be loaded"),
    ("pb", "the SavedModel cannot be loaded"),
    ("labels", "damaged export metadata")])
def test_a_damaged_export_is_one_line(finished, slices, tmp_path, capsys, damage, message):
    _, run, _ = finished
    model = tmp_path / "model"
    shutil.copytree(run / "saved_model", model)
    if damage == "variables":
        shutil.rmtree(model / "variables")
    elif damage == "data":
        for p in (model / "variables").glob("variables.data-*"):
            p.unlink()
    elif damage == "pb":
        pb = (model / "saved_model.pb").read_bytes()
        (model / "saved_model.pb").write_bytes(pb[:len(pb) // 3])
    else:
        meta = json.loads((model / "metadata.json").read_text())
        (model / "metadata.json").write_text(json.dumps({**meta, "labels": "organs"}))
    err = one_line_error(capsys, predict_main(["--model", str(model), "--input",
                                               str(slices[0]), "--output",
                                               str(tmp_path / "s.csv")]))
    assert message in err and not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("content,message", [
    ("{not json", "damaged export metadata (Expecting"),
    ('{"classes": ["a"]}', "damaged export metadata (no 'context_offsets')"),
    ('{"classes": [], "context_offsets": "x", "model_input_size": [32, 32]}',
     "damaged export metadata (context_offsets 'x')")])
def test_damaged_export_metadata_is_one_line(finished, slices, tmp_path, capsys, content,
                                             message):
    _, run, _ = finished
    model = tmp_path / "model"
    shutil.copytree(run / "saved_model", model)
    (model / "metadata.json").write_text(content)
    err = one_line_error(capsys, predict_main(["--model", str(model), "--input",
                                               str(slices[0]), "--output",
                                               str(tmp_path / "s.csv")]))
    assert err.startswith(f"error: {model / 'metadata.json'}: {message}")


def test_a_half_written_history_row_is_dropped(tmp_path):
    from tf_medseg.training.checkpoints import HistoryLog, read_history
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_dice\n1,0.9,0.1\n2,0.8,0.2\n3,0.7")  # killed mid-row
    assert [r["epoch"] for r in read_history(path)] == ["1", "2"]
    log = HistoryLog(path, initial_epoch=2)
    log.on_train_begin()
    log.on_epoch_end(2, {"loss": 0.5, "val_dice": 0.3})
    assert [r["loss"] for r in read_history(path)] == ["0.9", "0.8", "0.5"]
    path.write_text("\x00\x01garbage\nmore\n")
    with pytest.raises(MedsegError, match="damaged .no epoch column.; delete it"):
        read_history(path)


@pytest.mark.parametrize("name", ["oracle.json", "search.json", "trial"])
def test_damaged_search_state_is_one_line(tmp_path, capsys, name):
    overrides = [*tiny_overrides(tmp_path), "tune.max_trials=1", "tune.epochs=1",
                 "tune.space={model.base_filters: [4, 8]}"]
    folder = tmp_path / "run" / "tuning"
    folder.mkdir(parents=True)
    if name == "trial":
        (folder / "oracle.json").write_text(json.dumps(
            {"ongoing_trials": {}, "tried_so_far": [], "id_to_hash": {}, "seed": 1,
             "seed_state": 1, "start_order": ["00"], "end_order": ["00"],
             "run_times": {"00": 1}, "retry_queue": []}))
        (folder / "tuner0.json").write_text("{}")  # what makes KerasTuner reload
        (folder / "trial_00").mkdir()
        path = folder / "trial_00" / "trial.json"
    else:
        path = folder / name
    path.write_text('{"trial_id": "00", truncated')
    err = one_line_error(capsys, train_main(["--config", "tiny.yaml", "--tune", "--set",
                                             *overrides]))
    assert err.startswith(f"error: {path}: damaged search ")
    assert "delete" in err and str(folder) in err


# ------------------------------------------------------------------------------------ CLI

def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "phantom", "evaluate", "predict", "benchmark"):
        assert f"\n  {command} " in out
    proc = subprocess.run([sys.executable, "-m", "tf_medseg", "--help"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "commands:" in proc.stdout
    assert main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err


@pytest.mark.parametrize("output,message", [("", "--output: empty"),
                                            ("/", "the file-system root"),
                                            ("FOLDER", "is a folder; give a file name")])
def test_predict_path_mistakes_stop_before_any_work(finished, slices, tmp_path, capsys,
                                                    output, message):
    _, run, _ = finished
    (tmp_path / "FOLDER").mkdir()
    output = str(tmp_path / "FOLDER") if output == "FOLDER" else output
    err = one_line_error(capsys, predict_main(["--model", str(run / "saved_model"),
                                               "--input", str(slices[0]),
                                               "--output", output]))
    assert message in err


def test_data_root_that_is_a_file_and_phantom_out_mistakes(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("mine")
    err = one_line_error(capsys, train_main(["--config", "tiny.yaml", "--set",
                                             *tiny_overrides(tmp_path), "data.source=uwmgi",
                                             f"data.root={file}"]))
    assert err == f"error: data.root {file} is not a folder; set it to the Kaggle folder " \
                  f"holding train.csv and train/"
    err = one_line_error(capsys, main(["phantom", "--out", str(file)]))
    assert err == f"error: --out {file}: is a file; give a folder"
    assert file.read_text() == "mine"


@pytest.mark.parametrize("args,message", [
    (["--seconds", "nan"], "--seconds: must be a number of seconds"),
    (["--seconds", "-1"], "--seconds: must be a number of seconds"),
    (["--seconds", "inf"], "--seconds: must be a number of seconds"),
    (["--compare-runtimes", "-2"], "--compare-runtimes: must be a number of rounds"),
    (["--compare-runtimes", "100000"], "--compare-runtimes: must be a number of rounds"),
    (["--image-size", "0", "64"], "--image-size: each side must be from 16")])
def test_benchmark_rejects_nonsense(tiny_phantom, capsys, args, message):
    err = one_line_error(capsys, main(["benchmark", "--data-root", str(tiny_phantom), *args]))
    assert err.startswith(f"error: {message}")


def test_a_plain_training_into_a_cross_validation_folder_is_refused(tmp_path, capsys):
    cv = tmp_path / "cv"
    (cv / "fold_0").mkdir(parents=True)
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("train.run_dir")]
    err = one_line_error(capsys, train_main(["--config", "tiny.yaml", "--set", *overrides,
                                             f"train.run_dir={cv}"]))
    assert "holds a cross-validation (fold_K/ folders); continue it with --folds" in err
    assert sorted(p.name for p in cv.iterdir()) == ["fold_0"]


def test_records_inside_the_run_folder_are_refused(tmp_path, capsys):
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("data.data_dir")]
    run = [o for o in overrides if o.startswith("train.run_dir=")][0].split("=", 1)[1]
    err = one_line_error(capsys, train_main(["--config", "tiny.yaml", "--set", *overrides,
                                             f"data.data_dir={run}/records"]))
    assert "inside train.run_dir" in err
