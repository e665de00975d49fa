"""Benchmark the stroke renderer against the official bitmaps, and its speed (run by hand).

    .venv/bin/python bench/bench_render.py [--shared ../shared] [--repeat 3]

Prints the mean per-drawing pixel correlation of render_strokes with the official numpy_bitmap rows
(all classes in ../shared/data/quickdraw-real/bitmaps/, first 25 rows each), per class and for a few
supersampling factors, then the time per drawing of render_strokes, prepare_strokes and the synthetic
generator.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quickdraw_cnn import render  # noqa: E402
from quickdraw_cnn.npy_format import open_bitmaps  # noqa: E402
from quickdraw_cnn.synthetic import SYNTHETIC_CATEGORIES, class_rng, generate_class  # noqa: E402

# The shared clock.npy holds the official alarm clock rows (tests/test_render.py proves it).
STROKES_FOR = {"clock": "alarm clock"}


def load_pairs(real: Path) -> list[tuple[str, list, np.ndarray]]:
    pairs = []
    for path in sorted((real / "bitmaps").glob("*.npy")):
        if path.stem == "train":  # every 100th row, not the first rows
            continue
        name = path.stem.replace("_", " ")
        lines = (real / "simplified" / f"{STROKES_FOR.get(name, name)}.ndjson").read_text().splitlines()
        bitmaps = open_bitmaps(path)
        for i, line in enumerate(lines[:25]):
            pairs.append((name, json.loads(line)["drawing"], np.asarray(bitmaps[i], dtype=np.float64)))
    return pairs


def correlations(pairs: list) -> np.ndarray:
    return np.array([np.corrcoef(render.render_strokes(s).ravel().astype(np.float64), o)[0, 1] for _, s, o in pairs])


def per_drawing_ms(fn, items: list, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - start) / len(items))
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared",
        help="the shared folder holding data/quickdraw-real (default: ../shared next to the repo)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats; the best is reported")
    args = parser.parse_args()
    real = args.shared / "data" / "quickdraw-real"
    if not (real / "bitmaps").is_dir():
        sys.exit(f"error: {real / 'bitmaps'} not found (pass --shared)")

    pairs = load_pairs(real)
    scores = correlations(pairs)
    names = [n for n, _, _ in pairs]
    print(f"official bitmaps: {len(set(names))} classes x 25 = {len(pairs)} drawings")
    for name in sorted(set(names)):
        sel = np.array([n == name for n in names])
        label = f"{name} ({STROKES_FOR[name]} strokes)" if name in STROKES_FOR else name
        print(f"  {label:30s} mean r = {scores[sel].mean():.5f}  min {scores[sel].min():.5f}")
    print(
        f"MEAN per-drawing correlation = {scores.mean():.5f} (min {scores.min():.5f}), supersample {render.SUPERSAMPLE}"
    )

    strokes = [s for _, s, _ in pairs]
    default = render.SUPERSAMPLE
    for factor in (8, 16, 24, 32):
        render.SUPERSAMPLE = factor
        ms = per_drawing_ms(render.render_strokes, strokes, args.repeat)
        print(f"  supersample {factor:2d}: mean r = {correlations(pairs).mean():.5f}, render {ms:.3f} ms/drawing")
    render.SUPERSAMPLE = default

    raw = [[[np.asarray(x) * 3.1 + 40, np.asarray(y) * 3.1 + 7] for x, y in s] for s in strokes]
    print(f"render_strokes:            {per_drawing_ms(render.render_strokes, strokes, args.repeat):.3f} ms/drawing")
    print(f"prepare_strokes (canvas):  {per_drawing_ms(render.prepare_strokes, raw, args.repeat):.3f} ms/drawing")
    both = per_drawing_ms(lambda s: render.render_strokes(render.prepare_strokes(s)), raw, args.repeat)
    print(f"prepare + render:          {both:.3f} ms/drawing")

    n = 200
    start = time.perf_counter()
    for name in SYNTHETIC_CATEGORIES:
        generate_class(name, n, class_rng(name, 0))
    elapsed = time.perf_counter() - start
    total = n * len(SYNTHETIC_CATEGORIES)
    print(
        f"synthetic: {total} drawings in {elapsed:.2f} s = {elapsed / total * 1e3:.3f} ms/drawing "
        f"(10 classes x 2000 ~ {elapsed / total * 20000:.0f} s on one core)"
    )


if __name__ == "__main__":
    main()
