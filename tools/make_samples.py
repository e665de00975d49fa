"""Write the sample uploads the project ships in samples/ (made here, from the synthetic shapes).

    python tools/make_samples.py [--out samples]

- star_canvas.png:    an app-canvas export: 1024x768, dark strokes on white, brush 12 px, off-centre
- triangle_photo.jpg: a phone photo of paper: grey paper, uneven light, noise, blur, slight rotation
- square_strokes.json: the drawing as strokes [[x...], [y...]] in canvas pixels (the app's exact path)
Deterministic (fixed seed); each file stays well under 100 KB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quickdraw_cnn.synthetic import generate_strokes  # noqa: E402
from quickdraw_cnn.upload_sim import canvas_png, photo_jpeg  # noqa: E402


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write the sample drawings in samples/.")
    p.add_argument("--out", type=Path, default=Path("samples"), help="folder to write (default samples/)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    _write(args.out / "star_canvas.png", canvas_png(generate_strokes("star", rng), rng, brush=12))
    photo = photo_jpeg(generate_strokes("triangle", rng), rng, size=(800, 600), quality=70)
    _write(args.out / "triangle_photo.jpg", photo)
    square = generate_strokes("square", rng)
    _write(args.out / "square_strokes.json", (json.dumps(square, separators=(",", ":")) + "\n").encode())
    for f in sorted(args.out.iterdir()):
        print(f"{f}  {f.stat().st_size / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
