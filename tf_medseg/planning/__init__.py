"""Experiment planning: the configuration derived from a data set's fingerprint."""
