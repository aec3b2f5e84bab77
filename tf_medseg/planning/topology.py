"""A U-Net's shape for a patch at a spacing, and what it costs in memory: nnU-Net's rule for
pooling (an axis is pooled while its feature map stays at least :data:`MIN_EDGE` voxels and
its spacing is within 2x of the finest; kernels are 3 on axes within 2x of the finest, else 1)
and an activation count of tf_medseg's U-Net (:func:`activation_elements`), which the planner
turns into bytes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

MIN_EDGE = 4  # voxels a side of the coarsest feature map (nnU-Net's)
BACKWARD_FACTOR = 2.0  # training holds the forward activations and as much again in gradients


@dataclasses.dataclass(frozen=True)
class Topology:
    """Per-level pooling of a U-Net for a patch: ``strides[l]`` pools level l to l + 1 (2 on
    an axis that is halved, 1 where it is kept), ``kernels[l]`` the conv kernel of level l
    (the last is the bottleneck's), ``patch`` the patch rounded up to a multiple of
    ``divisor`` (2 ** poolings per axis)."""

    strides: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]
    patch: tuple[int, ...]

    @property
    def pools(self) -> tuple[int, ...]:
        return tuple(sum(s[i] == 2 for s in self.strides) for i in range(len(self.patch)))

    @property
    def divisor(self) -> tuple[int, ...]:
        return tuple(2 ** p for p in self.pools)

    @property
    def depth(self) -> int:
        return len(self.strides)


def topology(spacing: Sequence[float], patch: Sequence[int], min_edge: int = MIN_EDGE,
             max_depth: int | None = None) -> Topology:
    """The pooling and kernels of a U-Net for ``patch`` voxels at ``spacing`` mm, and the
    patch rounded up to what that pooling divides (nnU-Net's rule, module docstring)."""
    spacing, size = [float(s) for s in spacing], [int(n) for n in patch]
    dims = len(size)
    kernel = [1] * dims
    strides, kernels = [], []
    while max_depth is None or len(strides) < max_depth:
        room = [i for i in range(dims) if size[i] >= 2 * min_edge]
        if not room:
            break
        finest = min(spacing[i] for i in room)
        pooled = [i for i in room if spacing[i] / finest < 2]
        if len(pooled) == 1 and size[pooled[0]] < 3 * min_edge:
            break  # one axis left: pool it only while it stays well above the minimum
        finest_all = min(spacing)
        kernel = [3 if k == 3 or spacing[i] / finest_all < 2 else 1 for i, k in enumerate(kernel)]
        kernels.append(tuple(kernel))
        strides.append(tuple(2 if i in pooled else 1 for i in range(dims)))
        for i in pooled:
            spacing[i] *= 2
            size[i] = math.ceil(size[i] / 2)
    kernels.append((3,) * dims)
    pooled = Topology(tuple(strides), tuple(kernels), tuple(int(n) for n in patch))
    return dataclasses.replace(pooled, patch=tuple(
        -(-n // d) * d for n, d in zip(pooled.patch, pooled.divisor)))


def activation_elements(patch: Sequence[int], strides: Sequence[Sequence[int]], *,
                        base_filters: int, channels: int, classes: int) -> int:
    """Elements of every layer output of tf_medseg's U-Net (batch norm, transposed-conv
    up-sampling) for one sample of ``patch`` pooled by ``strides``: per level two (conv,
    batch norm, ReLU) in the encoder, the pooling, and in the decoder the up-convolution,
    the concatenation and two (conv, batch norm, ReLU) again; the input and the logits."""
    grid = [int(n) for n in patch]
    total = math.prod(grid) * (channels + classes)
    depth = len(strides)
    for level in range(depth + 1):
        voxels, filters = math.prod(grid), base_filters * 2 ** level
        total += 6 * voxels * filters  # encoder (or bottleneck) block
        if level < depth:
            total += 9 * voxels * filters  # decoder: up-conv, concat (2x), block
            grid = [math.ceil(n / s) for n, s in zip(grid, strides[level])]
            total += math.prod(grid) * filters  # the pooled map
    return total


def training_bytes(patch: Sequence[int], strides, *, base_filters: int, channels: int,
                   classes: int, bytes_per_element: int = 2) -> float:
    """Estimated memory a training step takes per sample: the activations (mixed precision:
    2 bytes an element) kept for the backward pass, times :data:`BACKWARD_FACTOR`."""
    elements = activation_elements(patch, strides, base_filters=base_filters,
                                   channels=channels, classes=classes)
    return elements * bytes_per_element * BACKWARD_FACTOR
