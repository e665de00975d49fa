"""Simulated uploads of a drawing: an app-canvas PNG and a phone photo of paper, and the harder
photos parents take (the sheet on a table, dim light, a shadow, a flash), a bucket fill, a name, a scan.

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


# Children's felt-tip pens: a drawing may use several, light ones (yellow, orange, pink) among dark ones.
PENS = ((20, 20, 20), (230, 200, 0), (240, 130, 0), (250, 120, 180), (30, 160, 60), (200, 30, 30), (40, 70, 200))


def canvas_png(
    strokes,
    rng: np.random.Generator,
    size: tuple[int, int] = (1024, 768),
    brush: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    pens: tuple[tuple[int, int, int], ...] = PENS[:1],
    extent: float | None = None,
) -> bytes:
    """PNG bytes of the drawing as an app canvas exports it: large, dark on white (or `background`),
    off-centre, the app's brush width (6-18 px unless given) with round ends; each stroke in one of
    `pens` (at random), the drawing's longest side `extent` px (35-70% of the canvas unless given)."""
    w, h = size
    extent = extent or rng.uniform(0.35, 0.7) * min(w, h)
    origin = (rng.uniform(0.05, 0.95) * (w - extent), rng.uniform(0.05, 0.95) * (h - extent))
    brush = int(brush or rng.integers(6, 19))
    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    for pts in _place(strokes, extent, origin):
        _draw(draw, pts, brush, pens[rng.integers(len(pens))] if len(pens) > 1 else pens[0])
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _jpeg(rgb: np.ndarray | Image.Image, quality: int = 85) -> bytes:
    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
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
    return _jpeg(rgb, quality)


def on_table(photo: bytes, fill: float, table: tuple[int, int, int] = (90, 60, 40)) -> bytes:
    """The photo's sheet of paper lying on a (brown) table, turned 3 degrees, a little off-centre; the
    sheet spans `fill` of the picture's width (0.65: the table is most of the picture)."""
    paper = Image.open(io.BytesIO(photo)).convert("RGB")
    w, h = int(paper.width / fill), int(paper.height / fill)
    out = Image.new("RGB", (w, h), table)
    turned = paper.rotate(3, expand=True, fillcolor=table)
    out.paste(turned, ((w - turned.width) // 2 - 20, (h - turned.height) // 2 - 20))
    return _jpeg(out)


def cropped_to_drawing(photo: bytes) -> bytes:
    """The photo cropped to the drawing's bounding box, as an app's crop tool leaves it: strokes touch
    the picture's edges."""
    img = Image.open(io.BytesIO(photo)).convert("RGB")
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    ink = grey < np.median(grey) - 60
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return _jpeg(img.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)))


LIGHTING = ("dim", "hard_shadow", "soft_shadow", "flash")


def relit(photo: bytes, lighting: str) -> bytes:
    """The photo under harder light: `dim` (0.4x: the paper reads dark grey), `hard_shadow` (the left
    45% at 0.55x, a sharp edge across the drawing), `soft_shadow` (the left half at 0.45x, blurred),
    `flash` (a bright spot in the middle)."""
    a = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"), dtype=np.float32).copy()
    h, w = a.shape[:2]
    if lighting == "dim":
        a *= 0.4
    elif lighting == "hard_shadow":
        a[:, : int(w * 0.45)] *= 0.55
    elif lighting == "soft_shadow":
        m = np.full((h, w), 255, np.uint8)
        m[:, : w // 2] = round(0.45 * 255)
        a *= np.asarray(Image.fromarray(m).filter(ImageFilter.GaussianBlur(w / 40)), np.float32)[:, :, None] / 255
    elif lighting == "flash":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a += 80 * np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (2 * (w / 6) ** 2))[:, :, None]
    else:
        raise ValueError(f"lighting must be one of {LIGHTING}, got {lighting!r}")
    return _jpeg(a)


def _same_format(img: Image.Image, upload: bytes) -> bytes:
    if upload[:2] == b"\xff\xd8":
        return _jpeg(img, 90)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def signed(upload: bytes, pen: tuple[int, int, int] = (20, 20, 20)) -> bytes:
    """`upload` with a child's name scribbled (120 px, a 3 px pen) in the corner farthest from the
    drawing, in the upload's format."""
    img = Image.open(io.BytesIO(upload)).convert("RGB")
    grey = np.asarray(img.convert("L"), np.int16)
    rows, cols = np.nonzero(grey < np.median(grey) - 40)
    w, h = img.size
    x0 = 20 if cols.mean() > w / 2 else w - 140
    y0 = 30 if rows.mean() > h / 2 else h - 40
    ImageDraw.Draw(img).line([(x0 + t, y0 + 8 * np.sin(t / 5)) for t in range(0, 120, 3)], fill=pen, width=3)
    return _same_format(img, upload)


def bucket_filled(png: bytes, colour: tuple[int, int, int] = (250, 210, 0)) -> bytes:
    """A canvas PNG with its largest area enclosed by strokes filled with the paint bucket, as a child
    colours a drawing in; unchanged where the strokes enclose nothing. The area is found at a quarter
    of the size (Pillow's flood fill is Python, slow on a million pixels), then grown up to the
    strokes at full size."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    small = img.reduce(4)
    white = np.all(np.asarray(small) >= 200, axis=2)
    outside = small.copy()
    ImageDraw.floodfill(outside, (0, 0), (0, 255, 0), thresh=60)  # the canvas reachable from its edge
    enclosed = white & ~np.all(np.asarray(outside) == (0, 255, 0), axis=2)
    if enclosed.sum() < 0.002 * enclosed.size:
        return png
    rows, cols = np.nonzero(enclosed)
    seed = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)  # the one nearest their centre
    area = small.copy()
    ImageDraw.floodfill(area, (int(cols[seed]), int(rows[seed])), (0, 255, 0), thresh=60)
    inside = np.all(np.asarray(area) == (0, 255, 0), axis=2)
    inside = np.repeat(np.repeat(inside, 4, axis=0), 4, axis=1)[: img.height, : img.width]
    full = np.asarray(img).copy()
    h, w = inside.shape
    light = np.all(full[:h, :w] >= 200, axis=2)
    fill = inside & light
    for _ in range(6):  # the blocks cut by the strokes' edges
        grown = np.pad(fill, 1)
        fill = light & (fill | grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:])
    full[:h, :w][fill] = colour
    return _same_format(Image.fromarray(full), png)


def scanned(png: bytes, shadow: str = "l", fmt: str = "PNG") -> bytes:
    """A canvas PNG as a levelled pencil scan (grey strokes, paper exactly white, one channel) with the
    scanner lid's shadow along the `shadow` edges (any of "l", "t", "r", "b"; "" for none): dark at
    the edge, fading over 30 px (about 4 mm at 200 dpi). In `fmt` ("PNG" or "JPEG")."""
    a = np.where(np.asarray(Image.open(io.BytesIO(png)).convert("L")) > 250, 255.0, 90.0)
    fade = np.linspace(40, 255, 30)[:, None]  # the first 30 rows, from the top edge down
    for edge in shadow:
        view = {"t": a, "b": a[::-1], "l": a.T, "r": a.T[::-1]}[edge]  # views: writes reach `a`
        view[:30] = np.minimum(view[:30], fade)
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8), "L").save(buf, format=fmt)
    return buf.getvalue()
