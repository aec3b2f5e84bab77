"""Peer comparisons, run from the project folder (``python -m benchmarks.peer_cv ...``,
``python -m benchmarks.peer_backbone ...``); they need packages tf_medseg does not depend on,
and tf_medseg never imports them."""
