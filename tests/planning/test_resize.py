"""``data.image_size: auto``: the resize recipe's square side from real records of tiny
nnU-Net data sets (sizes worked out by hand in the comments)."""

import pytest

from tf_medseg.config import load_config
from tf_medseg.data.dataset import DataSet
from tf_medseg.errors import ConfigError
from tf_medseg.planning.planner import planned_config
from tf_medseg.planning.resize import slice_size

from synthetic_volumes import write_nnunet


def _config(tmp_path, root, *extra):
    return load_config("tiny.yaml", [
        "data.source=nnunet", f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
        "data.num_folds=2", "data.image_size=auto", *extra])


@pytest.fixture
def volumes(tmp_path):
    # 1.5 x 1.5 x 4 mm: cut across the 4 mm axis into 40 x 28 slices
    return write_nnunet(tmp_path / "Dataset003_Sizes", cases=2, channels=("T2",),
                        shape=(40, 28, 6))


def test_the_median_slice_rounded_up_to_the_pooling(tmp_path, volumes, capsys):
    config = _config(tmp_path, volumes)  # tiny.yaml: depth 2, a multiple of 4
    planned = planned_config(config)
    assert planned.data.image_size == (40, 40) and planned.data.plan == "none"
    assert capsys.readouterr().out.strip().endswith(
        "data.image_size auto: 40 x 40 (the median slice's longer side, 40 pixels, rounded up "
        "to a multiple of 4)")
    assert planned_config(planned) == planned  # a fixed point: a resumed run sizes the same
    dataset = DataSet.open(config.data)
    # depth 4: 40 rounds up to 48; strides that pool the rows 8 times and the columns 2: 8
    assert slice_size(dataset, _config(tmp_path, volumes, "model.depth=4"))[0] == (48, 48)
    assert slice_size(dataset, _config(tmp_path, volumes, "model.depth=3",
                                       "model.strides=[[2, 2], [2, 1], [2, 1]]"))[0] == (40, 40)
    # at data.spacing 3 mm the 40 pixels of 1.5 mm are 20
    size, why = slice_size(dataset, _config(tmp_path, volumes, "data.spacing=[3.0, 3.0]"))
    assert size == (20, 20) and "20 pixels at data.spacing" in why


def test_large_slices_are_capped_at_128(tmp_path):
    root = write_nnunet(tmp_path / "Dataset004_Large", cases=2, channels=("T2",),
                        shape=(150, 20, 3))
    size, why = slice_size(DataSet.open(_config(tmp_path, root).data), _config(tmp_path, root))
    assert size == (128, 128) and why.endswith("150 pixels, rounded up to a multiple of 4 "
                                               "and capped at 128")


@pytest.mark.parametrize("setting, fix", [("data.sampling=patch", "give the patch size"),
                                          ("model.dims=3", "give the 3D patch size")])
def test_auto_is_for_the_resize_recipe(setting, fix):
    with pytest.raises(ConfigError, match=rf"^data.image_size: auto sizes the slices of "
                                          rf"data.sampling resize for a 2D network; {fix}, or "
                                          rf"let data.plan: auto plan it$"):
        load_config("tiny.yaml", ["data.image_size=auto", setting])
