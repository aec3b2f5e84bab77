"""The configuration planned from a data set's fingerprint (nnU-Net's experiment planning,
as config keys): the target spacing, the slices' axis and spacing, the patch the network
sees, its depth, the batch and the normalisation, each with the reason it was chosen.

The fingerprint is what the records' metadata holds (:mod:`tf_medseg.data.fingerprint`):
every scan's shape and spacing, the classes' voxels and the foreground intensities. The rules
are nnU-Net's (``ExperimentPlanner`` of nnU-Net v2), restated:

* target spacing: the median spacing per axis; where one axis is much coarser than the others
  (over 3x the spacing, under a third of the voxels) its 10th percentile instead, but never
  finer than the other axes;
* patch: an area of 2048^2 (2D) or a volume of 256^3 (3D) voxels shaped by the spacing,
  clipped to the median shape at the target spacing, pooled while feature maps stay at least
  4 voxels (:mod:`tf_medseg.planning.topology`), then shrunk along the axis that is largest
  relative to the median shape until a batch of two fits ``plan.memory_gb``;
* batch: as many patches as fit the memory, at least 2, at most 5% of the data set's voxels.

The 2D plan is an ordinary config (:meth:`Plan.to_yaml`); the 3D plan is reported beside it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Sequence

import numpy as np

from tf_medseg.config import Config
from tf_medseg.data import geometry
from tf_medseg.errors import ConfigError
from tf_medseg.planning.topology import MIN_EDGE, Topology, topology, training_bytes

ANISOTROPY = 3.0  # nnU-Net's threshold for a coarse axis
AREA_2D, VOLUME_3D = 2048 ** 2, 256 ** 3  # the initial patch, before clipping and shrinking
MAX_FILTERS = 512  # the deepest level's filters the 2D plan allows (nnU-Net's cap in 2D)
MAX_DEPTH = 8  # model.depth's bound
DATASET_SHARE = 0.05  # a batch covers at most this share of the data set's voxels
MIN_BATCH = 2
MEMORY_GB = {"gpu": 8.0, "cpu": 2.0}


@dataclasses.dataclass(frozen=True)
class Choice:
    """One planned config key, its value and why."""

    key: str
    value: Any
    reason: str


@dataclasses.dataclass(frozen=True)
class Network:
    """A planned network: its patch, batch, depth, per-level pooling and kernels, and the
    memory a training step is estimated to take."""

    patch: tuple[int, ...]
    batch: int
    strides: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]
    sample_gb: float  # estimated training memory per sample

    @property
    def depth(self) -> int:
        return len(self.strides)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The planned 2D config keys (:attr:`choices`), the 3D network (None for 2D data) and
    what the fingerprint says (:attr:`facts`, lines for a reader)."""

    choices: tuple[Choice, ...]
    network_2d: Network
    network_3d: Network | None
    facts: tuple[str, ...]
    dims: int = 2  # the network the written keys train (plan.dims)
    budget: tuple[str, ...] = ()  # with train.max_minutes: what it buys each network

    @property
    def values(self) -> dict[str, Any]:
        return {c.key: c.value for c in self.choices}

    def lines(self) -> list[str]:
        """The plan as a reader sees it: facts, then each key with its reason."""
        width = max(len(f"{c.key}: {_flow(c.value)}") for c in self.choices)
        out = [*self.facts, f"{self.dims}D configuration (what the written config trains):"]
        out += [f"  {c.key + ': ' + _flow(c.value):<{width + 2}}  {c.reason}"
                for c in self.choices]
        other, name = ((self.network_3d, "3D") if self.dims == 2 else
                       (self.network_2d, "2D"))
        if other is not None:
            order = "in the stored axis order" if name == "3D" else "rows x columns"
            out.append(f"{name} configuration (plan.dims {3 if self.dims == 2 else 2} writes "
                       f"it), {order}: patch {_times(other.patch)}, batch "
                       f"{other.batch}, {other.depth} poolings with strides "
                       f"{' '.join(_times(s) for s in other.strides)}, kernels "
                       f"{' '.join(_times(k) for k in other.kernels)}, about "
                       f"{other.sample_gb * other.batch:.2f} GB a step")
        return out + list(self.budget)

    def to_yaml(self, base: str, settings: dict[str, Any], header: Sequence[str] = ()) -> str:
        """The plan as a config: ``base:`` the planned config, then ``settings`` (the
        ``--set`` values it was planned under) and the planned keys (which win), each with
        its reason as a comment."""
        values = {**settings, **self.values}
        reasons = {c.key: c.reason for c in self.choices}
        out = [f"# {line}" for line in header]
        out.append(f"base: {json.dumps(base)}")
        sections: dict[str, list[str]] = {}
        for key, value in values.items():
            section, name = key.split(".", 1)
            note = f"  # {reasons[key]}" if key in reasons else "  # --set"
            sections.setdefault(section, []).append(f"  {name}: {_flow(value)}{note}")
        for section, lines in sections.items():
            out += [f"{section}:", *lines]
        return "\n".join(out) + "\n"


def _flow(value) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _times(values) -> str:
    return " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, str]:
    """(target spacing per axis, why) of scans with these (n, 3) spacings and shapes."""
    target = np.median(spacings, axis=0)
    median_shape = np.median(shapes, axis=0)
    coarse = int(np.argmax(target))
    others = [i for i in range(3) if i != coarse]
    finest_other = max(target[i] for i in others)
    if (target[coarse] > ANISOTROPY * finest_other
            and median_shape[coarse] * ANISOTROPY < min(median_shape[i] for i in others)):
        tenth = float(np.percentile(spacings[:, coarse], 10))
        target[coarse] = max(tenth, finest_other)
        return target, (f"median per axis; axis {coarse} is coarse (median "
                        f"{np.median(spacings[:, coarse]):g} mm, over {ANISOTROPY:g}x the "
                        f"others and under a third of their voxels), so its 10th percentile "
                        f"{tenth:g} mm (nnU-Net's rule for anisotropic data)")
    return target, "the median spacing per axis"


def _initial_patch(spacing: Sequence[float], median: Sequence[float], voxels: float):
    """A patch of ``voxels`` voxels shaped as 1/spacing, clipped to the median shape."""
    inverse = 1.0 / np.asarray(spacing, float)
    scale = (voxels / np.prod(inverse)) ** (1.0 / len(inverse))
    return [int(max(1, min(round(i * scale), m))) for i, m in zip(inverse, median)]


def plan_network(spacing: Sequence[float], median: Sequence[float], *, budget_gb: float,
                 base_filters: int, channels: int, classes: int, dataset_voxels: float,
                 uniform: bool, max_depth: int = MAX_DEPTH) -> Network:
    """The network for patches at ``spacing`` of data whose median shape there is ``median``
    (the module docstring's rules). ``uniform``: every level pools every axis (tf_medseg's
    2D U-Net), so depth is the fewest poolings of an axis.

    Raises:
        ConfigError: where not even the smallest patch fits ``budget_gb`` with a batch of 2.
    """
    dims = len(spacing)
    patch = _initial_patch(spacing, median, AREA_2D if dims == 2 else VOLUME_3D)

    def shaped(patch) -> Topology:
        topo = topology(spacing, patch, max_depth=max_depth)
        if not uniform:
            return topo
        depth = min(topo.pools)  # tf_medseg's 2D U-Net pools every axis at every level
        step = 2 ** depth
        return Topology(((2,) * dims,) * depth, ((3,) * dims,) * (depth + 1),
                        tuple(-(-int(n) // step) * step for n in patch))

    def sample_bytes(topo: Topology):
        return training_bytes(topo.patch, topo.strides, base_filters=base_filters,
                              channels=channels, classes=classes)

    budget = budget_gb * 1e9
    topo = shaped(patch)
    while MIN_BATCH * sample_bytes(topo) > budget:
        shrinkable = [i for i in range(dims) if topo.patch[i] - topo.divisor[i] >= MIN_EDGE]
        if not shrinkable:
            raise ConfigError(
                f"plan.memory_gb: {budget_gb:g} GB does not hold a batch of {MIN_BATCH} of "
                f"the smallest patch ({_times(topo.patch)}, "
                f"{MIN_BATCH * sample_bytes(topo) / 1e9:.3g} GB); raise it or "
                f"lower model.base_filters")
        axis = max(shrinkable, key=lambda i: topo.patch[i] / median[i])
        patch = list(topo.patch)
        patch[axis] -= topo.divisor[axis]
        topo = shaped(patch)
    per_sample = sample_bytes(topo)
    by_memory = int(budget // per_sample)
    by_share = max(int(round(dataset_voxels * DATASET_SHARE / math.prod(topo.patch))), 1)
    batch = max(min(by_memory, by_share), MIN_BATCH)
    return Network(topo.patch, batch, topo.strides, topo.kernels, per_sample / 1e9)


def make_plan(dataset, config: Config) -> Plan:
    """The plan of ``dataset`` (a :class:`tf_medseg.data.dataset.DataSet`) for ``config``:
    its 2D config keys with their reasons, and its 3D network."""
    scans = dataset.scans
    spacings = np.array([s.spacing for s in scans], float)
    shapes = np.array([s.shape for s in scans], float)
    labels = dataset.labels
    base = config.model.base_filters
    device = config.plan.device
    budget = config.plan.memory_gb or MEMORY_GB[device]
    budget_why = (f"{budget:g} GB" + ("" if config.plan.memory_gb else f" ({device} default)"))
    flat = all(s.shape[2] == 1 for s in scans)
    target, why = ((spacings[0], "2D images: no target spacing across slices") if flat
                   and len({tuple(s) for s in spacings}) == 1 else target_spacing(spacings,
                                                                                  shapes))
    resampled = [np.maximum(np.round(np.array(s.shape) * np.array(s.spacing) / target), 1)
                 for s in scans]
    dataset_voxels = float(sum(np.prod(r) for r in resampled))
    facts = [f"{len(scans)} scan(s) of {len(dataset.cases)} patient(s), "
             f"{labels.num_channels} channel(s) ({', '.join(labels.channels)}), "
             f"{labels.num_classes} class(es) ({', '.join(labels.classes)})",
             f"median shape {_times(np.median(shapes, 0).tolist())} voxels, median spacing "
             f"{_times(np.round(np.median(spacings, 0), 4).tolist())} mm",
             f"target spacing {_times(np.round(target, 4).tolist())} mm: {why}"]
    choices = []

    # Slices: across the target's coarsest axis (the last on a tie), as nnU-Net's 2D.
    axis = geometry.slice_axis(np.median(shapes, 0), target, config.data.slice_axis)
    per_scan = {dataset.axis(s) for s in scans}
    if config.data.slice_axis == "auto" and per_scan == {axis}:
        choices.append(Choice("data.slice_axis", "auto", f"every scan is cut across axis "
                                                         f"{axis}, its coarsest"))
    else:
        choices.append(Choice("data.slice_axis", axis, f"the target spacing's coarsest axis "
                                                       f"({target[axis]:g} mm)"))
    rows, cols = geometry.PERMS[axis][1:]
    in_plane = (round(float(target[rows]), 4), round(float(target[cols]), 4))
    planar = [geometry.planar_sizes(s.shape, s.spacing, axis, in_plane) for s in scans]
    stored_mm = np.array([p[1] for p in planar], float)
    if np.allclose(stored_mm, in_plane, rtol=1e-3):
        choices.append(Choice("data.spacing", None, f"every scan's slices are "
                                                    f"{_times(in_plane)} mm already"))
    else:
        choices.append(Choice("data.spacing", list(in_plane),
                              f"the target's in-plane spacing (scans have "
                              f"{stored_mm.min():g} to {stored_mm.max():g} mm)"))
    median_2d = np.median(np.array([p[2] for p in planar], float), axis=0)
    facts.append(f"median slice at that spacing: {_times(median_2d.tolist())} pixels")

    channels = labels.num_channels * len(config.data.context)
    classes = labels.outputs(labels.head(config.model.output))
    depth_cap = max(1, min(MAX_DEPTH, math.floor(math.log2(MAX_FILTERS / base))))
    net2 = plan_network(in_plane, median_2d, budget_gb=budget, base_filters=base,
                        channels=channels, classes=classes, dataset_voxels=dataset_voxels,
                        uniform=True, max_depth=depth_cap)
    choices.append(Choice(
        "data.sampling", "patch",
        f"random patches of data.image_size from the slices at the target spacing, "
        f"{config.data.foreground_share:.0%} centred on a labelled pixel; whole slices "
        f"predicted in overlapping windows (predict.overlap {config.predict.overlap:g})"))
    choices.append(Choice(
        "data.image_size", list(net2.patch),
        f"the patch: the median slice within a {AREA_2D ** 0.5:.0f}^2 area, a multiple of "
        f"2^{net2.depth}, shrunk until a batch of {MIN_BATCH} fits {budget_why}"))
    choices.append(Choice("data.batch_size", net2.batch, _batch_why(net2, budget)))
    choices.append(Choice(
        "model.depth", net2.depth,
        f"poolings until the coarsest map is {_times([n // 2 ** net2.depth for n in net2.patch])}"
        f" (at least {MIN_EDGE} a side), at most {depth_cap} so that filters stay <= "
        f"{MAX_FILTERS} (model.base_filters {base})"))
    norms = [("ct" if name.upper() == "CT" else "percentile") for name in labels.channels]
    choices.append(Choice("data.normalization", norms if len(norms) > 1 else norms[0],
                          "CT: the data set's foreground percentiles and z-score; other "
                          "channels: each volume's 99.5th percentile"))
    net3 = None
    if not flat:
        median_3d = np.median(np.array(resampled), axis=0)
        net3 = plan_network(target.tolist(), median_3d, budget_gb=budget, base_filters=base,
                            channels=labels.num_channels, classes=classes,
                            dataset_voxels=dataset_voxels, uniform=False,
                            max_depth=depth_cap)
    if config.plan.dims == 3:
        if net3 is None:
            raise ConfigError("plan.dims: 3 needs volumes, and this data set's images are "
                              "2D; plan 2 (the default)")
        choices = _choices_3d(choices, net3, axis, target, scans, (budget, budget_why),
                              depth_cap, base)
    return Plan(tuple(choices), net2, net3, tuple(facts), dims=config.plan.dims)


def _choices_3d(choices_2d: list, net: Network, axis: int, target, scans, budget: tuple,
                depth_cap: int, base: int) -> list:
    """The written keys of the 3D plan: the 2D plan's slicing and normalisation, the 3D
    network's patch, batch, pooling and kernels in the order the pipeline cuts volumes
    (slices first)."""
    perm = geometry.PERMS[axis]
    kept = {c.key: c for c in choices_2d}
    spacing = [round(float(target[a]), 4) for a in perm]
    stored = np.array([[s.spacing[a] for a in perm] for s in scans], float)
    if np.allclose(stored, spacing, rtol=1e-3):
        spacing_choice = Choice("data.spacing", None,
                                f"every scan is {_times(spacing)} mm already")
    else:
        spacing_choice = Choice("data.spacing", spacing,
                                "the target spacing [between slices, rows, columns]")
    return [
        kept["data.slice_axis"], spacing_choice,
        Choice("data.sampling", "patch", "random 3D patches of data.image_size at the target "
                                         "spacing, whole volumes predicted in 3D windows"),
        Choice("data.image_size", [net.patch[a] for a in perm],
               f"the 3D patch [slices, rows, columns]: the median volume within "
               f"{VOLUME_3D ** (1 / 3):.0f}^3 voxels, a multiple of its pooling, shrunk "
               f"until a batch of {MIN_BATCH} fits {budget[1]}"),
        Choice("data.batch_size", net.batch, _batch_why(net, budget[0])),
        Choice("data.context", [0], "a 3D network sees the neighbouring slices itself"),
        Choice("data.class_fraction", None, "3D patches are centred on a class drawn first "
                                            "(data.foreground_share), not slices"),
        Choice("model.dims", 3, "a 3D U-Net (plan.dims 3)"),
        Choice("model.depth", net.depth,
               f"poolings until each axis is at least {MIN_EDGE} voxels or too coarse to "
               f"pool, at most {depth_cap} so that filters stay <= {MAX_FILTERS} "
               f"(model.base_filters {base})"),
        Choice("model.strides", [[level[a] for a in perm] for level in net.strides],
               "per pooling, 2 along the axes whose spacing is within 2x the finest, 1 "
               "along the others (nnU-Net's anisotropic pooling)"),
        Choice("model.kernels", [[level[a] for a in perm] for level in net.kernels],
               "3, or 1 along an axis over 2x coarser than the finest (nnU-Net's)"),
        kept["data.normalization"]]


def _batch_why(net: Network, budget: float) -> str:
    by_memory = int(budget // net.sample_gb)
    if net.batch == by_memory:
        return (f"patches that fit {budget:g} GB at about {net.sample_gb * 1e3:.0f} MB "
                f"each (mixed precision)")
    if net.batch == MIN_BATCH and by_memory < MIN_BATCH:
        return f"the smallest batch ({MIN_BATCH})"
    return (f"capped at {DATASET_SHARE:.0%} of the data set's voxels (memory would allow "
            f"{by_memory})")


def planned_config(config: Config, dataset=None, verbose: bool = True) -> Config:
    """``config`` itself, or with ``data.plan: auto`` the config with the planned keys of its
    data set (:func:`make_plan`, the records built first if they are not there) in place of
    its own; with ``data.image_size: auto`` alone, the size
    (:func:`tf_medseg.planning.resize.slice_size`). Planning a planned config changes
    nothing, so a resumed run, a fold or a trial plans the same.

    Raises:
        ConfigError: a ``tune.space`` key that the plan sets (the plan would override the
            trial's value).
    """
    from tf_medseg.config import from_dict
    from tf_medseg.data.dataset import DataSet
    if config.data.plan != "auto":
        if config.data.image_size != "auto":
            return config
        from tf_medseg.planning.resize import slice_size
        size, why = slice_size(dataset or DataSet.open(config.data), config)
        if verbose:
            print(f"data.image_size auto: {_times(size)} ({why})", flush=True)
        values = config.to_dict()
        values["data"]["image_size"] = list(size)
        return from_dict(values)
    result = make_plan(dataset or DataSet.open(config.data), config)
    searched = sorted(set(config.tune.space) & set(result.values))
    if searched:
        raise ConfigError(f"tune.space: {searched[0]} is planned by data.plan auto; search "
                          f"other keys, or write the plan (python -m tf_medseg plan --out) and "
                          f"search from it with data.plan none")
    values = config.to_dict()
    changed = []
    for key, value in result.values.items():
        section, name = key.split(".", 1)
        if values[section][name] != value:
            changed.append(f"{key} {_flow(value)}")
        values[section][name] = value
    if verbose and changed:
        print(f"data.plan auto: {', '.join(changed)} (python -m tf_medseg plan says why)",
              flush=True)
    return from_dict(values)
