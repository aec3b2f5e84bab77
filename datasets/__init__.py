"""TFDS dataset builders: ``uw_madison_gi`` (the Kaggle download) and ``gi_phantom``."""
