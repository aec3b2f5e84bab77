"""Workflows built from the stages below: cross-validation, KerasTuner search, the choice of
post-processing, evaluating exports on a data set and the benchmark."""
