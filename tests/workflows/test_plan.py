"""The plan of real records: a tiny anisotropic nnU-Net data set (values worked out by hand in
the comments) and a 2D image folder; the written plan is a config that loads."""

import pytest

from tf_medseg.config import load_config
from tf_medseg.errors import MedsegError
from tf_medseg.workflows.plan import plan

from synthetic_volumes import write_folder, write_nnunet

Z = (3.0, 4.0, 5.0, 6.0)  # the coarse axis' spacing of the 4 cases


def _settings(tmp_path, root, source):
    return [f"data.source={source}", f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
            "model.base_filters=4", "data.num_folds=2"]


@pytest.fixture
def anisotropic(tmp_path):
    return write_nnunet(tmp_path / "Dataset002_Aniso", cases=4, channels=("T2",),
                        shape=(48, 40, 8), spacings=[(0.8, 0.8, z) for z in Z])


def test_anisotropic_volumes(tmp_path, anisotropic):
    result, _ = plan("tiny.yaml", _settings(tmp_path, anisotropic, "nnunet"))
    values = result.values
    # target: 0.8 x 0.8 x 10th percentile of 3..6 mm (the median, 4.5, is over 3x 0.8 and 8
    # slices are under a third of 40), the slices cut across it and already at 0.8 mm
    assert "target spacing 0.8 x 0.8 x 3.3 mm" in "\n".join(result.facts)
    assert values["data.slice_axis"] == "auto" and values["data.spacing"] is None
    assert values["data.sampling"] == "patch"
    # 48 x 40 pixels pool 3 times to 6 x 5; 5% of the 48 x 40 x (7 + 10 + 12 + 15) resampled
    # voxels is 2.2 slices: the smallest batch, 2
    assert values["data.image_size"] == [48, 40] and values["model.depth"] == 3
    assert values["data.batch_size"] == 2 and values["data.normalization"] == "percentile"
    # 3D at 0.8 x 0.8 x 3.3 mm, median 48 x 40 x 11: x and y pool twice alone (3.3 mm is over
    # 2x finer), then all three axes once; 11 slices round up to 12
    net = result.network_3d
    assert net.patch == (48, 40, 12) and net.strides == ((2, 2, 1), (2, 2, 1), (2, 2, 2))
    assert net.kernels == ((3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3)) and net.batch == 2
    lines = "\n".join(result.lines())
    assert "data.image_size: [48, 40]" in lines and "3D configuration" in lines


def test_an_image_folder(tmp_path):
    root = write_folder(tmp_path / "folder")
    result, _ = plan("tiny.yaml", _settings(tmp_path, root, "folder"))
    values = result.values
    assert values["data.spacing"] is None and values["data.image_size"] == [32, 28]
    assert values["model.depth"] == 2  # 28 -> 14 -> 7: two poolings
    assert values["data.batch_size"] == 2 and result.network_3d is None


def test_the_written_plan_trains_as_a_config(tmp_path, anisotropic):
    settings = _settings(tmp_path, anisotropic, "nnunet")
    out = tmp_path / "plans" / "plans.yaml"
    out.parent.mkdir()
    result, written = plan("tiny.yaml", settings, str(out))
    assert written == out
    text = out.read_text()
    assert text.startswith("# tf_medseg plan: python -m tf_medseg plan --config tiny.yaml")
    assert "# --set" in text and "batch_size: 2  # " in text
    config = load_config(out)
    assert list(config.data.image_size) == [48, 40] and config.model.depth == 3
    assert config.data.root == str(anisotropic) and config.model.base_filters == 4
    assert config.train.epochs == load_config("tiny.yaml").train.epochs  # the base's
    # an earlier plan is replaced only when asked; another file never
    with pytest.raises(MedsegError, match="exists"):
        plan("tiny.yaml", settings, str(out))
    plan("tiny.yaml", settings, str(out), overwrite=True)
    other = tmp_path / "notes.yaml"
    other.write_text("mine\n")
    with pytest.raises(MedsegError, match="earlier plan only"):
        plan("tiny.yaml", settings, str(other), overwrite=True)
    assert other.read_text() == "mine\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["plans.yaml"]


def test_the_3d_plan_is_written_in_the_pipelines_order(tmp_path, anisotropic):
    out = tmp_path / "plans3d.yaml"
    result, _ = plan("tiny.yaml", _settings(tmp_path, anisotropic, "nnunet") + ["plan.dims=3"],
                     str(out))
    values = result.values
    # the 3D network above (48 x 40 x 12 in the stored order), slices first: the coarse axis
    # is pooled only at the last level, its kernel 1 on the first two
    assert values["model.dims"] == 3 and values["data.context"] == [0]
    assert values["data.image_size"] == [12, 48, 40] and values["model.depth"] == 3
    assert values["model.strides"] == [[1, 2, 2], [1, 2, 2], [2, 2, 2]]
    assert values["model.kernels"] == [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]
    # the scans are 3 to 6 mm apart, the target 3.3 mm: resampled across the slices too
    assert values["data.spacing"] == [3.3, 0.8, 0.8]
    assert "3D configuration (what the written config trains)" in "\n".join(result.lines())
    config = load_config(out)
    assert config.model.dims == 3 and config.model.strides == ((1, 2, 2), (1, 2, 2), (2, 2, 2))
    assert config.data.spacing == (3.3, 0.8, 0.8) and config.data.sampling == "patch"


def test_a_3d_plan_of_2d_images_is_one_line(tmp_path):
    root = write_folder(tmp_path / "folder")
    with pytest.raises(MedsegError, match="plan.dims: 3 needs volumes"):
        plan("tiny.yaml", _settings(tmp_path, root, "folder") + ["plan.dims=3"])


def test_data_plan_auto_trains_the_plan(tmp_path, anisotropic):
    import json

    from tf_medseg.data.dataset import DataSet
    from tf_medseg.errors import ConfigError
    from tf_medseg.planning.planner import planned_config
    from tf_medseg.training import train
    settings = _settings(tmp_path, anisotropic, "nnunet") + [
        "data.plan=auto", "train.epochs=1", "train.steps_per_epoch=2",
        f"train.run_dir={tmp_path / 'run'}", "train.overlay_slices=0",
        "export.saved_model=false"]
    config = load_config("tiny.yaml", settings)
    planned = planned_config(config)
    assert planned.data.image_size == (48, 40) and planned.model.depth == 3
    assert planned.data.sampling == "patch" and planned.data.batch_size == 2
    assert planned.data.plan == "auto"
    assert planned_config(planned, DataSet.open(planned.data)) == planned  # a fixed point
    train(config, verbose=0)
    written = load_config(tmp_path / "run" / "config.yaml")
    assert written == planned
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_trained"] == 1
    # a search of a key the plan sets is refused in one line
    with pytest.raises(ConfigError, match="tune.space: data.batch_size is planned"):
        planned_config(load_config("tiny.yaml", settings + [
            "tune.space={data.batch_size: [2, 4]}"]))
