"""What a time budget buys each planned network: ``plan`` with ``train.max_minutes`` times a few
training steps of the planned 2D and 3D configurations on this machine (the configured
precision and XLA choice, a real batch of the data) and says how many steps and epochs of the
data each would train in the budget (what :class:`tf_medseg.training.callbacks.TimeBudget`
then fixes at training time, from the first epoch's own measurement)."""

from __future__ import annotations

import dataclasses

from tf_medseg.config import Config, from_dict

SECONDS = 3.0  # timing per network, after one traced step


@dataclasses.dataclass(frozen=True)
class Fit:
    """One network's measured step and what fits the budget."""

    dims: int
    patch: tuple[int, ...]
    batch: int
    seconds_per_step: float
    steps: int
    epochs: float  # of the data, as an epoch of that network's training set counts it


def _with_dims(config: Config, dims: int) -> Config:
    values = config.to_dict()
    values["plan"]["dims"] = dims
    values["data"]["plan"] = "auto"
    return from_dict(values)


def measure(config: Config, dataset, dims: int, minutes: float) -> Fit:
    """Time ``config`` planned as a ``dims``-D network and fit its steps into ``minutes``."""
    import tensorflow as tf

    from tf_medseg.planning.planner import planned_config
    from tf_medseg.training.experiment import Experiment
    from tf_medseg.training.runtime import runtime_for
    from tf_medseg.workflows.benchmark import _time_training
    planned = planned_config(_with_dims(config, dims), dataset, verbose=False)
    experiment = Experiment(planned, dataset)
    strategy = tf.distribute.get_strategy()
    train_ds = experiment.make_dataset("train")
    steps_per_epoch = experiment.steps_per_epoch(train_ds)
    batch = next(iter(train_ds))
    policy, jit = runtime_for(planned)
    trainer = experiment.trainer(experiment.model(policy, jit, steps_per_epoch), strategy)
    trainer.train_step(batch)  # traced once, outside the timing
    per_sample = 1.0 / _time_training(trainer, batch, SECONDS)
    seconds = per_sample * int(batch[0].shape[0])
    steps = int(minutes * 60 // seconds)
    return Fit(dims, tuple(planned.data.image_size), planned.data.batch_size, seconds, steps,
               steps / max(steps_per_epoch, 1))


def report(config: Config, dataset, has_3d: bool) -> list[str]:
    """Lines on what ``train.max_minutes`` buys the planned 2D and (volume data) 3D networks."""
    minutes = config.train.max_minutes
    fits = [measure(config, dataset, d, minutes) for d in ((2, 3) if has_3d else (2,))]
    lines = [f"with train.max_minutes {minutes:g}, measured on this machine (training steps "
             f"only; validation and scoring come on top):"]
    for f in fits:
        lines.append(f"  {f.dims}D: patch {' x '.join(map(str, f.patch))}, batch {f.batch}: "
                     f"{f.seconds_per_step:.3g} s a step, about {f.steps} steps "
                     f"({f.epochs:.1f} epochs of its training set)")
    if len(fits) == 2:
        import math
        more = max(fits, key=lambda f: f.steps * f.batch * math.prod(f.patch))
        lines.append(f"  the {more.dims}D network sees more voxels in the budget; the "
                     f"written config trains plan.dims {config.plan.dims} (the measured "
                     f"tables in docs/measurements.md say which pays at which budget)")
    return lines
