"""Inference: one predictor (one or several models, test-time augmentation, activation and
averaging), post-processing, the readers of new inputs and the writers of each output format."""
