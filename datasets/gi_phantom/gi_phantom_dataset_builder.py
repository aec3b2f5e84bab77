"""TFDS builder for the built-in phantom: generated into the download dir, then read back.

The phantom is written in the Kaggle layout by ``tf_medseg.data.phantom`` and read with the same
reader as the real data (``tf_medseg.data.sources.kaggle``), so both go through one code path.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from tf_medseg.data import phantom

from .. import kaggle_layout


class PhantomConfig(tfds.core.BuilderConfig):
    """Phantom size and seed; the config name encodes them."""

    def __init__(self, *, cases: int, days: int, slices: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.cases, self.days, self.slices, self.seed = cases, days, slices, seed


def phantom_config(cases: int = 8, days: int = 2, slices: int = 80, seed: int = 0
                   ) -> PhantomConfig:
    # The generator version is in the name: records of an older generator are never reused.
    name = f"c{cases}_d{days}_s{slices}_seed{seed}_g{phantom.GENERATOR_VERSION}"
    return PhantomConfig(name=name,
                         description=f"{cases} cases x {days} days x {slices} slices, seed {seed}",
                         cases=cases, days=days, slices=slices, seed=seed)


class GiPhantom(tfds.core.GeneratorBasedBuilder):
    """Synthetic abdominal MRI in the Kaggle layout; one example per scan."""

    VERSION = tfds.core.Version("3.0.0")
    RELEASE_NOTES = {"1.0.0": "First phantom.",
                     "2.0.0": "Records as in uw_madison_gi 2.0.0 (raw volume, bit-packed masks).",
                     "3.0.0": "Records as in uw_madison_gi 3.0.0 (the one record format)."}
    BUILDER_CONFIGS = [phantom_config()]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=kaggle_layout.features(),
            description=phantom.__doc__,
            metadata=tfds.core.MetadataDict(),
            # Shuffled (hashed) record order on purpose: kaggle_layout.py says why.
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        root = Path(dl_manager.download_dir) / f"gi_phantom_{config.name}"
        if not (root / "train.csv").is_file():  # written atomically: present means complete
            with tqdm(total=config.cases * config.days, desc="Generating phantom scans",
                      unit="scan") as bar:
                phantom.write_phantom(root, cases=config.cases, days=config.days,
                                      slices=config.slices, seed=config.seed,
                                      progress=lambda done, total: bar.update(1))
        inv = kaggle_layout.inventory(self.info, root)
        return {"train": self._generate_examples(inv)}

    def _generate_examples(self, inv):
        yield from kaggle_layout.examples(inv, self.info.metadata)
