"""Synthetic doodles: the project's embedded, offline default data set.

A few real Quick, Draw! categories of simple shapes, drawn the way people draw them in the game (a bit
rotated, stretched, wobbly, started anywhere, overshooting the start, lifted the pen once or twice) and
rendered with the data set's own recipe (`render.prepare_strokes` + `render.render_strokes`). The files
have the downloader's layout and format, so every later step runs without a network; the classes are
learnable but not trivial (hexagon vs octagon vs circle, line vs zigzag).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .categories import file_stem
from .npy_format import ROW_BYTES, write_bitmaps
from .render import prepare_strokes, render_strokes

Points = np.ndarray  # (n, 2) float
CANVAS = 400.0  # generated coordinates are "app canvas" pixels; prepare_strokes normalises them


def _polygon(k: int, start_angle: float) -> Points:
    """Vertices of a regular k-gon on the unit circle, closed (first vertex repeated)."""
    angles = start_angle + np.arange(k + 1) * (2 * np.pi / k)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _densify(path: Points, step: float) -> Points:
    """Points every ~`step` along a polyline, keeping its corners (a pen samples as it moves)."""
    out = [path[:1]]
    for a, b in zip(path[:-1], path[1:]):
        n = max(1, int(np.ceil(np.hypot(*(b - a)) / step)))
        t = np.arange(1, n + 1)[:, None] / n
        out.append(a + (b - a) * t)
    return np.concatenate(out)


def _arc_length(path: Points) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))])


def _wobble(path: Points, rng: np.random.Generator, amount: float) -> Points:
    """Smooth hand tremor: a few low-frequency sinusoids along the path in x and y, plus jitter."""
    s = _arc_length(path)
    s = s / s[-1] if s[-1] > 0 else s
    offset = np.zeros_like(path)
    for _ in range(3):
        freq = rng.uniform(0.5, 4.0)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        amp = amount * rng.uniform(0.3, 1.0, size=2)
        offset += amp * np.sin(2 * np.pi * freq * s[:, None] + phase)
    offset += rng.normal(0.0, amount * 0.05, size=path.shape)
    return path + offset


def _rotate_scale(path: Points, angle: float, sx: float, sy: float) -> Points:
    c, s = np.cos(angle), np.sin(angle)
    scaled = path * (sx, sy)
    return scaled @ np.array([[c, s], [-s, c]])


def _closed_loop(path: Points, rng: np.random.Generator) -> Points:
    """Walk a closed outline from a random start, overshooting or stopping short of the start."""
    loop = path[:-1]
    start = int(rng.integers(len(loop)))
    loop = np.concatenate([loop[start:], loop[:start]])
    # Mostly closed with a small overshoot or gap; one in five leaves a side or two undrawn.
    extra = (rng.uniform(-0.3, -0.1) if rng.random() < 0.2 else rng.uniform(-0.04, 0.15)) * len(loop)
    end = len(loop) + int(round(extra))
    idx = np.arange(max(end, 2)) % len(loop)
    return loop[idx]


def _split(path: Points, rng: np.random.Generator, max_strokes: int = 3) -> list[Points]:
    """Lift the pen 0-2 times: most drawings are one stroke, some two or three."""
    probs = np.array([0.6, 0.3, 0.1])[:max_strokes]
    count = int(rng.choice(len(probs), p=probs / probs.sum())) + 1
    if count == 1 or len(path) < 8:
        return [path]
    cuts = np.sort(rng.choice(np.arange(3, len(path) - 3), size=count - 1, replace=False))
    pieces = np.split(path, cuts)
    # Each new stroke restarts at (or near) where the last ended, so pieces share an end point.
    return [pieces[0]] + [np.concatenate([p0[-1:], p]) for p0, p in zip(pieces[:-1], pieces[1:])]


def _shape_circle(rng: np.random.Generator) -> Points:
    return _polygon(int(rng.integers(40, 70)), rng.uniform(0, 2 * np.pi))


def _polygon_shape(
    k: int, base_angles: tuple[float, ...], vertex_jitter: float
) -> Callable[[np.random.Generator], Points]:
    """Regular k-gon outline; people draw some either way up (a hexagon flat- or pointy-topped)."""

    def make(rng: np.random.Generator) -> Points:
        verts = _polygon(k, rng.choice(base_angles) + rng.normal(0, 0.12))
        verts = verts + rng.normal(0, vertex_jitter, size=verts.shape)
        verts[-1] = verts[0]
        return _densify(verts, 0.08)

    return make


def _shape_diamond(rng: np.random.Generator) -> Points | list[Points]:
    """A rhombus, or (as many players draw it) a gem: flat top, pointed bottom, a line across."""
    if rng.random() < 0.6:
        return _polygon_shape(4, (-np.pi / 2,), 0.03)(rng)
    top, girdle = rng.uniform(0.4, 0.7), rng.uniform(-0.55, -0.2)
    verts = np.array([[-top, -1.0], [top, -1.0], [1.0, girdle], [0.0, 1.0], [-1.0, girdle], [-top, -1.0]])
    verts = verts + rng.normal(0, 0.03, size=verts.shape)
    verts[-1] = verts[0]
    outline = _densify(verts, 0.08)
    return [outline, _densify(verts[[4, 2]], 0.08)]


def _shape_star(rng: np.random.Generator) -> Points:
    angle = -np.pi / 2 + rng.normal(0, 0.12)
    outer = _polygon(5, angle)
    if rng.random() < 0.4:  # pentagram: one stroke visiting every second point
        verts = outer[[0, 2, 4, 1, 3, 0]]
    else:  # outline with inner vertices
        inner = _polygon(5, angle + np.pi / 5) * rng.uniform(0.35, 0.55)
        verts = np.empty((11, 2))
        verts[0::2], verts[1::2] = outer[:6], inner[:5]
    verts = verts + rng.normal(0, 0.03, size=verts.shape)
    verts[-1] = verts[0]
    return _densify(verts, 0.08)


def _shape_moon(rng: np.random.Generator) -> Points:
    span = rng.uniform(0.55, 0.8) * np.pi  # half-angle of the outer arc
    t = np.linspace(-span, span, 40)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    # Inner arc: a wider circle through the two tips, bulging less, traced back.
    tip = outer[-1]
    depth = rng.uniform(0.25, 0.6)
    inner_x = np.linspace(tip[1], -tip[1], 30)
    bulge = tip[0] + (1 - tip[0]) * depth * (1 - (inner_x / tip[1]) ** 2)
    inner = np.stack([bulge, inner_x], axis=1)
    return np.concatenate([outer, inner])


def _shape_line(rng: np.random.Generator) -> Points:
    """Mostly near horizontal (as in the game), sometimes at any angle."""
    t = np.linspace(0, 1, int(rng.integers(5, 30)))
    bend = rng.normal(0, 0.03) * np.sin(np.pi * t)
    angle = rng.normal(0, 0.15) if rng.random() < 0.7 else rng.uniform(-np.pi / 2, np.pi / 2)
    return _rotate_scale(np.stack([t * 2 - 1, bend], axis=1), angle, 1.0, 1.0)


def _shape_zigzag(rng: np.random.Generator) -> Points:
    peaks = int(rng.integers(3, 8))
    amp = rng.uniform(0.15, 0.5)
    x = np.linspace(-1, 1, peaks + 1) + rng.normal(0, 0.02, peaks + 1)
    y = np.where(np.arange(peaks + 1) % 2 == 0, -amp, amp) + rng.normal(0, 0.03, peaks + 1)
    return _densify(np.stack([x, y], axis=1), 0.08)


# name -> (outline maker, closed?, rotation spread in radians, allowed aspect stretch)
_SHAPES: dict[str, tuple[Callable[[np.random.Generator], Points | list[Points]], bool, float, float]] = {
    "circle": (_shape_circle, True, np.pi, 0.2),
    "diamond": (_shape_diamond, True, 0.15, 0.3),
    "hexagon": (_polygon_shape(6, (0.0, np.pi / 6), 0.03), True, 0.2, 0.15),
    "line": (_shape_line, False, 0.0, 0.0),
    "moon": (_shape_moon, False, np.pi, 0.15),
    "octagon": (_polygon_shape(8, (np.pi / 8, 0.0), 0.025), True, 0.15, 0.15),
    "square": (_polygon_shape(4, (np.pi / 4,), 0.03), True, 0.15, 0.25),
    "star": (_shape_star, False, 0.2, 0.15),
    "triangle": (_polygon_shape(3, (-np.pi / 2,), 0.04), True, 0.25, 0.25),
    "zigzag": (_shape_zigzag, False, 0.5, 0.0),
}
SYNTHETIC_CATEGORIES: tuple[str, ...] = tuple(sorted(_SHAPES))


def check_categories(names: Iterable[str]) -> list[str]:
    """Real names (underscores accepted) of supported shapes; ValueError naming any other."""
    resolved = []
    for name in names:
        real = name.strip().replace("_", " ")
        if real not in _SHAPES:
            supported = ", ".join(SYNTHETIC_CATEGORIES)
            raise ValueError(f"no synthetic generator for category {name!r}; supported: {supported}")
        resolved.append(real)
    return resolved


def generate_strokes(name: str, rng: np.random.Generator) -> list[list[list[float]]]:
    """One jittered drawing of `name` as raw strokes [[xs], [ys]] in canvas pixel coordinates."""
    (name,) = check_categories([name])
    make, closed, spread, stretch = _SHAPES[name]
    made = make(rng)
    path, extra = (made[0], made[1:]) if isinstance(made, list) else (made, [])
    if closed:
        path = _closed_loop(path, rng)
    angle = rng.uniform(-spread, spread)
    aspect = np.exp(rng.uniform(-stretch, stretch))
    wobble = rng.uniform(0.005, 0.04) * (0.4 if name == "line" else 1.0)  # real lines are straight
    size = rng.uniform(0.2, 0.45) * CANVAS
    origin = rng.uniform(0.3, 0.7, size=2) * CANVAS
    strokes = _split(path, rng, max_strokes=2 if name == "line" else 3) + extra
    out = []
    for p in strokes:
        p = _wobble(_rotate_scale(p, angle, aspect, 1.0 / aspect), rng, amount=wobble)
        # Placed somewhere on a canvas at some size: prepare_strokes must undo this.
        p = p * size + origin
        out.append([p[:, 0].round(1).tolist(), p[:, 1].round(1).tolist()])
    return out


def generate_class(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, 784) bitmaps of `name`, rendered exactly like the data set's."""
    (name,) = check_categories([name])
    out = np.empty((n, ROW_BYTES), dtype=np.uint8)
    for i in range(n):
        out[i] = render_strokes(prepare_strokes(generate_strokes(name, rng))).ravel()
    return out


def class_rng(name: str, seed: int) -> np.random.Generator:
    """The generator of one class: depends only on (seed, name), not on which other classes are made."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def write_synthetic(
    out_dir: str | os.PathLike,
    categories: Iterable[str] | None = None,
    per_class: int = 2000,
    seed: int = 0,
) -> list[Path]:
    """Write `<out_dir>/<stem>.npy` for each shape (the downloader's layout); deterministic per seed."""
    names = check_categories(SYNTHETIC_CATEGORIES if categories is None else categories)
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out / f"{file_stem(name)}.npy"
        write_bitmaps(path, generate_class(name, per_class, class_rng(name, seed)))
        paths.append(path)
    return paths
