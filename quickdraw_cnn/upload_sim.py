"""Simulated uploads of a drawing: an app-canvas PNG and a phone photo of paper.

Tests, benchmarks and tools/make_samples.py use these to check that preprocessing turns what the app
really sends back into the data set's bitmap. Only numpy and Pillow.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from quickdraw_cnn.render import prepare_strokes


def _draw(draw: ImageDraw.ImageDraw, pts: np.ndarray, width: int, fill) -> None:
    r = width / 2.0
    if len(pts) > 1:
        draw.line([tuple(p) for p in pts.tolist()], fill=fill, width=width, joint="curve")
    for x, y in (pts[0], pts[-1]):  # round caps
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)


def _place(strokes, extent: float, origin: tuple[float, float]) -> list[np.ndarray]:
    """Strokes scaled so the drawing's longest side is `extent` px, top-left at `origin`."""
    prepared = prepare_strokes(strokes)
    f = extent / 255.0
    return [np.stack([np.asarray(s[0], float), np.asarray(s[1], float)], axis=1) * f + origin for s in prepared]


def canvas_png(
    strokes,
    rng: np.random.Generator,
    size: tuple[int, int] = (1024, 768),
    brush: int | None = None,
) -> bytes:
    """PNG bytes of the drawing as an app canvas exports it: large, dark on white, off-centre, the
    app's brush width (6-18 px unless given) with round ends."""
    w, h = size
    extent = rng.uniform(0.35, 0.7) * min(w, h)
    origin = (rng.uniform(0.05, 0.95) * (w - extent), rng.uniform(0.05, 0.95) * (h - extent))
    brush = int(brush or rng.integers(6, 19))
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for pts in _place(strokes, extent, origin):
        _draw(draw, pts, brush, (20, 20, 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def photo_jpeg(
    strokes,
    rng: np.random.Generator,
    size: tuple[int, int] = (1600, 1200),
    quality: int = 80,
) -> bytes:
    """JPEG bytes of the drawing photographed on paper: grey paper, uneven light, pen-grey ink, noise,
    blur, a slight rotation."""
    w, h = size
    extent = rng.uniform(0.4, 0.7) * min(w, h)
    origin = ((w - extent) * rng.uniform(0.3, 0.7), (h - extent) * rng.uniform(0.3, 0.7))
    pen = max(2, int(round(extent * rng.uniform(0.012, 0.03))))
    ink = Image.new("L", size, 0)
    draw = ImageDraw.Draw(ink)
    for pts in _place(strokes, extent, origin):
        _draw(draw, pts, pen, 255)
    ink = ink.rotate(rng.uniform(-6, 6), resample=Image.BILINEAR, center=(w / 2, h / 2))
    ink = ink.filter(ImageFilter.GaussianBlur(max(w, h) / 1600))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-0.25, 0.25, size=2)
    light = 1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    light -= 0.18 * (((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2)  # vignette / hand shadow
    paper = rng.uniform(175, 215) * light
    ink_level = rng.uniform(30, 70)
    a = np.asarray(ink, dtype=np.float32) / 255.0
    grey = paper * (1 - a) + ink_level * light * a
    grey += rng.normal(0.0, 5.0, size=grey.shape).astype(np.float32)
    rgb = np.stack([grey * 1.02, grey, grey * 0.93], axis=2)  # warm paper tint
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
