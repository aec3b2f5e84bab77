"""The benchmark: a data set folder recognised from its files, and the pipeline measured."""

import argparse

import pytest

from synthetic_volumes import write_decathlon, write_folder, write_nnunet_2d


def test_benchmark_recognises_every_source(tmp_path, tiny_phantom):
    from tf_medseg.errors import MedsegError
    from tf_medseg.workflows.benchmark import detect_source
    assert detect_source(str(tiny_phantom)) == "uwmgi"
    assert detect_source(str(write_nnunet_2d(tmp_path / "n", cases=1))) == "nnunet"
    assert detect_source(str(write_decathlon(tmp_path / "d", cases=1))) == "decathlon"
    assert detect_source(str(write_folder(tmp_path / "f", images=1))) == "folder"
    with pytest.raises(MedsegError, match="not a recognised data set folder"):
        detect_source(str(tmp_path))


@pytest.mark.slow
def test_the_pipeline_measured_in_process(tiny_phantom):
    from tf_medseg.workflows.benchmark import run
    args = argparse.Namespace(data_root=str(tiny_phantom), source=None, image_size=[32, 32],
                              only="pipeline", config="tiny.yaml", set=[], seconds=0.3,
                              compare_runtimes=0)
    result = run(args)
    assert result["pipeline_slices_per_s"] > 0 and result["train_images_per_s"] is None
    assert result["source"] == "uwmgi" and result["slices"] == 96 and result["peak_rss_mb"] > 0
