"""Render strokes exactly as the Quick, Draw! `numpy_bitmap` files were rendered.

The official bitmaps were made with cairo (the maintainers' `vector_to_raster`, data set issue #19):
simplified strokes (0..255), the drawing's bounding box centred in a 256 frame, line width 16 with round
caps and joins, white on black, 16 units of padding plus half a line width on each side, all scaled to
28x28 with exact anti-aliasing. A model trained on those bitmaps only works on uploads drawn the same way,
so both the synthetic doodles and the app's strokes go through this one function.

cairo is not a dependency: Pillow draws the same geometry (segments as rectangles, a disc at every
point = round caps and joins) on a supersampled canvas, and a box-filter reduction turns it into area
coverage, which is what cairo's anti-aliasing computes. Like cairo, each stroke is painted OVER the
previous ones, so overlapping soft edges brighten. On the official rows in ../shared (19 classes x 25)
the mean per-drawing correlation is 0.9997 (bench/bench_render.py); ~0.6 ms per drawing.

`prepare_strokes` makes the data set's "simplified" strokes from any strokes (an app canvas, the raw
format): that is the input `render_strokes` expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

ORIGINAL_SIDE = 256.0
LINE_DIAMETER = 16.0
PADDING = 16.0
TOTAL_PADDING = 2 * PADDING + LINE_DIAMETER  # 48 units: the frame is 256 + 48 = 304 units wide
# Sub-pixels per output pixel and axis: 16 -> 256 coverage levels, as many as cairo's 8-bit output.
# Measured against the official bitmaps: 8 -> correlation 0.9988, 16 -> 0.9997, 32 -> 0.9999 (slower).
SUPERSAMPLE = 16
# Pillow fills a shape inclusive of its outline, so a disc or band comes out about one sub-pixel wider
# than its geometry; shrinking the radius by 3/8 sub-pixel (fitted on the official bitmaps) cancels it.
# Pillow needs no half-pixel shift to match cairo's pixel grid (fitted too: 0 beats +-1/8 and +-1/2).
RADIUS_ADJUST = -0.375
RDP_EPSILON = 2.0
SIMPLIFIED_MAX = 255.0
MIN_EXTENT = 1e-9  # coordinate units: a drawing smaller than this is a dot
# An upload's strokes are refused beyond these, so a small JSON file cannot take the memory and time of
# resampling millions of units: real drawings run to ~1,000 units (most) and 36,000 (the longest of
# 8,600 in ../shared) at the data set's scale, and to a few hundred points.
MAX_POINTS = 200_000
MAX_PATH_UNITS = 200_000.0

Strokes = list[list[list[float]]]


def _as_arrays(strokes: Sequence) -> list[np.ndarray]:
    """Each stroke as a float (2, n) array of x and y, dropping any 3rd list (raw format's times).

    Empty strokes are skipped; no stroke with a point at all raises ValueError("no strokes").
    """
    if strokes is None or len(strokes) == 0:
        raise ValueError("no strokes")
    arrays = []
    for i, stroke in enumerate(strokes):
        if len(stroke) < 2:
            raise ValueError(f"stroke {i} must hold an x list and a y list")
        try:
            xs = np.asarray(stroke[0], dtype=np.float64).ravel()
            ys = np.asarray(stroke[1], dtype=np.float64).ravel()
        except (OverflowError, TypeError, ValueError):
            raise ValueError(f"stroke {i} has coordinates that are not numbers a float holds") from None
        if len(xs) != len(ys):
            raise ValueError(f"stroke {i} has {len(xs)} x values but {len(ys)} y values")
        if len(xs) == 0:
            continue
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            raise ValueError(f"stroke {i} has non-finite coordinates")
        arrays.append(np.stack([xs, ys]))
    if not arrays:
        raise ValueError("no strokes")
    points = sum(a.shape[1] for a in arrays)
    if points > MAX_POINTS:
        raise ValueError(f"{points:,} points; a drawing has at most {MAX_POINTS:,}")
    return arrays


def render_strokes(strokes: Sequence, size: int = 28) -> np.ndarray:
    """uint8 (size, size) bitmap of simplified strokes ([[xs], [ys]] per stroke, 0..255), light on black.

    Reproduces the data set's recipe; at size=28 it matches the official `numpy_bitmap` rows.
    """
    arrays = _as_arrays(strokes)
    s = SUPERSAMPLE
    side = size * s
    scale = side / (ORIGINAL_SIDE + TOTAL_PADDING)  # supersampled pixels per unit
    # Official offset uses the bounding box's max only (simplified strokes start at 0).
    bbox_max = np.max([a.max(axis=1) for a in arrays], axis=0)
    offset = (ORIGINAL_SIDE - bbox_max) / 2.0 + TOTAL_PADDING / 2.0
    shift = offset * scale
    radius = LINE_DIAMETER / 2.0 * scale + RADIUS_ADJUST

    # cairo strokes each stroke on its own and composites it OVER the canvas: where two strokes' soft
    # edges overlap, coverage adds up as a + b(1 - a), not as a union. Each stroke is therefore drawn on
    # its own supersampled tile (just its bounding box, aligned to whole output pixels) and composited.
    # The canvas holds 0..255 values; compositing rounds to 8 bits per stroke as cairo's surface does.
    canvas = np.zeros((size, size), dtype=np.float32)
    reach = radius + 2.0
    for a in arrays:
        pts = a.T * scale + shift
        x0, y0 = np.floor((pts.min(axis=0) - reach) / s).astype(int)
        x1, y1 = np.ceil((pts.max(axis=0) + reach) / s).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, size), min(y1, size)
        if x1 <= x0 or y1 <= y0:
            continue
        pts = pts - (x0 * s, y0 * s)
        tile = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
        draw = ImageDraw.Draw(tile)
        for x, y in pts.tolist():
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
        if len(pts) > 1:
            d = np.diff(pts, axis=0)
            length = np.hypot(d[:, 0], d[:, 1])
            keep = length > 1e-9
            if keep.any():
                p0, p1, d, length = pts[:-1][keep], pts[1:][keep], d[keep], length[keep]
                normal = np.stack([-d[:, 1], d[:, 0]], axis=1) * (radius / length)[:, None]
                quads = np.stack([p0 + normal, p1 + normal, p1 - normal, p0 - normal], axis=1)
                for quad in quads.reshape(-1, 8).tolist():
                    draw.polygon(quad, fill=255)
        cover = np.asarray(tile.reduce(s), dtype=np.float32)
        region = canvas[y0:y1, x0:x1]
        region[:] = np.round(cover + region * (255.0 - cover) * (1.0 / 255.0))
    return canvas.astype(np.uint8)


def _rdp_keep(points: np.ndarray, keep: np.ndarray, epsilon: float) -> np.ndarray:
    """RDP on every interval between the points already marked in `keep` (updated and returned).

    Splits every open interval at once per pass (vectorised), so a drawing costs a few numpy passes,
    not one Python step per kept point; several strokes laid end to end are simplified together when
    each one's ends are marked. An interval that needs no split is final and leaves the working set.
    Same result as the recursive algorithm: split at the first farthest point beyond epsilon.
    """
    px, py = points[:, 0], points[:, 1]
    todo = np.flatnonzero(~keep)  # inner points of intervals that may still be split
    while len(todo):
        kept = np.flatnonzero(keep)
        seg = np.searchsorted(kept, todo) - 1  # interval of each point: kept[seg] < p < kept[seg + 1]
        a, b = kept[seg], kept[seg + 1]
        abx, aby = px[b] - px[a], py[b] - py[a]
        apx, apy = px[todo] - px[a], py[todo] - py[a]
        # Distance to the chord as a segment, not an infinite line: a stroke that doubles back along
        # itself keeps its turning point instead of being cut short.
        length2 = abx * abx + aby * aby
        t = np.clip((apx * abx + apy * aby) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
        dist = np.hypot(apx - t * abx, apy - t * aby)
        new_group = np.empty(len(seg), dtype=bool)  # points of one interval are contiguous in todo
        new_group[0] = True
        np.not_equal(seg[1:], seg[:-1], out=new_group[1:])
        best = np.maximum.reduceat(dist, np.flatnonzero(new_group))
        group = np.cumsum(new_group) - 1
        split = np.flatnonzero((dist > epsilon) & (dist == best[group]))
        if not len(split):
            break
        first = np.ones(len(split), dtype=bool)  # the first farthest point of each interval
        np.not_equal(group[split[1:]], group[split[:-1]], out=first[1:])
        keep[todo[split[first]]] = True
        reopen = best[group] > epsilon  # points of the intervals just split
        todo = todo[reopen & ~keep[todo]]
    return keep


def rdp(points: np.ndarray, epsilon: float = RDP_EPSILON) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of an (n, 2) polyline: the data set's epsilon is 2.0."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3:
        return points.copy()
    keep = np.zeros(len(points), dtype=bool)
    keep[[0, -1]] = True
    return points[_rdp_keep(points, keep, epsilon)]


def _resample(arrays: list[np.ndarray], spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Points every `spacing` units along each stroke, keeping both ends, as the data set did.

    All strokes are handled in one pass: they are laid end to end on one arc-length axis, with a gap
    between strokes that no sample falls in. Returns (points (n, 2), stroke index of each point).
    """
    pts = np.concatenate([a.T for a in arrays])
    sizes = np.array([a.shape[1] for a in arrays])
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    step = np.hypot(*np.diff(pts, axis=0).T)
    step[first[1:] - 1] = spacing  # the jump between strokes: a gap, never sampled
    cum = np.concatenate([[0.0], np.cumsum(step)])
    start, end = cum[first], cum[first + sizes - 1]
    length = end - start
    if length.sum() > MAX_PATH_UNITS:  # refused before the samples are made: their memory grows with it
        raise ValueError(
            f"strokes {length.sum():,.0f} units long at the data set's scale; a drawing is at most "
            f"{MAX_PATH_UNITS:,.0f}"
        )
    counts = np.ceil(length / spacing - 1e-9).astype(int)  # samples at 0, spacing, ... < length
    counts = np.maximum(counts, 0) + 1  # ... plus the end (or the single point of a dot)
    stroke = np.repeat(np.arange(len(arrays)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    t = np.minimum(start[stroke] + local * spacing, end[stroke])
    return np.stack([np.interp(t, cum, pts[:, 0]), np.interp(t, cum, pts[:, 1])], axis=1), stroke


def prepare_strokes(strokes: Sequence) -> Strokes:
    """Turn strokes in any coordinates (an app canvas, the raw format) into the simplified format.

    Aligns the drawing to its bounding box, scales the longest side to 255 (aspect kept), resamples at
    1-unit spacing and simplifies with RDP (epsilon 2.0), rounding to integers like the data set.
    A drawing with no extent (a single dot) lands at the origin.
    """
    arrays = _as_arrays(strokes)
    allpts = np.concatenate(arrays, axis=1)
    lo = allpts.min(axis=1, keepdims=True)
    with np.errstate(over="ignore"):
        extent = float((allpts.max(axis=1, keepdims=True) - lo).max())
    if not np.isfinite(extent):
        raise ValueError("coordinates too far apart (their differences overflow)")
    # Below a billionth of a unit the drawing is a dot; scaling it up would overflow to inf/NaN.
    factor = SIMPLIFIED_MAX / extent if extent > MIN_EXTENT else 0.0
    pts, stroke = _resample([(a - lo) * factor for a in arrays])
    edge = np.ones(len(pts), dtype=bool)
    edge[1:-1] = (stroke[1:-1] != stroke[:-2]) | (stroke[1:-1] != stroke[2:])  # each stroke's ends
    keep = _rdp_keep(pts, edge, RDP_EPSILON)
    pts, stroke = np.clip(np.round(pts[keep]), 0, SIMPLIFIED_MAX).astype(int), stroke[keep]
    # Rounding can make neighbours equal: drop repeats within a stroke (a dot keeps its one point).
    repeat = np.zeros(len(pts), dtype=bool)
    repeat[1:] = (stroke[1:] == stroke[:-1]) & np.all(pts[1:] == pts[:-1], axis=1)
    pts, stroke = pts[~repeat], stroke[~repeat]
    cuts = np.flatnonzero(np.diff(stroke)) + 1
    return [[p[:, 0].tolist(), p[:, 1].tolist()] for p in np.split(pts, cuts)]
