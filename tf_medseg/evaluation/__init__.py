"""Evaluation: the metrics (the competition score; Dice and HD95 in mm) and the scoring of
predicted volumes against their truth."""
