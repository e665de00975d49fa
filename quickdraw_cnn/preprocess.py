"""Make an uploaded drawing look like a Quick, Draw! `numpy_bitmap` row (28x28 uint8, light on black).

The model only knows the data set's rendering (see quickdraw-format.md): the drawing's bounding box scaled
so its longest side spans 255 of 304 units, centred, strokes 16 units wide, anti-aliased, light on black.
An app-canvas PNG or a phone photo of paper differs in every one of these, so each difference is undone by
one named step below, in this order:

    open_image -> apply_exif_orientation -> to_grey (a colour canvas: paint-bucket fills cleared) ->
    [a flat canvas: canvas_ink -> shrink_to_work_size -> canvas_mask -> drop_stray_marks -> crop_to_ink
                    -> scale_to_frame -> outline_fills |
     a photo: shrink_to_work_size -> fix_polarity -> remove_background ->
              ink_mask (threshold, remove_border_strips, remove_specks) -> drop_stray_marks -> crop_to_ink
              -> scale_to_frame] ->
    normalise_thickness -> centre_and_downsample

Strokes (`.json` / `.ndjson` / lists) skip all of that and are rendered with the data set's own recipe
(`render.render_strokes(render.prepare_strokes(...))`): the exact path for an app canvas. A file holding
several ndjson records gives its first drawing (`load_strokes` documents the accepted shapes).
A `data:` URL (what a browser's `canvas.toDataURL()` gives), as a string, bytes or a file, is its payload.

Only numpy and Pillow are imported here, so the TensorFlow-free ONNX backend can use this module.
Errors are `PreprocessError` subclasses with one-line messages (the caller adds the file name).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import stat
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps, UnidentifiedImageError

from quickdraw_cnn.render import prepare_strokes, render_strokes

SIZE = 28
FRAME_UNITS = 304.0  # the data set's 28 px = 256 frame + 2 * 16 padding + 16 line width (units)
EXTENT_UNITS = 255.0  # longest side of the drawing's centre-line bounding box, in units
LINE_UNITS = 16.0  # stroke width, in units (~6% of the longest side)
WORK_MAX = 512  # the photo cleanup runs at most at this many pixels on the longest side
CANVAS_MAX = 1024  # a flat canvas is first reduced below twice this (its drawing may be small in it)
LOSSY_INK_SHARE = 0.5  # of the strongest ink's contrast: fainter marks on a burnt-out photo are its paper
JPEG_CANVAS_INK_SHARE = 0.25  # on a lossy canvas export, where the only noise is ringing beside strokes
BURNT_OUT_PAPER = 0.12  # a lossy image off its flat value in more of its pixels than this is a photo
SPAN = 0.8  # a line across this much of a canvas is ruling or a frame, not drawing
EDGE_ON_CANVAS = 0.2  # of an area's edge: above this, it meets the canvas (paper, brushed colour), not strokes
LID_EDGE = 0.99  # a scanner lid's shadow covers this much of the picture's edge line
FILL_SHARE = 0.005  # of a canvas's pixels in one colour besides the canvas's: perhaps an area coloured in
PEN_SPREAD = 1.3  # strokes whose centre-line depths spread less than this are one pen's, however thick
FILL_TOLERANCE = 32  # channel difference within which a pixel is of a fill's colour (JPEG noise, blends)
LOSSY_FORMATS = {"JPEG", "MPO", "WEBP"}  # WebP may be lossless too; treated alike
CANVAS_INK = 136  # ink extent (px) at which thickness is normalised: ~8 px strokes, 5x supersampled
MAX_STREAM_BYTES = 200 << 20  # read from a pipe at most (a file's size is known before reading)
MAX_PIXELS = 40_000_000  # decoded pixels allowed (after JPEG draft reduction): bounds memory and time
STRAY_GAP = 0.1  # of the ink's extent: marks farther than this from all others lie apart
STRAY_MASS = 0.15  # of the ink's pixels: ...and weigh less than this (drop_stray_marks)
STRAY_MARGIN = 0.3  # of the drawing's extent: ...and lie this far from its box (twice, in line with it)
MIN_CONTRAST = 24.0  # grey levels of ink above paper needed to call it a drawing
MIN_INK_FRACTION = 2e-4  # of the work image's pixels (and at least MIN_INK_PIXELS)
MIN_INK_PIXELS = 12
STROKE_SUFFIXES = {".json", ".ndjson"}
ORIENTATION_TAG = 0x0112  # EXIF "Orientation"
DATA_PREFIX = rb"(?:\xef\xbb\xbf)?\s*data:"  # what starts a data: URL (a BOM, spaces), comma or not
DATA_URL = re.compile(DATA_PREFIX + rb"([^,]{0,1024}),", re.IGNORECASE)  # data:[<type>][;base64],<data>
DATA_URL_HEAD = 1100  # bytes that hold any header DATA_URL matches
NO_COMMA = "a data: URL needs a comma before its data"
DATA_URL_MAX = MAX_STREAM_BYTES * 4 // 3 + DATA_URL_HEAD  # base64 of the most read from a pipe

Source = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray | list | dict


class PreprocessError(ValueError):
    """An input that cannot be turned into a drawing; str() is a one-line reason."""


class EmptyFileError(PreprocessError):
    """Zero bytes."""


class NotAnImageError(PreprocessError):
    """Neither an image format Pillow knows nor strokes."""


class CorruptImageError(PreprocessError):
    """Truncated or damaged image data."""


class ImageTooLargeError(PreprocessError):
    """Too many pixels to decode within bounded memory and time (a decompression bomb, say)."""


class NoDrawingError(PreprocessError):
    """A blank page: nothing that stands out from the background."""

    def __init__(self, message: str = "no drawing found") -> None:
        super().__init__(message)


class BadStrokesError(PreprocessError):
    """JSON that does not hold a drawing in the data set's stroke format."""


# ----------------------------------------------------------------------------------------------- decoding
def open_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Decode a file or bytes safely: first frame only, JPEGs reduced while decoding (draft mode).

    Raises EmptyFileError, NotAnImageError, ImageTooLargeError or CorruptImageError.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyFileError("empty file (0 bytes)")
        fp: Any = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        try:
            if path.is_dir():
                raise PreprocessError("is a folder, not a file")
            if path.stat().st_size == 0:
                raise EmptyFileError("empty file (0 bytes)")
        except FileNotFoundError:
            raise PreprocessError(_no_such_file(source)) from None
        except OSError as exc:  # a name too long, no permission, ...
            raise PreprocessError(f"cannot read ({exc.strerror or exc})") from None
        fp = path
    # Decoders raise whatever their format's parser hits on damaged data (IndexError from a cut GIF,
    # RuntimeError from AVIF, ...): any of it is a corrupt upload, never a crash of the whole batch.
    # Their warnings (a TIFF tag larger than the file, say) are not the user's business either.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning too: our own limit is below
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"image too large to decode safely ({exc})") from None
        except UnidentifiedImageError:
            raise NotAnImageError(f"not an image ({_unsupported_format(fp)})") from None
        except Exception as exc:
            raise CorruptImageError(f"corrupt image header ({_reason(exc)})") from None
        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated: the first frame is the drawing
            if img.format in ("JPEG", "MPO"):  # MPO: the JPEG many Android phones save
                img.draft("L", (WORK_MAX, WORK_MAX))  # DCT scaling: a 12 MP photo decodes at 1/4 or 1/8
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageTooLargeError(f"image too large to decode safely ({w}x{h} pixels)")
            if w == 0 or h == 0:
                raise CorruptImageError("image has no pixels")
            img.load()
        except PreprocessError:
            raise
        except Exception as exc:
            raise CorruptImageError(f"truncated or corrupt image ({_reason(exc)})") from None
    return img


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _unsupported_format(fp: Any) -> str:
    """Name the usual formats Pillow cannot read here, so the user knows what to convert."""
    try:
        if hasattr(fp, "getvalue"):
            head = fp.getvalue()[:32]
        else:
            with open(fp, "rb") as fh:
                head = fh.read(32)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc"):
        return "HEIC/HEIF, e.g. an iPhone photo, is not supported: export it as JPEG or PNG"
    return "unrecognised format"


def apply_exif_orientation(img: Image.Image) -> Image.Image:
    """Phones store photos sideways plus an EXIF 'Orientation' tag; turn the pixels upright."""
    try:
        if img.getexif().get(ORIENTATION_TAG, 1) == 1:
            return img  # upright already: exif_transpose would still copy the whole image (~2 ms at 1 MP)
        return ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not lose the drawing
        return img


def _composite(img: Image.Image, background: int) -> Image.Image:
    if img.mode == "La":  # premultiplied: Pillow converts it to LA only
        img = img.convert("LA")
    base = Image.new("RGBA", img.size, (background,) * 3 + (255,))
    return _colour_to_grey(Image.alpha_composite(base, img.convert("RGBA")).convert("RGB"))


def _colour_to_grey(rgb: Image.Image) -> Image.Image:
    """Grey of an RGB image. On a flat canvas (most pixels exactly one colour: an app's export) the grey
    is each pixel's largest channel difference from that colour, dark on light: brightness alone would
    make a yellow stroke faint beside a black one, and green on red of equal brightness invisible."""
    sample = np.asarray(_sample(rgb), dtype=np.int32)
    codes, counts = np.unique((sample[..., 0] << 16) | (sample[..., 1] << 8) | sample[..., 2], return_counts=True)
    if counts.max() <= counts.sum() / 2:
        return rgb.convert("L")  # a photo: noise and light everywhere
    order = np.argsort(-counts)
    flat = _rgb(codes[order[0]])
    factor = max(rgb.size) // CANVAS_MAX
    if factor >= 2:  # a box average of stroke and canvas differs from the canvas by the stroke's coverage
        rgb = rgb.reduce(factor)
    diff = _difference(rgb, flat)
    common = [_rgb(codes[i]) for i in order[1:5] if counts[i] >= FILL_SHARE * counts.sum()]  # pens or fills
    colours = [c for c in common if max(abs(a - b) for a, b in zip(c, flat)) > FILL_TOLERANCE]
    return ImageOps.invert(_without_fills(rgb, diff, colours) if colours else diff)


def _rgb(code: int) -> tuple[int, int, int]:
    code = int(code)
    return code >> 16, (code >> 8) & 255, code & 255


def _difference(rgb: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """Each pixel's largest channel difference from `colour` ('L')."""
    r, g, b = rgb.point([abs(v - c) for c in colour for v in range(256)]).split()
    return ImageChops.lighter(ImageChops.lighter(r, g), b)


def _without_fills(rgb: Image.Image, diff: Image.Image, colours: list[tuple[int, int, int]]) -> Image.Image:
    """`diff` (the canvas difference) with the areas coloured in with the paint bucket cleared: their
    outline is the pen's strokes around them, and strokes drawn inside them stay. `outline_fills`, on
    the binary ink, cannot tell those strokes from the fill (bucket fills of 371 real drawings: 76.5%
    right that way, 81.1% now, 81.4% unfilled). A bucket fill is an area of one of `colours` wider than
    two of the data set's lines at the drawing's size, and all of that colour joined to it, whose edge
    meets strokes.
    An area whose edge meets the canvas is colour brushed on (or a sheet of paper on a table) and is
    left to `outline_fills` (or `_sheet_on_a_table`). Found on blocks of 4x4 pixels: a millisecond or
    two on a canvas without fills."""
    ink = np.asarray(diff.reduce(4)) > MIN_CONTRAST // 4
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        return diff
    wide = int(round(LINE_UNITS / EXTENT_UNITS * max(rows[-1] - rows[0], cols[-1] - cols[0], 1)))
    x0, y0 = max(0, cols[0] - 1) * 4, max(0, rows[0] - 1) * 4  # the drawing and a block of canvas around it
    x1, y1 = min((cols[-1] + 2) * 4, rgb.width), min((rows[-1] + 2) * 4, rgb.height)
    rgb, d = rgb.crop((x0, y0, x1, y1)), np.asarray(diff)[y0:y1, x0:x1]
    blocks = rgb.reduce(4)
    fill, canvas = np.zeros(d.shape, bool), None
    for colour in colours:
        core = np.asarray(_difference(blocks, colour)) <= FILL_TOLERANCE
        for i in range(max(1, wide)):
            core = _erode(core, cross=bool(i % 2))
        if not core.any():
            continue
        of_colour = np.asarray(_difference(rgb, colour)) <= FILL_TOLERANCE
        area = of_colour & _unblock(_joined(core, _block_any(of_colour)), d.shape)
        if canvas is None:
            canvas = _grow(d < MIN_CONTRAST, 2)  # past a blended pixel
        if _edge_share(area, canvas) <= EDGE_ON_CANVAS:  # its edge meets strokes
            fill |= area
    if not fill.any():
        return diff
    out = np.asarray(diff).copy()
    out[y0:y1, x0:x1][fill] = 0
    return Image.fromarray(out, "L")


def _joined(seed: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The `allowed` pixels joined to `seed` through `allowed` ones (a flood fill)."""
    region = seed & allowed
    while True:
        grown = _dilate(region, cross=True) & allowed
        if np.array_equal(grown, region):
            return region
        region = grown


def _block_any(m: np.ndarray) -> np.ndarray:
    """Which 4x4 blocks of `m` hold any True (the last ones partial, as Image.reduce makes them)."""
    return np.asarray(Image.fromarray(m.astype(np.uint8) * 255).reduce(4)) > 0


def _unblock(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """4x4 blocks back to pixels, cut to `shape`."""
    return np.repeat(np.repeat(m, 4, axis=0), 4, axis=1)[: shape[0], : shape[1]]


def _sample(img: Image.Image, pixels: int = 20000) -> Image.Image:
    """About `pixels` of the image's own pixel values (nearest, not averaged), to tell a flat canvas."""
    w, h = img.size
    step = max(1, int(np.sqrt(w * h / pixels)))
    return img if step == 1 else img.resize((max(1, w // step), max(1, h // step)), Image.NEAREST)


def to_grey(img: Image.Image) -> Image.Image:
    """Any mode -> 8-bit grey 'L'. Transparency is composited on white (or on black when the strokes
    are light and white would hide them); 16-bit and float images are scaled from their type's full
    range (not stretched to their own: a blank page's faint noise must stay faint)."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        grey = _composite(img, 255)
        lo, hi = grey.getextrema()
        if hi - lo < MIN_CONTRAST:
            on_black = _composite(img, 0)
            lo2, hi2 = on_black.getextrema()
            if hi2 - lo2 > hi - lo:
                return on_black
        return grey
    if mode == "L":
        return img
    if mode in ("I", "F") or mode.startswith("I;"):
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(0, None)
        hi = float(a.max())
        ranges = (65535.0,) if mode.startswith("I;16") else (255.0, 65535.0) if mode == "I" else (1.0, 255.0, 65535.0)
        full = next((f for f in ranges if hi <= f), hi)  # the smallest usual range that holds the values
        return Image.fromarray(np.round(a * (255.0 / max(full, 1e-12))).clip(0, 255).astype(np.uint8), "L")
    if mode == "LAB":
        return img.getchannel(0)
    if mode == "1":
        return img.convert("L")
    return _colour_to_grey(img if mode == "RGB" else img.convert("RGB"))


def canvas_ink(grey: Image.Image, lossy: bool = False) -> tuple[Image.Image, float] | None:
    """A flat canvas's ink, light on black: each pixel's difference from the canvas value, cut to the
    drawing and a margin (before shrinking, so a small drawing on a big canvas or a thin pen keeps its
    strokes), and the `share` for `canvas_mask`. None for a photo, or a sheet photographed on a flat
    table (`_sheet_on_a_table`). Knowing the canvas, the polarity needs no guess, even for thick pens.

    Lines across most of the canvas (ruled paper, a frame) and a scanner lid's shadow (a levelled
    scan's paper is flat too) are removed. Marks fainter than `share` of the strongest are left out:
    0 on a lossless canvas, where every mark was drawn, light pens beside black ones included. A
    canvas exported as JPEG (`lossy`) differs from its canvas only at its strokes (flat blocks
    compress exactly), so its faint marks are ringing, and a pink pen beside a black one (half its
    contrast) must stay: a quarter. A photo whose paper burnt out to white passes for a flat
    canvas too, but the rest of its paper differs everywhere, a texture of faint marks: half. A lossy
    canvas is not cut, so its noise is averaged away when it shrinks (its drawing should not be small).
    """
    sample = np.asarray(_sample(grey))
    counts = np.bincount(sample.ravel(), minlength=256)
    flat = int(counts.argmax())
    if counts[flat] <= counts.sum() / 2:
        return None  # a photo: noise and light everywhere
    share = 0.0
    if lossy:
        busy = float(np.mean(np.abs(sample.astype(np.int16) - flat) > 2))
        share = LOSSY_INK_SHARE if busy > BURNT_OUT_PAPER else JPEG_CANVAS_INK_SHARE
    difference = np.asarray(grey.point([abs(v - flat) for v in range(256)]))
    ink = difference.copy()
    floor = max(MIN_CONTRAST, share * int(ink.max()))
    marked = ink >= floor
    rows, cols = marked.mean(axis=1), marked.mean(axis=0)  # the share of each line that is ink
    ink[_thin_runs(rows > SPAN), :] = 0  # ruling and a frame's top and bottom
    ink[:, _thin_runs(cols > SPAN)] = 0  # a frame's sides, vertical ruling
    marked = ink >= floor
    ink[_lid_shadow(rows, marked.any(axis=1)), :] = 0
    ink[:, _lid_shadow(cols, marked.any(axis=0))] = 0
    ink[ink < floor] = 0
    try:
        x0, y0, x1, y1 = crop_to_ink(ink > 0)
    except NoDrawingError:
        return Image.fromarray(ink, "L"), share  # blank: canvas_mask says so
    margin = max(8, max(x1 - x0, y1 - y0) // 8)
    h, w = ink.shape
    box = np.s_[max(0, y0 - margin) : min(h, y1 + margin), max(0, x0 - margin) : min(w, x1 + margin)]
    if _sheet_on_a_table(np.asarray(_sample(Image.fromarray(np.ascontiguousarray(difference[box]), "L")))):
        return None
    if lossy:
        return Image.fromarray(ink, "L"), share  # uncut, so its noise is averaged away by the shrink
    return Image.fromarray(np.ascontiguousarray(ink[box]), "L"), share


def _sheet_on_a_table(around: np.ndarray) -> bool:
    """Whether the drawing's surroundings (each pixel's difference from the flat value) are a sheet of
    paper on a flat table, not a canvas: most pixels differ from the table. A colour filled in with
    the paint bucket covers most of a drawing too, but in one value, and inside its strokes: paper
    meets the table along its edges (its own texture, or burnt out to one value)."""
    counts = np.bincount(around.ravel(), minlength=256)
    if counts[0] > around.size / 2:
        return False  # the canvas shows around the strokes
    if counts[1:].max() < around.size / 4:
        return True  # paper's texture
    fill = around == counts[1:].argmax() + 1
    table = _dilate(_dilate(around < MIN_CONTRAST, cross=True), cross=True)  # a few px, for blur and JPEG
    return bool(_edge_share(fill, table) > EDGE_ON_CANVAS)  # its edge meets the table, not strokes


def _edge_share(area: np.ndarray, near: np.ndarray) -> float:
    """The share of `area`'s own boundary pixels that are `near` (the canvas or a table)."""
    return float(np.mean(near[area & ~_erode(area, cross=True)]))


def _lid_shadow(share: np.ndarray, inked: np.ndarray) -> np.ndarray:
    """A scanner lid's shadow: a band of lines (rows or columns) mostly ink (`share`) at the picture's
    edge, the outermost all ink (the lid's edge runs the whole length), and its fading side, up to a
    bare line (none `inked`) within half the band's width, with ink beyond it. A stroke along the edge
    of a picture cropped to its drawing meets the other strokes, or stops short of the corners: it
    stays; so do two shadows meeting at a corner, which look like a cropped frame's sides."""
    return _lid_shadow_first(share, inked) | _lid_shadow_first(share[::-1], inked[::-1])[::-1]


def _lid_shadow_first(share: np.ndarray, inked: np.ndarray) -> np.ndarray:
    """`_lid_shadow` at the first lines only."""
    out = np.zeros(len(share), bool)
    runs = _runs(share > SPAN)
    if not runs or runs[0][0] > 0 or runs[0][1] == len(share) or share[0] < LID_EDGE:
        return out
    width = runs[0][1]
    bare = np.flatnonzero(~inked[width:])
    if len(bare) and bare[0] <= max(4, width // 2) and inked[width + bare[0] :].any():
        out[: width + bare[0]] = True
    return out


def _thin_runs(flags: np.ndarray, longest: int = 4) -> np.ndarray:
    """`flags` only where they come in runs of at most `longest`: lines, not a broad area (a sheet of
    paper on a flat table spans the picture's height too)."""
    out = np.zeros_like(flags)
    for start, stop in _runs(flags):
        if stop - start <= longest:
            out[start:stop] = True
    return out


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D array, stop exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def shrink_to_work_size(grey: Image.Image, limit: int = WORK_MAX) -> np.ndarray:
    """Area-average down to at most `limit` px on the longest side (the cleanup needs no more)."""
    factor = max(grey.size) // limit
    if factor >= 2:  # integer block averaging first: 4x cheaper than a general resize
        grey = grey.reduce(factor)
    w, h = grey.size
    if max(w, h) > limit:
        f = limit / max(w, h)
        grey = grey.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BOX)
    return np.asarray(grey, dtype=np.float32)


# ----------------------------------------------------------------------------------------------- cleanup
def fix_polarity(grey: np.ndarray) -> np.ndarray:
    """Make ink light on a dark background (the data set's polarity), whichever way it came.

    Ink is thin lines of the strongest contrast in the picture. So compare the contrast of the thin
    structures lighter than their surroundings with that of the darker ones (what `remove_background`
    leaves of each; its 99.9th percentile, so a few noisy pixels do not count), and keep the stronger.
    Paper showing between dense strokes is a light structure too, but of less contrast than the pen.
    The brightness of most pixels guesses wrong on dim or grey paper, coloured canvases, and a sheet
    photographed on a table that fills most of the picture. With no clear lines either way (a faint
    drawing) a light median decides.
    """
    small = _half(grey)  # enough to see lines, at a quarter of the cost
    light = float(np.percentile(remove_background(small), 99.9))
    dark = float(np.percentile(remove_background(255.0 - small), 99.9))
    if max(light, dark) >= MIN_CONTRAST and light != dark:
        dark_ink = dark > light
    else:
        step = max(1, int(np.sqrt(grey.size / 20000)))
        dark_ink = float(np.median(grey[::step, ::step])) > 127.5
    return 255.0 - grey if dark_ink else grey


def _half(grey: np.ndarray) -> np.ndarray:
    """Area-average to half size (2x2 blocks); a small image stays as it is."""
    if min(grey.shape) < 64:
        return grey
    img = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L").reduce(2)
    return np.asarray(img, dtype=np.float32)


def remove_background(ink: np.ndarray) -> np.ndarray:
    """Subtract a smooth estimate of the paper (uneven light, shadows, tinted paper, a table's edge).

    The estimate is a morphological opening of a coarse (block-mean) image: thin bright strokes vanish,
    slow light gradients and wide areas stay. It is widened a little (so a sharp shadow's or table's
    edge is covered, not left as a line), blurred and enlarged back to full size. A table's strip too
    thin for this, lining the picture's edge, is left to `remove_border_strips`.
    """
    h, w = ink.shape
    f = max(1, round(max(h, w) / 64))
    small = Image.fromarray(np.clip(ink, 0, 255).astype(np.uint8), "L")
    if f > 1:
        small = small.reduce(f)
    small = small.filter(ImageFilter.MinFilter(5)).filter(ImageFilter.MaxFilter(5))
    small = small.filter(ImageFilter.GaussianBlur(1)).filter(ImageFilter.MaxFilter(5))
    bg = np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.float32)
    return np.clip(ink - bg, 0.0, 255.0)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of uint8 values (maximises the between-class variance)."""
    if values.dtype != np.uint8:
        values = np.clip(values, 0, 255).astype(np.uint8)
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * levels)
    mean0 = m0 / np.maximum(w0, 1e-12)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(np.argmax(between)) + 0.5


def remove_specks(mask: np.ndarray) -> np.ndarray:
    """Drop isolated ink pixels (noise, dust, paper texture): fewer than 3 ink pixels in their 5x5."""
    img = Image.fromarray(mask.view(np.uint8) * np.uint8(255), "L").filter(ImageFilter.BoxBlur(2))
    return mask & (np.asarray(img) >= 26)  # 2.5 of 25 pixels, in 0..255 units


def ink_mask(fg: np.ndarray) -> np.ndarray:
    """Binary ink from the background-free image: blur off pixel noise, adaptive (Otsu) threshold
    clamped to the ink's own contrast, the edges of a table the paper lies on and specks removed (a
    photo's path: a clean canvas takes `canvas_mask`). Raises NoDrawingError on a blank page."""
    blurred = np.asarray(Image.fromarray(fg.astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(1)))
    hi = float(blurred.max())
    if hi < MIN_CONTRAST:
        raise NoDrawingError()
    t = min(max(otsu_threshold(blurred), 0.25 * hi, 0.5 * MIN_CONTRAST), 0.6 * hi)
    mask = remove_specks(remove_border_strips(blurred > t))
    if mask.sum() < max(MIN_INK_PIXELS, MIN_INK_FRACTION * mask.size):
        raise NoDrawingError()
    return mask


def remove_border_strips(mask: np.ndarray) -> np.ndarray:
    """Drop what is left of the edge of the table a sheet of paper was photographed on: "ink" lining
    one side of the picture from the picture's edge, along at least a fiftieth of that side and twice
    as long as it is deep (a stroke may cross an edge, but does not line it), or at most 3 px
    deep (the last slivers). Such a strip's ink joined to the edge is removed, up to twice the strip's
    usual depth (+2 px).
    """
    mask = mask.copy()
    for turn in range(4):  # each side in turn as the left one
        side = np.rot90(mask, turn)  # a view: clearing it clears `mask`
        band = side[:, : max(1, side.shape[1] // 4)]  # a table's edge is near the picture's
        lead = np.cumprod(band, axis=1, dtype=np.uint8).sum(axis=1)  # ink run from the edge, per row
        for start, stop in _runs(lead > 0):  # each stretch of rows with ink at the edge
            depth = int(np.median(lead[start:stop]))
            if stop - start >= max(len(lead) / 50, 2 * depth) or depth <= 3:
                cut = np.minimum(lead[start:stop], 2 * depth + 2)
                band[start:stop][np.arange(band.shape[1])[None, :] < cut[:, None]] = False
    return mask


def drop_stray_marks(mask: np.ndarray) -> np.ndarray:
    """Leave out a signature, a watermark or a stray dot beside the drawing. The data set's framing
    fits all the ink to its frame, so a name in a corner shrank the drawing to a scribble (24% right,
    against 82% without it, in a review's scenario). Stray ink lies apart (STRAY_GAP of the ink's
    extent from any other mark), weighs little (under STRAY_MASS of the ink, all strays together too,
    and at most two of them) and lies farther from the drawing's box than STRAY_MARGIN of its size
    (twice that straight above, below or beside it): dots within or near a drawing (eyes, even above
    a mouth alone, spots, raindrops) stay."""
    x0, y0, x1, y1 = crop_to_ink(mask)
    cell = max(2, round(STRAY_GAP * max(x1 - x0, y1 - y0)))
    grid_h, grid_w = -(-(y1 - y0) // cell), -(-(x1 - x0) // cell)
    cells = np.zeros((grid_h * cell, grid_w * cell), np.int32)
    cells[: y1 - y0, : x1 - x0] = mask[y0:y1, x0:x1]
    ink = cells.reshape(grid_h, cell, grid_w, cell).sum(axis=(1, 3))  # ink pixels per cell
    group = _touching_groups(ink > 0)
    mass = np.bincount(group.ravel(), weights=ink.ravel())
    mass[0] = 0.0  # empty cells
    heavy = mass >= STRAY_MASS * mass.sum()
    if not heavy.any():
        return mask  # many small pieces (a starry sky): all of it is the drawing
    rows, cols = np.nonzero(heavy[group])
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    far = STRAY_MARGIN * max(bottom - top + 1, right - left + 1)
    stray = np.zeros_like(heavy)
    for g in np.flatnonzero(~heavy & (mass > 0)):
        r, c = np.nonzero(group == g)
        dy = max(top - r.max(), r.min() - bottom, 0)  # cells between it and the drawing's box, if any
        dx = max(left - c.max(), c.min() - right, 0)
        stray[g] = max(dx, dy) > (far if min(dx, dy) > 0 else 2 * far)  # in line (eyes above a mouth): twice
    if not stray.any() or stray.sum() > 2 or mass[stray].sum() >= STRAY_MASS * mass.sum():
        return mask  # nothing apart, or many marks or much ink apart (stars, rain): all of it is drawn
    keep = np.repeat(np.repeat(~stray[group], cell, axis=0), cell, axis=1)[: y1 - y0, : x1 - x0]
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1] & keep
    return out


def _touching_groups(occupied: np.ndarray) -> np.ndarray:
    """A label (1..) for each 8-connected group of True cells, 0 elsewhere: each cell takes the largest
    label around it until none changes (the grid is a few dozen cells across)."""
    h, w = occupied.shape
    label = np.where(occupied, np.arange(1, h * w + 1).reshape(h, w), 0)
    while True:
        p = np.pad(label, 1)
        grown = np.where(occupied, np.maximum.reduce([p[y : y + h, x : x + w] for y in range(3) for x in range(3)]), 0)
        if np.array_equal(grown, label):
            return label
        label = grown


def crop_to_ink(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1), end-exclusive, of the ink."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        raise NoDrawingError()
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def scale_to_frame(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Crop to the ink and resample so its longest side is CANVAS_INK px (where thickness is fixed)."""
    x0, y0, x1, y1 = box
    m = 2
    crop = np.pad(mask[y0:y1, x0:x1], m).astype(np.float32)
    f = CANVAS_INK / max(x1 - x0, y1 - y0)
    h, w = crop.shape
    size = (max(1, round(w * f)), max(1, round(h * f)))
    img = Image.fromarray(crop, "F")
    if f < 1:  # area average keeps thin lines as partial coverage; a low cut keeps them connected
        return np.asarray(img.resize(size, Image.BOX)) > 0.2
    return np.asarray(img.resize(size, Image.BILINEAR)) > 0.5


def outline_fills(mask: np.ndarray) -> np.ndarray:
    """Areas coloured in (far wider than any pen) keep only their outline, as thick as the drawing's
    other strokes: the data set has outlines only, and a child's filled sun would otherwise be a blob.
    Colour brushed on, a fill in the pen's own colour, or one on a JPEG canvas (decoded grey) gets
    here; a PNG canvas's bucket fill was cleared before (`_without_fills`). A fill's outline is then
    its pen stroke: the fill's own edge, one line width deep, would double a pen's width around it.
    Strokes up to twice the data set's line width (at the scale_to_frame size) are left whole, and
    up to twice the pen's where one thick pen drew them all: a 60 px brush on a 400 px drawing was
    hollowed into double lines (Labs 21 model, 300 real drawings: 40.3% -> 56.3%)."""
    rim = int(round(LINE_UNITS / EXTENT_UNITS * CANVAS_INK))
    core = _shrink(mask, rim)
    pen = round(pen_width(mask)) if core.any() else 0  # only a drawing with such wide ink pays for this
    if pen > rim:
        core, rim = _shrink(core, pen - rim), pen
    if not core.any():
        return mask
    strokes = mask & ~_grow(core, rim + 2)
    width = stroke_width(strokes) if strokes.sum() > 4 * rim else rim
    return mask & ~_grow(core, rim - min(rim, round(width)))


def pen_width(mask: np.ndarray) -> float:
    """The drawing's pen width in px, where its strokes are all about as wide; else 0.

    Measured at the strokes' centre lines (pixels at least as deep inside the ink as their
    neighbours): twice the lower quartile of their depth, when the upper quartile is within PEN_SPREAD
    of it. One pen keeps its width along every stroke; a coloured-in area is far deeper at its middle
    than at its edges, so its depths spread."""
    depth = np.zeros(mask.shape, np.int32)
    m, i = mask, 0
    while m.any():
        depth += m
        m = _erode(m, cross=bool(i % 2))
        i += 1
    ridge = depth[mask & (depth >= _max_within(depth, 1))]
    if len(ridge) == 0:
        return 0.0
    low, high = np.quantile(ridge, [0.25, 0.75])
    return 2.0 * float(low) - 1.0 if high <= PEN_SPREAD * low else 0.0


def _grow(m: np.ndarray, steps: int) -> np.ndarray:
    """`steps` dilations, alternating square and cross (nearly round)."""
    for i in range(steps):
        m = _dilate(m, cross=bool(i % 2))
    return m


def _shrink(m: np.ndarray, steps: int) -> np.ndarray:
    """`steps` erosions, alternating square and cross."""
    for i in range(steps):
        m = _erode(m, cross=bool(i % 2))
    return m


def _neighbours(m: np.ndarray, cross: bool, outside: bool) -> np.ndarray:
    p = np.pad(m, 1, constant_values=outside)
    out = m | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    if not cross:
        out |= p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
    return out


def _dilate(m: np.ndarray, cross: bool = False) -> np.ndarray:
    return _neighbours(m, cross, False)


def _erode(m: np.ndarray, cross: bool = False) -> np.ndarray:
    return ~_neighbours(~m, cross, True)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in px: area / half the boundary length (area lost to one erosion)."""
    a0 = float(mask.sum())
    a1 = float(_erode(mask).sum())
    if a1 == 0:
        return 1.0
    return max(1.0, 2.0 * a0 / max(a0 - a1, 1.0))


def normalise_thickness(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Erode or dilate (alternating square/cross: nearly round) to the data set's 16/255 of the
    centre-line extent. Returns the mask and the stroke width it now has, in px."""
    w = stroke_width(mask)
    x0, y0, x1, y1 = crop_to_ink(mask)
    centre_extent = max(max(x1 - x0, y1 - y0) - w, 1.0)
    target = LINE_UNITS / EXTENT_UNITS * centre_extent
    steps = int(round(abs(w - target) / 2))
    if w > target:
        steps = min(steps, int((w - 1) // 2))  # never erode a stroke away entirely
        return _shrink(mask, steps), w - 2 * steps
    return _grow(np.pad(mask, steps + 1), steps), w + 2 * steps


def centre_and_downsample(mask: np.ndarray, width: float) -> np.ndarray:
    """Centre the centre-line box in the data set's 304-unit frame and area-average down to 28x28."""
    x0, y0, x1, y1 = crop_to_ink(mask)
    centre_extent = max(max(x1 - x0, y1 - y0) - width, 1.0)
    side = centre_extent * FRAME_UNITS / EXTENT_UNITS  # px of the mask that become 28 px
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    pad = int(np.ceil(side))
    img = Image.fromarray(np.pad(mask, pad).astype(np.uint8) * 255, "L")
    box = (cx - side / 2 + pad, cy - side / 2 + pad, cx + side / 2 + pad, cy + side / 2 + pad)
    method = Image.BOX if side >= 2 * SIZE else Image.BILINEAR
    return np.asarray(img.resize((SIZE, SIZE), method, box=box), dtype=np.uint8).copy()


def _max_within(a: np.ndarray, r: int) -> np.ndarray:
    """The largest value within `r` px (a (2r+1) square), as two 1-D passes (Pillow's MaxFilter is
    several times slower)."""
    for axis in (0, 1):
        p = np.pad(a, [(r, r) if i == axis else (0, 0) for i in range(2)])
        n = a.shape[axis]
        a = np.maximum.reduce([p[i : i + n] if axis == 0 else p[:, i : i + n] for i in range(2 * r + 1)])
    return a


def canvas_mask(ink: np.ndarray, share: float = 0.0) -> np.ndarray:
    """Binary ink of a clean canvas: anything clearly above the flat background (no blur, no specks).

    Each stroke is cut at half its own contrast (the largest within 3 px), the middle of its
    anti-aliased edges, so light pens beside dark ones and lines thinner than a pixel (shrunk to partial
    contrast) all keep their drawn width. `share` as in `canvas_ink` (there, before shrinking; here
    after it, where a JPEG's texture has been averaged into patches of even contrast)."""
    fg = np.clip(ink - float(ink.min()), 0, 255).astype(np.uint8)
    hi = int(fg.max())
    if hi < MIN_CONTRAST:
        raise NoDrawingError()
    local = _max_within(fg, 3)
    mask = (fg > local // 2) & (local >= MIN_CONTRAST) & (fg > share * hi)
    if mask.sum() < MIN_INK_PIXELS:
        raise NoDrawingError()
    return mask


def preprocess_image(img: Image.Image) -> np.ndarray:
    """All image steps, in order, on a decoded image: uint8 (28, 28) light on black."""
    lossy = img.format in LOSSY_FORMATS  # noise and texture cannot be told from faint ink there
    img = apply_exif_orientation(img)
    if img.size == (SIZE, SIZE):  # a bitmap in the data set's framing already (a client that downsampled)
        ink = fix_polarity(np.asarray(to_grey(img), np.float32))
        lo, hi = float(ink.min()), float(ink.max())
        if hi - lo < MIN_CONTRAST:
            raise NoDrawingError()
        return np.round((ink - lo) * (255.0 / (hi - lo))).astype(np.uint8)  # faint ink stretched, as drawn
    grey = to_grey(img)
    flat = canvas_ink(grey, lossy)
    if flat is not None:
        ink, share = flat
        mask = drop_stray_marks(canvas_mask(shrink_to_work_size(ink), share))
        canvas = outline_fills(scale_to_frame(mask, crop_to_ink(mask)))
    else:
        ink = fix_polarity(shrink_to_work_size(grey))
        mask = drop_stray_marks(ink_mask(remove_background(ink)))
        canvas = scale_to_frame(mask, crop_to_ink(mask))
    canvas, width = normalise_thickness(canvas)
    return centre_and_downsample(canvas, width)


# ----------------------------------------------------------------------------------------------- strokes
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json(text: str) -> Any:
    """json.loads, with nesting too deep for Python's parser a BadStrokesError (not a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise BadStrokesError("JSON nested too deeply") from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer of more digits than Python converts
        raise BadStrokesError("JSON number out of range") from None


def load_strokes(obj: Any) -> list:
    """The drawing in any accepted shape: a list of strokes [[x...], [y...](, [t...])] or of strokes as
    points [[x, y(, t)], ...], one stroke, an ndjson record {"drawing": ...}, or a list of records (the
    first is used).

    `obj` may also be JSON / ndjson text or bytes (ndjson: the first non-empty line is used).
    """
    if isinstance(obj, (bytes, bytearray, memoryview)):
        try:
            obj = bytes(obj).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BadStrokesError("not UTF-8 JSON") from None
    if isinstance(obj, str):
        if not obj.strip():
            raise BadStrokesError("empty strokes file")
        try:
            obj = _json(obj)  # not stripped: line numbers in errors are the file's
        except json.JSONDecodeError as whole:
            first = next(line for line in obj.splitlines() if line.strip())
            try:
                obj = _json(first)  # ndjson: several records, one per line
            except json.JSONDecodeError:
                raise BadStrokesError(f"not JSON ({whole.msg} at line {whole.lineno})") from None
    if isinstance(obj, dict):
        if "drawing" not in obj:
            raise BadStrokesError('JSON object without a "drawing" key')
        obj = obj["drawing"]
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        return load_strokes(obj[0])
    if not isinstance(obj, list) or not obj:
        raise BadStrokesError("no strokes in the drawing")
    if isinstance(obj[0], list) and obj[0] and _is_number(obj[0][0]):
        obj = [obj]  # a single stroke [[x...], [y...]] (or [[x, y], ...])
    if all(_is_points(s) for s in obj) and any(len(s) not in (2, 3) for s in obj):
        return [[[p[0] for p in s], [p[1] for p in s]] for s in obj]  # [[x, y(, t)], ...] per stroke
    for i, stroke in enumerate(obj):
        if not _is_xy_lists(stroke):
            raise BadStrokesError(f"stroke {i} is neither [[x...], [y...]] nor [[x, y], ...]")
    return obj


def _is_xy_lists(stroke: Any) -> bool:
    """The data set's stroke: [[x...], [y...]], with times [[x...], [y...], [t...]] or more channels
    (pressure, say); only x and y are read."""
    return (
        isinstance(stroke, list)
        and len(stroke) >= 2
        and all(isinstance(c, list) and all(_is_number(v) for v in c) for c in stroke[:2])
    )


def _is_points(stroke: Any) -> bool:
    """Many canvas libraries' stroke: a list of points [x, y] or [x, y, t]. Strokes of two or three
    points read both ways, so a drawing is taken as points only when some stroke has another number
    (a drawing of nothing but such short strokes is read as the data set's format)."""
    return (
        isinstance(stroke, list)
        and len(stroke) > 0
        and all(isinstance(p, list) and len(p) in (2, 3) and all(_is_number(v) for v in p) for p in stroke)
    )


def strokes_to_bitmap(strokes: Any) -> np.ndarray:
    """Render strokes exactly as the data set did (any coordinates; aligned, scaled, simplified first)."""
    drawing = load_strokes(strokes)
    try:
        return render_strokes(prepare_strokes(drawing))
    except ValueError as exc:
        raise BadStrokesError(str(exc)) from None


# ----------------------------------------------------------------------------------------------- entry
def _array_to_image(a: np.ndarray) -> Image.Image:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise NotAnImageError(f"array of shape {a.shape} is not an image")
    if a.dtype.kind not in "biuf":
        raise NotAnImageError(f"array of {a.dtype} values is not an image")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise NotAnImageError("array has non-finite values")
        if a.max() <= 1.0 and a.min() >= 0.0:
            a = a * 255.0
        elif a.max() > 255.0 and a.max() <= 65535.0 and a.min() >= 0.0:  # 16-bit levels, as in a 16-bit PNG
            a = a / 257.0
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return Image.fromarray(a, {2: "L", 3: "RGB", 4: "RGBA"}[a.ndim if a.ndim == 2 else a.shape[2]])


def _looks_like_json(data: bytes) -> bool:
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


_DATA_PREFIX = re.compile(DATA_PREFIX, re.IGNORECASE)


def _no_such_file(name: str | os.PathLike) -> str:
    """A missing file whose name starts like a data: URL is most likely a data: URL cut before its comma."""
    head = os.fspath(name)[:DATA_URL_HEAD]
    if _DATA_PREFIX.match(head.encode("utf-8", "replace") if isinstance(head, str) else head):
        return f"no such file, and not a data: URL either ({NO_COMMA})"
    return "no such file"


def is_data_url(source: str | bytes) -> bool:
    """A `data:` URL (RFC 2397), not the name of a file: a file of that name that exists is a file."""
    if isinstance(source, str):
        head = source[:DATA_URL_HEAD].encode("utf-8", "replace")
        return DATA_URL.match(head) is not None and not os.path.exists(source)
    return DATA_URL.match(source[:DATA_URL_HEAD]) is not None


def decode_data_url(data: bytes) -> bytes:
    """The payload of a `data:` URL: the app's backend often gets the canvas as `canvas.toDataURL()`."""
    if len(data) > DATA_URL_MAX:
        raise ImageTooLargeError(f"data: URL over {DATA_URL_MAX >> 20} MB")
    match = DATA_URL.match(data)
    if match is None:
        raise NotAnImageError("not a data: URL")
    payload = urllib.parse.unquote_to_bytes(data[match.end() :])  # '%' is not base64: safe for both
    if match.group(1).lower().endswith(b";base64"):
        payload = b"".join(payload.split()).translate(_URL_SAFE)  # line breaks; the URL-safe alphabet
        try:
            out = base64.b64decode(payload + b"=" * (-len(payload) % 4), validate=True)
        except binascii.Error:
            raise CorruptImageError("data: URL with broken base64") from None
    else:
        out = payload.strip()
    if not out:
        raise EmptyFileError("empty data: URL")
    if DATA_URL.match(out[:DATA_URL_HEAD]):  # decoded once only: nesting would recurse and copy
        raise NotAnImageError("a data: URL inside a data: URL")
    return out


_URL_SAFE = bytes.maketrans(b"-_", b"+/")


def read_stream(fh: Any) -> bytes:
    """A pipe's bytes, at most MAX_STREAM_BYTES (a file's size is known before reading; a pipe's is not)."""
    data = fh.read(MAX_STREAM_BYTES + 1)
    if len(data) > MAX_STREAM_BYTES:
        raise ImageTooLargeError(f"more than {MAX_STREAM_BYTES >> 20} MB")
    return data


def _is_stream(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # open_image says why
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def to_bitmap(source: Source) -> np.ndarray:
    """Whatever was uploaded -> uint8 (28, 28) in the data set's convention (light strokes on black).

    source: a path or bytes (any image Pillow reads, or .json/.ndjson strokes), a data: URL (a string,
    bytes or a file holding one), a PIL image, a numpy image (a uint8 (28, 28) / (28, 28, 1) / (784,)
    array is taken as already in the data set's convention), or strokes as Python lists/dicts.
    Raises a PreprocessError subclass.
    """
    if isinstance(source, Image.Image):
        try:
            return preprocess_image(source)
        except PreprocessError:
            raise
        except (ValueError, OSError) as exc:  # a closed image, say
            raise NotAnImageError(f"unusable image ({exc})") from None
    if isinstance(source, np.ndarray):
        if source.dtype == np.uint8 and source.shape in ((28, 28), (28, 28, 1), (784,)):
            if int(source.max()) - int(source.min()) < MIN_CONTRAST:  # as for a 28x28 image file
                raise NoDrawingError()
            return source.reshape(SIZE, SIZE).copy()
        return preprocess_image(_array_to_image(source))
    if isinstance(source, (list, dict)):
        return strokes_to_bitmap(source)
    if isinstance(source, str) and is_data_url(source):  # encoded no further than decode_data_url's limit
        return to_bitmap(decode_data_url(source[: DATA_URL_MAX + 1].encode("utf-8", "replace")))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if is_data_url(data):
            return to_bitmap(decode_data_url(data))
        if data and _looks_like_json(data):
            return strokes_to_bitmap(data)
        if _DATA_PREFIX.match(data[:DATA_URL_HEAD]):
            raise NotAnImageError(NO_COMMA)
        return preprocess_image(open_image(data))
    if (
        isinstance(source, str)
        and not os.path.exists(source)
        and _looks_like_json(source[:64].encode("utf-8", "replace"))
    ):
        return strokes_to_bitmap(source)  # strokes JSON sent as text
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not name:
            raise PreprocessError("empty file name")
        try:
            os.fsencode(name)
        except (UnicodeError, TypeError):
            raise PreprocessError("not a valid file name") from None
        if "\x00" in str(name):
            raise PreprocessError("not a valid file name (a NUL character)")
        path = Path(source)
        if _is_stream(path):  # a pipe (`<(curl ...)`, /dev/stdin): its size is unknown until read
            with open(path, "rb") as fh:
                return to_bitmap(read_stream(fh))
        if path.suffix.lower() in STROKE_SUFFIXES:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise PreprocessError(_no_such_file(source)) from None
            except OSError as exc:
                raise PreprocessError(f"cannot read ({exc.strerror})") from None
            if not data:
                raise EmptyFileError("empty file (0 bytes)")
            if is_data_url(data[:DATA_URL_HEAD]):  # a canvas's data: URL saved under .json
                return to_bitmap(decode_data_url(data))
            if not _looks_like_json(data):  # perhaps an image saved under .json
                try:
                    img = open_image(data)
                except NotAnImageError:
                    pass  # neither: its error as JSON says more
                else:
                    return preprocess_image(img)
            return strokes_to_bitmap(data)
        try:
            img = open_image(path)
        except NotAnImageError:
            with open(path, "rb") as fh:
                head = fh.read(DATA_URL_HEAD)
            if _looks_like_json(head):  # strokes saved under another suffix
                return strokes_to_bitmap(path.read_bytes())
            if is_data_url(head):  # a canvas's data: URL saved as text
                with open(path, "rb") as fh:
                    return to_bitmap(decode_data_url(read_stream(fh)))
            if _DATA_PREFIX.match(head):
                raise NotAnImageError(NO_COMMA) from None
            raise
        return preprocess_image(img)
    raise PreprocessError(f"unsupported input type {type(source).__name__}")


def save_enlarged(bitmap: np.ndarray, path: str | os.PathLike, scale: int = 10) -> Path:
    """Write the 28x28 the model saw, enlarged (nearest neighbour) and framed, so a person can judge it.

    Written to a temporary name first and moved into place.
    """
    path = Path(path)
    img = Image.fromarray(np.asarray(bitmap, dtype=np.uint8).reshape(SIZE, SIZE), "L")
    img = img.resize((SIZE * scale, SIZE * scale), Image.NEAREST)
    img = ImageOps.expand(img, border=2, fill=96)
    tmp = path.with_name(path.name + ".part")
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
