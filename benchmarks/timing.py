"""Two models timed in rounds alternating A B A B in one process, so that the machine's load
drifts alike for both: the way the peer benchmarks compare speed."""

from __future__ import annotations

import json
import statistics
import time


def compare(models: dict, x, y, *, infer: bool, rounds: int, steps: int, unit: str,
            digits: int = 2) -> dict:
    """Time ``train_on_batch(x, y)`` (or ``predict_on_batch(x)``) of each of two ``models``
    ({name: compiled Keras model}, ours first): two untimed warm-up calls each (tracing), then
    ``rounds`` rounds of ``steps`` calls per model, one JSON line a round. Returns the summary:
    parameters, median samples/s per model (``{name}_{unit}``) and the median of the per-round
    ratios (first / second)."""
    def step(model):  # one compiled step, without fit()'s per-call overhead
        model.predict_on_batch(x) if infer else model.train_on_batch(x, y)
    for model in models.values():
        step(model)
        step(model)
    batch = int(x.shape[0])
    rates: dict[str, list[float]] = {name: [] for name in models}
    for r in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                step(model)
            rates[name].append(steps * batch / (time.perf_counter() - start))
        print(json.dumps({"round": r, **{k: round(v[-1], digits) for k, v in rates.items()}}),
              flush=True)
    first, second = list(models)
    ratios = [a / b for a, b in zip(rates[first], rates[second])]
    return {"mode": "infer" if infer else "train", "batch": batch,
            **{f"{name}_params": model.count_params() for name, model in models.items()},
            **{f"{name}_{unit}": round(statistics.median(v), digits)
               for name, v in rates.items()},
            "ratio_median": round(statistics.median(ratios), 3)}
