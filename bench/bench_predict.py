"""Prediction benchmarks (run by hand; prints figures, asserts nothing).

    python bench/bench_predict.py [--which 1,2,3] [--model-dir DIR] [--per-class N]

1. Latency of one drawing, p50/p99: the model call alone (compiled tf.function, and onnxruntime) against
   `model.predict` as Labs 21 used it; end to end (decode a 1024x768 PNG, preprocess, predict); and a
   12-megapixel JPEG photo end to end. Model: --model-dir if it holds an export, else what train_cnn.py
   exports (--tta: with or without mirror averaging) at 100 classes, untrained (same cost), exported to
   a temporary folder.
2. Cold start: process start to the first printed prediction of load_model_predict.py, tf and onnx.
3. Upload accuracy: real strokes (../shared/data/quickdraw-real/simplified/) of the model's classes, each
   rendered three ways (direct 28x28 as the data set; canvas PNG; photo JPEG), and that photo taken
   harder three ways (the sheet on a table filling 65% of the width; dim light; a sharp shadow across
   it), and three harder canvas exports (a 1 px pen; each stroke in one of seven felt-tip colours,
   yellow and pink among them; 150 px with a 4 px pen on a 3000x3000 canvas), and four added at stop 15
   (a name scribbled in the corner farthest from the drawing, on a canvas and on the photo; the felt
   tips saved as a JPEG of quality 70; the largest enclosed area filled with the paint bucket), and one
   at stop 16 (a levelled pencil scan with the scanner lid's shadow along its left edge), predicted
   through the project's path. Default model: the Labs 21 files; --model-dir runs the project's own
   model instead.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from quickdraw_cnn.config import TEST_TIME_AUGMENTATIONS, TrainConfig  # noqa: E402
from quickdraw_cnn.predict import Predictor  # noqa: E402
from quickdraw_cnn.preprocess import to_bitmap  # noqa: E402
from quickdraw_cnn.render import render_strokes  # noqa: E402
from quickdraw_cnn.synthetic import generate_strokes  # noqa: E402
from quickdraw_cnn.upload_sim import (  # noqa: E402
    PENS,
    bucket_filled,
    canvas_png,
    on_table,
    photo_jpeg,
    relit,
    scanned,
    signed,
)

SHARED = ROOT.parent / "shared" / "data"
LABS21 = SHARED / "labs21-model"
SIMPLIFIED = SHARED / "quickdraw-real" / "simplified"


def pct(times: list[float]) -> str:
    ms = np.array(times) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms  (n={len(ms)})"


def timed(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_model_dir(arg: Path | None, tmp: Path, tta: str) -> Path:
    if arg and (arg / "model.onnx").exists():
        return arg
    from quickdraw_cnn.export import export_model
    from quickdraw_cnn.model import build_cnn
    from quickdraw_cnn.train import export_copy

    out = tmp / "models"
    model = export_copy(build_cnn(100), "labs21", 100, tta)  # what train_cnn.py ships with this --tta
    export_model(model, [f"class {i}" for i in range(100)], out, {"note": "untrained, bench"})
    return out


def bench_latency(model_dir: Path, n: int) -> None:
    print(f"\n== 1. latency (model: {model_dir}) ==")
    tf_p = Predictor.load(model_dir, backend="tf")
    onnx_p = Predictor.load(model_dir, backend="onnx")
    rng = np.random.default_rng(0)
    strokes = generate_strokes("star", rng)
    bitmap = to_bitmap(strokes)
    x = bitmap.reshape(1, 28, 28, 1).astype("float32")
    model = tf_p.runner.model
    print("model call, tf.function   ", pct(timed(lambda: tf_p.probabilities(bitmap[None]), n)))
    print("model call, onnxruntime   ", pct(timed(lambda: onnx_p.probabilities(bitmap[None]), n)))
    print("model.predict (Labs 21)   ", pct(timed(lambda: model.predict(x, verbose=0), max(20, n // 5))))
    png = canvas_png(strokes, rng, size=(1024, 768))
    t0 = time.perf_counter()
    jpeg = photo_jpeg(strokes, rng, size=(4000, 3000), quality=85)
    print(f"(made a {len(png) / 1024:.0f} KB 1024x768 PNG and a {len(jpeg) / 1e6:.1f} MB 12 MP JPEG"
          f" in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
    for name, p in (("tf", tf_p), ("onnx", onnx_p)):
        print(f"end to end PNG 1024x768, {name:4}", pct(timed(lambda p=p: p.predict(png), max(20, n // 4))))
        print(f"end to end 12MP JPEG,  {name:4}", pct(timed(lambda p=p: p.predict(jpeg), max(10, n // 10))))
    print("preprocess only, PNG      ", pct(timed(lambda: to_bitmap(png), max(20, n // 4))))
    print("preprocess only, 12MP JPEG", pct(timed(lambda: to_bitmap(jpeg), max(10, n // 10))))


def first_line_time(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t
    proc.communicate()
    if not line:
        raise RuntimeError(f"no output from {' '.join(cmd)}")
    return elapsed


def bench_cold_start(model_dir: Path, runs: int) -> None:
    print(f"\n== 2. cold start: process start -> first printed prediction (model: {model_dir}) ==")
    sample = ROOT / "samples" / "star_canvas.png"
    for backend in ("tf", "onnx"):
        cmd = [sys.executable, "load_model_predict.py", str(sample), "--model-dir", str(model_dir)]
        times = [first_line_time([*cmd, "--backend", backend]) for _ in range(runs)]
        print(f"{backend:4}  median {statistics.median(times):6.2f} s  min {min(times):6.2f} s  (runs={runs})")


def _as_jpeg(png: bytes, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def bench_accuracy(model_dir: Path, per_class: int, photo_size: tuple[int, int]) -> None:
    print(f"\n== 3. upload accuracy (model: {model_dir}, {per_class} real drawings per class) ==")
    p = Predictor.load(model_dir, backend="tf")
    classes = [c for c in p.class_names if (SIMPLIFIED / f"{c}.ndjson").exists()]
    missing = [c for c in p.class_names if c not in classes]
    print(f"{len(classes)} of the model's {len(p.class_names)} classes have real strokes"
          + (f" (missing: {', '.join(missing)})" if missing else ""))  # fmt: skip
    rng = np.random.default_rng(0)
    hard = {"on_table": lambda p: on_table(p, 0.65), "dim": lambda p: relit(p, "dim")}
    hard["shadow"] = lambda p: relit(p, "hard_shadow")
    canvases = {  # harder canvas exports: a 1 px pen; felt-tips of many colours; small on a big canvas
        "thin_pen": lambda d: canvas_png(d, rng, brush=1),
        "colours": lambda d: canvas_png(d, rng, pens=PENS),
        "small": lambda d: canvas_png(d, rng, (3000, 3000), brush=4, extent=150),
    }
    rng2 = np.random.default_rng(1)  # the views added at stop 15: the earlier views keep their drawings
    coloured_in = {  # a name in a corner (canvas and photo), felt tips saved as JPEG, the paint bucket
        "signed": lambda d, photo: signed(canvas_png(d, rng2)),
        "signed_photo": lambda d, photo: signed(photo),
        "felt_jpeg": lambda d, photo: _as_jpeg(canvas_png(d, rng2, pens=PENS), 70),
        "filled": lambda d, photo: bucket_filled(canvas_png(d, rng2)),
    }
    rng3 = np.random.default_rng(2)  # added at stop 16
    coloured_in["scan"] = lambda d, photo: scanned(canvas_png(d, rng3, (1000, 1300), brush=4), "l")
    views: dict[str, list[np.ndarray]] = {k: [] for k in ("direct", "canvas", "photo", *hard, *canvases, *coloured_in)}
    labels, failures = [], {k: 0 for k in views if k != "direct"}
    t0 = time.perf_counter()
    for c in classes:
        for line in (SIMPLIFIED / f"{c}.ndjson").read_text().splitlines()[:per_class]:
            d = json.loads(line)["drawing"]
            direct = render_strokes(d)
            got = {"direct": direct}
            uploads = {"canvas": canvas_png(d, rng), "photo": photo_jpeg(d, rng, photo_size)}
            uploads |= {k: make(uploads["photo"]) for k, make in hard.items()}
            uploads |= {k: make(d) for k, make in canvases.items()}
            uploads |= {k: make(d, uploads["photo"]) for k, make in coloured_in.items()}
            for view, upload in uploads.items():
                try:
                    got[view] = to_bitmap(upload)
                except ValueError:
                    failures[view] += 1
                    got[view] = np.zeros((28, 28), np.uint8)  # counts as a miss
            for k, v in got.items():
                views[k].append(v)
            labels.append(p.class_names.index(c))
    y = np.array(labels)
    print(f"rendered and preprocessed {len(y)} drawings x {len(views)} in {time.perf_counter() - t0:.0f} s;"
          f" preprocessing failures: {failures}")  # fmt: skip
    acc = {}
    for k, v in views.items():
        probs = np.concatenate([p.probabilities(np.stack(v[i : i + 256])) for i in range(0, len(v), 256)])
        top1 = float((probs.argmax(1) == y).mean())
        top5 = float((np.argsort(-probs, 1)[:, :5] == y[:, None]).any(1).mean())
        acc[k] = (top1, top5)
        print(f"{k:12} top-1 {top1:6.2%}  top-5 {top5:6.2%}")
    for k in views:
        if k == "direct":
            continue
        r1, r5 = acc[k][0] / max(acc["direct"][0], 1e-9), acc[k][1] / max(acc["direct"][1], 1e-9)
        goal = 0.97 if k == "canvas" else 0.90
        print(f"{k}/direct: top-1 {r1:6.1%}  top-5 {r5:6.1%}  (goal >= {goal:.0%})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--which", default="1,2,3", help="benchmarks to run, comma separated (default 1,2,3)")
    ap.add_argument("--model-dir", type=Path, help="this project's model folder (default: see above)")
    ap.add_argument("--n", type=int, default=200, help="timed repetitions of a model call (default 200)")
    ap.add_argument("--runs", type=int, default=3, help="cold starts per backend (default 3)")
    ap.add_argument("--per-class", type=int, default=10, help="real drawings per class for 3 (max 25)")
    ap.add_argument("--photo-size", default="1024x768", help="photo size for 3, WxH (default 1024x768)")
    ap.add_argument(
        "--tta",
        choices=TEST_TIME_AUGMENTATIONS,
        default=TrainConfig().tta,
        help="1 and 2 without --model-dir: the untrained model's mirror averaging, as train_cnn.py's --tta "
        "(default: %(default)s)",
    )
    args = ap.parse_args()
    which = {int(w) for w in args.which.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        if which & {1, 2}:
            model_dir = bench_model_dir(args.model_dir, Path(tmp), args.tta)
            if 1 in which:
                bench_latency(model_dir, args.n)
            if 2 in which:
                bench_cold_start(model_dir, args.runs)
        if 3 in which:
            acc_dir = args.model_dir or LABS21
            if not acc_dir.exists() or not SIMPLIFIED.exists():
                print("\n== 3. skipped: no model folder or no ../shared/data/quickdraw-real/simplified ==")
            else:
                w, h = (int(v) for v in args.photo_size.split("x"))
                bench_accuracy(acc_dir, args.per_class, (w, h))
    return 0


if __name__ == "__main__":
    sys.exit(main())
