"""Planar contours and masks: closed polygons along the pixel edges of a 2D mask, and masks
rasterised from polygons (even-odd rule at pixel centres), the two ways between label maps and
RT Structure Sets.

Coordinates are (row, column) in pixels, pixel (i, j) centred at (i, j). :func:`mask_polygons`
traces every edge between a pixel of the mask and one outside it, so its polygons (outer
boundaries and holes alike, islands each their own) filled by the even-odd rule at the pixel
centres give the mask back exactly; :func:`rasterize` is that fill, for any polygons (a
planning system's contours run between pixel centres and fill to nearly the same mask).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

# Around a pixel (corner grid: pixel (i, j) spans corners (i, j) to (i + 1, j + 1)), clockwise
# on screen (rows down): the side, the neighbour across it, and the edge's two corners.
_SIDES = (((-1, 0), (0, 0), (0, 1)),   # top: from its top-left to its top-right corner
          ((0, 1), (0, 1), (1, 1)),    # right
          ((1, 0), (1, 1), (1, 0)),    # bottom
          ((0, -1), (1, 0), (0, 0)))   # left


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Closed polygons ((n, 2) float arrays of (row, column) vertices, the first not repeated
    at the end) along the pixel edges of a 2D boolean ``mask``; collinear vertices left out."""
    mask = np.asarray(mask, bool)
    padded = np.pad(mask, 1)
    edges: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for (dr, dc), start, end in _SIDES:
        outside = mask & ~padded[1 + dr:1 + dr + mask.shape[0], 1 + dc:1 + dc + mask.shape[1]]
        for i, j in zip(*np.nonzero(outside)):
            edges[(i + start[0], j + start[1])].append((i + end[0], j + end[1]))
    polygons = []
    while edges:
        v0 = next(iter(edges))
        first = (v0, edges[v0][0])
        _take(edges, *first)
        loop, (vertex, heading) = [v0], (first[1], _step(*first))
        while True:
            options = list(edges.get(vertex, ()))
            if vertex == v0:
                options.append(first[1])  # the first edge again: the loop may close here
            nxt = _turn(options, vertex, heading)
            if vertex == v0 and nxt == first[1]:
                break
            loop.append(vertex)
            _take(edges, vertex, nxt)
            vertex, heading = nxt, _step(vertex, nxt)
        polygons.append(_simplify(np.asarray(loop, float) - 0.5))
    return polygons


def _step(a, b) -> tuple[int, int]:
    return (b[0] - a[0], b[1] - a[1])


def _take(edges, start, end) -> None:
    edges[start].remove(end)
    if not edges[start]:
        del edges[start]


def _turn(options, vertex, heading):
    """Where two edges leave a corner (pixels touching diagonally): the right turn (clockwise
    on screen, rows down), then straight on, then left; one boundary per island."""
    right, left = (heading[1], -heading[0]), (-heading[1], heading[0])
    for wanted in (right, heading, left):
        for o in options:
            if _step(vertex, o) == wanted:
                return o
    return options[0]


def _simplify(loop: np.ndarray) -> np.ndarray:
    """The loop without the vertices in the middle of a straight run."""
    before, after = np.roll(loop, 1, axis=0), np.roll(loop, -1, axis=0)
    turn = (loop[:, 0] - before[:, 0]) * (after[:, 1] - loop[:, 1]) - (
        loop[:, 1] - before[:, 1]) * (after[:, 0] - loop[:, 0])
    return loop[turn != 0]


def rasterize(polygons, shape) -> np.ndarray:
    """The 2D boolean mask of ``shape`` whose pixel centres lie inside ``polygons`` ((n, 2)
    (row, column) arrays, closed implicitly) by the even-odd rule: holes and overlapping
    islands as a planning system's structure set means them."""
    out = np.zeros(shape, bool)
    segments = []
    for poly in polygons:
        poly = np.asarray(poly, float)
        if len(poly) >= 3:
            segments.append(np.concatenate([poly, np.roll(poly, -1, axis=0)], axis=1))
    if not segments:
        return out
    seg = np.concatenate(segments)  # (m, 4): r0, c0, r1, c1
    r0, c0, r1, c1 = seg.T
    columns = np.arange(shape[1])
    for row in range(shape[0]):
        # half-open in the row: an edge counts where it crosses the centre line once
        crosses = (r0 <= row) != (r1 <= row)
        if not crosses.any():
            continue
        a, b = r0[crosses], r1[crosses]
        x = c0[crosses] + (row - a) * (c1[crosses] - c0[crosses]) / (b - a)
        # inside: an odd number of crossings at or left of the centre (half-open as the rows:
        # a centre on a left or top edge is in, on a right or bottom edge out)
        count = (x[None, :] <= columns[:, None]).sum(axis=1)
        out[row] = count % 2 == 1
    return out
