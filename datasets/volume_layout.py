"""What the nnunet, decathlon and folder builders share: a checked data set folder read into
one example per case (``tf_medseg.data.volumes``), in worker processes.

Each builder config is keyed to its source: the config name is a digest of the folder, its
declared classes and channels, every file's name, size and modification time, and the reading
options (``data.slice_axis``, ``data.spacing``, ``data.group_pattern``), so records of other
files or other options are never reused. The folder is indexed and checked before anything is
written; a case that fails its checks while being read stops the build, and TFDS removes its
unfinished folder.

The metadata holds what the pipeline needs without reading records: the task (classes, mask
encoding, channels), the patients ('groups'; a record's ``case`` indexes them), slices and
slices with a class per case, and per channel the intensity statistics of the foreground
(mean, sd, 0.5 and 99.5 percentiles of up to 10,000 sampled voxels per case), which
``data.normalization: ct`` uses.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.data import examples, features, volumes

from . import reading


class VolumeConfig(tfds.core.BuilderConfig):
    """A builder config tied to one data set folder and the options that read it."""

    def __init__(self, *, root: str, group_pattern: str | None, slice_axis, spacing,
                 **kwargs):
        super().__init__(**kwargs)
        self.root, self.group_pattern = root, group_pattern
        self.slice_axis, self.spacing = slice_axis, tuple(spacing) if spacing else None


def volume_config(fmt: str, root: str, group_pattern: str | None = None,
                  slice_axis="auto", spacing: Sequence[float] | None = None) -> VolumeConfig:
    """The config of a folder (indexed and checked here: bad input fails before a build)."""
    index = volumes.index_source(fmt, root, group_pattern)
    options = {"group_pattern": group_pattern, "slice_axis": slice_axis,
               "spacing": list(spacing) if spacing else None}
    digest = volumes.fingerprint(index, options)
    return VolumeConfig(name=f"src_{digest}", description=f"{fmt} folder {index.root}",
                        root=str(index.root.resolve()), group_pattern=group_pattern,
                        slice_axis=slice_axis, spacing=spacing)


class VolumeBuilder(tfds.core.GeneratorBasedBuilder):
    """One example per case; subclasses set ``FORMAT``."""

    FORMAT = ""
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One record per case: (D, H, W, C) float32 image, uint16 mask."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=features.VOLUME_FEATURES,
                                              metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager):
        config = self.builder_config
        index = volumes.index_source(self.FORMAT, config.root, config.group_pattern)
        volumes.check_headers(index)  # before any case is read
        return {"train": self._generate_examples(index)}

    def _generate_examples(self, index: volumes.SourceIndex):
        config, meta = self.builder_config, self.info.metadata
        groups = index.groups
        jobs = [(index, c, groups.index(c.group), config.slice_axis, config.spacing)
                for c in index.cases]
        slices, organ, samples = {}, {}, []
        for (key, example), organ_slices, sample in reading.in_order(
                examples.case_example, jobs, [1] * len(jobs),
                desc=f"Reading {len(jobs)} cases", unit="case"):
            slices[key] = int(example["image"].shape[0])
            organ[key] = organ_slices
            samples.append(sample)
            yield key, example
        print(f"Writing TFRecord shards of {len(jobs)} cases ...", flush=True)
        if not any(organ.values()):
            print(f"warning: every label map of {index.root} is empty: there is nothing to "
                  f"learn", flush=True)
        meta["source"] = str(index.root)
        meta["format"] = index.format
        meta["task"] = index.task.to_dict()
        meta["groups"] = groups
        meta["cases"] = list(range(len(groups)))
        meta["scan_case"] = {c.case: groups.index(c.group) for c in index.cases}
        meta["slices_per_scan"] = slices
        meta["organ_slices_per_scan"] = organ
        meta["intensity_stats"] = intensity_stats(samples, index.task.num_channels)


def intensity_stats(samples: list[np.ndarray], channels: int) -> list[dict]:
    """Per channel: mean, sd and the 0.5 / 99.5 percentiles of the pooled foreground samples
    (None where the data set has no foreground)."""
    pooled = np.concatenate([s.reshape(-1, channels) for s in samples]) if samples else \
        np.zeros((0, channels), np.float32)
    out = []
    for c in range(channels):
        v = pooled[:, c].astype(np.float64)
        if not v.size:
            out.append(None)
            continue
        out.append({"mean": float(v.mean()), "sd": float(v.std()),
                    "p0_5": float(np.percentile(v, 0.5)),
                    "p99_5": float(np.percentile(v, 99.5)), "voxels": int(v.size)})
    return out
