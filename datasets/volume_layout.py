"""What the nnunet, decathlon and folder builders share: a checked data set folder read into
one example per case (``tf_medseg.data.sources.volumes``), in worker processes.

Each builder config is keyed to its source: the config name is a digest of the folder, its
declared classes and channels, every file's name, size and modification time, and
``data.group_pattern`` (which cases share a patient), so records of other files are never
reused. Records hold each case at its stored resolution in the file's voxel order (the
pipeline cuts slices across ``data.slice_axis`` and resamples to ``data.spacing``, so those
options need no rebuild). The folder is indexed and checked before anything is written; a case
that fails its checks while being read stops the build, and TFDS removes its unfinished folder.

The metadata holds what the pipeline needs without reading records: the label schema, the
patients ('groups'; a record's ``case`` indexes them) and the data set's fingerprint
(:mod:`tf_medseg.data.fingerprint`: every case's shape, spacing and slices with a class, and per
channel the intensity statistics of the foreground, which ``data.normalization: ct`` uses).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.data import examples
from tf_medseg.data.features import record_features
from tf_medseg.data.sources import volumes

from . import reading


class VolumeConfig(tfds.core.BuilderConfig):
    """A builder config tied to one data set folder and the options that read it."""

    def __init__(self, *, root: str, group_pattern: str | None, mask_dtype: str,
                 roi_map=None, modality=None, **kwargs):
        super().__init__(**kwargs)
        self.root, self.group_pattern, self.mask_dtype = root, group_pattern, mask_dtype
        self.roi_map, self.modality = roi_map, modality


def volume_config(fmt: str, root: str, group_pattern: str | None = None,
                  roi_map=None, modality=None) -> VolumeConfig:
    """The config of a folder (indexed and checked here: bad input fails before a build)."""
    index = volumes.index_source(fmt, root, group_pattern, roi_map, modality)
    options = {"group_pattern": group_pattern}
    if index.roi_map:
        options["roi_map"] = [list(names) for _, names in index.roi_map]
        options["classes"] = [c for c, _ in index.roi_map]
    if modality:
        options["modality"] = modality
    digest = volumes.fingerprint(index, options)
    return VolumeConfig(name=f"src_{digest}", description=f"{fmt} folder {index.root}",
                        root=str(index.root.resolve()), group_pattern=group_pattern,
                        mask_dtype=np.dtype(mask_dtype(index)).name, roi_map=roi_map,
                        modality=modality)


def mask_dtype(index: volumes.SourceIndex):
    """uint8 masks where every label value (or every class bit) fits, else uint16."""
    labels = index.labels
    largest = labels.num_classes if labels.encoding == "bits" else max(index.declared)
    fits = largest <= 8 if labels.encoding == "bits" else largest <= 255
    return np.uint8 if fits else np.uint16


class VolumeBuilder(tfds.core.GeneratorBasedBuilder):
    """One example per case; subclasses set ``FORMAT``."""

    FORMAT = ""
    VERSION = tfds.core.Version("2.1.0")
    RELEASE_NOTES = {
        "1.0.0": "One record per case: (D, H, W, C) float32 image, uint16 mask.",
        "2.0.0": "The one record format of every source: the case at its stored resolution "
                 "in the file's voxel order, (X, Y, Z, C) float32, its spacing; uint8 masks "
                 "where they fit; the label schema and fingerprint in the metadata.",
        "2.1.0": "Each scan's orientation (nibabel axis codes of its affine) in the "
                 "fingerprint: what DICOM input is turned to face.",
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=record_features(np.float32, np.dtype(self.builder_config.mask_dtype)),
            metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager):
        config = self.builder_config
        index = volumes.index_source(self.FORMAT, config.root, config.group_pattern,
                                     config.roi_map, getattr(config, "modality", None))
        volumes.check_headers(index)  # before any case is read
        return {"train": self._generate_examples(index)}

    def _generate_examples(self, index: volumes.SourceIndex):
        meta = self.info.metadata
        groups = index.groups
        jobs = [(index, c, groups.index(c.group), self.builder_config.mask_dtype)
                for c in index.cases]
        written = []
        for key, example in reading.records(examples.case_example, jobs, [1] * len(jobs), meta,
                                            index.labels, desc=f"Reading {len(jobs)} cases",
                                            unit="case"):
            written.append(bool(example["mask"].any()))
            yield key, example
        if not any(written):
            print(f"warning: every label map of {index.root} is empty: there is nothing to "
                  f"learn", flush=True)
        meta["source"] = str(index.root)
        meta["format"] = index.format
        meta["groups"] = groups
        meta["cases"] = list(range(len(groups)))
